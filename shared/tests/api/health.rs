use serde_json::json;
use sqlx::PgPool;
use test_support::{TestRequest, SOURCES};

use crate::app::TestApp;

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn health_is_ok_when_the_database_answers(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    for source in SOURCES {
        let response = app.health(TestRequest::get("/health").from(source)).await;

        assert_eq!(response.status, 200);
        assert_eq!(response.body, json!({"status": "ok", "database": "ok"}));
    }
}

#[tokio::test]
async fn after_a_failed_connect_every_route_answers_503_at_once_without_trying_again() {
    // The init's warm-up tries once and fails; the backoff then lasts a minute.
    let (app, database) = TestApp::with_refusing_database("60000").await;
    let body = json!({"email": "a@example.com", "name": "A"});

    let responses = [
        app.health(TestRequest::get("/health")).await,
        app.get_user(TestRequest::get("/users/1")).await,
        app.create_user(TestRequest::post("/users").json(&body))
            .await,
    ];

    for response in responses {
        response.assert_problem(503);
        let retry_after: u64 = response
            .header("retry-after")
            .and_then(|value| value.parse().ok())
            .expect("a Retry-After in seconds");
        assert!((30..=60).contains(&retry_after), "{retry_after}");
        assert!(
            !response.body.to_string().contains("secret"),
            "{}",
            response.body
        );
    }
    assert_eq!(database.attempts(), 1, "only the init's attempt");
}

#[tokio::test]
async fn once_the_backoff_is_over_one_attempt_is_made_in_the_background_and_the_request_refused() {
    let (app, database) = TestApp::with_refusing_database("1").await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;

    let response = app.get_user(TestRequest::get("/users/1")).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    response.assert_problem(503);
    assert_eq!(response.header("retry-after"), Some("1"));
    assert_eq!(
        database.attempts(),
        2,
        "the init's attempt, then the background one"
    );
}
