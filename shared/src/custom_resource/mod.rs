//! The `migrate` function's CloudFormation custom resource: applies `migrations/` (embedded in
//! the binary) when CloudFormation creates or updates the stack.
//!
//! It always answers CloudFormation's pre-signed response URL, SUCCESS or FAILED with the
//! reason, before the Lambda deadline, whatever happens: a failure, a panic, running out of
//! time, a request it cannot fully read (as long as it carries a `ResponseURL`). An unanswered
//! custom resource holds a deploy for the resource's service timeout, and Lambda's retries of
//! the asynchronous invocation would run the migrations again meanwhile. That is also why,
//! unlike the API functions, it reads its configuration and the database secret per
//! invocation, inside the handler: a failure there must become a FAILED answer, not an init
//! error that CloudFormation never hears of.
//!
//! **Rollbacks.** When an Update fails, CloudFormation rolls back by sending another Update
//! whose `ResourceProperties` are the failed request's `OldResourceProperties`, to the new code
//! (the custom resource rolls back before the function does). Re-running the migrations then
//! would fail again and leave the stack in `UPDATE_ROLLBACK_FAILED`. So the physical id of the
//! resource records the properties it last succeeded with (a digest of them, whatever their
//! names): an Update that asks for exactly those properties again is a rollback to a state the
//! database already has (a failed migration changes nothing: each runs in a transaction), and
//! is answered SUCCESS without touching the database. A successful Update therefore changes
//! the physical id, and CloudFormation follows it with a Delete of the old id, which, like
//! every Delete, changes nothing in the database: the schema and its data outlive the stack.

mod migrations;

pub use migrations::apply as apply_migrations;

use std::{
    future::Future,
    panic::AssertUnwindSafe,
    time::{Duration, Instant, SystemTime},
};

use anyhow::Context as _;
use futures_util::FutureExt as _;
use http_body_util::Full;
use hyper::{body::Bytes, header, Method, Request};
use lambda_runtime::{Error, LambdaEvent};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::{outbound_http::OutboundHttp, telemetry};

/// Kept for the answer to CloudFormation, out of the Lambda timeout.
const RESPONSE_MARGIN: Duration = Duration::from_secs(10);
/// How long past its own deadline the work may run before it is abandoned: it is expected to
/// stop by the deadline (it cancels its statement on the server); this only guards the answer.
const WORK_GRACE: Duration = Duration::from_secs(5);
/// The function's timeout in template.yaml, for a runtime that gives no usable deadline.
const ASSUMED_TIMEOUT: Duration = Duration::from_secs(300);
/// CloudFormation rejects responses over 4 KiB; a reason this long is plenty.
const MAX_REASON_LEN: usize = 1024;
/// The physical id's prefix; the digest of the properties follows it.
const PHYSICAL_ID_PREFIX: &str = "database-migrations";

/// What is needed to answer at all: read leniently, field by field, so that even a request
/// that is otherwise unreadable gets its answer.
#[derive(Debug)]
struct ResponseHead {
    response_url: String,
    stack_id: String,
    request_id: String,
    logical_resource_id: String,
    physical_resource_id: Option<String>,
}

impl ResponseHead {
    fn read(payload: &Value) -> Option<Self> {
        let field = |name: &str| payload.get(name).and_then(Value::as_str).map(str::to_owned);
        Some(Self {
            response_url: field("ResponseURL")?,
            stack_id: field("StackId").unwrap_or_default(),
            request_id: field("RequestId").unwrap_or_default(),
            logical_resource_id: field("LogicalResourceId").unwrap_or_default(),
            physical_resource_id: field("PhysicalResourceId"),
        })
    }
}

/// A CloudFormation custom resource request, as far as this function acts on it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CustomResourceRequest {
    request_type: RequestType,
    resource_properties: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
enum RequestType {
    Create,
    Update,
    Delete,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct CustomResourceResponse<'a> {
    status: &'static str,
    reason: String,
    physical_resource_id: String,
    stack_id: &'a str,
    request_id: &'a str,
    logical_resource_id: &'a str,
    data: Value,
}

