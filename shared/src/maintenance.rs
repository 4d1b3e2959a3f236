//! Work on a schedule, not on a request: the `purge-expired-keys` function, which an
//! EventBridge schedule invokes every hour (template.yaml), deletes the idempotency keys past
//! their expiry and the responses recorded with them. Creates purge a few as they go, but only
//! while keyed creates come; this bounds what a quiet API keeps: nothing a create recorded
//! outlives its key's 24 hours by more than the schedule's hour, provided a run (a minute)
//! gets through the keys that expired in an hour, thousands a second; a run that does not
//! logs a warning and leaves the rest to the next.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Error, LambdaEvent};
use serde_json::{json, Value};

use crate::{state::AppState, telemetry, users};

/// The end of an invocation left to finish the batch under way and answer.
const MARGIN: Duration = Duration::from_secs(10);

/// Purges the expired keys; the event (a scheduled event, or any) is not read.
pub async fn purge_expired_keys(
    state: &AppState,
    event: LambdaEvent<Value>,
) -> Result<Value, Error> {
    let context = &event.context;
    // No batch starts in the invocation's last seconds: what is left waits for the next run.
    let deadline = UNIX_EPOCH + Duration::from_millis(context.deadline);
    let left = deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .saturating_sub(MARGIN);
    let purged = users::purge_expired_keys(&state.db, Instant::now() + left).await;
    let purged = match purged {
        Ok((purged, finished)) => {
            metrics::counter!(telemetry::metric::IDEMPOTENCY_KEYS_PURGED).increment(purged);
            match finished {
                true => tracing::info!(purged, "expired idempotency keys purged"),
                false => tracing::warn!(
                    purged,
                    "expired idempotency keys purged until the deadline; the rest wait for the \
                     next run"
                ),
            }
            Ok(purged)
        }
        Err(err) => {
            let error = format!("{:#}", anyhow::Error::new(err));
            tracing::error!(error, "the purge of expired idempotency keys failed");
            Err("the purge of expired idempotency keys failed")
        }
    };
    telemetry::flush_metrics(Some(&context.request_id), context.xray_trace_id.as_deref());
    // A failure is the invocation's: the schedule's retries and the function's Errors metric
    // take it from there.
    Ok(json!({ "purged": purged? }))
}
