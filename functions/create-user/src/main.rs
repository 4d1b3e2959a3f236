use lambda_http::{run_concurrent, service_fn, Error};
use shared::{
    routes::create_user,
    state::{Access, AppState},
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(create_user::ROUTE).await;
    let state = AppState::init_or_exit(Access::Authenticated).await;
    run_concurrent(service_fn(move |req| create_user::handler(state, req))).await
}
