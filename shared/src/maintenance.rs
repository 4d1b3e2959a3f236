//! Work on a schedule, not on a request: the `purge-expired-keys` function, which an
//! EventBridge schedule invokes every hour (template.yaml), deletes the idempotency keys past
//! their expiry and the responses recorded with them. Creates purge a few as they go, but only
//! while keyed creates come; this bounds what a quiet API keeps: nothing a create recorded
//! outlives its key's 24 hours by more than the schedule's hour.

use lambda_runtime::{Error, LambdaEvent};
use serde_json::{json, Value};

use crate::{state::AppState, telemetry, users};

/// Purges the expired keys; the event (a scheduled event, or any) is not read.
pub async fn purge_expired_keys(
    state: &AppState,
    event: LambdaEvent<Value>,
) -> Result<Value, Error> {
    let context = &event.context;
    let purged = users::purge_expired_keys(&state.db).await;
    let purged = match purged {
        Ok(purged) => {
            metrics::counter!(telemetry::metric::IDEMPOTENCY_KEYS_PURGED).increment(purged);
            tracing::info!(purged, "expired idempotency keys purged");
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
