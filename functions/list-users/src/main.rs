use lambda_http::{run_concurrent, service_fn, Error};
use shared::{
    routes::list_users,
    state::{Access, AppState},
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(list_users::ROUTE).await;
    let state = AppState::init_or_exit(Access::Authenticated).await;
    run_concurrent(service_fn(move |req| list_users::handler(state, req))).await
}
