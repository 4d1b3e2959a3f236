//! Database outages, and the return: every test here involves time, so the file runs alone
//! (devtools/run_tests.py).
//!
//! Under load: the database's address goes dead (a failover's old address, a black-holed
//! route: every connection open goes silent, and a new one gets no answer), six environments
//! keep being sent requests, then the address comes back. Each environment, once it has found
//! the database gone, answers 503 with `Retry-After` at once instead of waiting out a connect
//! timeout per request, tries to connect at most about once a second, and serves again within
//! two seconds of the database's return, in the same process.
//!
//! Refused: the database (or the proxy in front of it) refuses connections, then takes them
//! again. Each environment answers 503s meanwhile, reads no secret again, and has reconnected
//! by itself within two seconds of the return, before any request asks it to.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use e2e::{
    moto::Moto,
    pgbouncer::{PgBouncer, Pooling},
    proxy::Proxy,
    runtime::Function,
    Stack, TestDatabase,
};
use futures_util::future::join_all;
use test_support::TestRequest;
use tokio::sync::watch;

const ENVIRONMENTS: [&str; 6] = [
    "get-user",
    "get-user",
    "get-user",
    "list-users",
    "list-users",
    "list-users",
];
const OUTAGE: Duration = Duration::from_secs(6);
/// How soon after the database's return every environment serves again: the longest backoff
/// interval (`DB_BACKOFF_MAX_MS`, 1.5 s) and a connect.
const RECOVERY: Duration = Duration::from_secs(2);
const REFETCH_LOG: &str = "re-fetched the database secret";

/// One request an environment answered, and when it was sent.
struct Sample {
    sent: Instant,
    took: Duration,
    status: u16,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_black_holed_database_503s_come_at_once_attempts_are_spaced_and_service_resumes() {
    let database = TestDatabase::create("outage-load").await;
    sqlx::query("INSERT INTO users (email, name) VALUES ('load@example.com', 'Load')")
        .execute(&mut database.connect().await)
        .await
        .expect("a user");
    let proxy = Arc::new(Proxy::start(database.address).await);
    let url = proxy.url_for(&database.url);
    let environments = join_all(ENVIRONMENTS.iter().map(|name| async {
        let function = Function::start_api(name, &url, &[]).await;
        function.initialized().await;
        function
    }))
    .await;
    let pids: Vec<u32> = environments.iter().map(Function::pid).collect();
    let (stop, stopped) = watch::channel(false);

    // Each environment is sent its next request as soon as it has answered the last.
    let load = join_all(
        environments
            .iter()
            .zip(ENVIRONMENTS)
            .map(|(function, name)| {
                let mut stopped = stopped.clone();
                let request = match name {
                    "get-user" => TestRequest::get("/users/1"),
                    _ => TestRequest::get("/users?limit=5"),
                };
                async move {
                    let mut samples = Vec::new();
                    while !*stopped.borrow_and_update() {
                        let sent = Instant::now();
                        let status = function.request(&request).await.status;
                        samples.push(Sample {
                            sent,
                            took: sent.elapsed(),
                            status,
                        });
                    }
                    samples
                }
            }),
    );
    let timeline = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let attempts_before = proxy.accepted();
        let outage = Instant::now();
        proxy.black_hole_all();
        tokio::time::sleep(OUTAGE).await;
        let attempts = proxy.accepted() - attempts_before;
        proxy.restore();
        let back = Instant::now();
        tokio::time::sleep(RECOVERY + Duration::from_secs(1)).await;
        let _ = stop.send(true);
        (outage, attempts, back)
    };
    let (samples, (outage, attempts, back)) = tokio::join!(load, timeline);

