use serde_json::json;
use sqlx::PgPool;
use test_support::{tokens, TestRequest, SOURCES};

use crate::app::TestApp;

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn the_users_routes_need_a_bearer_token_from_every_event_source(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let body = json!({"email": "a@example.com", "name": "A"});
    for source in SOURCES {
        for authorization in [None, Some("Basic dXNlcjpwYXNz")] {
            let responses = [
                app.get_user(
                    TestRequest::get("/users/1")
                        .from(source)
                        .authorization(authorization),
                )
                .await,
                app.create_user(
                    TestRequest::post("/users")
                        .from(source)
                        .json(&body)
                        .authorization(authorization),
                )
                .await,
            ];
            for response in responses {
                response.assert_problem(401);
                assert_eq!(response.header("www-authenticate"), Some("Bearer"));
            }
        }
    }
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_token_is_checked_before_the_body_is_read(pool: PgPool) {
    let app = TestApp::new(&pool).await;

    let response = app
        .create_user(
            TestRequest::post("/users")
                .body("not json")
                .authorization(Some("Bearer x.y.z")),
        )
        .await;

    response.assert_problem(401);
    assert_eq!(
        response.header("www-authenticate"),
        Some(r#"Bearer error="invalid_token""#)
    );
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_read_only_token_may_read_but_not_write(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let created = app.given_a_user("ada@example.com", "Ada").await;
    let read_only = tokens::bearer("users:read");

    let read = app
        .get_user(
            TestRequest::get(format!("/users/{}", created["id"])).authorization(Some(&read_only)),
        )
        .await;
    let write = app
        .create_user(
            TestRequest::post("/users")
                .json(&json!({"email": "b@example.com", "name": "B"}))
                .authorization(Some(&read_only)),
        )
        .await;

    assert_eq!(read.status, 200);
    write.assert_problem(403);
    assert_eq!(
        write.header("www-authenticate"),
        Some(r#"Bearer error="insufficient_scope", scope="users:write""#)
    );
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn health_needs_no_token(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let response = app
        .health(TestRequest::get("/health").authorization(None))
        .await;
    assert_eq!(response.status, 200);
}
