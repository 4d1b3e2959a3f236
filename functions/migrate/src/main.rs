use lambda_runtime::{run, service_fn, Error};
use shared::{https, migrate};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let http = https::client();
    run(service_fn(|event| migrate::handler(&http, event))).await
}
