use serde_json::Value;
use sqlx::PgPool;
use test_support::{tokens, TestRequest, SOURCES};

use crate::app::TestApp;

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_deleted_user_is_gone_and_deleting_it_again_is_a_404(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    for (n, source) in SOURCES.into_iter().enumerate() {
        let user = app
            .given_a_user(&format!("ada{n}@example.com"), "Ada")
            .await;
        let path = format!("/users/{}", user["id"]);

        let deleted = app
            .delete_user(TestRequest::delete(&path).from(source))
            .await;
        let fetched = app.get_user(TestRequest::get(&path).from(source)).await;
        let again = app
            .delete_user(TestRequest::delete(&path).from(source))
            .await;

        assert_eq!(deleted.status, 204, "{source:?}: {}", deleted.body);
        assert_eq!(deleted.body, Value::Null, "no body");
        assert_eq!(deleted.header("content-type"), None);
        fetched.assert_problem_of_type(404, "not-found");
        again.assert_problem_of_type(404, "not-found");
    }
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_deleted_users_email_can_be_taken_again(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let user = app.given_a_user("ada@example.com", "Ada").await;

    app.delete_user(TestRequest::delete(format!("/users/{}", user["id"])))
        .await;
    let again = app.given_a_user("ADA@example.com", "Ada again").await;

    assert!(
        again["id"].as_i64() > user["id"].as_i64(),
        "ids are never reused"
    );
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn deleting_needs_the_write_scope_and_a_valid_id(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let user = app.given_a_user("ada@example.com", "Ada").await;
    let path = format!("/users/{}", user["id"]);

    let read_only = app
        .delete_user(TestRequest::delete(&path).authorization(Some(&tokens::bearer("users:read"))))
        .await;
    let malformed = app.delete_user(TestRequest::delete("/users/01")).await;

    read_only.assert_problem_of_type(403, "forbidden");
    malformed.assert_problem_of_type(400, "bad-request");
    assert_eq!(app.get_user(TestRequest::get(&path)).await.status, 200);
}
