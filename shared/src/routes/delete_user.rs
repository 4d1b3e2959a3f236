//! `DELETE /users/{id}`: 204. With `If-Match`, only if the user is still in a version it names
//! (412 otherwise), checked in the statement that deletes it.

use lambda_http::{http::Method, Body, Error, Request, Response};

use crate::{
    auth::Scope,
    http::{self, ApiError},
    state::AppState,
    users,
};

/// The route this module serves: the access log's `route` and the metrics' dimension.
pub const ROUTE: &str = "DELETE /users/{id}";

pub async fn handler(state: &AppState, req: Request) -> Result<Response<Body>, Error> {
    Ok(http::handle(&req, ROUTE, delete_user(state, &req)).await)
}

#[tracing::instrument(name = "Delete a user", skip_all)]
async fn delete_user(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    http::require_method(req, Method::DELETE, super::USER)?;
    state.auth.authorize(req, Scope::UsersWrite).await?;
    let id = http::user_id_from_path(req)?;
    let expected = http::if_match(req)?;
    users::delete(&state.db, id, expected.as_deref()).await?;
    tracing::debug!(user_id = %id, "user deleted");
    Ok(http::no_content())
}
