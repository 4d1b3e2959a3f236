//! Frozen environments and dead connections: a function process is frozen between two
//! invocations (SIGSTOP, as Lambda freezes the environment), its idle database connection dies
//! meanwhile, and it is thawed (SIGCONT) for the next one, which must succeed in the same
//! process: no 503, no restart. The dead connection is found by the check before use (a ping
//! bounded by `DB_LIVENESS_TIMEOUT_MS`), not by a statement sent on it: no statement waits out
//! the read timeout and is retried, and no write is left with an unknown outcome. That is what
//! keeps the request prompt, and the logs show it, whatever the machine's speed.
//!
//! Two deaths: the server ends the session (`pg_terminate_backend`: the client meets an error
//! or a reset on its next use), or the connection is black-holed (a proxy stops forwarding on
//! it without closing it: nothing answers, nothing resets, as after a NAT forgets it).

use std::time::Duration;

use e2e::{proxy::Proxy, runtime::Function, TestDatabase};
use serde_json::json;
use test_support::TestRequest;

/// Longer than the quiet spell after which the connection is checked before use
/// (`DB_IDLE_CHECK_AFTER_MS`, 1 s by default).
const FROZEN_FOR: Duration = Duration::from_millis(1500);
/// Logged when a statement met a lost connection and was sent again.
const RETRIED: &str = "retrying on a new one";

/// get-user and create-user over `database_url`, as Lambda would run them, with the test key
/// and `env`, each having served one request (its statement prepared, its connection held).
struct WarmPair {
    get_user: Function,
    create_user: Function,
    pids: (u32, u32),
}

impl WarmPair {
    async fn start(database_url: &str, env: &[(&str, &str)]) -> Self {
        let get_user = Function::start_api("get-user", database_url, env).await;
        let create_user = Function::start_api("create-user", database_url, env).await;
        let read = get_user.request(&TestRequest::get("/users/1")).await;
        assert_eq!(read.status, 200, "{}", read.body);
        let write = create_user.request(&create("before@example.com")).await;
        assert_eq!(write.status, 201, "{}", write.body);
        let pids = (get_user.pid(), create_user.pid());
        Self {
            get_user,
            create_user,
            pids,
        }
    }

    fn freeze(&self) {
        self.get_user.freeze();
        self.create_user.freeze();
    }

    fn thaw(&self) {
        self.get_user.thaw();
        self.create_user.thaw();
    }

    /// A read, then a write: each answered after the function logged `replaced` (how it found
    /// its connection dead before use), with no statement sent on the dead one, in the same
    /// processes as before.
    async fn assert_served_promptly_after(&self, replaced: &str) {
        for (function, request, status) in [
            (&self.get_user, TestRequest::get("/users/1"), 200),
            (&self.create_user, create("after@example.com"), 201),
        ] {
            let reply = function.request(&request).await;
            assert_eq!(reply.status, status, "{}", reply.body);
            let logs = function.logs();
            assert!(logs.contains(replaced), "{logs}");
            assert!(!logs.contains(RETRIED), "{logs}");
        }
        let pids = (self.get_user.pid(), self.create_user.pid());
        assert_eq!(pids, self.pids, "no restart");
    }
}

/// A database with one user in it, `/users/1`.
async fn database_with_a_user(name: &str) -> TestDatabase {
    let database = TestDatabase::create(name).await;
    sqlx::query("INSERT INTO users (email, name) VALUES ('frozen@example.com', 'Frozen')")
        .execute(&mut database.connect().await)
        .await
        .expect("a user");
    database
}

fn create(email: &str) -> TestRequest {
    TestRequest::post("/users").json(&json!({"email": email, "name": "Thawed"}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ended_while_frozen_is_replaced_within_the_next_request() {
    let database = database_with_a_user("freeze-terminate").await;
    let pair = WarmPair::start(&database.url, &[]).await;

    pair.freeze();
    assert_eq!(database.terminate_sessions_of_function("get-user").await, 1);
    assert_eq!(
        database.terminate_sessions_of_function("create-user").await,
        1
    );
    tokio::time::sleep(FROZEN_FOR).await;
    pair.thaw();

    // A read and a write: the dead connection is found before either statement is sent.
    pair.assert_served_promptly_after("an idle connection is gone")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_the_server_closed_for_idling_while_frozen_is_replaced_within_the_next_request() {
    let database = database_with_a_user("freeze-idle-timeout").await;
    // The migrations' idle_session_timeout (5 minutes), shortened to fit in a test.
    database.alter("SET idle_session_timeout = '1s'").await;
    let pair = WarmPair::start(&database.url, &[]).await;

    pair.freeze();
    tokio::time::sleep(FROZEN_FOR).await;
    pair.thaw();

    pair.assert_served_promptly_after("an idle connection is gone")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_connection_is_abandoned_after_a_short_check_and_replaced() {
    let database = database_with_a_user("freeze-black-hole").await;
    let proxy = Proxy::start(database.address).await;
    let pair = WarmPair::start(&proxy.url_for(&database.url), &[]).await;

    pair.freeze();
    proxy.black_hole();
    tokio::time::sleep(FROZEN_FOR).await;
    pair.thaw();

    pair.assert_served_promptly_after("an idle connection did not answer")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_on_a_session_ended_moments_ago_is_retried_once_on_a_new_connection() {
    let database = database_with_a_user("freeze-retry").await;
    // No check before use within a minute, however slow this machine is between requests.
    let pair = WarmPair::start(&database.url, &[("DB_IDLE_CHECK_AFTER_MS", "60000")]).await;

    // No check before use, so each statement meets the ended session: the read is retried
    // as any read is; the write because the server's goodbye, with no row before it, proves
    // it committed nothing.
    database.terminate_sessions_of_function("get-user").await;
    database.terminate_sessions_of_function("create-user").await;
    let read = pair.get_user.request(&TestRequest::get("/users/1")).await;
    let write = pair
        .create_user
        .request(&create("retried@example.com"))
        .await;

    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(write.status, 201, "{}", write.body);
    for function in [&pair.get_user, &pair.create_user] {
        assert_eq!(
            function.logs().matches(RETRIED).count(),
            1,
            "{}",
            function.logs()
        );
    }
    let created: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE email = 'retried@example.com'")
            .fetch_one(&mut database.connect().await)
            .await
            .unwrap();
    assert_eq!(created, 1, "the write was applied exactly once");
}
