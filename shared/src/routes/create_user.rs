//! `POST /users`: 201 with the user and its `Location`.

use lambda_http::{
    http::{header, HeaderValue, Method, StatusCode},
    Body, Error, Request, Response,
};

use crate::{
    auth::Scope,
    domain::{Email, NewUser, UserName},
    http::{self, ApiError, JsonObject},
    users::{self, InsertUserError},
    AppState,
};

pub async fn handler(state: &AppState, req: Request) -> Result<Response<Body>, Error> {
    Ok(http::respond(&req, create_user(state, &req).await))
}

#[tracing::instrument(name = "Create a user", skip_all)]
async fn create_user(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    http::require_method(req, Method::POST)?;
    state.auth.authorize(req, Scope::UsersWrite).await?;
    let new_user = parse_new_user(JsonObject::from_request(req)?)?;
    let mut connection = state.db.acquire().await?;
    let user = users::insert(&mut connection, &new_user)
        .await
        .map_err(|err| match err {
            InsertUserError::EmailTaken => {
                ApiError::Conflict("A user with this email already exists.".to_owned())
            }
            InsertUserError::Database(err) => err.into(),
        })?;
    tracing::info!(user_id = %user.id, "user created");
    let mut response = http::json(StatusCode::CREATED, &user)?;
    let location = HeaderValue::from_str(&format!("/users/{}", user.id))
        .map_err(|err| ApiError::Internal(err.into()))?;
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}

fn parse_new_user(mut body: JsonObject) -> Result<NewUser, ApiError> {
    body.reject_unknown_fields(&["email", "name"]);
    let email = body.required_string("email", Email::parse);
    let name = body.required_string("name", UserName::parse);
    let new_user = email.zip(name).map(|(email, name)| NewUser { email, name });
    body.finish(new_user)
}
