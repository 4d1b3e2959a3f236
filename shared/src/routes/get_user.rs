//! `GET /users/{id}`: 200 with the user.

use lambda_http::{
    http::{Method, StatusCode},
    Body, Error, Request, Response,
};

use crate::{
    auth::Scope,
    http::{self, ApiError},
    state::AppState,
    users,
};

pub async fn handler(state: &AppState, req: Request) -> Result<Response<Body>, Error> {
    Ok(http::handle(&req, get_user(state, &req)).await)
}

#[tracing::instrument(name = "Get a user", skip_all)]
async fn get_user(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    http::require_method(req, Method::GET)?;
    state.auth.authorize(req, Scope::UsersRead).await?;
    let id = http::user_id_from_path(req)?;
    let user = state
        .db
        .read(|connection| Box::pin(users::find(connection, id)))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("No user has the id {id}.")))?;
    http::json(StatusCode::OK, &user)
}
