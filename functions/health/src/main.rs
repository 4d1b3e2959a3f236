use lambda_http::{run_concurrent, service_fn, Error};
use shared::{
    routes::health,
    state::{Access, AppState},
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(health::ROUTE).await;
    let state = AppState::init_or_exit(Access::Public).await;
    run_concurrent(service_fn(move |req| health::handler(state, req))).await
}
