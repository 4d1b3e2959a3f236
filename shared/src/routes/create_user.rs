//! `POST /users`: 201 with the user and its `Location`.

use lambda_http::{http::Method, Body, Error, Request, Response};

use crate::{
    auth::Scope,
    domain::{Email, NewUser, UserName},
    http::{self, ApiError, JsonObject},
    state::AppState,
    users,
};

pub async fn handler(state: &AppState, req: Request) -> Result<Response<Body>, Error> {
    Ok(http::handle(&req, create_user(state, &req)).await)
}

#[tracing::instrument(name = "Create a user", skip_all)]
async fn create_user(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    http::require_method(req, Method::POST)?;
    state.auth.authorize(req, Scope::UsersWrite).await?;
    let new_user = parse_new_user(JsonObject::from_request(req)?)?;
    // The database's error first, then a taken email. Each attempt owns its copy of the user.
    let user = state
        .db
        .write(|connection| {
            let new_user = new_user.clone();
            Box::pin(async move { users::insert(connection, &new_user).await })
        })
        .await??;
    tracing::info!(user_id = %user.id, "user created");
    http::created(&format!("/users/{}", user.id), &user)
}

fn parse_new_user(mut body: JsonObject) -> Result<NewUser, ApiError> {
    body.reject_unknown_fields(&["email", "name"]);
    let email = body.required_string("email", Email::parse);
    let name = body.required_string("name", UserName::parse);
    let new_user = email.zip(name).map(|(email, name)| NewUser { email, name });
    body.finish(new_user)
}
