use std::time::{Duration, Instant};

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
async fn once_the_backoff_is_over_the_next_attempt_is_made_in_the_background_without_a_request() {
    // Each attempt follows the one before by 100 to 200 ms (the interval, jittered).
    let (app, database) = TestApp::with_refusing_database("200").await;
    let started = Instant::now();

    // No request is sent: the attempts go on by themselves.
    let deadline = started + Duration::from_secs(30);
    while database.attempts() < 3 {
        assert!(
            Instant::now() < deadline,
            "{} attempts",
            database.attempts()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let response = app.get_user(TestRequest::get("/users/1")).await;
    let elapsed = started.elapsed();

    response.assert_problem(503);
    assert_eq!(response.header("retry-after"), Some("1"));
    // Never closer together than half the interval: the init's attempt, one that may have
    // begun as the count was read, and one per 100 ms since.
    let most = 2 + elapsed.as_millis() / 100;
    assert!(
        database.attempts() as u128 <= most,
        "{} attempts in {elapsed:?}",
        database.attempts()
    );
}
