//! Logging. Lambda's log controls apply: `AWS_LAMBDA_LOG_FORMAT=JSON` gives structured lines
//! and `AWS_LAMBDA_LOG_LEVEL` (or `RUST_LOG`) the level. The runtime opens a span per
//! invocation carrying the Lambda request id, so every line of a request can be found from the
//! `request_id` in a problem response.

pub fn init() {
    lambda_http::tracing::init_default_subscriber();
}
