use std::time::{Duration, SystemTime};

use lambda_http::{Request, RequestExt};

use super::{ApiError, Route};
use crate::domain::UserId;

/// The user id in the route's `{id}` (see [`Route::path_parameter`]); 400 when it is not one.
pub fn user_id(req: &Request, route: &Route) -> Result<UserId, ApiError> {
    let raw = route.path_parameter(req, "id").unwrap_or_default();
    UserId::parse(&raw).map_err(|err| ApiError::BadRequest(format!("The user id {err}.")))
}

/// The header naming an idempotent create (see `users::insert_idempotently`).
const IDEMPOTENCY_KEY: &str = "idempotency-key";
const IDEMPOTENCY_KEY_MAX_LEN: usize = 255;

/// The request's `Idempotency-Key`, if it has one: 1 to 255 visible ASCII characters; 400
/// otherwise.
///
/// A header sent twice cannot be told from one: API Gateway's HTTP API and Function URLs join
/// the values with commas (a different, valid key, and the same one on every retry), and
/// `lambda_http` keeps only the last of a REST API's.
pub fn idempotency_key(req: &Request) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    if !(1..=IDEMPOTENCY_KEY_MAX_LEN).contains(&bytes.len())
        || !bytes.iter().all(u8::is_ascii_graphic)
    {
        return Err(ApiError::BadRequest(format!(
            "The Idempotency-Key header must be 1 to {IDEMPOTENCY_KEY_MAX_LEN} visible ASCII \
             characters (a UUID, for example)."
        )));
    }
    // Visible ASCII only, so this is its text.
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
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
