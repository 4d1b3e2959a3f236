//! The HTTP edge: what every route does with a request and a result.
//!
//! A route is written as `async fn(&AppState, &Request) -> Result<Response<Body>, ApiError>`;
//! [`handle`] runs it and turns its error, or its panic, into an RFC 9457 problem, so a handler
//! never returns `Err` to the Lambda runtime (API Gateway would answer an opaque 502).

mod error;
mod json;
mod request;

pub use error::{ApiError, FieldError, PROBLEM_TYPE_PREFIX};
pub use json::JsonObject;
pub use request::{require_method, user_id_from_path};

use std::{future::Future, panic::AssertUnwindSafe};

use futures_util::FutureExt;
use lambda_http::{
    http::{header, HeaderValue, StatusCode},
    Body, Request, RequestExt, Response,
};
use serde::Serialize;

use crate::telemetry;

pub const APPLICATION_JSON: &str = "application/json";
pub const APPLICATION_PROBLEM_JSON: &str = "application/problem+json";

/// Runs `route` for `req` and answers with its response, its error as a problem, or, should it
/// panic, a generic 500 problem: the environment then goes on serving, warm (the release
/// profile unwinds). The panic's message and location are logged by the hook
/// `telemetry::init` installs, within the invocation's span.
pub async fn handle(
    req: &Request,
    route: impl Future<Output = Result<Response<Body>, ApiError>>,
) -> Response<Body> {
    // A route only borrows the state built at init; what it may leave half-changed when it
    // panics is behind locks that recover from poisoning (auth's key cache).
    let result = AssertUnwindSafe(route)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            let message = telemetry::panic_message(panic.as_ref());
            Err(ApiError::Internal(anyhow::anyhow!(
                "the request handler panicked: {message}"
            )))
        });
    respond(req, result)
}

/// The response for a route's result: its own on success, a problem otherwise.
pub fn respond(req: &Request, result: Result<Response<Body>, ApiError>) -> Response<Body> {
    result.unwrap_or_else(|err| {
        let request_id = req.lambda_context_ref().map(|ctx| ctx.request_id.as_str());
        err.into_problem_response(request_id, req.uri().path())
    })
}

/// A JSON response with the given status.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Result<Response<Body>, ApiError> {
    let body = serde_json::to_vec(body).map_err(|err| {
        ApiError::Internal(anyhow::Error::new(err).context("Failed to serialize a response"))
    })?;
    let mut response = Response::new(Body::Binary(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(APPLICATION_JSON),
    );
    Ok(response)
}

/// 201 with `body` and its `Location`.
pub fn created<T: Serialize>(location: &str, body: &T) -> Result<Response<Body>, ApiError> {
    let location = HeaderValue::from_str(location).map_err(|err| {
        ApiError::Internal(anyhow::Error::new(err).context("Invalid Location header"))
    })?;
    let mut response = json(StatusCode::CREATED, body)?;
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}
