//! `PATCH /users/{id}`: a JSON merge patch (RFC 7396) of `email` and `name`; 200 with the
//! user and its new `ETag`. With `If-Match`, only if the user is still in a version it names
//! (412 otherwise), checked in the statement that makes the change.

use lambda_http::{http::StatusCode, Body, Error, Request, Response};

use crate::{
    auth::Scope,
    domain::{Email, UserName, UserPatch},
    http::{self, ApiError, JsonObject, Route},
    state::AppState,
    users,
};

/// The route this module serves.
pub const ROUTE: Route = Route {
    key: "PATCH /users/{id}",
    scope: Some(Scope::UsersWrite),
    function: "update-user",
};

pub async fn handler(state: &AppState, req: Request) -> Result<Response<Body>, Error> {
    Ok(http::handle(&req, ROUTE.key, update_user(state, &req)).await)
}

#[tracing::instrument(name = "Update a user", skip_all)]
async fn update_user(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    super::admit(state, req, &ROUTE).await?;
    let id = http::user_id(req, &ROUTE)?;
    let if_match = http::if_match(req)?;
    let patch = parse_patch(JsonObject::from_merge_patch(req)?)?;
    let user = users::update(&state.db, id, &patch, super::precondition(&if_match)).await?;
    tracing::debug!(user_id = %user.id, version = user.version, "user updated");
    Ok(http::with_etag(
        http::json(StatusCode::OK, &user)?,
        user.version,
    ))
}

fn parse_patch(mut body: JsonObject) -> Result<UserPatch, ApiError> {
    body.reject_unknown_fields(&["email", "name"]);
    let patch = UserPatch {
        email: body.patched_string("email", Email::parse),
        name: body.patched_string("name", UserName::parse),
    };
    body.finish(Some(patch))
}
