use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// A deadline before this (2001-09-09, 10^12 ms after the epoch) is no timestamp: a duration,
/// or none at all.
const EARLIEST_DEADLINE: Duration = Duration::from_secs(1_000_000_000);

/// The time left before the invocation's deadline: none once it has passed.
pub fn time_left(req: &Request) -> Duration {
    let Some(context) = req.lambda_context_ref() else {
        return ASSUMED_TIMEOUT;
    };
    time_left_until(context.deadline(), SystemTime::now())
}

fn time_left_until(deadline: SystemTime, now: SystemTime) -> Duration {
    let since_epoch = deadline.duration_since(UNIX_EPOCH).unwrap_or_default();
    if since_epoch < EARLIEST_DEADLINE {
        return ASSUMED_TIMEOUT;
    }
    deadline.duration_since(now).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_that_has_passed_leaves_no_time_and_one_that_is_no_timestamp_the_assumed() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);

        let passed = time_left_until(now - Duration::from_millis(1), now);
        let ahead = time_left_until(now + Duration::from_secs(3), now);
        let a_duration = time_left_until(UNIX_EPOCH + Duration::from_secs(30), now);
        let none = time_left_until(UNIX_EPOCH, now);

        assert_eq!(passed, Duration::ZERO);
        assert_eq!(ahead, Duration::from_secs(3));
        assert_eq!((a_duration, none), (ASSUMED_TIMEOUT, ASSUMED_TIMEOUT));
    }
}
