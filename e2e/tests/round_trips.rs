//! What a warm request costs the database, counted where it cannot be mistaken: the messages
//! the function sends through a proxy in front of Postgres, or in front of a transaction-pooling
//! PgBouncer (RDS Proxy's stand-in). One round trip per request in a burst, on every route and
//! in both topologies (no liveness ping before, nothing on release, a precondition or an
//! idempotency record checked in the statement that makes the change, and each statement
//! parsed in the flight that executes it); one more after a quiet spell, when the held
//! connection is checked first.

use std::{net::SocketAddr, time::Duration};

use e2e::{
    pgbouncer::{PgBouncer, Pooling},
    proxy::Proxy,
    runtime::Function,
    TestDatabase,
};
use serde_json::json;
use shared::routes::ROUTES;
use test_support::{
    samples::{self, Sample},
    TestRequest,
};

const BURST: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_request_costs_one_round_trip_on_each_route_directly_and_through_the_pooler() {
    let direct = TestDatabase::create("round-trips").await;
    let pooled = TestDatabase::create("round-trips-pooled").await;
    let bouncer = PgBouncer::start_pooling(pooled.address, Pooling::Transaction { size: 2 }).await;
    let bouncer_address = SocketAddr::from(([127, 0, 0, 1], bouncer.port));

    for (topology, database, upstream) in [
        ("directly", &direct, direct.address),
        ("through the pooler", &pooled, bouncer_address),
    ] {
        let (costs, after_quiet) = round_trips(database, upstream).await;

        for (route, cost) in costs {
            assert_eq!(
                cost, BURST as u64,
                "one round trip per warm {route}, {topology}"
            );
        }
        assert_eq!(
            after_quiet, 2,
            "a liveness ping, then the query, {topology}"
        );
    }
}

/// Messages sent per route for [`BURST`] warm requests, and for one request after a quiet
/// spell, by functions reaching `database` through a counting proxy in front of `upstream`.
async fn round_trips(
    database: &TestDatabase,
    upstream: SocketAddr,
) -> (Vec<(&'static str, u64)>, u64) {
    // Users 1 to 21: one to read and change, twenty to delete.
    database.insert_users("counted", "Counted", 21).await;
    let proxy = Proxy::start(upstream).await;
    let url = proxy.url_for(&database.url);
    // However slow this machine is, each burst below stays within the quiet spell.
    let env = [("DB_IDLE_CHECK_AFTER_MS", "2000")];
    // Started, and done with their init (a connection each: its handshake goes through the
    // proxy too), before anything is counted.
    let function = async |name| {
        let function = Function::start_api(name, &url, &env).await;
        function.initialized().await;
        function
    };
    // Every declared route's function, and its sample requests (the list alternates a page
    // and a search by email; the create is keyed).
    let mut functions = Vec::new();
    for route in ROUTES {
        functions.push((route.key, function(route.function).await));
    }
    let sample = |route: &str, n: usize| {
        let sample = Sample {
            n,
            user: 1,
            doomed: n as i64 + 2,
        };
        samples::request(route, sample)
    };
    let unkeyed = |n: usize| {
        let request = TestRequest::post("/users")
            .json(&json!({"email": format!("n{n}@example.com"), "name": "N"}));
        (request, 201)
    };
    let mut costs = Vec::new();
    let mut cases: Vec<_> = functions
        .iter()
        .map(|(route, function)| {
            let requests: Vec<_> = (1..=BURST).map(|n| sample(route, n)).collect();
            (*route, function, sample(route, 0), requests)
        })
        .collect();
    let (_, create_user) = functions
        .iter()
        .find(|(route, _)| *route == "POST /users")
        .expect("the create route");
    cases.push((
        "POST /users, no Idempotency-Key",
        create_user,
        unkeyed(0),
        (1..=BURST).map(unkeyed).collect(),
    ));
    for (route, function, warm_up, requests) in cases {
        // Right before its burst, so that the burst stays within the quiet spell: the first
        // request of each statement prepares it (SQLx caches it per connection).
        let (request, status) = &warm_up;
        assert_eq!(function.request(request).await.status, *status, "{route}");
        let before = proxy.sent();
        for (request, status) in &requests {
            assert_eq!(function.request(request).await.status, *status, "{route}");
        }
        costs.push((route, proxy.sent() - before));
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let before = proxy.sent();
    let (_, get_user) = functions
        .iter()
        .find(|(route, _)| *route == "GET /users/{id}")
        .expect("the read route");
    let (read, status) = sample("GET /users/{id}", 0);
    assert_eq!(get_user.request(&read).await.status, status);
    (costs, proxy.sent() - before)
}
