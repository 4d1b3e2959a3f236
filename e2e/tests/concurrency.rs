//! Real concurrency, as Lambda scales out: twenty execution environments (processes of the
//! real binaries, each under its own Runtime API) sent a request each, all at once, over one
//! database. The outcome must be what the database's constraints and the single statements
//! behind each route promise, whichever request wins.
//!
//! "At once" is made certain, not left to timing: a transaction of the test's holds the row or
//! key every request's statement needs until all twenty are waiting on it in Postgres, then
//! lets go, and they race.

use std::time::{Duration, Instant};

use e2e::{runtime::Function, TestDatabase};
use futures_util::future::join_all;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use test_support::{Reply, TestRequest, PROBLEM_TYPE_PREFIX};

const ENVIRONMENTS: usize = 20;

/// `ENVIRONMENTS` warm environments of `binary` over `database`, each past its init (so
/// holding its connection) before the race starts.
///
/// Their inits all run at once here, on two cores, where Lambda would give each its own: the
/// connect timeout is raised so that none gives up on its connection for the machine's sake,
/// which would send its request to connect later, after the others had timed out waiting.
async fn environments(binary: &str, database: &TestDatabase) -> Vec<Function> {
    let extra = [("DB_ACQUIRE_TIMEOUT_MS", "20000")];
    let functions =
        join_all((0..ENVIRONMENTS).map(|_| Function::start_api(binary, &database.url, &extra)))
            .await;
    join_all(functions.iter().map(Function::initialized)).await;
    functions
}

/// Each request to its own environment, all in flight together: `hold` (SQL run in an open
/// transaction) takes what their statements need, and is rolled back once every one of them
/// waits for it.
async fn all_at_once(
    database: &TestDatabase,
    hold: &str,
    functions: &[Function],
    requests: &[TestRequest],
) -> Vec<Reply> {
    let mut blocker = database.connect().await;
    let mut transaction = blocker.begin().await.expect("begin");
    sqlx::query(hold)
        .execute(&mut *transaction)
        .await
        .expect("hold");
    let sent = join_all(
        functions
            .iter()
            .zip(requests)
            .map(|(function, request)| function.request(request)),
    );
    let release = async {
        let mut observer = database.connect().await;
        wait_for_waiters(&mut observer, requests.len()).await;
        transaction.rollback().await.expect("let go");
    };
    let (replies, ()) = tokio::join!(sent, release);
    replies
}

/// Waits until `n` sessions of this database wait for a lock.
async fn wait_for_waiters(observer: &mut PgConnection, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut *observer)
        .await
        .expect("pg_stat_activity");
        if waiting as usize >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{waiting} of {n} requests reached the database"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn count(database: &TestDatabase, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&mut database.connect().await)
        .await
        .expect("count rows")
}

fn kind(reply: &Reply) -> String {
    let type_ = reply.body["type"].as_str().unwrap_or_default();
    type_
        .strip_prefix(PROBLEM_TYPE_PREFIX)
        .unwrap_or(type_)
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_twenty_creates_with_one_email_exactly_one_succeeds() {
    let database = TestDatabase::create("concurrent-email").await;
    let functions = environments("create-user", &database).await;
    let requests: Vec<_> = (0..ENVIRONMENTS)
        .map(|n| {
            // The same address, cased differently: unique case-insensitively.
            let email = if n % 2 == 0 {
                "ada@example.com"
            } else {
                "ADA@example.com"
            };
            TestRequest::post("/users").json(&json!({"email": email, "name": format!("Ada {n}")}))
        })
        .collect();

    let replies = all_at_once(
        &database,
        "INSERT INTO users (email, name) VALUES ('ada@example.com', 'Held')",
        &functions,
        &requests,
    )
    .await;

    let created = replies.iter().filter(|reply| reply.status == 201).count();
    let conflicts = replies
        .iter()
        .filter(|reply| reply.status == 409 && kind(reply) == "conflict")
        .count();
    assert_eq!((created, conflicts), (1, ENVIRONMENTS - 1), "{replies:#?}");
    assert_eq!(count(&database, "users").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_creates_with_one_idempotency_key_create_one_user_and_all_agree() {
    let database = TestDatabase::create("concurrent-key").await;
    let functions = environments("create-user", &database).await;
    let request = TestRequest::post("/users")
        .header("idempotency-key", "one-key-for-all")
        .json(&json!({"email": "grace@example.com", "name": "Grace"}));
    let requests = vec![request.clone(); ENVIRONMENTS];

    let replies = all_at_once(
        &database,
        "INSERT INTO idempotency_keys (subject, key, request_hash, expires_at) \
         VALUES ('test', 'one-key-for-all', sha256(''), now() + interval '1 day')",
        &functions,
        &requests,
    )
    .await;
    // Once the first has finished, a retry of any of them replays it.
    let retried = functions[0].request(&request).await;

    let created: Vec<&Value> = replies
        .iter()
        .filter(|reply| reply.status == 201)
        .map(|reply| &reply.body)
        .collect();
    let originals = replies
        .iter()
        .filter(|reply| reply.status == 201 && reply.header("idempotent-replayed").is_none())
        .count();
    let in_progress = replies
        .iter()
        .filter(|reply| reply.status == 409 && kind(reply) == "request-in-progress")
        .count();
    // The nineteen that lost the race waited for the winner's key, then found it taken.
    assert_eq!(originals, 1, "{replies:#?}");
    assert_eq!(created.len() + in_progress, ENVIRONMENTS, "{replies:#?}");
    assert_eq!(in_progress, ENVIRONMENTS - 1, "{replies:#?}");
    assert!(
        created.iter().all(|body| **body == *created[0]),
        "{created:#?}"
    );
    assert_eq!(retried.status, 201);
    assert_eq!(retried.header("idempotent-replayed"), Some("true"));
    assert_eq!(retried.body, *created[0]);
    assert_eq!(count(&database, "users").await, 1);
    assert_eq!(count(&database, "idempotency_keys").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_twenty_patches_on_one_etag_exactly_one_succeeds() {
    let database = TestDatabase::create("concurrent-patch").await;
    sqlx::query("INSERT INTO users (email, name) VALUES ('ada@example.com', 'Ada')")
        .execute(&mut database.connect().await)
        .await
        .expect("a user");
    let functions = environments("update-user", &database).await;
    let requests: Vec<_> = (0..ENVIRONMENTS)
        .map(|n| {
            TestRequest::patch("/users/1")
                .header("if-match", "\"1\"")
                .json(&json!({"name": format!("Ada {n}")}))
        })
        .collect();

    let replies = all_at_once(
        &database,
        "SELECT 1 FROM users WHERE id = 1 FOR UPDATE",
        &functions,
        &requests,
    )
    .await;

    let winners: Vec<&Reply> = replies.iter().filter(|reply| reply.status == 200).collect();
    let refused = replies
        .iter()
        .filter(|reply| reply.status == 412 && kind(reply) == "precondition-failed")
        .count();
    assert_eq!(
        (winners.len(), refused),
        (1, ENVIRONMENTS - 1),
        "{replies:#?}"
    );
    let (name, version): (String, i64) =
        sqlx::query_as("SELECT name, version FROM users WHERE id = 1")
            .fetch_one(&mut database.connect().await)
            .await
            .expect("the user");
    assert_eq!(
        json!(name),
        winners[0].body["name"],
        "the stored name is the winner's"
    );
    assert_eq!(version, 2, "one change, one version");
    assert_eq!(winners[0].header("etag"), Some("\"2\""));
}
