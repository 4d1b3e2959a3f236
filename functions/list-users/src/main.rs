use lambda_http::{run_concurrent, service_fn, Error};
use shared::{
    routes::list_users::{handler, ROUTE},
    state::AppState,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(ROUTE.key).await;
    let state = AppState::init_or_exit(&ROUTE).await;
    run_concurrent(service_fn(move |req| handler(state, req))).await
}
