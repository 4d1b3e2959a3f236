//! Integration tests: each handler called in-process with requests built from real API Gateway
//! (REST and HTTP API) and Function URL event JSON, each test on its own freshly migrated
//! database (`#[sqlx::test]`).

mod auth;
mod create_user;
mod errors;
mod get_user;
mod health;
mod helpers;
