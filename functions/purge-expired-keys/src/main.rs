use lambda_runtime::{run, service_fn, Error};
use shared::{
    maintenance,
    state::{Access, AppState},
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init("purge-expired-keys").await;
    let state = AppState::init_or_exit_with(Access::Public).await;
    run(service_fn(|event| {
        maintenance::purge_expired_keys(state, event)
    }))
    .await
}
