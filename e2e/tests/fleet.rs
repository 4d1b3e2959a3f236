//! A fleet: many execution environments sharing one database through a transaction-pooling
//! proxy, as Lambda scales the functions out behind RDS Proxy. PgBouncer in transaction mode
//! stands in for the proxy, stricter than RDS Proxy where it matters: it keeps no session state
//! for a client, so a session that relied on some (a named prepared statement, a `SET`) would
//! fail here, where RDS Proxy would pin it to a server connection of its own.

use e2e::{
    pgbouncer::{PgBouncer, Pooling},
    runtime::Function,
    TestDatabase,
};
use futures_util::future::join_all;
use shared::routes::ROUTES;
use test_support::{
    samples::{self, Sample},
    TestRequest,
};

/// Environments of each function.
const PER_FUNCTION: usize = 8;
/// Server connections the pooler may open to the database.
const POOL: u16 = 8;
/// Requests each environment serves, all environments at once each time.
const ROUNDS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_eight_environments_share_eight_server_connections_and_every_request_succeeds() {
    let database = TestDatabase::create("fleet").await;
    // Users 1 to 64 to read and rename; 65 to 128 to delete, one per request.
    database.insert_users("fleet", "Fleet", 128).await;
    let bouncer =
        PgBouncer::start_pooling(database.address, Pooling::Transaction { size: POOL }).await;
    let url = bouncer.url_for(&database.url);
    // Started a wave at a time, as Lambda scales out (and as two cores can start them: each
    // init logs in with SCRAM, which costs a debug build tens of milliseconds of CPU).
    let mut environments = Vec::new();
    for _ in 0..PER_FUNCTION {
        // Every declared route's function (shared/src/routes).
        let wave = join_all(ROUTES.iter().map(|route| async {
            let function = Function::start_api(route.function, &url, &[]).await;
            function.initialized().await;
            (route.key, function)
        }));
        environments.extend(wave.await);
    }
    let sessions = database.watch_sessions().await;

    let mut replies = Vec::new();
    for round in 0..ROUNDS {
        // Environments are in waves of one per function: the wave is each one's number.
        let requests = environments
            .iter()
            .enumerate()
            .map(|(n, (name, function))| {
                let wave = n / ROUTES.len();
                let (request, status) = request_for(name, round * PER_FUNCTION + wave);
                async move { (*name, status, function.request(&request).await) }
            });
        replies.extend(join_all(requests).await);
    }
    let peak = sessions.peak().await;

    assert_eq!(environments.len(), PER_FUNCTION * ROUTES.len());
    assert_eq!(replies.len(), environments.len() * ROUNDS);
    for (name, status, reply) in &replies {
        assert_eq!(reply.status, *status, "{name}: {}", reply.body);
    }
    assert!(
        (1..=i64::from(POOL)).contains(&peak),
        "{peak} server connections for {} environments",
        environments.len()
    );
}

/// The `n`th request (0 to 63) on `route`, from the sample table, and its status: each create
/// a new email, each delete another user.
fn request_for(route: &str, n: usize) -> (TestRequest, u16) {
    let sample = Sample {
        n,
        user: n as i64 + 1,
        doomed: n as i64 + 65,
    };
    samples::request(route, sample)
}