/// The `migrate` function's handler; `http` answers the response URL (build it once with
/// [`crate::outbound_http::client`]).
pub async fn handler(http: &OutboundHttp, event: LambdaEvent<Value>) -> Result<(), Error> {
    respond(http, event, |deadline| {
        // Boxed: the SDK, SQLx and hyper futures nested in one state machine exceed the
        // compiler's layout depth limit otherwise.
        Box::pin(apply_migrations(&crate::db::MIGRATOR, deadline))
    })
    .await
}

/// The custom resource protocol around `work`, which Create and Update run: it gets the instant
/// it must be done by and returns the response's `Data`. Public so a test-only function can put
/// work that panics or hangs behind the same wrapper.
pub async fn respond<W, F>(
    http: &OutboundHttp,
    event: LambdaEvent<Value>,
    work: W,
) -> Result<(), Error>
where
    W: FnOnce(Instant) -> F,
    F: Future<Output = anyhow::Result<Value>>,
{
    let Some(head) = ResponseHead::read(&event.payload) else {
        // Nothing to answer: say so to Lambda, which logs it as the invocation's error.
        return Err(
            "The event is not a CloudFormation custom resource request: no ResponseURL".into(),
        );
    };
    // A deadline already past is no deadline (`cargo lambda watch` sends a duration where
    // Lambda sends a timestamp): then assume the template's timeout.
    let remaining = event
        .context
        .deadline()
        .duration_since(SystemTime::now())
        .unwrap_or(ASSUMED_TIMEOUT);
    let budget = remaining.saturating_sub(RESPONSE_MARGIN);
    let (status, reason, physical_resource_id, data) =
        match serde_json::from_value::<CustomResourceRequest>(event.payload) {
            Err(err) => (
                "FAILED",
                format!("The request could not be read: {err}"),
                head.physical_resource_id.clone(),
                json!({}),
            ),
            Ok(request) => decide(&head, request, budget, work).await,
        };
    let response = CustomResourceResponse {
        status,
        reason: truncate(reason, MAX_REASON_LEN),
        physical_resource_id: physical_resource_id.unwrap_or_else(|| PHYSICAL_ID_PREFIX.into()),
        stack_id: &head.stack_id,
        request_id: &head.request_id,
        logical_resource_id: &head.logical_resource_id,
        data,
    };
    // Before answering: CloudFormation's answer is what ends this deploy step.
    telemetry::flush_metrics(
        Some(&event.context.request_id),
        event.context.xray_trace_id.as_deref(),
    );
    send_response(http, &head.response_url, &response).await?;
    tracing::info!(status, "answered CloudFormation");
    Ok(())
}

/// Status, reason, physical id and data for a request that could be read.
async fn decide<W, F>(
    head: &ResponseHead,
    request: CustomResourceRequest,
    budget: Duration,
    work: W,
) -> (&'static str, String, Option<String>, Value)
where
    W: FnOnce(Instant) -> F,
    F: Future<Output = anyhow::Result<Value>>,
{
    let requested = physical_id(&request.resource_properties);
    tracing::info!(
        request_type = ?request.request_type,
        stack_id = head.stack_id,
        physical_resource_id = head.physical_resource_id,
        ?budget,
        "custom resource request"
    );
    let current = head.physical_resource_id.clone();
    match request.request_type {
        RequestType::Delete => ("SUCCESS", "Nothing deleted".into(), current, json!({})),
        RequestType::Update if current.as_deref() == Some(requested.as_str()) => {
            tracing::info!("a rollback to the properties of the last success: nothing to apply");
            let reason = "Rolled back to the properties the database already has: nothing applied";
            ("SUCCESS", reason.into(), current, json!({}))
        }
        request_type => match run(work, budget).await {
            Ok(data) => (
                "SUCCESS",
                "Migrations applied".into(),
                Some(requested),
                data,
            ),
            Err(err) => {
                let reason = format!("{err:#}");
                tracing::error!(error = reason, "migrations failed");
                metrics::counter!(telemetry::metric::MIGRATION_FAILURES).increment(1);
                // A failed Update leaves the resource as it was; a failed Create gets an id,
                // which CloudFormation then deletes (changing nothing).
                let id = match request_type {
                    RequestType::Update => current.or(Some(requested)),
                    _ => Some(requested),
                };
                ("FAILED", reason, id, json!({}))
            }
        },
    }
}

/// Runs `work` with `budget`, turning a panic or an overrun into an error.
async fn run<W, F>(work: W, budget: Duration) -> anyhow::Result<Value>
where
    W: FnOnce(Instant) -> F,
    F: Future<Output = anyhow::Result<Value>>,
{
    let deadline = Instant::now() + budget;
    let guarded = AssertUnwindSafe(work(deadline)).catch_unwind();
    match tokio::time::timeout_at((deadline + WORK_GRACE).into(), guarded).await {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => Err(anyhow::anyhow!(
            "The migrate function panicked: {}",
            telemetry::panic_message(panic.as_ref())
        )),
        Err(_) => Err(anyhow::anyhow!(
            "Migrations did not finish within {budget:?} (the function's remaining time less \
             {RESPONSE_MARGIN:?} kept to answer CloudFormation); raise the function's timeout"
        )),
    }
}

/// `database-migrations-<digest>`: the digest of the properties, keys sorted, so that the same
/// properties always give the same id, whichever binary computes it.
fn physical_id(properties: &Map<String, Value>) -> String {
    fn canonical(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(key, value)| (key.clone(), canonical(value)))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
            other => other.clone(),
        }
    }
    let text = canonical(&Value::Object(properties.clone())).to_string();
    let digest = Sha256::digest(text.as_bytes());
    let hex: String = digest[..12]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("{PHYSICAL_ID_PREFIX}-{hex}")
}