    for (name, samples) in ENVIRONMENTS.iter().zip(&samples) {
        assert!(
            samples
                .iter()
                .all(|sample| matches!(sample.status, 200 | 503)),
            "{name}: only 200s and 503s, never a 500"
        );
        assert!(samples
            .iter()
            .any(|sample| sample.sent < outage && sample.status == 200));
        // From its first failure to the database's return: 503s, at once.
        let first_failure = samples
            .iter()
            .find(|sample| sample.status == 503)
            .map(|sample| sample.sent + sample.took)
            .expect("the outage was noticed");
        let mut refused: Vec<Duration> = samples
            .iter()
            .filter(|sample| sample.sent >= first_failure && sample.sent < back)
            .map(|sample| sample.took)
            .collect();
        refused.sort();
        let median = refused[refused.len() / 2];
        // At once: most without waiting at all, the few that meet a probe just begun no longer
        // than DB_LIVENESS_TIMEOUT_MS (250 ms); none waits out the connect timeout (1 s).
        assert!(
            refused.len() >= 10 && median < Duration::from_millis(250),
            "{name}: {} requests after the first failure, median {median:?}",
            refused.len()
        );
        let recovered = samples
            .iter()
            .find(|sample| sample.sent >= back && sample.status == 200)
            .map(|sample| sample.sent + sample.took - back);
        eprintln!(
            "{name}: {} 503s after the first failure, median {median:?}; first 200 {recovered:?} \
             after the return",
            refused.len()
        );
        // Within two seconds of the return, every request succeeds.
        for sample in samples.iter().filter(|s| s.sent >= back + RECOVERY) {
            assert_eq!(
                sample.status,
                200,
                "{name}, {:?} after the return",
                sample.sent - back
            );
        }
    }
    let per_environment_per_second =
        attempts as f64 / ENVIRONMENTS.len() as f64 / OUTAGE.as_secs_f64();
    eprintln!(
        "{attempts} connection attempts: {per_environment_per_second:.2} per environment per \
         second"
    );
    assert!(
        per_environment_per_second <= 1.0,
        "{attempts} connection attempts by {} environments in {OUTAGE:?}",
        ENVIRONMENTS.len()
    );
    let after: Vec<u32> = environments.iter().map(Function::pid).collect();
    assert_eq!(after, pids, "the same processes throughout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_gets_503s_without_refetching_and_recovers_by_itself() {
    let database = TestDatabase::create("outage").await;
    let role = database.create_app_role("out_app", "outage-pw-1").await;
    let proxy = Proxy::start(database.address).await;
    let moto = Moto::start().await;
    moto.create_secret("db", &database.rds_secret(proxy.port, &role, "outage-pw-1"))
        .await;
    let stack = Stack::spawn("outage", &moto.database_env("db")).await;
    stack.create_and_fetch_a_user("up@example.com").await;

    proxy.down();
    for _ in 0..3 {
        for reply in [stack.get("/users/1").await, stack.get("/health").await] {
            reply.assert_unavailable();
        }
    }
    assert_eq!(
        stack.log_lines_containing(REFETCH_LOG),
        0,
        "{}",
        stack.logs()
    );

    proxy.up();
    // No request until then: each environment tries again when its backoff interval is over
    // (1.5 s at most), with or without a request waiting, so within RECOVERY of the database's
    // return every one has its connection again, and serves its next request on it.
    tokio::time::sleep(RECOVERY).await;
    let connections = proxy.accepted();
    assert_eq!(stack.get("/users/1").await.status, 200);
    assert_eq!(stack.get("/health").await.status, 200);
    assert_eq!(
        proxy.accepted(),
        connections,
        "both environments had connected again before their request came"
    );
    assert_eq!(
        stack.log_lines_containing(REFETCH_LOG),
        0,
        "{}",
        stack.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxys_own_refusals_are_503_and_service_resumes_by_itself() {
    let database = TestDatabase::create("proxy-refusal").await;
    let role = database.create_app_role("refused", "proxy-refusal-1").await;
    let bouncer =
        PgBouncer::start_pooling(database.address, Pooling::Transaction { size: 4 }).await;
    let moto = Moto::start().await;
    moto.create_secret(
        "db",
        &database.rds_secret(bouncer.port, &role, "proxy-refusal-1"),
    )
    .await;
    let stack = Stack::spawn("proxy-refusal", &moto.database_env("db")).await;
    stack.create_and_fetch_a_user("refused@example.com").await;
    let name = &database.name;

    // New connections refused by the proxy itself, open ones cut.
    bouncer.admin(&format!("DISABLE {name}")).await;
    bouncer.admin(&format!("KILL {name}")).await;
    for reply in [stack.get("/users/1").await, stack.get("/health").await] {
        reply.assert_unavailable();
    }

    bouncer.admin(&format!("ENABLE {name}")).await;
    bouncer.admin(&format!("RESUME {name}")).await;
    tokio::time::sleep(RECOVERY).await;
    let fetched = stack.get("/users/1").await;
    assert_eq!(fetched.status, 200, "{}", fetched.body);
    assert_eq!(stack.get("/health").await.status, 200);
    assert!(
        !stack.logs().contains("proxy-refusal-1"),
        "the password reached the log"
    );
}
