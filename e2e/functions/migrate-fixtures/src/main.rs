//! Test-only (never in template.yaml): the `migrate` custom resource, with its real protocol
//! and migration runner, over fixture migrations chosen by `FIXTURE_MIGRATIONS`, so that the
//! end-to-end tests can play a deploy that fails, hangs or panics:
//!
//! - `v1`: the schema a stack was created with (and the previous release, redeployed over
//!   `v2-adds-a-column`);
//! - `v1-edited`: v1 with its migration's text changed after it was applied;
//! - `v2-fails`: v1, then a migration that changes things and fails half-way;
//! - `v2-adds-a-column`: v1, then an `ALTER TABLE` that needs an exclusive lock;
//! - `v2-hangs`: v1, then a migration that sleeps for ten minutes;
//! - `panic`: the work panics.

use lambda_runtime::{run, service_fn, Error};
use shared::{custom_resource, outbound_http};
use sqlx::migrate::Migrator;

static V1: Migrator = sqlx::migrate!("migrations/v1");
static V1_EDITED: Migrator = sqlx::migrate!("migrations/v1-edited");
static V2_FAILS: Migrator = sqlx::migrate!("migrations/v2-fails");
static V2_ADDS_A_COLUMN: Migrator = sqlx::migrate!("migrations/v2-adds-a-column");
static V2_HANGS: Migrator = sqlx::migrate!("migrations/v2-hangs");

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    shared::telemetry::init("migrate").await;
    let http = outbound_http::client();
    let fixture = std::env::var("FIXTURE_MIGRATIONS").unwrap_or_default();
    let migrator = match fixture.as_str() {
        "v1" => Some(&V1),
        "v1-edited" => Some(&V1_EDITED),
        "v2-fails" => Some(&V2_FAILS),
        "v2-adds-a-column" => Some(&V2_ADDS_A_COLUMN),
        "v2-hangs" => Some(&V2_HANGS),
        "panic" => None,
        other => return Err(format!("unknown FIXTURE_MIGRATIONS {other:?}").into()),
    };
    run(service_fn(|event| {
        custom_resource::respond(&http, event, move |deadline| async move {
            match migrator {
                Some(migrator) => {
                    Box::pin(custom_resource::apply_migrations(migrator, deadline)).await
                }
                None => panic!("asked to panic"),
            }
        })
    }))
    .await
}
