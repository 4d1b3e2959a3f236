//! The checkout's own files, read at run time.

/// `openapi.yaml`, for the tests that hold the code to it, as the checkout under test has it.
pub fn openapi_document() -> String {
    file("openapi.yaml")
}

/// A file of the workspace, read from the checkout being tested (beside the package folder
/// where `cargo test` runs a member's test binary). Not `include_str!`: cargo tracks a file
/// outside the crate by its absolute path, so a target directory shared by checkouts could link
/// another checkout's copy (it did: another checkout's watch router, and 400s for a new route).
pub fn file(name: &str) -> String {
    let package = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| ".".into());
    let path = std::path::Path::new(&package).join("..").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}
