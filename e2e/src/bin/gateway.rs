//! `make dev`'s front door: the HTTP API that template.yaml declares (`e2e::gateway`: its routes,
//! CORS with the automatic preflight answer, its throttles, payload format 2.0, its access log
//! printed per request), on `127.0.0.1:$GATEWAY_PORT`, in front of `cargo lambda watch`'s
//! Lambda Invoke API on `$WATCH_URL`. So the local API answers as the deployed one does, where
//! `cargo lambda watch`'s own router would answer every preflight, for any origin.
//!
//! `CorsAllowedOrigins` from `CORS_ALLOWED_ORIGINS` (comma-separated; empty: CORS off, as the
//! template's default). The JWT authorizer is off (`UseApiJwtAuthorizer=false`): API Gateway
//! verifies only RSA tokens from an issuer's JWKS, and the local stack's tokens are HS256
//! (`make token`); the functions verify every token either way.

use std::time::Duration;

use e2e::{
    gateway::{Gateway, HttpApi, WatchInvoke},
    template::Template,
};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port = std::env::var("GATEWAY_PORT").unwrap_or_else(|_| "9000".into());
    let watch = std::env::var("WATCH_URL").unwrap_or_else(|_| "http://127.0.0.1:9001".into());
    let origins = std::env::var("CORS_ALLOWED_ORIGINS").unwrap_or_default();
    let template = Template::workspace(&[
        ("UseApiJwtAuthorizer", "false"),
        ("CorsAllowedOrigins", &origins),
    ]);
    let api = HttpApi::from_template(&template);
    let routes = api.routes.len();
    let gateway =
        Gateway::start_at(&format!("127.0.0.1:{port}"), api, WatchInvoke::new(&watch)).await;
    gateway.print_access_log();
    eprintln!(
        "gateway: {} ({routes} routes of template.yaml, CORS {}) in front of {watch}",
        gateway.url,
        match origins.is_empty() {
            true => "off".to_owned(),
            false => format!("for {origins}"),
        }
    );
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}
