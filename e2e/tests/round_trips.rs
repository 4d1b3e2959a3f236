//! What a warm request costs the database, counted where it cannot be mistaken: the messages
//! the function sends through a proxy in front of Postgres, or in front of a transaction-pooling
//! PgBouncer (RDS Proxy's stand-in). One round trip per request in a burst, on every route and
//! in both topologies (no liveness ping before, nothing on release, a precondition or an
//! idempotency record checked in the statement that makes the change, and each statement
//! parsed in the flight that executes it); one more after a quiet spell, when the held
//! connection is checked first. With named statements (`DB_NAMED_STATEMENTS=true`, directly
//! only), one more the first time a connection runs each statement, to prepare it.

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
    let named = TestDatabase::create("round-trips-named").await;
    let pooled = TestDatabase::create("round-trips-pooled").await;
    let bouncer = PgBouncer::start_pooling(pooled.address, Pooling::Transaction { size: 2 }).await;
    let bouncer_address = SocketAddr::from(([127, 0, 0, 1], bouncer.port));

    for (topology, database, upstream, named, first_read) in [
        ("directly", &direct, direct.address, false, 1),
        ("directly, named statements", &named, named.address, true, 2),
        ("through the pooler", &pooled, bouncer_address, false, 1),
    ] {
        let counted = round_trips(database, upstream, named).await;

        for (route, cost) in counted.bursts {
            assert_eq!(
                cost, BURST as u64,
                "one round trip per warm {route}, {topology}"
            );
        }
        assert_eq!(
            counted.first_read, first_read,
            "the first read of a user, {topology}"
        );
        assert_eq!(
            counted.after_quiet, 2,
            "a liveness ping, then the query, {topology}"
        );
    }
}

/// Messages sent: per route for [`BURST`] warm requests, for get-user's first read of a user
/// (its first statement), and for one request after a quiet spell.
struct Counted {
    bursts: Vec<(&'static str, u64)>,
    first_read: u64,
    after_quiet: u64,
}

/// What functions reaching `database` through a counting proxy in front of `upstream` send,
/// with named statements or not.
async fn round_trips(database: &TestDatabase, upstream: SocketAddr, named: bool) -> Counted {
    // Users 1 to 21: one to read and change, twenty to delete.
    database.insert_users("counted", "Counted", 21).await;
    let proxy = Proxy::start(upstream).await;
    let url = proxy.url_for(&database.url);
    // However slow this machine is, each burst below stays within the quiet spell.
    let env = [
        ("DB_IDLE_CHECK_AFTER_MS", "2000"),
        ("DB_NAMED_STATEMENTS", if named { "true" } else { "false" }),
    ];
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
    let mut bursts = Vec::new();
    let mut first_read = 0;
    let mut cases: Vec<_> = functions
        .iter()
        .map(|(route, function)| {
            let requests: Vec<_> = (1..=BURST).map(|n| sample(route, n)).collect();
            // Both kinds of a route's requests (0 and BURST + 1 differ in parity), each with
            // its own user and key.
            let warm_ups = [sample(route, 0), sample(route, BURST + 1)];
            (*route, function, warm_ups, requests)
        })
        .collect();
    let (_, create_user) = functions
        .iter()
        .find(|(route, _)| *route == "POST /users")
        .expect("the create route");
    cases.push((
        "POST /users, no Idempotency-Key",
        create_user,
        [unkeyed(0), unkeyed(BURST + 1)],
        (1..=BURST).map(unkeyed).collect(),
    ));
    for (route, function, warm_ups, requests) in cases {
        // Right before its burst, so that the burst stays within the quiet spell; with named
        // statements, the first request of each statement prepares it (SQLx caches it per
        // connection).
        for (n, (request, status)) in warm_ups.iter().enumerate() {
            let before = proxy.sent();
            assert_eq!(function.request(request).await.status, *status, "{route}");
            if route == "GET /users/{id}" && n == 0 {
                first_read = proxy.sent() - before;
            }
        }
        let before = proxy.sent();
        for (request, status) in &requests {
            assert_eq!(function.request(request).await.status, *status, "{route}");
        }
        bursts.push((route, proxy.sent() - before));
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let before = proxy.sent();
    let (_, get_user) = functions
        .iter()
        .find(|(route, _)| *route == "GET /users/{id}")
        .expect("the read route");
    let (read, status) = sample("GET /users/{id}", 0);
    assert_eq!(get_user.request(&read).await.status, status);
    Counted {
        bursts,
        first_read,
        after_quiet: proxy.sent() - before,
    }
}
