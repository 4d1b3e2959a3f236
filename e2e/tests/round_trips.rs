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
use test_support::TestRequest;

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
    let (get_user, list_users, create_user, update_user, delete_user) = (
        function("get-user").await,
        function("list-users").await,
        function("create-user").await,
        function("update-user").await,
        function("delete-user").await,
    );
    let create = |n: usize| {
        TestRequest::post("/users")
            .json(&json!({"email": format!("n{n}@example.com"), "name": "N"}))
    };
    let create_keyed = |n: usize| {
        TestRequest::post("/users")
            .header("idempotency-key", &format!("key-{n}"))
            .json(&json!({"email": format!("k{n}@example.com"), "name": "K"}))
    };
    let patch =
        |n: usize| TestRequest::patch("/users/1").json(&json!({"name": format!("Renamed {n}")}));
    let delete = |n: usize| TestRequest::delete(format!("/users/{}", n + 2));
    let by_email = TestRequest::get("/users?email=counted1%40example.com");
    let page = TestRequest::get("/users?limit=5");
    let get = TestRequest::get("/users/1");
    let mut costs = Vec::new();
    for (route, function, warm_up, requests, status) in [
        (
            "GET /users/{id}",
            &get_user,
            get.clone(),
            vec![get.clone(); BURST],
            200,
        ),
        (
            "GET /users",
            &list_users,
            page.clone(),
            vec![page; BURST],
            200,
        ),
        (
            "GET /users?email=",
            &list_users,
            by_email.clone(),
            vec![by_email; BURST],
            200,
        ),
        (
            "POST /users",
            &create_user,
            create(0),
            (1..=BURST).map(create).collect(),
            201,
        ),
        (
            "POST /users, keyed",
            &create_user,
            create_keyed(0),
            (1..=BURST).map(create_keyed).collect(),
            201,
        ),
        (
            "PATCH /users/{id}",
            &update_user,
            patch(0),
            (1..=BURST).map(patch).collect(),
            200,
        ),
        (
            "DELETE /users/{id}",
            &delete_user,
            delete(0),
            (1..=BURST).map(delete).collect(),
            204,
        ),
    ] {
        // Right before its burst, so that the burst stays within the quiet spell: the first
        // request of each statement prepares it (SQLx caches it per connection).
        assert_eq!(function.request(&warm_up).await.status, status, "{route}");
        let before = proxy.sent();
        for request in &requests {
            assert_eq!(function.request(request).await.status, status, "{route}");
        }
        costs.push((route, proxy.sent() - before));
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let before = proxy.sent();
    assert_eq!(get_user.request(&get).await.status, 200);
    (costs, proxy.sent() - before)
}
