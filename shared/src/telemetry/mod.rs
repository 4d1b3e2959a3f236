//! Logging, metrics and traces. Lambda's log controls apply: `AWS_LAMBDA_LOG_FORMAT=JSON` gives
//! structured lines and `AWS_LAMBDA_LOG_LEVEL` (or `RUST_LOG`) the level. The runtime opens a
//! span per invocation carrying the Lambda request id, so every line of a request can be found
//! from the `request_id` in a problem response. The output is what `lambda_runtime`'s default
//! subscriber writes (no target, no timestamp: Lambda adds one), filtered by level and target
//! with `Targets`, which needs no regex engine (the runtime's `EnvFilter` does).
//!
//! A panic is logged as one ERROR line with its message and location, in the span of the
//! invocation it happened in (the default hook would print it to stderr, outside any span).
//!
//! Metrics: CloudWatch's Embedded Metric Format, through the `metrics` facade and
//! `metrics_cloudwatch_embedded`'s recorder. Each invocation ends with one EMF document on
//! stdout ([`flush_metrics`], before its response is sent: the environment may be frozen right
//! after), in `METRICS_NAMESPACE`, with the dimensions `service`, `route` (the function's
//! route: one per function) and `version` (the function's: one per deploy), holding what the
//! invocation counted ([`metric`]).
//!
//! Traces: OpenTelemetry, when an OTLP endpoint is configured ([`traces`]); and then, on
//! SIGTERM, whatever is still pending is sent before the process exits ([`init`]).

use std::{any::Any, sync::OnceLock};

use metrics::Unit;
use metrics_cloudwatch_embedded::Collector;
use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, Layer};

use crate::config::{LogSettings, MetricsSettings, TracesSettings};

pub mod traces;

/// The metrics' names, and what each counts.
pub mod metric {
    /// Requests answered (count), per route.
    pub const REQUESTS: &str = "Requests";
    /// Time from receiving a request to its response (milliseconds).
    pub const LATENCY: &str = "Latency";
    /// Requests answered 4xx (count).
    pub const CLIENT_ERRORS: &str = "4xx";
    /// Requests answered 5xx (count).
    pub const SERVER_ERRORS: &str = "5xx";
    /// 1 on the first invocation of an execution environment.
    pub const COLD_START: &str = "ColdStart";
    /// Time to open a database connection, TLS and authentication included (milliseconds).
    pub const DATABASE_CONNECT_TIME: &str = "DatabaseConnectTime";
    /// Requests that could get no database connection (count): the database-unavailable alarm.
    pub const DATABASE_ACQUIRE_FAILURES: &str = "DatabaseAcquireFailures";
    /// Reads the database reader did not answer, which the writer answered instead (count): a
    /// replica down, failing over, or too slow.
    pub const DATABASE_READER_FALLBACKS: &str = "DatabaseReaderFallbacks";
    /// Database secret re-reads after the database refused its credentials (count).
    pub const SECRET_REREADS: &str = "SecretRereads";
    /// JWKS fetches after init, for an unknown key id (count).
    pub const JWKS_REFRESHES: &str = "JwksRefreshes";
    /// Migrations the `migrate` function applied (count).
    pub const MIGRATIONS_APPLIED: &str = "MigrationsApplied";
    /// Failed runs of the `migrate` function (count).
    pub const MIGRATION_FAILURES: &str = "MigrationFailures";
    /// Expired idempotency keys the scheduled purge deleted (count).
    pub const IDEMPOTENCY_KEYS_PURGED: &str = "IdempotencyKeysPurged";
}

