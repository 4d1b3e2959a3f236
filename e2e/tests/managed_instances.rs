//! Lambda Managed Instances: one execution environment handed several invocations at once
//! (`AWS_LAMBDA_MAX_CONCURRENCY`), here by the harness's Runtime API, with the database a
//! network distance away. The process serves them side by side, on up to that many
//! connections opened as they are needed, one round trip each.
//!
//! That they run side by side is shown on the server, not by a stopwatch: with the table
//! locked, all eight statements wait on the lock at once, each on its own session. How much
//! faster eight at a time are is `make bench`'s figure.

use std::time::{Duration, Instant};

use sqlx::Connection;

use e2e::{proxy::Proxy, runtime::Function, TestDatabase};
use futures_util::future::join_all;
use test_support::TestRequest;

const MAX_CONCURRENCY: usize = 8;
/// Requests sent one at a time, and then eight at a time.
const REQUESTS: usize = 48;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_environment_serves_eight_invocations_at_once_on_eight_connections() {
    let database = TestDatabase::create("managed-instances").await;
    sqlx::query("INSERT INTO users (email, name) VALUES ('lmi@example.com', 'Managed')")
        .execute(&mut database.connect().await)
        .await
        .expect("a user");
    // The migrations' 5 s statement_timeout would end a wait on the lock on a slow machine.
    database.alter("SET statement_timeout = '60s'").await;
    let proxy = Proxy::start(database.address).await;
    // 10 ms away, each way: every statement's round trip costs 20 ms.
    proxy.delay(Duration::from_millis(10));
    let concurrency = MAX_CONCURRENCY.to_string();
    // The statements wait on the lock as long as the test takes to see them all: not a read
    // gone silent, to be retried elsewhere.
    let function = Function::start_api(
        "get-user",
        &proxy.url_for(&database.url),
        &[
            ("AWS_LAMBDA_MAX_CONCURRENCY", &concurrency),
            ("DB_READ_TIMEOUT_MS", "120000"),
        ],
    )
    .await;
    function.initialized().await;
    let get = TestRequest::get("/users/1");
    let pid = function.pid();

    // One at a time: the init's connection serves them all.
    for _ in 0..REQUESTS {
        assert_eq!(function.request(&get).await.status, 200);
    }
    assert_eq!(
        proxy.accepted(),
        1,
        "one connection for one invocation at a time"
    );

    // Eight at once, while the table is locked: every statement reaches the server and waits
    // there, so eight sessions wait together before any is answered.
    let mut locker = database.connect().await;
    let mut lock = locker.begin().await.expect("a transaction");
    sqlx::query("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("lock the table");
    let eight = join_all((0..MAX_CONCURRENCY).map(|_| function.request(&get)));
    let waiting = async {
        let waiting = waiting_on_the_lock(&database, MAX_CONCURRENCY).await;
        lock.rollback().await.expect("unlock the table");
        waiting
    };
    let (replies, waiting) = tokio::join!(eight, waiting);

    assert_eq!(
        waiting, MAX_CONCURRENCY as i64,
        "statements waiting at once"
    );
    for reply in replies {
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    assert_eq!(
        proxy.accepted(),
        MAX_CONCURRENCY as u64,
        "a connection per invocation at once, never more"
    );
    // Warm: eight at a time again, on the same connections.
    for _ in 0..REQUESTS / MAX_CONCURRENCY {
        for reply in join_all((0..MAX_CONCURRENCY).map(|_| function.request(&get))).await {
            assert_eq!(reply.status, 200, "{}", reply.body);
        }
    }
    assert_eq!(proxy.accepted(), MAX_CONCURRENCY as u64);
    assert_eq!(function.pid(), pid, "the same process throughout");
    assert!(
        !function.logs().contains("running sequentially"),
        "{}",
        function.logs()
    );
}

/// Polls the server until `wanted` sessions of the database wait on a lock (or a minute has
/// passed), and answers how many do.
async fn waiting_on_the_lock(database: &TestDatabase, wanted: usize) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut watcher = database.connect().await;
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watcher)
        .await
        .expect("read pg_stat_activity");
        if waiting >= wanted as i64 || Instant::now() > deadline {
            return waiting;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
