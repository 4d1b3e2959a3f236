//! What the API accepts and repeats of a request, bounded: no body larger than any request
//! needs is read, no problem repeats more than a short piece of what a client sent, and a
//! refused token's body says only that it was refused.

use serde_json::{json, Value};
use sqlx::PgPool;
use test_support::{tokens, TestRequest};

use crate::app::{count, TestApp};

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_body_over_8_kib_is_refused_413_before_it_is_read(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let padding = "x".repeat(128 * 1024);
    let body = json!({"email": "big@example.com", "name": "Big", "padding": padding});

    let created = app
        .create_user(TestRequest::post("/users").json(&body))
        .await;
    let patched = app
        .update_user(TestRequest::patch("/users/1").json(&body))
        .await;

    for response in [created, patched] {
        response.assert_problem_of_type(413, "payload-too-large");
        assert_eq!(
            response.body["detail"],
            "The request body is larger than 8192 bytes."
        );
    }
    assert_eq!(count(&pool, "users").await, 0);
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_body_just_under_the_limit_is_read(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let body = json!({"email": "a@example.com", "name": "A", "padding": "x".repeat(8000)});

    let response = app
        .create_user(TestRequest::post("/users").json(&body))
        .await;

    // Read, then refused for its unknown member: not for its size.
    response.assert_problem_of_type(422, "validation");
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_problem_repeats_at_most_64_characters_of_a_name_the_client_sent(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    // Twice 3,000 characters: a body under the limit.
    let long = "n".repeat(3000);
    let duplicated = format!(r#"{{"{long}": 1, "{long}": 2}}"#);
    let unknown: serde_json::Map<String, Value> = (0..30)
        .map(|n| (format!("{n:02}{}", "u".repeat(200)), json!(n)))
        .collect();

    let twice = app
        .create_user(
            TestRequest::post("/users")
                .header("content-type", "application/json")
                .body(&duplicated),
        )
        .await;
    let many = app
        .create_user(TestRequest::post("/users").json(&Value::Object(unknown)))
        .await;
    let parameter = app
        .list_users(TestRequest::get(format!("/users?{long}=1")))
        .await;
    let path = app
        .get_user(TestRequest::get(format!("/users/{long}")))
        .await;

    twice.assert_problem(400);
    parameter.assert_problem(400);
    path.assert_problem(400);
    for response in [&twice, &many, &parameter] {
        let body = response.body.to_string();
        assert!(body.len() < 3000, "{} bytes: {body}", body.len());
        assert!(!body.contains(&"n".repeat(65)), "{body}");
        assert!(!body.contains(&"u".repeat(65)), "{body}");
    }
    // The path, as `instance`: its first 256 characters.
    let instance = path.body["instance"].as_str().unwrap();
    assert_eq!(instance.chars().count(), 257, "{instance}");
    let unknown: Vec<_> = many
        .field_errors()
        .into_iter()
        .filter(|(_, message)| message == "is not a known field")
        .collect();
    assert_eq!(
        unknown.len(),
        10,
        "the first ten unknown members: {unknown:?}"
    );
    assert!(unknown[0].0.starts_with("00") && unknown[0].0.ends_with('…'));
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_refused_tokens_problem_says_only_that_it_was_refused(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let signed = |overrides: Value| {
        tokens::sign(
            jsonwebtoken::Algorithm::HS256,
            None,
            &jsonwebtoken::EncodingKey::from_secret(tokens::TEST_KEY.as_bytes()),
            &tokens::claims(tokens::FULL_SCOPE, overrides),
        )
    };
    let expired = signed(json!({"exp": tokens::now() - 3600}));
    let foreign = signed(json!({"aud": "billing-api"}));

    for token in [expired, foreign, "not.a.token".to_owned()] {
        let response = app
            .get_user(TestRequest::get("/users/1").authorization(Some(&format!("Bearer {token}"))))
            .await;

        response.assert_problem(401);
        assert_eq!(response.body["detail"], "The access token is invalid.");
        assert_eq!(
            response.header("www-authenticate"),
            Some(r#"Bearer error="invalid_token""#)
        );
    }
}
