//! ETags and conditional requests: `If-None-Match` on GET, `If-Match` on PATCH and DELETE.

use serde_json::{json, Value};
use sqlx::PgPool;
use test_support::TestRequest;

use crate::app::TestApp;

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn the_etag_is_strong_and_moves_with_every_change_and_only_then(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let created = app
        .create_user(
            TestRequest::post("/users").json(&json!({"email": "a@example.com", "name": "A"})),
        )
        .await;
    let path = format!("/users/{}", created.body["id"]);
    let etag = async || {
        let response = app.get_user(TestRequest::get(&path)).await;
        response.header("etag").map(str::to_owned)
    };

    let first = etag().await;
    app.patch(&path, &json!({"name": "A"})).await;
    let after_no_change = etag().await;
    app.patch(&path, &json!({"name": "B"})).await;
    let after_rename = etag().await;
    app.patch(&path, &json!({"email": "A@example.com"})).await;
    let after_recase = etag().await;

    assert_eq!(
        created.header("etag"),
        first.as_deref(),
        "create and GET agree"
    );
    assert_eq!(first.as_deref(), Some("\"1\""));
    assert_eq!(after_no_change, first);
    assert_eq!(after_rename.as_deref(), Some("\"2\""));
    assert_eq!(
        after_recase.as_deref(),
        Some("\"3\""),
        "a change of case is a change"
    );
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn if_none_match_on_the_current_etag_is_a_304_without_a_body(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let user = app.given_a_user("a@example.com", "A").await;
    let path = format!("/users/{}", user["id"]);
    app.patch(&path, &json!({"name": "B"})).await;

    for (condition, status) in [
        ("\"2\"", 304),
        ("W/\"2\"", 304),
        ("\"1\", \"2\"", 304),
        ("*", 304),
        ("\"1\"", 200),
        ("\"02\"", 200),
    ] {
        let response = app
            .get_user(TestRequest::get(&path).header("if-none-match", condition))
            .await;

        assert_eq!(response.status, status, "{condition}");
        assert_eq!(response.header("etag"), Some("\"2\""), "{condition}");
        assert_eq!(response.header("cache-control"), Some("private, no-cache"));
        if status == 304 {
            assert_eq!(response.body, Value::Null, "{condition}");
        }
    }
    app.get_user(TestRequest::get(&path).header("if-none-match", "2"))
        .await
        .assert_problem_of_type(400, "bad-request");
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_patch_or_delete_on_a_stale_etag_is_a_412_and_changes_nothing(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let user = app.given_a_user("a@example.com", "A").await;
    let path = format!("/users/{}", user["id"]);
    let current = app.patch(&path, &json!({"name": "B"})).await.body;

    for stale in ["\"1\"", "W/\"2\"", "\"3\", \"4\"", "\"x\""] {
        let patched = app
            .update_user(
                TestRequest::patch(&path)
                    .header("if-match", stale)
                    .json(&json!({"name": "C"})),
            )
            .await;
        let deleted = app
            .delete_user(TestRequest::delete(&path).header("if-match", stale))
            .await;

        patched.assert_problem_of_type(412, "precondition-failed");
        deleted.assert_problem_of_type(412, "precondition-failed");
    }
    let stored = app.get_user(TestRequest::get(&path)).await;
    assert_eq!(
        stored.body, current,
        "neither the patches nor the deletes did anything"
    );
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_patch_or_delete_on_the_current_etag_goes_ahead(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let user = app.given_a_user("a@example.com", "A").await;
    let path = format!("/users/{}", user["id"]);

    let patched = app
        .update_user(
            TestRequest::patch(&path)
                .header("if-match", "\"7\", \"1\"")
                .json(&json!({"name": "B"})),
        )
        .await;
    let any = app
        .update_user(
            TestRequest::patch(&path)
                .header("if-match", "*")
                .json(&json!({"name": "C"})),
        )
        .await;
    let deleted = app
        .delete_user(TestRequest::delete(&path).header("if-match", "\"3\""))
        .await;
    let gone = app
        .delete_user(TestRequest::delete(&path).header("if-match", "\"3\""))
        .await;

    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.header("etag"), Some("\"2\""));
    assert_eq!(any.status, 200, "{}", any.body);
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    gone.assert_problem_of_type(412, "precondition-failed");
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn if_match_on_a_user_that_does_not_exist_is_a_412_and_without_it_a_404(pool: PgPool) {
    // RFC 9110, section 13.1.1: with no current representation, If-Match is false, `*` too.
    let app = TestApp::new(&pool).await;
    let patch = |if_match: Option<&str>| {
        let request = TestRequest::patch("/users/42").json(&json!({"name": "B"}));
        match if_match {
            Some(tags) => request.header("if-match", tags),
            None => request,
        }
    };
    let delete = |if_match: &str| TestRequest::delete("/users/42").header("if-match", if_match);

    for tags in ["\"1\"", "*"] {
        let patched = app.update_user(patch(Some(tags))).await;
        let deleted = app.delete_user(delete(tags)).await;

        patched.assert_problem_of_type(412, "precondition-failed");
        deleted.assert_problem_of_type(412, "precondition-failed");
    }
    app.update_user(patch(None))
        .await
        .assert_problem_of_type(404, "not-found");
    app.delete_user(TestRequest::delete("/users/42"))
        .await
        .assert_problem_of_type(404, "not-found");
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_malformed_if_match_is_a_400(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let user = app.given_a_user("a@example.com", "A").await;
    let path = format!("/users/{}", user["id"]);

    let response = app
        .delete_user(TestRequest::delete(&path).header("if-match", "1"))
        .await;

    response.assert_problem_of_type(400, "bad-request");
    assert_eq!(app.get_user(TestRequest::get(&path)).await.status, 200);
}
