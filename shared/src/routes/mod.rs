//! One module per route. Each exposes `handler(&AppState, Request)`, the function a Lambda
//! binary passes to `lambda_http::run`; it always answers with a response, never `Err`.

pub mod create_user;
pub mod delete_user;
pub mod get_user;
pub mod health;
pub mod list_users;
pub mod update_user;
