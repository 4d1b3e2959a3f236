use serde_json::json;
use sqlx::PgPool;
use test_support::TestRequest;

use crate::app::TestApp;

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn an_unexpected_database_error_returns_a_generic_500(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    sqlx::query("ALTER TABLE users RENAME TO users_gone")
        .execute(&pool)
        .await
        .unwrap();

    let responses = [
        app.get_user(TestRequest::get("/users/1")).await,
        app.create_user(
            TestRequest::post("/users").json(&json!({"email": "a@example.com", "name": "A"})),
        )
        .await,
    ];

    for response in responses {
        response.assert_problem(500);
        assert_eq!(
            response.body["detail"],
            "An unexpected error occurred. Quote the request_id if you report it."
        );
        let body = response.body.to_string();
        for internal in [
            "relation", "exist", "42P01", "SELECT", "INSERT", "sqlx", "database",
        ] {
            assert!(!body.contains(internal), "{internal:?} leaked: {body}");
        }
    }
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_change_cut_off_by_the_deadline_is_an_unknown_outcome_and_a_read_is_unavailable(
    pool: PgPool,
) {
    let app = TestApp::new(&pool).await;
    let user = app.given_a_user("ada@example.com", "Ada").await;
    let path = format!("/users/{}", user["id"]);
    // The table locked until both requests have answered: neither can finish.
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let soon = || std::time::SystemTime::now() + std::time::Duration::from_millis(1500);

    let patched = app
        .update_user(
            TestRequest::patch(path.as_str())
                .json(&json!({"name": "Ada Lovelace"}))
                .deadline(soon()),
        )
        .await;
    let read = app
        .get_user(TestRequest::get(path.as_str()).deadline(soon()))
        .await;
    lock.rollback().await.unwrap();

    patched.assert_problem_of_type(503, "outcome-unknown");
    read.assert_unavailable();
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_request_whose_deadline_has_passed_is_a_503_at_once_and_changes_nothing(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let passed = std::time::SystemTime::now() - std::time::Duration::from_secs(1);

    let created = app
        .create_user(
            TestRequest::post("/users")
                .json(&json!({"email": "late@example.com", "name": "Late"}))
                .deadline(passed),
        )
        .await;

    created.assert_unavailable();
    assert_eq!(crate::app::count(&pool, "users").await, 0);
}
