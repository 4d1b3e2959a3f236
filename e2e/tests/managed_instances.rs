//! Lambda Managed Instances: one execution environment handed several invocations at once
//! (`AWS_LAMBDA_MAX_CONCURRENCY`), here by the harness's Runtime API, with the database a
//! network distance away. The process serves them side by side, on up to that many
//! connections opened as they are needed, one round trip each.

use std::time::{Duration, Instant};

use e2e::{proxy::Proxy, runtime::Function, TestDatabase};
use futures_util::future::join_all;
use test_support::TestRequest;

const MAX_CONCURRENCY: usize = 8;
/// Requests measured at each concurrency.
const REQUESTS: usize = 48;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_environment_serves_eight_invocations_at_once_on_eight_connections() {
    let database = TestDatabase::create("managed-instances").await;
    sqlx::query("INSERT INTO users (email, name) VALUES ('lmi@example.com', 'Managed')")
        .execute(&mut database.connect().await)
        .await
        .expect("a user");
    let proxy = Proxy::start(database.address).await;
    // 10 ms away, each way: every statement's round trip costs 20 ms.
    proxy.delay(Duration::from_millis(10));
    let concurrency = MAX_CONCURRENCY.to_string();
    let function = Function::start_api(
        "get-user",
        &proxy.url_for(&database.url),
        &[("AWS_LAMBDA_MAX_CONCURRENCY", &concurrency)],
    )
    .await;
    function.initialized().await;
    let get = TestRequest::get("/users/1");
    let pid = function.pid();

    // One at a time: the init's connection serves them all.
    let one_at_a_time = timed(&function, &get, 1).await;
    let after_sequential = proxy.accepted();
    // Eight at a time, once the connections they need are open.
    timed(&function, &get, MAX_CONCURRENCY).await;
    let after_warm_up = proxy.accepted();
    let eight_at_a_time = timed(&function, &get, MAX_CONCURRENCY).await;

    assert_eq!(
        after_sequential, 1,
        "one connection for one invocation at a time"
    );
    // Opened on demand: a request that starts after another ended takes its connection.
    assert!(
        (2..=MAX_CONCURRENCY as u64).contains(&after_warm_up),
        "{after_warm_up} connections for {MAX_CONCURRENCY} invocations at once"
    );
    assert!(
        proxy.accepted() <= MAX_CONCURRENCY as u64,
        "{} connections: never more than the invocations at once",
        proxy.accepted()
    );
    let speed_up = one_at_a_time.as_secs_f64() / eight_at_a_time.as_secs_f64();
    assert!(
        speed_up >= 5.0,
        "{REQUESTS} requests took {one_at_a_time:?} one at a time and {eight_at_a_time:?} \
         eight at a time: {speed_up:.1}x"
    );
    assert_eq!(function.pid(), pid, "the same process throughout");
    assert!(
        !function.logs().contains("running sequentially"),
        "{}",
        function.logs()
    );
}

/// How long [`REQUESTS`] `request`s take, `at_once` in flight at a time; each must answer 200.
async fn timed(function: &Function, request: &TestRequest, at_once: usize) -> Duration {
    let started = Instant::now();
    for _ in 0..REQUESTS / at_once {
        let replies = join_all((0..at_once).map(|_| function.request(request))).await;
        for reply in replies {
            assert_eq!(reply.status, 200, "{}", reply.body);
        }
    }
    started.elapsed()
}