/// The EMF recorder, once [`init`] has installed it, and whether its documents may be tagged
/// with an invocation's ids.
static METRICS: OnceLock<(&'static Collector, bool)> = OnceLock::new();

/// Logging, metrics and traces for a function serving `route` (`GET /users/{id}`; `migrate`).
/// Call first in `main`, before the init's work, whose metrics and spans (the first
/// connection) then go out with the first invocation's, or at shutdown.
pub async fn init(route: &'static str) {
    init_logs();
    let settings = MetricsSettings::from_env();
    let tagged = settings.one_invocation_at_a_time;
    let recorder = metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(settings.namespace)
        .with_dimension("service", settings.service)
        .with_dimension("route", route)
        .with_dimension("version", settings.version)
        .init();
    match recorder {
        Ok(collector) => {
            let _ = METRICS.set((collector, tagged));
            describe();
        }
        Err(err) => tracing::warn!(error = %err, "no metrics: the recorder could not be set"),
    }
    // With traces exported, a collector runs beside the function (the ADOT layer, an external
    // extension), so Lambda sends SIGTERM before it shuts the environment down: then what is
    // still pending goes out (the init's spans and metrics, if no request came to take them).
    // The runtime's handler registers a no-op internal extension for it.
    if traces::enabled() {
        lambda_runtime::spawn_graceful_shutdown_handler(|| async {
            flush_metrics(None, None);
            traces::flush().await;
        })
        .await;
    }
}

fn describe() {
    use metric::*;
    for counter in [
        REQUESTS,
        CLIENT_ERRORS,
        SERVER_ERRORS,
        COLD_START,
        DATABASE_ACQUIRE_FAILURES,
        DATABASE_READER_FALLBACKS,
        SECRET_REREADS,
        JWKS_REFRESHES,
        MIGRATIONS_APPLIED,
        MIGRATION_FAILURES,
        IDEMPOTENCY_KEYS_PURGED,
    ] {
        metrics::describe_counter!(counter, Unit::Count, "");
    }
    for histogram in [LATENCY, DATABASE_CONNECT_TIME] {
        metrics::describe_histogram!(histogram, Unit::Milliseconds, "");
    }
}

/// Writes what this invocation counted as one EMF document on stdout, tagged with its request
/// and trace ids, and starts counting afresh. Called before the response is sent: once it is,
/// Lambda may freeze the environment, and output written then may never be read.
///
/// An environment running several invocations at once (Lambda Managed Instances) is never
/// frozen between them, and its document holds whatever was counted since the previous one,
/// perhaps by several invocations: it goes untagged rather than under one invocation's ids.
pub fn flush_metrics(request_id: Option<&str>, xray_trace_id: Option<&str>) {
    let Some(&(collector, tagged)) = METRICS.get() else {
        return;
    };
    let (request_id, xray_trace_id) = match tagged {
        true => (request_id, xray_trace_id),
        false => (None, None),
    };
    for (name, value) in [("request_id", request_id), ("xray_trace_id", xray_trace_id)] {
        match value {
            Some(value) => collector.set_property(name, value.to_owned()),
            None => collector.remove_property(name),
        };
    }
    if let Err(err) = collector.flush(std::io::stdout().lock()) {
        tracing::warn!(error = %err, "the metrics could not be written");
    }
}

fn init_logs() {
    let settings = LogSettings::from_env();
    let format = tracing_subscriber::fmt::layer()
        .with_target(false)
        .without_time()
        .with_ansi(false);
    // Spans at INFO, whatever the log level, but not the runtime's own invocation span: each
    // request's span continues Lambda's trace instead (`http::handle`).
    let spans = tracing_subscriber::filter::Targets::new()
        .with_default(tracing::level_filters::LevelFilter::INFO)
        .with_target("lambda_runtime", tracing::level_filters::LevelFilter::OFF);
    let traces = traces::layer(TracesSettings::from_env()).map(|layer| layer.with_filter(spans));
    let registry = tracing_subscriber::registry().with(traces);
    if settings.json {
        registry
            .with(format.json().with_filter(settings.filter))
            .init();
    } else {
        registry.with(format.with_filter(settings.filter)).init();
    }
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|location| format!("{}:{}", location.file(), location.line()));
        let message = panic_message(info.payload());
        tracing::error!(location, panic = message, "panicked");
    }));
}

/// A panic's message, when it has one (`panic!` with a literal or a format string).
pub fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}
