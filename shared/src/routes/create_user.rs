//! `POST /users`: 201 with the user, its `Location` and `ETag`. With an `Idempotency-Key`, a
//! repeat of the same request replays the first one's response (`Idempotent-Replayed: true`).

use lambda_http::{
    http::{HeaderName, HeaderValue, StatusCode},
    Body, Error, Request, Response,
};

use crate::{
    auth::{Principal, Scope},
    domain::{Email, NewUser, User, UserName},
    http::{self, ApiError, JsonObject, Route},
    state::AppState,
    users::{self, Created},
};

const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The route this module serves.
pub const ROUTE: Route = Route {
    key: "POST /users",
    scope: Some(Scope::UsersWrite),
    function: "create-user",
};

pub async fn handler(state: &AppState, req: Request) -> Result<Response<Body>, Error> {
    Ok(http::handle(&req, ROUTE.key, create_user(state, &req)).await)
}

#[tracing::instrument(name = "Create a user", skip_all)]
async fn create_user(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    let principal = super::admit(state, req, &ROUTE).await?;
    let key = http::idempotency_key(req)?;
    let body = JsonObject::from_request(req)?;
    let request_hash = body.canonical_hash();
    let new_user = parse_new_user(body)?;
    let Some(key) = key else {
        let user = users::insert(&state.db, &new_user).await?;
        tracing::debug!(user_id = %user.id, "user created");
        return created(StatusCode::CREATED, &user);
    };
    // A key belongs to its caller: without a claim that says who that is, one caller could
    // replay another's create.
    let owner = principal
        .as_ref()
        .and_then(Principal::owner)
        .ok_or_else(|| {
            ApiError::BadRequest(
                "An Idempotency-Key belongs to its caller, and this token names none (no sub \
                 or client_id claim). Send the request without the key, or with a token that \
                 identifies its caller."
                    .to_owned(),
            )
        })?;
    let outcome =
        users::insert_idempotently(&state.db, &owner, &key, &request_hash, &new_user).await?;
    match outcome {
        Created::New(user) => {
            tracing::debug!(user_id = %user.id, "user created");
            created(StatusCode::CREATED, &user)
        }
        Created::Replayed { status, user } => {
            tracing::debug!(user_id = %user.id, "idempotent create replayed");
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::CREATED);
            let mut response = created(status, &user)?;
            response
                .headers_mut()
                .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
            Ok(response)
        }
    }
}

/// The user with its `Location` and `ETag`.
fn created(status: StatusCode, user: &User) -> Result<Response<Body>, ApiError> {
    let response = http::located(status, &format!("/users/{}", user.id), user)?;
    Ok(http::with_etag(response, user.version))
}

fn parse_new_user(mut body: JsonObject) -> Result<NewUser, ApiError> {
    body.reject_unknown_fields(&["email", "name"]);
    let email = body.required_string("email", Email::parse);
    let name = body.required_string("name", UserName::parse);
    let new_user = email.zip(name).map(|(email, name)| NewUser { email, name });
    body.finish(new_user)
}
