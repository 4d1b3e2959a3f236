use serde_json::json;
use sqlx::PgPool;
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

use test_support::{TestRequest, SOURCES};

use crate::app::{count, TestApp};

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn creating_a_user_returns_201_with_its_location_from_every_event_source(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    for (n, source) in SOURCES.into_iter().enumerate() {
        let email = format!("ada{n}@example.com");
        let response = app
            .create_user(
                TestRequest::post("/users")
                    .from(source)
                    .json(&json!({"email": email, "name": "Ada Lovelace"})),
            )
            .await;

        assert_eq!(response.status, 201, "{source:?}: {}", response.body);
        assert_eq!(response.header("content-type"), Some("application/json"));
        let id = response.body["id"].as_i64().expect("id is an integer");
        assert!(id > 0);
        assert_eq!(
            response.header("location"),
            Some(format!("/users/{id}").as_str())
        );
        assert_eq!(response.body["email"], email.as_str());
        assert_eq!(response.body["name"], "Ada Lovelace");
        for stamp in ["created_at", "updated_at"] {
            let text = response.body[stamp]
                .as_str()
                .expect("timestamp is a string");
            assert!(text.ends_with('Z'), "{stamp} is UTC: {text}");
            OffsetDateTime::parse(text, &Rfc3339).expect("timestamp is RFC 3339");
        }
        let keys: Vec<_> = response.body.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys.len(), 5, "no other members: {keys:?}");
    }
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_created_user_is_stored_trimmed(pool: PgPool) {
    let app = TestApp::new(&pool).await;

    let response = app
        .create_user(
            TestRequest::post("/users")
                .json(&json!({"email": "  Grace@Example.com ", "name": "\tGrace Hopper  "})),
        )
        .await;

    assert_eq!(response.status, 201, "{}", response.body);
    let row = sqlx::query!(
        "SELECT email, name FROM users WHERE id = $1",
        response.body["id"].as_i64()
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (row.email.as_str(), row.name.as_str()),
        ("Grace@Example.com", "Grace Hopper")
    );
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_name_is_stored_composed_and_may_not_hide_formatting_characters(pool: PgPool) {
    let app = TestApp::new(&pool).await;

    let decomposed = app
        .create_user(
            TestRequest::post("/users")
                .json(&json!({"email": "zoe@example.com", "name": "Zoe\u{0308}"})),
        )
        .await;
    let overridden = app
        .create_user(
            TestRequest::post("/users")
                .json(&json!({"email": "eve@example.com", "name": "Eve\u{202e}nimda"})),
        )
        .await;

    assert_eq!(decomposed.status, 201, "{}", decomposed.body);
    assert_eq!(decomposed.body["name"], "Zo\u{00eb}");
    overridden.assert_problem(422);
    assert_eq!(
        overridden.field_errors(),
        [(
            "name".to_owned(),
            "must not contain invisible formatting characters (such as U+202E)".to_owned()
        )]
    );
    let stored: Vec<String> = sqlx::query_scalar("SELECT name FROM users")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(stored, ["Zo\u{00eb}"]);
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_body_naming_a_member_twice_returns_400_and_creates_nothing(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let body = r#"{"email": "a@x.io", "name": "A", "email": "b@y.io"}"#;

    let response = app
        .create_user(
            TestRequest::post("/users")
                .header("content-type", "application/json")
                .body(body),
        )
        .await;

    response.assert_problem(400);
    let detail = response.body["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("The request body names a member twice: \"email\""),
        "{detail}"
    );
    assert_eq!(count(&pool, "users").await, 0);
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_duplicate_email_in_any_case_returns_409(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    app.given_a_user("a@x.io", "First").await;

    for duplicate in ["a@x.io", "A@x.io", " A@X.IO "] {
        let response = app
            .create_user(
                TestRequest::post("/users").json(&json!({"email": duplicate, "name": "Second"})),
            )
            .await;
        response.assert_problem(409);
    }
    let count: i64 = sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM users"#)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_body_that_is_not_a_json_object_returns_400(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let cases = [
        ("no body", TestRequest::post("/users")),
        ("empty body", TestRequest::post("/users").body("")),
        ("blank body", TestRequest::post("/users").body("  \n")),
        (
            "truncated",
            TestRequest::post("/users").body(r#"{"email": "a@b.io""#),
        ),
        (
            "trailing comma",
            TestRequest::post("/users").body(r#"{"email": "a@b.io",}"#),
        ),
        (
            "not JSON",
            TestRequest::post("/users").body("email=a@b.io&name=A"),
        ),
        (
            "array",
            TestRequest::post("/users").body(r#"[{"email": "a@b.io"}]"#),
        ),
        ("string", TestRequest::post("/users").body(r#""a@b.io""#)),
        ("number", TestRequest::post("/users").body("42")),
        ("null", TestRequest::post("/users").body("null")),
        ("two objects", TestRequest::post("/users").body(r#"{} {}"#)),
        (
            "invalid UTF-8",
            TestRequest::post("/users").base64_body("/w=="),
        ),
    ];
    for (case, request) in cases {
        let response = app
            .create_user(request.header("content-type", "application/json"))
            .await;
        response.assert_problem(400);
        assert!(response.body.get("errors").is_none(), "{case}");
    }
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_body_that_is_not_json_by_content_type_returns_415(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let body = json!({"email": "a@b.io", "name": "A"}).to_string();
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/json; charset=iso-8859-1",
        "application/jsonp",
    ] {
        let response = app
            .create_user(
                TestRequest::post("/users")
                    .header("content-type", content_type)
                    .body(&body),
            )
            .await;
        response.assert_problem(415);
    }
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn json_content_types_and_a_missing_content_type_are_accepted(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let cases = [
        Some("application/json"),
        Some("Application/JSON; charset=UTF-8"),
        Some("application/merge-patch+json"),
        None,
    ];
    for (n, content_type) in cases.into_iter().enumerate() {
        let body = json!({"email": format!("c{n}@example.com"), "name": "C"}).to_string();
        let mut request = TestRequest::post("/users").body(&body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = app.create_user(request).await;
        assert_eq!(response.status, 201, "{content_type:?}: {}", response.body);
    }
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_base64_encoded_body_is_decoded(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    // {"email":"base64@example.com","name":"Encoded"}
    let encoded = "eyJlbWFpbCI6ImJhc2U2NEBleGFtcGxlLmNvbSIsIm5hbWUiOiJFbmNvZGVkIn0=";

    let response = app
        .create_user(
            TestRequest::post("/users")
                .header("content-type", "application/json")
                .base64_body(encoded),
        )
        .await;

    assert_eq!(response.status, 201, "{}", response.body);
    assert_eq!(response.body["email"], "base64@example.com");
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn invalid_fields_return_422_naming_each_field(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let long_name = "n".repeat(101);
    let long_email = format!("{}@example.com", "a".repeat(243));
    let cases = [
        (json!({"name": "A"}), vec![("email", "is required")]),
        (json!({"email": "a@b.io"}), vec![("name", "is required")]),
        (
            json!({}),
            vec![("email", "is required"), ("name", "is required")],
        ),
        (
            json!({"email": null, "name": "A"}),
            vec![("email", "is required")],
        ),
        (
            json!({"email": 7, "name": "A"}),
            vec![("email", "must be a string")],
        ),
        (
            json!({"email": "a@b.io", "name": ["A"]}),
            vec![("name", "must be a string")],
        ),
        (
            json!({"email": "", "name": "A"}),
            vec![("email", "must not be empty")],
        ),
        (
            json!({"email": "not-an-email", "name": "A"}),
            vec![(
                "email",
                "must be a valid email address, such as name@example.com",
            )],
        ),
        (
            json!({"email": "a@localhost", "name": "A"}),
            vec![(
                "email",
                "must be a valid email address, such as name@example.com",
            )],
        ),
        (
            json!({"email": long_email, "name": "A"}),
            vec![("email", "must be at most 254 characters")],
        ),
        (
            json!({"email": "a@b.io", "name": "   "}),
            vec![("name", "must not be empty")],
        ),
        (
            json!({"email": "a@b.io", "name": long_name}),
            vec![("name", "must be at most 100 characters")],
        ),
        (
            json!({"email": "a@b.io", "name": "A\u{0007}B"}),
            vec![("name", "must not contain control characters")],
        ),
        (
            json!({"email": "a@b.io", "name": "A", "role": "admin"}),
            vec![("role", "is not a known field")],
        ),
        (
            json!({"id": 1, "email": "bad", "name": "", "Email": "x"}),
            vec![
                ("Email", "is not a known field"),
                ("id", "is not a known field"),
                (
                    "email",
                    "must be a valid email address, such as name@example.com",
                ),
                ("name", "must not be empty"),
            ],
        ),
    ];
    for (body, expected) in cases {
        let response = app
            .create_user(TestRequest::post("/users").json(&body))
            .await;

        response.assert_problem(422);
        let expected: Vec<(String, String)> = expected
            .into_iter()
            .map(|(field, message)| (field.to_owned(), message.to_owned()))
            .collect();
        assert_eq!(response.field_errors(), expected, "{body}");
    }
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn another_method_on_the_create_route_returns_405_with_the_resources_methods(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    for method in ["PUT", "DELETE", "TRACE"] {
        let response = app.create_user(TestRequest::new(method, "/users")).await;
        response.assert_problem(405);
        assert_eq!(response.header("allow"), Some("GET, POST"));
    }
}
