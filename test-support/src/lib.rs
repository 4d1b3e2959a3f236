//! What the integration suite (`shared/tests/api`, handlers in-process) and the end-to-end
//! suite (`e2e/`, the real binaries) share:
//!
//! - [`events`]: requests forged into real API Gateway (REST, HTTP API) and Function URL
//!   events, from the JSON in `fixtures/events/`.
//! - [`reply`]: a response, and the assertion that it is an RFC 9457 problem.
//! - [`samples`]: a sample request for each route, by its route key.
//! - [`tokens`]: test tokens, signed with the test keys in `fixtures/keys/`.
//! - [`workspace`]: the checkout's files, as the checkout under test has them: the contract
//!   ([`openapi_document`]), the manifest.

pub mod events;
pub mod reply;
pub mod samples;
pub mod tokens;
pub mod workspace;

pub use events::{Source, TestRequest, SOURCES};
pub use reply::{Reply, PROBLEM_TYPE_PREFIX};
pub use workspace::openapi_document;
