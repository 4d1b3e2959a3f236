//! `DELETE /users/{id}`: 204. With `If-Match`, only if the user is still in a version it names
//! (412 otherwise), checked in the statement that deletes it.

use lambda_http::{Body, Error, Request, Response};

use crate::{
    auth::Scope,
    http::{self, ApiError, Route},
    state::AppState,
    users,
};

/// The route this module serves.
pub const ROUTE: Route = Route {
    key: "DELETE /users/{id}",
    scope: Some(Scope::UsersWrite),
    function: "delete-user",
};

pub async fn handler(state: &AppState, req: Request) -> Result<Response<Body>, Error> {
    Ok(http::handle(&req, ROUTE.key, delete_user(state, &req)).await)
}

#[tracing::instrument(name = "Delete a user", skip_all)]
async fn delete_user(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    super::admit(state, req, &ROUTE).await?;
    let id = http::user_id(req, &ROUTE)?;
    let if_match = http::if_match(req)?;
    users::delete(&state.db, id, super::precondition(&if_match)).await?;
    tracing::debug!(user_id = %id, "user deleted");
    Ok(http::no_content())
}
