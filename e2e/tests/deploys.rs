//! Deploys that go wrong, played as CloudFormation plays them against the custom resource: a
//! failed Update and its rollback, the previous release deployed again over the newer schema,
//! a migration edited after it was applied, a migration past the deadline, a migration blocked
//! by a lock, a panic, an unreadable request, and two deploys at once.
//!
//! The test-only `migrate-fixtures` function is the real custom resource (protocol and
//! migration runner) over fixture migrations that fail, block or hang; the concurrency case
//! uses the real `migrate` binary. Each runs under the harness's Lambda Runtime API, with a
//! real deadline.

use std::time::{Duration, Instant};

use e2e::{
    cloudformation::{properties, CustomResource, ResponseUrl, STACK_ID},
    runtime::{Function, Outcome},
    TestDatabase,
};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};

/// The fixture function with `migrations` (see its `main.rs`) on `database`.
async fn fixture(database: &TestDatabase, migrations: &str) -> Function {
    Function::start(
        "migrate-fixtures",
        &[
            ("DATABASE_URL", database.url.as_str()),
            ("FIXTURE_MIGRATIONS", migrations),
        ],
    )
    .await
}

/// A fresh, empty database, and the custom resource CloudFormation created on it with the v1
/// fixture (SUCCESS).
async fn created_with_v1(name: &str) -> (TestDatabase, CustomResource) {
    let database = TestDatabase::create_empty(name).await;
    let mut resource = CustomResource::default();
    let created = resource
        .create(&fixture(&database, "v1").await, properties("1"))
        .await;
    assert_eq!(created["Status"], "SUCCESS", "{created}");
    (database, resource)
}

/// Everything a migration could change, as text: the columns, the tables' rows, the
/// migrations recorded.
async fn snapshot(connection: &mut PgConnection) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT format('%s.%s %s', table_name, column_name, data_type)
         FROM information_schema.columns WHERE table_schema = 'public'
         UNION ALL SELECT format('account %s', to_jsonb(a)) FROM accounts a
         UNION ALL SELECT format('migration %s %s %s', version, success, encode(checksum, 'hex'))
         FROM _sqlx_migrations
         ORDER BY 1",
    )
    .fetch_all(connection)
    .await
    .expect("snapshot the database")
}

