//! One module per route. Each exposes `handler(&AppState, Request)`, the function a Lambda
//! binary passes to `lambda_http::run`; it always answers with a response, never `Err`.

pub mod create_user;
pub mod delete_user;
pub mod get_user;
pub mod health;
pub mod list_users;
pub mod update_user;

/// Each resource's methods, as a 405's `Allow` header lists them. API Gateway routes any other
/// method of a path (`ANY`, template.yaml) to one of that path's functions, which answers 405.
const USERS: &str = "GET, POST";
const USER: &str = "GET, PATCH, DELETE";
const HEALTH: &str = "GET";
