//! Test-only (never in template.yaml): a function whose route goes through the same request
//! wrapper as the real ones and panics when asked to (`/panic`); any other path answers with
//! its process id, so a test can tell a warm environment from a new one.

use lambda_http::{http::StatusCode, run, service_fn, Body, Error, Request, Response};
use serde_json::json;
use shared::http::{self, ApiError};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init("ANY /{proxy+}").await;
    run(service_fn(|req: Request| async move {
        Ok::<_, Error>(http::handle(&req, "ANY /{proxy+}", route(&req)).await)
    }))
    .await
}

async fn route(req: &Request) -> Result<Response<Body>, ApiError> {
    if req.uri().path().ends_with("/panic") {
        panic!("asked to panic");
    }
    http::json(StatusCode::OK, &json!({ "pid": std::process::id() }))
}