fn reason(answer: &Value) -> &str {
    answer["Reason"].as_str().expect("a reason")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_update_is_rolled_back_without_applying_anything() {
    let (database, mut resource) = created_with_v1("rollback").await;
    let mut connection = database.connect().await;
    let before = snapshot(&mut connection).await;

    // The new code: its second migration changes things, then fails.
    let v2 = fixture(&database, "v2-fails").await;
    let failed = resource.update(&v2, properties("2")).await;
    assert_eq!(failed["Status"], "FAILED", "{failed}");
    assert!(reason(&failed).contains("division by zero"), "{failed}");
    assert_eq!(
        failed["PhysicalResourceId"].as_str(),
        resource.physical_id(),
        "a failed Update keeps the resource as it was"
    );
    assert_eq!(snapshot(&mut connection).await, before);

    // CloudFormation rolls back: an Update to the old properties, to the same new code.
    let rolled_back = resource.roll_back(&v2).await;
    assert_eq!(rolled_back["Status"], "SUCCESS", "{rolled_back}");
    assert!(
        reason(&rolled_back).contains("nothing applied"),
        "{rolled_back}"
    );
    assert_eq!(
        rolled_back["PhysicalResourceId"].as_str(),
        resource.physical_id()
    );
    assert_eq!(snapshot(&mut connection).await, before);
    // It did not even connect: the failing migration ran once, for the Update.
    assert_eq!(
        v2.logs().matches("migrations failed").count(),
        1,
        "{}",
        v2.logs()
    );

    // A fixed release deploys normally afterwards.
    let v3 = fixture(&database, "v2-adds-a-column").await;
    let fixed = resource.update(&v3, properties("3")).await;
    assert_eq!(fixed["Status"], "SUCCESS", "{fixed}");
    assert_ne!(snapshot(&mut connection).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_release_deploys_again_over_the_newer_schema_and_runs_on_it() {
    // Release N created the stack: v1's migration, then the column v2 adds.
    let database = TestDatabase::create_empty("redeploy").await;
    let mut resource = CustomResource::default();
    let v2 = fixture(&database, "v2-adds-a-column").await;
    let created = resource.create(&v2, properties("2")).await;
    assert_eq!(created["Status"], "SUCCESS", "{created}");
    let mut connection = database.connect().await;
    let before = snapshot(&mut connection).await;

    // N misbehaves after its canary: the operator deploys N-1 again, its binary and its
    // properties (a deploy, not CloudFormation's rollback).
    let v1 = fixture(&database, "v1").await;
    let redeployed = resource.update(&v1, properties("1")).await;

    assert_eq!(redeployed["Status"], "SUCCESS", "{redeployed}");
    assert_eq!(redeployed["Data"]["SchemaVersion"], "1", "{redeployed}");
    assert_eq!(redeployed["Data"]["NewerMigrations"], "2", "{redeployed}");
    assert_eq!(snapshot(&mut connection).await, before, "nothing undone");
    assert!(v1.logs().contains("does not know"), "{}", v1.logs());
    // N-1's own queries run on the expanded table.
    let kept: String = sqlx::query_scalar("SELECT name FROM accounts WHERE id = 1")
        .fetch_one(&mut connection)
        .await
        .expect("v1's query on v2's schema");
    assert_eq!(kept, "kept");
    sqlx::query("INSERT INTO accounts (id, name) VALUES (2, 'written by v1')")
        .execute(&mut connection)
        .await
        .expect("v1's insert on v2's schema");

    // And N deploys once more, fixed: nothing left to apply.
    let again = resource.update(&v2, properties("3")).await;
    assert_eq!(again["Status"], "SUCCESS", "{again}");
    assert_eq!(again["Data"].get("NewerMigrations"), None, "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_edited_after_it_was_applied_is_refused_with_the_reason() {
    let (database, mut resource) = created_with_v1("edited").await;
    let mut connection = database.connect().await;
    let before = snapshot(&mut connection).await;

    let edited = fixture(&database, "v1-edited").await;
    let refused = resource.update(&edited, properties("2")).await;

    assert_eq!(refused["Status"], "FAILED", "{refused}");
    let reason = reason(&refused);
    assert!(
        reason.contains("Migration 1 was applied with other text") && reason.contains("checksum"),
        "{refused}"
    );
    assert_eq!(snapshot(&mut connection).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_past_the_deadline_is_cancelled_on_the_server_and_releases_its_lock() {
    let (database, mut resource) = created_with_v1("deadline").await;
    let mut connection = database.connect().await;
    let before = snapshot(&mut connection).await;

    // 16 s to live: 10 s are kept to answer, so the migrations get 6 s.
    let hangs = fixture(&database, "v2-hangs").await;
    let started = Instant::now();
    let answer = resource
        .update_within(&hangs, properties("2"), Duration::from_secs(16))
        .await;

    assert_eq!(answer["Status"], "FAILED", "{answer}");
    assert!(reason(&answer).contains("did not finish"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(16));
    // On the server: nothing sleeps any more, nobody holds an advisory lock, nothing changed.
    let busy: Vec<String> = sqlx::query_scalar(
        "SELECT query FROM pg_stat_activity WHERE datname = $1 AND query LIKE '%pg_sleep%'
         AND pid <> pg_backend_pid()",
    )
    .bind(&database.name)
    .fetch_all(&mut connection)
    .await
    .unwrap();
    assert_eq!(busy, Vec::<String>::new());
    let advisory: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
         WHERE l.locktype = 'advisory' AND d.datname = $1",
    )
    .bind(&database.name)
    .fetch_one(&mut connection)
    .await
    .unwrap();
    assert_eq!(advisory, 0);
    assert_eq!(snapshot(&mut connection).await, before);

    // So the rollback is not blocked either.
    let rolled_back = resource.roll_back(&hangs).await;
    assert_eq!(rolled_back["Status"], "SUCCESS", "{rolled_back}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_blocked_by_a_long_query_does_not_queue_the_api_behind_it() {
    let (database, mut resource) = created_with_v1("lock-timeout").await;

    // A long transaction reads the table: the migration's ALTER must wait for it.
    let mut long_query = database.connect().await;
    sqlx::raw_sql("BEGIN; SELECT * FROM accounts")
        .execute(&mut long_query)
        .await
        .unwrap();
    let adds_a_column = fixture(&database, "v2-adds-a-column").await;
    let api_reads_meanwhile = async {
        let mut api = database.connect().await;
        wait_for_a_queued_lock(&mut api, &database.name).await;
        // Without a lock timeout this read queues behind the ALTER, which waits for the long
        // transaction, which ends only after this read: it would hit its own timeout.
        sqlx::raw_sql("SET statement_timeout = '20s'")
            .execute(&mut api)
            .await
            .unwrap();
        let read: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts")
            .fetch_one(&mut api)
            .await
            .expect("the API's read is not stuck behind the migration");
        sqlx::raw_sql("COMMIT")
            .execute(&mut long_query)
            .await
            .unwrap();
        read
    };
    let (answer, read) = tokio::join!(
        resource.update(&adds_a_column, properties("2")),
        api_reads_meanwhile
    );

    assert_eq!(read, 1);
    // The migration gave up its place in the queue, and got it done once the way was clear.
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert!(
        adds_a_column
            .logs()
            .contains("waited too long for a lock; retrying"),
        "{}",
        adds_a_column.logs()
    );
    let note: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT FROM information_schema.columns
         WHERE table_name = 'accounts' AND column_name = 'note')",
    )
    .fetch_one(&mut database.connect().await)
    .await
    .unwrap();
    assert!(note);
}

/// Waits until some session on `database` waits for a table lock.
async fn wait_for_a_queued_lock(connection: &mut PgConnection, database: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = $1 AND wait_event_type = 'Lock'",
        )
        .bind(database)
        .fetch_one(&mut *connection)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the migration never waited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_answered_failed_and_the_environment_goes_on() {
    let database = TestDatabase::create_empty("migrate-panic").await;
    let panics = fixture(&database, "panic").await;
    let pid = panics.pid();

    let mut first = CustomResource::default();
    let answer = first.create(&panics, properties("1")).await;
    let mut second = CustomResource::default();
    let again = second.create(&panics, properties("1")).await;

    for answer in [&answer, &again] {
        assert_eq!(answer["Status"], "FAILED", "{answer}");
        assert!(
            reason(answer).contains("panicked: asked to panic"),
            "{answer}"
        );
    }
    assert_eq!(panics.pid(), pid);
    // The hook logged where it panicked.
    assert!(
        panics.logs().contains("migrate-fixtures/src/main.rs"),
        "{}",
        panics.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_cannot_be_read_is_still_answered_when_it_has_a_response_url() {
    let database = TestDatabase::create_empty("migrate-garbled").await;
    let migrate = Function::start("migrate", &[("DATABASE_URL", database.url.as_str())]).await;
    let response_url = ResponseUrl::start().await;
    let garbled = json!({
        "RequestType": "Upgrade",
        "ResponseURL": response_url.url,
        "StackId": STACK_ID,
        "RequestId": "garbled-1",
        "LogicalResourceId": "Migrations",
        "ResourceProperties": "not an object",
    });

    migrate
        .invoke(&garbled, Duration::from_secs(60))
        .await
        .response();
    let answer = response_url.received(Duration::from_secs(5)).await.body;

    assert_eq!(answer["Status"], "FAILED", "{answer}");
    assert_eq!(answer["RequestId"], "garbled-1");
    assert!(reason(&answer).contains("could not be read"), "{answer}");
    // Without a response URL there is no one to answer: the invocation itself fails.
    let outcome = migrate
        .invoke(&json!({"RequestType": "Create"}), Duration::from_secs(60))
        .await;
    assert!(matches!(outcome, Outcome::Error(_)), "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deploys_at_once_apply_each_migration_once() {
    let database = TestDatabase::create_empty("concurrent-deploys").await;
    let env = [("DATABASE_URL", database.url.as_str())];
    let (one, two) = (
        Function::start("migrate", &env).await,
        Function::start("migrate", &env).await,
    );
    let (mut first, mut second) = (CustomResource::default(), CustomResource::default());

    let (a, b) = tokio::join!(
        first.create(&one, properties("1")),
        second.create(&two, properties("1"))
    );

    assert_eq!(
        (&a["Status"], &b["Status"]),
        (&json!("SUCCESS"), &json!("SUCCESS"))
    );
    let applied: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT version, count(*) FROM _sqlx_migrations GROUP BY version ORDER BY version",
    )
    .fetch_all(&mut PgConnection::connect(&database.url).await.unwrap())
    .await
    .unwrap();
    let expected: Vec<(i64, i64)> = shared::db::MIGRATOR
        .iter()
        .map(|m| (m.version, 1))
        .collect();
    assert_eq!(applied, expected);
}
