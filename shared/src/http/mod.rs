//! The HTTP edge: what every route does with a request and a result.
//!
//! A route is written as `async fn(&AppState, &Request) -> Result<Response<Body>, ApiError>`;
//! [`handle`] runs it and turns its error, or its panic, into an RFC 9457 problem, so a handler
//! never returns `Err` to the Lambda runtime (API Gateway would answer an opaque 502).

mod conditional;
mod error;
mod json;
mod query;
mod request;
mod route;

pub use conditional::{etag, if_match, if_none_match, newest_seen, IfMatch};
pub use error::{ApiError, FieldError, PROBLEM_TYPE_PREFIX};
pub use json::JsonObject;
pub use query::Query;
pub use request::{idempotency_key, time_left, user_id};
pub use route::Route;

use std::{
    borrow::Cow,
    future::Future,
    panic::AssertUnwindSafe,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use futures_util::FutureExt;
use lambda_http::{
    http::{header, HeaderValue, StatusCode},
    Body, Request, RequestExt, Response,
};
use serde::Serialize;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{auth, telemetry, telemetry::metric};

pub const APPLICATION_JSON: &str = "application/json";
pub const APPLICATION_PROBLEM_JSON: &str = "application/problem+json";
pub const APPLICATION_MERGE_PATCH_JSON: &str = "application/merge-patch+json";

/// Kept out of the invocation's time to answer: a request still running this close to the
/// deadline is abandoned and answered 503.
const ANSWER_MARGIN: Duration = Duration::from_millis(500);

/// The largest request body read: a user is a few hundred bytes of JSON. A larger body is
/// refused (413) before it is parsed.
pub const MAX_BODY_BYTES: usize = 8 * 1024;

/// The most characters of anything named in a request (a member's or a parameter's name) that
/// a problem or a log line repeats: enough to recognise it, too few to carry a payload.
pub(crate) const MAX_ECHOED: usize = 64;
/// The same for the request's path (a problem's `instance`).
pub(crate) const MAX_ECHOED_PATH: usize = 256;

/// `text` as a problem or a log line may repeat it: its first `max` characters, then `…`.
pub(crate) fn echoed(text: &str, max: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => Cow::Borrowed(text),
        Some((end, _)) => Cow::Owned(format!("{}…", &text[..end])),
    }
}

/// Runs `route` (the API's route, such as `GET /users/{id}`, whose handler `future` is) for
/// `req` and answers with its response, its error as a problem, or, should it panic, a generic
/// 500 problem: the environment then goes on serving, warm (the release profile unwinds). The
/// panic's message and location are logged by the hook `telemetry::init` installs, within the
/// invocation's span.
///
/// Whatever the route waits for (a slow Secrets Manager during a rotation, a database that
/// stopped answering), it answers before the invocation's deadline: a route still running
/// [`ANSWER_MARGIN`] before it is dropped and the caller gets a 503 problem with
/// `Retry-After`, rather than Lambda's timeout and API Gateway's bare 5xx.
///
/// Every request ends with one access-log line at INFO and its metrics (see [`record`]).
pub async fn handle(
    req: &Request,
    route: &'static str,
    future: impl Future<Output = Result<Response<Body>, ApiError>>,
) -> Response<Body> {
    let started = Instant::now();
    let budget = time_left(req).saturating_sub(ANSWER_MARGIN);
    // A route only borrows the state built at init; what it may leave half-changed when it
    // panics is behind locks that recover from poisoning (auth's key cache).
    let span = request_span(req, route);
    // Boxed: the route's state machine, which holds every statement's future, lives on the heap
    // rather than in whatever stack polls this one (one allocation a request; a debug build's
    // futures reach megabytes, and a test thread's stack is 2 MiB).
    let guarded = AssertUnwindSafe(Box::pin(future))
        .catch_unwind()
        .instrument(span.clone());
    let (outcome, caller) = match budget.is_zero() {
        // Whatever the route would do, its answer would come too late.
        true => (Err(None), None),
        false => {
            let run = async { tokio::time::timeout(budget, guarded).await.map_err(Some) };
            auth::with_caller(run).await
        }
    };
    let result = match outcome {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => {
            let message = telemetry::panic_message(panic.as_ref());
            Err(ApiError::Internal(anyhow::anyhow!(
                "the request handler panicked: {message}"
            )))
        }
        // A change cut off may have been sent, and committed, already: its outcome is unknown.
        Err(Some(_elapsed)) if !req.method().is_safe() => {
            Err(ApiError::OutcomeUnknown(anyhow::anyhow!(
                "the change did not finish within the {budget:?} left before the deadline"
            )))
        }
        Err(Some(_elapsed)) => Err(ApiError::Unavailable(anyhow::anyhow!(
            "the request did not finish within the {budget:?} left before the deadline"
        ))),
        Err(None) => Err(ApiError::Unavailable(anyhow::anyhow!(
            "the invocation's deadline was {ANSWER_MARGIN:?} away or had passed when the \
             request came: not handled"
        ))),
    };
    let problem = result
        .as_ref()
        .err()
        .map(|err| (err.slug(), err.log_detail()));
    let response = respond(req, result);
    span.record("http.response.status_code", response.status().as_u16());
    // Ended, so that it goes out with this request's spans.
    drop(span);
    record(&AccessLog {
        req,
        route,
        status: response.status(),
        latency: started.elapsed(),
        caller: caller.as_deref(),
        problem: problem
            .as_ref()
            .map(|(slug, detail)| (*slug, detail.as_str())),
    });
    telemetry::traces::flush().await;
    response
}

