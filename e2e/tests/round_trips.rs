//! What a warm request costs the database, counted where it cannot be mistaken: the messages
//! the function sends through a proxy in front of Postgres. One round trip per request in a
//! burst (no liveness ping before, nothing on release); one more after a quiet spell, when the
//! held connection is checked first.

use std::time::Duration;

use e2e::{proxy::Proxy, runtime::Function, TestDatabase};
use serde_json::json;
use test_support::{tokens, TestRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_request_costs_one_round_trip_on_each_route_and_after_a_quiet_spell_two() {
    let database = TestDatabase::create("round-trips").await;
    sqlx::query("INSERT INTO users (email, name) VALUES ('counted@example.com', 'Counted')")
        .execute(&mut database.connect().await)
        .await
        .expect("a user");
    let proxy = Proxy::start(database.address).await;
    let url = proxy.url_for(&database.url);
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("JWT_KEY", tokens::TEST_KEY),
        ("JWT_AUDIENCE", tokens::TEST_AUDIENCE),
        // However slow this machine is, the bursts below stay within the quiet spell.
        ("DB_IDLE_CHECK_AFTER_MS", "2000"),
    ];
    let get_user = Function::start("get-user", &env).await;
    let create_user = Function::start("create-user", &env).await;
    let get = TestRequest::get("/users/1");
    let create = |n: usize| {
        TestRequest::post("/users")
            .json(&json!({"email": format!("n{n}@example.com"), "name": "N"}))
    };
    // The first request of each prepares its statement (SQLx caches it per connection).
    assert_eq!(get_user.request(&get).await.status, 200);
    assert_eq!(create_user.request(&create(0)).await.status, 201);

    let before = proxy.sent();
    for _ in 0..10 {
        assert_eq!(get_user.request(&get).await.status, 200);
    }
    let reads = proxy.sent() - before;
    let before = proxy.sent();
    for n in 1..=10 {
        assert_eq!(create_user.request(&create(n)).await.status, 201);
    }
    let writes = proxy.sent() - before;

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let before = proxy.sent();
    assert_eq!(get_user.request(&get).await.status, 200);
    let after_quiet = proxy.sent() - before;

    assert_eq!(reads, 10, "one round trip per warm GET /users/{{id}}");
    assert_eq!(writes, 10, "one round trip per warm POST /users");
    assert_eq!(after_quiet, 2, "a liveness ping, then the query");
}
