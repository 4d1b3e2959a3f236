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
async fn every_route_returns_503_with_retry_after_when_the_database_is_unreachable() {
    let app = TestApp::with_unreachable_database().await;
    let body = json!({"email": "a@example.com", "name": "A"});

    let responses = [
        app.health(TestRequest::get("/health")).await,
        app.get_user(TestRequest::get("/users/1")).await,
        app.create_user(TestRequest::post("/users").json(&body))
            .await,
    ];

    for response in responses {
        response.assert_problem(503);
        assert_eq!(response.header("retry-after"), Some("5"));
        assert!(
            !response.body.to_string().contains("secret"),
            "{}",
            response.body
        );
    }
}
