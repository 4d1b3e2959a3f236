//! `GET /users/{id}`: 200 with the user and its `ETag`; 304 when `If-None-Match` names it.

use lambda_http::{
    http::{header, HeaderValue, StatusCode},
    Body, Error, Request, Response,
};

use crate::{
    auth::Scope,
    http::{self, ApiError, Route},
    state::AppState,
};

/// The route this module serves.
pub const ROUTE: Route = Route {
    key: "GET /users/{id}",
    scope: Some(Scope::UsersRead),
    function: "get-user",
};

pub async fn handler(state: &AppState, req: Request) -> Result<Response<Body>, Error> {
    Ok(http::handle(&req, ROUTE.key, get_user(state, &req)).await)
}

#[tracing::instrument(name = "Get a user", skip_all)]
async fn get_user(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    super::admit(state, req, &ROUTE).await?;
    let id = http::user_id(req, &ROUTE)?;
    // On the reader, unless it is older than the version the client presents. A malformed
    // `If-None-Match` is refused below, once the user is found (404 first, RFC 9110 13.2.1).
    let seen = http::newest_seen(req).unwrap_or(None);
    let user = state.reads().find(id, seen).await?;
    // A user that no longer exists answers 404 whatever the condition (RFC 9110, 13.2.1).
    let mut response = if http::if_none_match(req, user.version)? {
        http::not_modified(user.version)
    } else {
        http::with_etag(http::json(StatusCode::OK, &user)?, user.version)
    };
    // Personal data, fetched with a token: shared caches must not keep it, and a client's own
    // cache revalidates (If-None-Match) before each reuse.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    Ok(response)
}
