//! `POST /users` with an `Idempotency-Key`.

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::{Connection, PgConnection, PgPool};
use test_support::{tokens, Reply, TestRequest};

use crate::app::{count, TestApp};

impl TestApp {
    async fn create_with_key(&self, key: &str, body: &str) -> Reply {
        self.create_user(
            TestRequest::post("/users")
                .header("content-type", "application/json")
                .header("idempotency-key", key)
                .body(body),
        )
        .await
    }
}

const ADA: &str = r#"{"email": "ada@example.com", "name": "Ada"}"#;

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_repeat_with_the_same_key_and_body_replays_the_first_response(pool: PgPool) {
    let app = TestApp::new(&pool).await;

    let first = app.create_with_key("key-1", ADA).await;
    // The same JSON, laid out and ordered differently.
    let again = app
        .create_with_key(
            "key-1",
            "{ \"name\":\"Ada\",\n \"email\":\"ada@example.com\" }",
        )
        .await;

    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.header("idempotent-replayed"), None);
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(again.header("etag"), first.header("etag"));
    assert_eq!(count(&pool, "users").await, 1);
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_replay_returns_the_original_body_after_the_user_changed(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let first = app.create_with_key("key-1", ADA).await;
    let path = format!("/users/{}", first.body["id"]);

    app.patch(&path, &json!({"name": "Ada Lovelace"})).await;
    let after_change = app.create_with_key("key-1", ADA).await;

    assert_eq!(after_change.status, 201);
    assert_eq!(after_change.body, first.body);
    assert_eq!(after_change.header("etag"), Some("\"1\""));
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn after_the_user_is_deleted_a_replay_is_a_410_and_creates_nothing(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let first = app.create_with_key("key-1", ADA).await;
    let path = format!("/users/{}", first.body["id"]);

    app.delete_user(TestRequest::delete(&path)).await;
    let replay = app.create_with_key("key-1", ADA).await;
    let other_body = app
        .create_with_key("key-1", r#"{"email": "b@example.com", "name": "B"}"#)
        .await;
    let new_key = app.create_with_key("key-2", ADA).await;

    replay.assert_problem_of_type(410, "created-user-deleted");
    assert_eq!(replay.header("idempotent-replayed"), None);
    // Nothing of the first request is kept to compare another body with.
    other_body.assert_problem_of_type(410, "created-user-deleted");
    assert_eq!(new_key.status, 201, "a new key creates the user again");
    assert_eq!(count(&pool, "users").await, 1);
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn no_row_of_any_table_holds_a_deleted_users_email_or_name(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let email = "erase.me@example.com";
    let name = "Erasable Name";
    let body = json!({"email": email, "name": name}).to_string();
    let created = app.create_with_key("key-1", &body).await;
    app.create_with_key("key-1", &body).await;
    let path = format!("/users/{}", created.body["id"]);
    app.patch(&path, &json!({"name": format!("{name} II")}))
        .await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables \
         WHERE table_type = 'BASE TABLE' \
           AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let holding = |needle: &'static str| {
        let pool = pool.clone();
        let tables = tables.clone();
        async move {
            let mut holding = Vec::new();
            for table in &tables {
                let rows: i64 = sqlx::query_scalar(&format!(
                    "SELECT count(*) FROM {table} AS t WHERE strpos(t::text, $1) > 0"
                ))
                .bind(needle)
                .fetch_one(&pool)
                .await
                .unwrap();
                if rows > 0 {
                    holding.push(table.clone());
                }
            }
            holding
        }
    };
    // The request's hash, as a dictionary of likely addresses would match it.
    let request_hash: String =
        sqlx::query_scalar("SELECT encode(request_hash, 'hex') FROM idempotency_keys")
            .fetch_one(&pool)
            .await
            .unwrap();
    let request_hash: &'static str = Box::leak(request_hash.into_boxed_str());
    let before = (holding(email).await, holding(name).await);
    let hashed_before = holding(request_hash).await;

    let deleted = app.delete_user(TestRequest::delete(&path)).await;

    assert!(tables.len() >= 4, "{tables:?}");
    assert_eq!(
        before.0,
        ["public.idempotent_responses", "public.users"],
        "the scan finds the email where it is"
    );
    assert_eq!(before.1, before.0);
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_eq!(hashed_before, ["public.idempotency_keys"]);
    assert_eq!(holding(email).await, Vec::<String>::new());
    assert_eq!(holding(name).await, Vec::<String>::new());
    assert_eq!(holding(request_hash).await, Vec::<String>::new());
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn the_same_key_with_another_body_is_a_422_and_creates_nothing(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    app.create_with_key("key-1", ADA).await;

    let other = app
        .create_with_key(
            "key-1",
            r#"{"email": "grace@example.com", "name": "Grace"}"#,
        )
        .await;
    let recased = app
        .create_with_key("key-1", r#"{"email": "ADA@example.com", "name": "Ada"}"#)
        .await;

    other.assert_problem_of_type(422, "idempotency-key-reused");
    recased.assert_problem_of_type(422, "idempotency-key-reused");
    assert_eq!(count(&pool, "users").await, 1);
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn keys_belong_to_the_caller(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let as_subject = |sub: &str, body: &str| {
        let claims = tokens::claims(tokens::FULL_SCOPE, json!({"sub": sub}));
        let token = tokens::sign(
            jsonwebtoken::Algorithm::HS256,
            None,
            &jsonwebtoken::EncodingKey::from_secret(tokens::TEST_KEY.as_bytes()),
            &claims,
        );
        TestRequest::post("/users")
            .authorization(Some(&format!("Bearer {token}")))
            .header("idempotency-key", "shared-key")
            .json(&serde_json::from_str::<Value>(body).unwrap())
    };

    let alice = app.create_user(as_subject("alice", ADA)).await;
    let bob = app
        .create_user(as_subject(
            "bob",
            r#"{"email": "b@example.com", "name": "B"}"#,
        ))
        .await;

    assert_eq!(alice.status, 201, "{}", alice.body);
    assert_eq!(bob.status, 201, "{}", bob.body);
    assert_eq!(bob.header("idempotent-replayed"), None);
    assert_ne!(alice.body["id"], bob.body["id"]);
}

/// `POST /users` with `key` and `body`, as a token with these claims (`null` removes one).
fn as_caller(claims: Value, key: &str, body: &str) -> TestRequest {
    let claims = tokens::claims(tokens::FULL_SCOPE, claims);
    let token = tokens::sign(
        jsonwebtoken::Algorithm::HS256,
        None,
        &jsonwebtoken::EncodingKey::from_secret(tokens::TEST_KEY.as_bytes()),
        &claims,
    );
    TestRequest::post("/users")
        .authorization(Some(&format!("Bearer {token}")))
        .header("idempotency-key", key)
        .json(&serde_json::from_str::<Value>(body).unwrap())
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn without_a_sub_keys_belong_to_the_client_and_without_either_a_key_is_refused(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let client = |id: &str| json!({"sub": null, "client_id": id});
    let grace = r#"{"email": "grace@example.com", "name": "Grace"}"#;

    let first = app.create_user(as_caller(client("app-1"), "k", ADA)).await;
    // Another client's create with the same key: its own, not a replay of the first.
    let second = app
        .create_user(as_caller(client("app-2"), "k", grace))
        .await;
    let replayed = app.create_user(as_caller(client("app-1"), "k", ADA)).await;
    let nobody = app
        .create_user(as_caller(json!({"sub": null}), "k", ADA))
        .await;
    let empty = app
        .create_user(as_caller(json!({"sub": "", "client_id": ""}), "k", ADA))
        .await;

    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(second.status, 201, "{}", second.body);
    assert_eq!(second.body["email"], "grace@example.com");
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    assert_eq!(replayed.body, first.body);
    nobody.assert_problem_of_type(400, "bad-request");
    empty.assert_problem_of_type(400, "bad-request");
    assert!(
        nobody.body["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("no sub or client_id")),
        "{}",
        nobody.body
    );
    assert_eq!(count(&pool, "users").await, 2);
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_key_is_1_to_255_visible_ascii_characters(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let longest = "k".repeat(255);
    let too_long = "k".repeat(256);

    for key in ["", " ", "a b", "clé", too_long.as_str()] {
        let response = app.create_with_key(key, ADA).await;
        assert_eq!(response.status, 400, "{key:?}: {}", response.body);
        response.assert_problem_of_type(400, "bad-request");
    }
    let longest = app.create_with_key(&longest, ADA).await;

    assert_eq!(longest.status, 201, "{}", longest.body);
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_create_refused_for_a_taken_email_records_no_key(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    app.given_a_user("ada@example.com", "First Ada").await;

    let taken = app.create_with_key("key-1", ADA).await;

    taken.assert_problem_of_type(409, "conflict");
    assert_eq!(count(&pool, "idempotency_keys").await, 0);
    assert_eq!(count(&pool, "idempotent_responses").await, 0);
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_key_still_being_used_by_another_request_is_a_409_to_retry(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    // Another request's claim of the key, not yet committed.
    let options = pool.connect_options();
    let mut other = PgConnection::connect_with(&options).await.unwrap();
    let mut transaction = other.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO idempotency_keys (subject, key, request_hash, expires_at) \
         VALUES ('test', 'key-1', sha256('x'), now() + interval '1 day')",
    )
    .execute(&mut *transaction)
    .await
    .unwrap();
    let commit_soon = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        transaction.commit().await.unwrap();
    };

    let (response, ()) = tokio::join!(app.create_with_key("key-1", ADA), commit_soon);

    response.assert_problem_of_type(409, "request-in-progress");
    assert_eq!(response.header("retry-after"), Some("1"));
    assert_eq!(count(&pool, "users").await, 0);
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn an_expired_key_is_a_new_key(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let first = app.create_with_key("key-1", ADA).await;
    sqlx::query("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'")
        .execute(&pool)
        .await
        .unwrap();

    let grace = app
        .create_with_key(
            "key-1",
            r#"{"email": "grace@example.com", "name": "Grace"}"#,
        )
        .await;
    let grace_again = app
        .create_with_key(
            "key-1",
            r#"{"email": "grace@example.com", "name": "Grace"}"#,
        )
        .await;

    assert_eq!(grace.status, 201, "{}", grace.body);
    assert_eq!(grace.header("idempotent-replayed"), None);
    assert_ne!(grace.body["id"], first.body["id"]);
    assert_eq!(grace_again.body, grace.body);
    assert_eq!(grace_again.header("idempotent-replayed"), Some("true"));
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn keys_are_kept_24_hours_and_each_keyed_create_purges_expired_ones(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    // Ten keys that expired, with their responses.
    sqlx::query(
        "WITH keys AS ( \
             INSERT INTO idempotency_keys (subject, key, request_hash, expires_at) \
             SELECT 'old', 'old-' || n, sha256(n::text::bytea), now() - interval '1 hour' \
             FROM generate_series(1, 10) AS n RETURNING subject, key) \
         INSERT INTO idempotent_responses \
             (subject, key, status, user_id, email, name, created_at, updated_at, version) \
         SELECT subject, key, 201, 1, 'x@example.com', 'X', now(), now(), 1 FROM keys",
    )
    .execute(&pool)
    .await
    .unwrap();

    app.create_with_key("new-1", ADA).await;
    let after_one = count(&pool, "idempotency_keys").await;
    app.create_with_key("new-2", r#"{"email": "b@example.com", "name": "B"}"#)
        .await;
    app.create_with_key("new-3", r#"{"email": "c@example.com", "name": "C"}"#)
        .await;
    let lifetime: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM expires_at - created_at)::float8 FROM idempotency_keys \
         WHERE key = 'new-1'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();

    assert_eq!(after_one, 10 - 4 + 1, "four expired keys purged, one added");
    assert_eq!(
        count(&pool, "idempotency_keys").await,
        3,
        "only the live keys are left"
    );
    assert_eq!(
        count(&pool, "idempotent_responses").await,
        3,
        "and their responses"
    );
    assert_eq!(lifetime, 24.0 * 3600.0);
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn the_scheduled_purge_deletes_every_expired_key_and_keeps_the_live_ones(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let kept = app.create_with_key("live", ADA).await;
    app.delete_user(TestRequest::delete(format!("/users/{}", kept.body["id"])))
        .await;
    // More expired keys than one statement purges (1000), with their responses, beside a live key
    // whose user was since deleted (a tombstone), which waits for its own expiry.
    sqlx::query(
        "WITH keys AS ( \
             INSERT INTO idempotency_keys (subject, key, request_hash, expires_at) \
             SELECT 'old', 'old-' || n, sha256(n::text::bytea), now() - n * interval '1 second' \
             FROM generate_series(1, 2500) AS n RETURNING subject, key) \
         INSERT INTO idempotent_responses \
             (subject, key, status, user_id, email, name, created_at, updated_at, version) \
         SELECT subject, key, 201, 1, 'x@example.com', 'X', now(), now(), 1 FROM keys",
    )
    .execute(&pool)
    .await
    .unwrap();

    let mut context = lambda_runtime::Context::default();
    context.deadline = u64::try_from(
        (std::time::SystemTime::now() + Duration::from_secs(60))
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let event = lambda_runtime::LambdaEvent::new(json!({}), context);
    let answer = shared::maintenance::purge_expired_keys(&app.state, event)
        .await
        .unwrap();
    let again = shared::users::purge_expired_keys(
        &app.state.db,
        std::time::Instant::now() + Duration::from_secs(60),
    )
    .await
    .unwrap();

    assert_eq!(answer, json!({ "purged": 2500 }));
    assert_eq!(again, (0, true));
    assert_eq!(count(&pool, "idempotency_keys").await, 1);
    assert_eq!(count(&pool, "idempotent_responses").await, 1);
    let replay = app.create_with_key("live", ADA).await;
    replay.assert_problem_of_type(410, "created-user-deleted");
}
