use lambda_runtime::{run, service_fn, Error};
use shared::{custom_resource, outbound_http};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init("migrate").await;
    let http = outbound_http::client();
    run(service_fn(|event| custom_resource::handler(&http, event))).await
}
