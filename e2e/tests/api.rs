//! The real function binaries under `cargo lambda watch`, against a real Postgres, over HTTP.
//! Each test starts its own stack over its own fresh database.

use e2e::{free_port, Stack};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn a_user_can_be_created_then_fetched_and_health_is_ok() {
    let stack = Stack::start("happy-path").await;

    let health = stack.get("/health").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.body, json!({"status": "ok", "database": "ok"}));

    let created = stack
        .post_json(
            "/users",
            &json!({"email": "ada@example.com", "name": "Ada Lovelace"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_i64().expect("an integer id");
    let location = format!("/users/{id}");
    assert_eq!(created.header("location"), Some(location.as_str()));

    let fetched = stack.get(&location).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.header("content-type"), Some("application/json"));
    assert_eq!(fetched.body, created.body);
}

/// docs/api.md's walk through the resource, as `make dev` serves it.
#[tokio::test]
async fn a_user_can_be_listed_changed_on_its_etag_and_deleted() {
    let stack = Stack::start("resource").await;
    let ada = json!({"email": "ada@example.com", "name": "Ada"});
    let key = [("idempotency-key", "3f1c9a6e-create-ada")];
    let created = stack
        .request(Method::POST, "/users", &key, Some(&ada))
        .await;
    let replayed = stack
        .request(Method::POST, "/users", &key, Some(&ada))
        .await;
    let path = created.header("location").expect("a location").to_owned();
    let etag = created.header("etag").expect("an etag").to_owned();

    let listed = stack.get("/users?limit=10").await;
    let found = stack.get("/users?email=ADA%40example.com").await;
    let patched = stack
        .request(
            Method::PATCH,
            &path,
            &[
                ("if-match", &etag),
                ("content-type", "application/merge-patch+json"),
            ],
            Some(&json!({"name": "Ada Lovelace"})),
        )
        .await;
    let stale = stack
        .request(Method::DELETE, &path, &[("if-match", &etag)], None)
        .await;
    let new_etag = patched.header("etag").expect("an etag").to_owned();
    let unchanged = stack
        .request(Method::GET, &path, &[("if-none-match", &new_etag)], None)
        .await;
    let deleted = stack
        .request(Method::DELETE, &path, &[("if-match", &new_etag)], None)
        .await;
    let gone = stack.get(&path).await;
    let other_method = stack.request(Method::PUT, &path, &[], None).await;

    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(replayed.status, 201);
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    assert_eq!(replayed.body, created.body);
    assert_eq!(
        listed.body,
        json!({"items": [created.body], "next_cursor": null})
    );
    assert_eq!(found.body, listed.body);
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["name"], "Ada Lovelace");
    assert_ne!(new_etag, etag);
    stale.assert_problem(412);
    assert_eq!(unchanged.status, 304);
    assert_eq!(deleted.status, 204);
    gone.assert_problem(404);
    other_method.assert_problem(405);
    assert_eq!(other_method.header("allow"), Some("GET, PATCH, DELETE"));
}

#[tokio::test]
async fn every_client_error_gets_its_status_as_a_problem() {
    let stack = Stack::start("client-errors").await;
    let taken = stack
        .post_json(
            "/users",
            &json!({"email": "taken@example.com", "name": "T"}),
        )
        .await;
    assert_eq!(taken.status, 201);
    let unknown_id = taken.body["id"].as_i64().unwrap() + 1000;
    let valid = json!({"email": "new@example.com", "name": "N"}).to_string();

    let gets = [
        ("/users/abc", 400),
        ("/users/0", 400),
        ("/users/-5", 400),
        ("/users/99999999999999999999", 400),
        (&*format!("/users/{unknown_id}"), 404),
    ];
    for (path, status) in gets {
        let reply = stack.get(path).await;
        reply.assert_problem(status);
    }

    let json = Some("application/json");
    let posts = [
        (json, "", 400),
        (json, "{\"email\":", 400),
        (json, "[1, 2]", 400),
        (json, "\"just a string\"", 400),
        (None, "", 400),
        (Some("text/plain"), valid.as_str(), 415),
        (
            Some("application/x-www-form-urlencoded"),
            "email=a%40b.io",
            415,
        ),
        (json, r#"{"email": "nope", "name": "N"}"#, 422),
        (json, r#"{"email": "n@example.com", "name": ""}"#, 422),
        (json, r#"{"email": "n@example.com"}"#, 422),
        (
            json,
            r#"{"email": "n@example.com", "name": "N", "admin": true}"#,
            422,
        ),
        (json, r#"{"email": "TAKEN@example.com", "name": "T2"}"#, 409),
    ];
    for (content_type, body, status) in posts {
        let reply = stack.post_raw("/users", content_type, body).await;
        reply.assert_problem(status);
    }

    let unknown_field = stack
        .post_raw(
            "/users",
            json,
            r#"{"email": "n@example.com", "name": "N", "admin": true}"#,
        )
        .await;
    assert_eq!(
        unknown_field.body["errors"],
        json!([{"field": "admin", "message": "is not a known field"}])
    );
}

#[tokio::test]
async fn an_unexpected_failure_is_a_generic_500_with_details_only_in_the_log() {
    let stack = Stack::start("unexpected").await;
    sqlx::query("ALTER TABLE users RENAME TO users_moved")
        .execute(&mut stack.database().await)
        .await
        .unwrap();

    let reply = stack.get("/users/1").await;

    reply.assert_problem(500);
    let request_id = reply.body["request_id"].as_str().unwrap().to_owned();
    assert!(
        !reply.body.to_string().contains("relation"),
        "{}",
        reply.body
    );
    let logs = stack.logs();
    let line = logs
        .lines()
        .find(|line| line.contains("request failed"))
        .unwrap_or_else(|| panic!("no error line in the log:\n{logs}"));
    assert!(line.contains(&request_id), "{line}");
    assert!(
        line.contains("does not exist"),
        "the cause is logged: {line}"
    );
}

#[tokio::test]
async fn an_unreachable_database_gets_503_with_retry_after_and_recovers_nothing_secret() {
    let url = format!("postgres://app:s3cr3t-pw@127.0.0.1:{}/users", free_port());
    let stack = Stack::spawn(
        "unreachable",
        &[
            ("DATABASE_URL", url.as_str()),
            ("DB_ACQUIRE_TIMEOUT_MS", "1000"),
        ],
    )
    .await;

    let replies = [
        stack.get("/health").await,
        stack.get("/users/1").await,
        stack
            .post_json("/users", &json!({"email": "a@example.com", "name": "A"}))
            .await,
    ];

    for reply in replies {
        reply.assert_unavailable();
        assert!(!reply.body.to_string().contains("s3cr3t-pw"));
    }
    assert!(
        !stack.logs().contains("s3cr3t-pw"),
        "the password reached the log"
    );
}