/// PUTs the answer, retrying a few times: S3 pre-signed URLs occasionally fail transiently.
async fn send_response(
    http: &OutboundHttp,
    url: &str,
    response: &CustomResourceResponse<'_>,
) -> anyhow::Result<()> {
    let body = serde_json::to_vec(response).context("Failed to serialize the response")?;
    let mut last_error = None;
    for attempt in 0..3u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
        }
        // The pre-signed URL is signed without a content type: send an empty one.
        let request = Request::builder()
            .method(Method::PUT)
            .uri(url)
            .header(header::CONTENT_TYPE, "")
            .header(header::CONTENT_LENGTH, body.len())
            .body(Full::new(Bytes::from(body.clone())))
            .context("The response URL is not a valid URL")?;
        match tokio::time::timeout(Duration::from_secs(5), http.request(request)).await {
            Ok(Ok(answer)) if answer.status().is_success() => return Ok(()),
            Ok(Ok(answer)) => {
                last_error = Some(anyhow::anyhow!(
                    "the response URL answered {}",
                    answer.status()
                ))
            }
            Ok(Err(err)) => last_error = Some(anyhow::Error::new(err)),
            Err(_) => last_error = Some(anyhow::anyhow!("the response URL did not answer in 5 s")),
        }
    }
    Err(last_error
        .unwrap_or_else(|| anyhow::anyhow!("no attempt made"))
        .context("Failed to send the response to CloudFormation"))
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn properties(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("an object"),
        }
    }

    #[test]
    fn the_physical_id_depends_on_the_properties_not_on_their_order() {
        let one = properties(
            json!({"ServiceToken": "arn:f", "Version": "3", "Nested": {"b": 1, "a": [2]}}),
        );
        let same = properties(
            json!({"Nested": {"a": [2], "b": 1}, "Version": "3", "ServiceToken": "arn:f"}),
        );
        let other = properties(
            json!({"ServiceToken": "arn:f", "Version": "4", "Nested": {"b": 1, "a": [2]}}),
        );

        assert_eq!(physical_id(&one), physical_id(&same));
        assert_ne!(physical_id(&one), physical_id(&other));
        assert!(physical_id(&one).starts_with("database-migrations-"));
        assert_eq!(physical_id(&one).len(), "database-migrations-".len() + 24);
    }

    #[test]
    fn the_physical_id_is_stable_across_builds() {
        // A rollback is recognised by comparing an id computed by one release with one computed
        // by the next: the digest must never change. The same as Python's
        // sha256(json.dumps(properties, separators=(",", ":"), sort_keys=True)), first 12 bytes.
        let id = physical_id(&properties(
            json!({"ServiceToken": "arn:f", "Version": "3"}),
        ));

        assert_eq!(id, "database-migrations-acdea7a28af76f95811ed716");
    }

    #[test]
    fn a_long_reason_is_cut_on_a_character_boundary() {
        let text = "é".repeat(600);

        let cut = truncate(text, 1023);

        assert!(cut.len() <= 1023 + '…'.len_utf8());
        assert!(cut.ends_with('…'));
    }
}
