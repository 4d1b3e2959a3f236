//! Logging. Lambda's log controls apply: `AWS_LAMBDA_LOG_FORMAT=JSON` gives structured lines
//! and `AWS_LAMBDA_LOG_LEVEL` (or `RUST_LOG`) the level. The runtime opens a span per
//! invocation carrying the Lambda request id, so every line of a request can be found from the
//! `request_id` in a problem response. The output is what `lambda_runtime`'s default subscriber
//! writes (no target, no timestamp: Lambda adds one), filtered by level and target with
//! `Targets`, which needs no regex engine (the runtime's `EnvFilter` does).
//!
//! A panic is logged as one ERROR line with its message and location, in the span of the
//! invocation it happened in (the default hook would print it to stderr, outside any span).

use std::any::Any;

use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, Layer};

use crate::config::LogSettings;

pub fn init() {
    let settings = LogSettings::from_env();
    let format = tracing_subscriber::fmt::layer()
        .with_target(false)
        .without_time()
        .with_ansi(false);
    let registry = tracing_subscriber::registry();
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
