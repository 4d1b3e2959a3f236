//! Writes whose connection is lost after the server made the change: a proxy that reads the
//! server's answer lets the row and the `CommandComplete` through, then sends the `FATAL`
//! `57P01` a terminated session sends where `ReadyForQuery` should be, or cuts the connection
//! right after the row. The server committed before it answered, so a retry would answer 409,
//! 412 or 404 to a change that was made (or make it twice): the write is not retried, and the
//! client gets the `outcome-unknown` problem, from which it recovers as the problem says.
//!
//! A session ended before the statement (the server's goodbye with no row before it) is
//! retried: `freeze.rs`.

use e2e::{
    pg_fault::{Fault, PgFaultProxy},
    runtime::Function,
    TestDatabase,
};
use serde_json::json;
use test_support::TestRequest;

const RETRIED: &str = "retrying on a new one";

/// `binary` over `database` through `proxy`, with no check before a connection's use (a ping's
/// answer would meet the fault instead of the write's).
async fn through(binary: &str, database: &TestDatabase, proxy: &PgFaultProxy) -> Function {
    let url = proxy.url_for(&database.url);
    let function = Function::start_api(binary, &url, &[("DB_IDLE_CHECK_AFTER_MS", "600000")]).await;
    function.initialized().await;
    function
}

fn create(email: &str) -> TestRequest {
    TestRequest::post("/users").json(&json!({"email": email, "name": "Lost"}))
}

async fn count(database: &TestDatabase, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&mut database.connect().await)
        .await
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_answered_by_the_servers_goodbye_after_its_row_is_made_once_and_reported_unknown()
{
    let database = TestDatabase::create("lost-create").await;
    let proxy = PgFaultProxy::start(database.address).await;
    let function = through("create-user", &database, &proxy).await;

    proxy.arm(Fault::GoodbyeAfterCommandComplete);
    let reply = function.request(&create("lost@example.com")).await;

    assert_eq!(proxy.fired(), 1);
    reply.assert_problem_of_type(503, "outcome-unknown");
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(
        count(
            &database,
            "SELECT count(*) FROM users WHERE email = 'lost@example.com'"
        )
        .await,
        1,
        "the change was made, once"
    );
    assert!(!function.logs().contains(RETRIED), "{}", function.logs());
    // The environment goes on, on a new connection.
    let next = function.request(&create("next@example.com")).await;
    assert_eq!(next.status, 201, "{}", next.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_cut_after_its_row_is_made_once_and_reported_unknown() {
    let database = TestDatabase::create("lost-update").await;
    sqlx::query("INSERT INTO users (email, name) VALUES ('cut@example.com', 'Before')")
        .execute(&mut database.connect().await)
        .await
        .expect("a user");
    let proxy = PgFaultProxy::start(database.address).await;
    let function = through("update-user", &database, &proxy).await;

    proxy.arm(Fault::CutAfterRow);
    let patch = TestRequest::patch("/users/1")
        .header("if-match", "\"1\"")
        .json(&json!({"name": "After"}));
    let reply = function.request(&patch).await;

    assert_eq!(proxy.fired(), 1);
    reply.assert_problem_of_type(503, "outcome-unknown");
    assert_eq!(
        count(&database, "SELECT version FROM users WHERE id = 1").await,
        2,
        "one change, one new version"
    );
    assert!(!function.logs().contains(RETRIED), "{}", function.logs());
    // Recovering as the problem says: read, then If-Match the version read.
    let retried = TestRequest::patch("/users/1")
        .header("if-match", "\"2\"")
        .json(&json!({"name": "After"}));
    assert_eq!(function.request(&retried).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_create_whose_outcome_was_unknown_is_retried_safely_with_the_same_key() {
    let database = TestDatabase::create("lost-keyed-create").await;
    let proxy = PgFaultProxy::start(database.address).await;
    let function = through("create-user", &database, &proxy).await;
    let keyed = create("keyed@example.com").header("idempotency-key", "lost-1");

    proxy.arm(Fault::GoodbyeAfterCommandComplete);
    function
        .request(&keyed)
        .await
        .assert_problem_of_type(503, "outcome-unknown");
    let retried = function.request(&keyed).await;

    assert_eq!(retried.status, 201, "{}", retried.body);
    assert_eq!(retried.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        count(&database, "SELECT count(*) FROM users").await,
        1,
        "made once"
    );
}
