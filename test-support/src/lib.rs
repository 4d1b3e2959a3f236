//! What the integration suite (`shared/tests/api`, handlers in-process) and the end-to-end
//! suite (`e2e/`, the real binaries) share:
//!
//! - [`events`]: requests forged into real API Gateway (REST, HTTP API) and Function URL
//!   events, from the JSON in `fixtures/events/`.
//! - [`reply`]: a response, and the assertion that it is an RFC 9457 problem.
//! - [`tokens`]: test tokens, signed with the test keys in `fixtures/keys/`.
//! - [`openapi_document`]: the contract, as the checkout under test has it.

pub mod events;
pub mod reply;
pub mod tokens;

pub use events::{Source, TestRequest, SOURCES};
pub use reply::{Reply, PROBLEM_TYPE_PREFIX};

/// `openapi.yaml`, for the tests that hold the code to it, read from the checkout being tested
/// (beside the package folder where `cargo test` runs a member's test binary). Not
/// `include_str!`: cargo tracks a file outside the crate by its absolute path, so a target
/// directory shared by checkouts could link another checkout's copy.
pub fn openapi_document() -> String {
    let package = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| ".".into());
    let path = std::path::Path::new(&package).join("../openapi.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}
