use serde_json::{json, Value};
use sqlx::PgPool;
use test_support::{tokens, Reply, TestRequest, SOURCES};
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

use crate::app::TestApp;

impl TestApp {
    /// `PATCH path` with `body` as `application/merge-patch+json`.
    pub async fn patch(&self, path: &str, body: &Value) -> Reply {
        self.update_user(
            TestRequest::patch(path)
                .header("content-type", "application/merge-patch+json")
                .body(&body.to_string()),
        )
        .await
    }
}

fn instant(stamp: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(stamp.as_str().expect("a timestamp"), &Rfc3339).expect("RFC 3339")
}

fn path_of(user: &Value) -> String {
    format!("/users/{}", user["id"])
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_patch_changes_the_fields_it_names_from_every_event_source(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    for (n, source) in SOURCES.into_iter().enumerate() {
        let user = app
            .given_a_user(&format!("ada{n}@example.com"), "Ada")
            .await;

        let renamed = app
            .update_user(
                TestRequest::patch(path_of(&user))
                    .from(source)
                    .json(&json!({"name": "Ada Lovelace"})),
            )
            .await;

        assert_eq!(renamed.status, 200, "{source:?}: {}", renamed.body);
        assert_eq!(renamed.body["name"], "Ada Lovelace");
        assert_eq!(renamed.body["email"], user["email"]);
        assert_eq!(renamed.body["created_at"], user["created_at"]);
        // Compared as instants: RFC 3339 text drops trailing zeros of the fraction, so
        // "…37.936Z" is earlier than "…37.936658Z" though it sorts after it.
        assert!(
            instant(&renamed.body["updated_at"]) > instant(&user["updated_at"]),
            "updated_at moves: {} then {}",
            user["updated_at"],
            renamed.body["updated_at"]
        );
        assert_eq!(renamed.header("etag"), Some("\"2\""));
    }
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_patch_that_changes_nothing_returns_the_user_as_it_was(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let user = app.given_a_user("ada@example.com", "Ada").await;

    for patch in [
        json!({}),
        json!({"name": "Ada"}),
        json!({"email": "ada@example.com"}),
    ] {
        let response = app.patch(&path_of(&user), &patch).await;

        assert_eq!(response.status, 200, "{patch}: {}", response.body);
        assert_eq!(response.body, user, "{patch}");
        assert_eq!(response.header("etag"), Some("\"1\""), "{patch}");
    }
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_patch_is_validated_as_a_create_is(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let user = app.given_a_user("ada@example.com", "Ada").await;
    let path = path_of(&user);

    let cases = [
        (
            json!({"email": null}),
            vec![("email", "is required and cannot be removed")],
        ),
        (
            json!({"name": null}),
            vec![("name", "is required and cannot be removed")],
        ),
        (json!({"name": ""}), vec![("name", "must not be empty")]),
        (
            json!({"email": "nope", "name": 5}),
            vec![
                (
                    "email",
                    "must be a valid email address, such as name@example.com",
                ),
                ("name", "must be a string"),
            ],
        ),
        (json!({"id": 7}), vec![("id", "is not a known field")]),
    ];
    for (patch, expected) in cases {
        let response = app.patch(&path, &patch).await;

        response.assert_problem_of_type(422, "validation");
        let expected: Vec<_> = expected
            .into_iter()
            .map(|(field, message)| (field.to_owned(), message.to_owned()))
            .collect();
        assert_eq!(response.field_errors(), expected, "{patch}");
    }
    let stored = app.get_user(TestRequest::get(&path)).await;
    assert_eq!(stored.body, user, "nothing changed");
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_patch_must_be_a_json_object_sent_as_json_or_a_merge_patch(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let user = app.given_a_user("ada@example.com", "Ada").await;
    let path = path_of(&user);
    let rename = json!({"name": "Ada L"}).to_string();

    let cases = [
        (Some("application/json"), rename.as_str(), 200),
        (
            Some("application/merge-patch+json; charset=utf-8"),
            rename.as_str(),
            200,
        ),
        (None, rename.as_str(), 200),
        (
            Some("application/json-patch+json"),
            r#"[{"op": "remove", "path": "/name"}]"#,
            415,
        ),
        (Some("text/plain"), rename.as_str(), 415),
        (Some("application/json"), "[1]", 400),
        (Some("application/json"), "", 400),
        (Some("application/json"), "{\"name\":", 400),
    ];
    for (content_type, body, status) in cases {
        let mut request = TestRequest::patch(&path).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }

        let response = app.update_user(request).await;

        if status == 200 {
            assert_eq!(response.status, 200, "{content_type:?}: {}", response.body);
        } else {
            response.assert_problem(status);
        }
    }
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn taking_another_users_email_is_a_409_and_changes_nothing(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    app.given_a_user("grace@example.com", "Grace").await;
    let ada = app.given_a_user("ada@example.com", "Ada").await;

    let response = app
        .patch(
            &path_of(&ada),
            &json!({"email": "GRACE@example.com", "name": "G"}),
        )
        .await;

    response.assert_problem_of_type(409, "conflict");
    let stored = app.get_user(TestRequest::get(path_of(&ada))).await;
    assert_eq!(stored.body, ada);
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn patching_a_missing_or_malformed_id_is_a_404_or_400(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let user = app.given_a_user("ada@example.com", "Ada").await;
    let missing = format!("/users/{}", user["id"].as_i64().unwrap() + 1);

    app.patch(&missing, &json!({"name": "X"}))
        .await
        .assert_problem_of_type(404, "not-found");
    app.patch("/users/abc", &json!({"name": "X"}))
        .await
        .assert_problem_of_type(400, "bad-request");
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn patching_needs_the_write_scope(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let user = app.given_a_user("ada@example.com", "Ada").await;

    let response = app
        .update_user(
            TestRequest::patch(path_of(&user))
                .authorization(Some(&tokens::bearer("users:read")))
                .json(&json!({"name": "X"})),
        )
        .await;

    response.assert_problem_of_type(403, "forbidden");
}
