//! What a default deploy absorbs, through the gateway template.yaml declares: behind the proxy
//! (PgBouncer in transaction mode standing in for RDS Proxy, its pool at 8 server connections),
//! a burst of 100 requests at once on each of two routes, with 200 environments sharing the
//! pool; directly against the database, the budget's few environments, and 429s for the rest at
//! once. The environments are started first, as a burst's cold starts would leave them (the
//! burst's cold starts themselves are in `make bench`'s gateway section, with their timings).

use std::time::Duration;

use e2e::{
    gateway::{rsa_token, Deployment},
    pgbouncer::Pooling,
};
use futures_util::future::join_all;
use reqwest::Client;
use serde_json::json;
use sqlx::{Connection, PgConnection};
use test_support::tokens::FULL_SCOPE;

/// Server connections the pooler may open to the database.
const POOL: u16 = 8;
/// Requests sent at once to each route.
const BURST: usize = 100;

/// `GET` of each path, all at once, with a read token; the statuses.
async fn all_at_once(deployment: &Deployment, paths: &[String]) -> Vec<u16> {
    let client = Client::new();
    let token = rsa_token(FULL_SCOPE, json!({}));
    let requests = paths.iter().map(|path| {
        client
            .get(format!("{}{path}", deployment.gateway.url))
            .bearer_auth(&token)
            .timeout(Duration::from_secs(120))
            .send()
    });
    join_all(requests)
        .await
        .into_iter()
        .map(|response| response.expect("the gateway answers").status().as_u16())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_the_proxy_bursts_of_100_run_on_200_environments_over_8_connections() {
    // A created database: the proxy in front of it (UseRdsProxy=auto), every other default kept.
    // 200 environments share this machine's 2 cores, where each of Lambda's has its own: what
    // they wait for here is CPU, which the liveness ping's 250 ms, a connect's 1 s and a
    // read's 2 s were not set for. Waits are not what this test is about.
    let deployment = Deployment::start_pooled(
        "burst_proxied",
        &[("CreateDatabase", "true")],
        Some(Pooling::Transaction { size: POOL }),
        &[
            ("DB_LIVENESS_TIMEOUT_MS", "60000"),
            ("DB_ACQUIRE_TIMEOUT_MS", "60000"),
            ("DB_READ_TIMEOUT_MS", "60000"),
            ("HEALTH_TIMEOUT_MS", "60000"),
        ],
    )
    .await;
    deployment
        .database
        .insert_users("burst", "Burst", 100)
        .await;
    let api = deployment.gateway.api();
    let get = api.route("GET /users/{id}").expect("the route");
    let list = api.route("GET /users").expect("the route");
    // Each function's environments ready, as a burst's cold starts would leave them: each
    // one's init has opened its session (through the pooler).
    for route in [get, list] {
        deployment
            .environments
            .prewarm(&route.function, BURST, 20)
            .await;
    }
    let pooler = deployment.pooler.as_ref().expect("the proxy's stand-in");
    let clients = pooler.clients(&deployment.database.name).await;
    let sessions = deployment.database.watch_sessions().await;
    deployment.gateway.freeze_throttle_clock();

    let users: Vec<String> = (1..=BURST).map(|id| format!("/users/{id}")).collect();
    let lists: Vec<String> = (0..BURST)
        .map(|n| format!("/users?limit={}", n % 10 + 1))
        .collect();
    let paths: Vec<String> = users.into_iter().chain(lists).collect();
    let statuses = all_at_once(&deployment, &paths).await;
    let peak = sessions.peak().await;

    assert!(api.throttle_for(&get.key).burst >= BURST as f64);
    assert!(get.function.reserved >= Some(BURST));
    assert_eq!(statuses.len(), 2 * BURST);
    assert!(
        statuses.iter().all(|status| *status == 200),
        "every request answered 200: {statuses:?}"
    );
    // Every environment holds a session of its own at the proxy, which lends them its 8.
    assert!(clients >= 2 * BURST, "{clients} sessions at the proxy");
    assert!(
        (1..=i64::from(POOL)).contains(&peak),
        "{peak} server connections for {} environments",
        2 * BURST
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_the_proxy_a_request_that_waits_past_the_borrow_timeout_is_a_503_not_a_500() {
    let deployment = Deployment::start_pooled(
        "burst_borrow",
        &[("CreateDatabase", "true")],
        Some(Pooling::Transaction { size: 1 }),
        &[],
    )
    .await;
    let pooler = deployment.pooler.as_ref().expect("the proxy's stand-in");
    // An environment whose session at the pooler is open, as a warm one's is.
    let get = deployment
        .gateway
        .api()
        .route("GET /users/{id}")
        .expect("the route");
    deployment.environments.prewarm(&get.function, 1, 1).await;
    // Then the pool's one server connection, held by one transaction for longer than the
    // function's 10 s (the database's 5 s statement timeout lifted for it alone): the
    // request's statement waits for a connection. The function gives up on it at its read
    // timeout (2 s, before the pooler's 5 s), tries once more on a new session, and answers.
    let mut holder = PgConnection::connect(&pooler.url_for(&deployment.database.url))
        .await
        .expect("connect through the pooler");
    let hold =
        sqlx::raw_sql("BEGIN; SET LOCAL statement_timeout = 0; SELECT pg_sleep(15); COMMIT;")
            .execute(&mut holder);
    let request = async {
        let mut admin = deployment.database.connect().await;
        loop {
            let sleeping: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE state = 'active' AND query LIKE '%pg_sleep(15)%' \
                 AND pid <> pg_backend_pid()",
            )
            .fetch_one(&mut admin)
            .await
            .expect("pg_stat_activity");
            if sleeping > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let reply = Client::new()
            .get(format!("{}/users/1", deployment.gateway.url))
            .bearer_auth(rsa_token(FULL_SCOPE, json!({})))
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .expect("the gateway answers");
        let status = reply.status().as_u16();
        let body: serde_json::Value = reply.json().await.expect("a JSON body");
        (status, body)
    };
    // The holder's transaction runs alongside, until the request has its answer.
    let (status, body) = tokio::select! {
        held = hold => panic!("the holding transaction ended first: {held:?}"),
        answer = request => answer,
    };

    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["type"], "tag:users-api,2026:problem:service-unavailable",
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directly_a_default_deploy_serves_its_budget_and_answers_the_rest_429_at_once() {
    let deployment = Deployment::start("burst_direct", &[]).await;
    let api = deployment.gateway.api();
    let get = api.route("GET /users/{id}").expect("the route");
    let burst = api.throttle_for(&get.key).burst as usize;
    deployment.gateway.freeze_throttle_clock();

    let paths: Vec<String> = (0..BURST).map(|_| "/users/1".to_owned()).collect();
    let statuses = all_at_once(&deployment, &paths).await;

    assert_eq!(
        Some(burst),
        get.function.reserved,
        "the throttle is what the environments serve"
    );
    assert_eq!(
        statuses.iter().filter(|status| **status == 404).count(),
        burst,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|status| **status == 429).count(),
        BURST - burst
    );
    assert!(deployment.environments.started_in_all() <= burst);
}