/// The request's span, continuing Lambda's trace, when traces are exported (none otherwise:
/// nothing to pay for). Its attributes name the route, never the path or its parameters.
fn request_span(req: &Request, route: &'static str) -> tracing::Span {
    if !telemetry::traces::enabled() {
        return tracing::Span::none();
    }
    let context = req.lambda_context_ref();
    let span = tracing::info_span!(
        "request",
        otel.name = route,
        otel.kind = "server",
        http.route = route,
        http.request.method = %req.method(),
        http.response.status_code = tracing::field::Empty,
        faas.invocation_id = context.map(|context| context.request_id.as_str()),
    );
    let parent = context
        .and_then(|context| telemetry::traces::parent_context(context.xray_trace_id.as_deref()));
    if let Some(parent) = parent {
        let _ = span.set_parent(parent);
    }
    span
}

/// What the access log records of one request.
struct AccessLog<'a> {
    req: &'a Request,
    route: &'static str,
    status: StatusCode,
    latency: Duration,
    /// The verified token's subject: who called (never the token itself).
    caller: Option<&'a str>,
    /// The problem's kind and detail, for an error (the detail is written for the client:
    /// never a secret or a cause).
    problem: Option<(&'static str, &'a str)>,
}

/// The first request an execution environment serves is its cold start.
static COLD_START: AtomicBool = AtomicBool::new(true);

/// What the request leaves behind: its metrics, then one line at INFO (route, method, status,
/// latency, the Lambda request id and X-Ray trace id, whether this was the environment's first
/// request, the function's name, version and memory, the caller's subject, and for an error
/// its problem kind and detail; no header, token, body or query string), then the
/// invocation's metrics flushed, before the response goes (see `telemetry`).
fn record(entry: &AccessLog<'_>) {
    // The route is each function's own `route` dimension (telemetry::init).
    metrics::counter!(metric::REQUESTS).increment(1);
    metrics::histogram!(metric::LATENCY).record(entry.latency.as_secs_f64() * 1000.0);
    if entry.status.is_client_error() {
        metrics::counter!(metric::CLIENT_ERRORS).increment(1);
    } else if entry.status.is_server_error() {
        metrics::counter!(metric::SERVER_ERRORS).increment(1);
    }
    let cold_start = COLD_START.swap(false, Ordering::Relaxed);
    if cold_start {
        metrics::counter!(metric::COLD_START).increment(1);
    }
    let context = entry.req.lambda_context_ref();
    let config = context.map(|context| &*context.env_config);
    let (problem, detail) = entry.problem.unzip();
    tracing::info!(
        route = entry.route,
        method = %entry.req.method(),
        status = entry.status.as_u16(),
        latency_ms = entry.latency.as_secs_f64() * 1000.0,
        request_id = context.map(|context| context.request_id.as_str()),
        xray_trace_id = context.and_then(|context| context.xray_trace_id.as_deref()),
        cold_start,
        function_name = config.map(|config| config.function_name.as_str()),
        function_version = config.map(|config| config.version.as_str()),
        memory_mb = config.map(|config| config.memory),
        caller = entry.caller.map(|caller| echoed(caller, MAX_ECHOED)).as_deref(),
        problem,
        detail,
        "request"
    );
    telemetry::flush_metrics(
        context.map(|context| context.request_id.as_str()),
        context.and_then(|context| context.xray_trace_id.as_deref()),
    );
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

/// `body` with the given status (201, or a replay's) and its `Location`.
pub fn located<T: Serialize>(
    status: StatusCode,
    location: &str,
    body: &T,
) -> Result<Response<Body>, ApiError> {
    let location = HeaderValue::from_str(location).map_err(|err| {
        ApiError::Internal(anyhow::Error::new(err).context("Invalid Location header"))
    })?;
    let mut response = json(status, body)?;
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}

/// 204 No Content.
pub fn no_content() -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// 304 Not Modified, with the `ETag` it confirms (and no body).
pub fn not_modified(version: i64) -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    response.headers_mut().insert(header::ETAG, etag(version));
    response
}

/// `response` with the `ETag` of the user in `version` it carries.
pub fn with_etag(mut response: Response<Body>, version: i64) -> Response<Body> {
    response.headers_mut().insert(header::ETAG, etag(version));
    response
}
