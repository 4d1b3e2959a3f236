//! Integration tests: each handler called in-process, on the state the functions build, with
//! requests forged into real API Gateway (REST and HTTP API) and Function URL events
//! (`test_support::events`), each test on its own freshly migrated database (`#[sqlx::test]`).

mod app;
mod auth;
mod bounds;
mod conditional;
mod create_user;
mod delete_user;
mod errors;
mod get_user;
mod health;
mod idempotency;
mod list_users;
mod sessions;
mod update_user;
