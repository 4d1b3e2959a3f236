//! The checkout's own files, read at run time.

use std::path::PathBuf;

/// `openapi.yaml`, for the tests that hold the code to it, as the checkout under test has it.
pub fn openapi_document() -> String {
    file("openapi.yaml")
}

/// A file of the workspace, read from the checkout being tested: the nearest folder above the
/// package's (where `cargo test` runs a member's test binary), or above the current directory
/// (a binary run by hand, such as the bench), whose `Cargo.toml` declares the `[workspace]`.
/// Not `include_str!`: cargo tracks a file outside the crate by its absolute path, so a target
/// directory shared by checkouts could link another checkout's copy (it did: another
/// checkout's watch router, and 400s for a new route).
pub fn file(name: &str) -> String {
    let path = root().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn root() -> PathBuf {
    let start = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from("."));
    start
        .ancestors()
        .find(|folder| {
            std::fs::read_to_string(folder.join("Cargo.toml"))
                .is_ok_and(|manifest| manifest.lines().any(|line| line.trim() == "[workspace]"))
        })
        .unwrap_or_else(|| panic!("no workspace above {}", start.display()))
        .to_path_buf()
}
