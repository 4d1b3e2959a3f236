use std::time::{Duration, SystemTime};

use lambda_http::{http::Method, Request, RequestExt};

use super::ApiError;
use crate::domain::UserId;

/// Rejects any other method with 405. API Gateway routes by method already; a Function URL
/// sends every method to the function.
pub fn require_method(req: &Request, allowed: Method) -> Result<(), ApiError> {
    if *req.method() == allowed {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed { allowed })
    }
}

/// The user id in `/users/{id}`.
///
/// API Gateway (REST and HTTP APIs) and `cargo lambda watch` pass it as the `id` path
/// parameter. A Function URL has no routes and so no path parameters: there the id is the
/// last segment of the path.
pub fn user_id_from_path(req: &Request) -> Result<UserId, ApiError> {
    let from_parameters = req
        .path_parameters_ref()
        .and_then(|params| params.first("id"))
        .map(str::to_owned);
    let raw = from_parameters.unwrap_or_else(|| {
        let path = req.uri().path();
        path.rsplit('/').next().unwrap_or_default().to_owned()
    });
    UserId::parse(&raw).map_err(|err| ApiError::BadRequest(format!("The user id {err}.")))
}

/// The function's timeout in template.yaml, for a runtime that gives no usable deadline
/// (`cargo lambda watch` sends a duration where Lambda sends a timestamp; tests send none).
const ASSUMED_TIMEOUT: Duration = Duration::from_secs(10);

/// The time left before the invocation's deadline.
pub fn time_left(req: &Request) -> Duration {
    req.lambda_context_ref()
        .and_then(|context| context.deadline().duration_since(SystemTime::now()).ok())
        .unwrap_or(ASSUMED_TIMEOUT)
}
