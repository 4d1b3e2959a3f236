use sqlx::PgPool;
use test_support::{TestRequest, SOURCES};

use crate::app::TestApp;

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn getting_a_user_returns_it_from_every_event_source(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let created = app.given_a_user("ada@example.com", "Ada").await;
    let path = format!("/users/{}", created["id"]);

    for source in SOURCES {
        let response = app.get_user(TestRequest::get(&path).from(source)).await;

        assert_eq!(response.status, 200, "{source:?}: {}", response.body);
        assert_eq!(response.header("content-type"), Some("application/json"));
        assert_eq!(response.body, created, "{source:?}");
    }
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn an_unknown_id_returns_404(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let created = app.given_a_user("ada@example.com", "Ada").await;
    let unknown = created["id"].as_i64().unwrap() + 1;

    for source in SOURCES {
        let response = app
            .get_user(TestRequest::get(format!("/users/{unknown}")).from(source))
            .await;
        response.assert_problem(404);
    }
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn an_id_that_is_not_a_positive_64_bit_integer_returns_400(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    for id in [
        "abc",
        "0",
        "-1",
        "+1",
        "1.5",
        "1e3",
        "0x10",
        "%201",
        "9223372036854775808",
        "99999999999999999999",
    ] {
        for source in SOURCES {
            let response = app
                .get_user(TestRequest::get(format!("/users/{id}")).from(source))
                .await;
            response.assert_problem(400);
        }
    }
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn an_id_with_leading_zeros_returns_400_even_when_the_user_exists(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let created = app.given_a_user("ada@example.com", "Ada").await;
    assert_eq!(created["id"], 1);

    for path in ["/users/01", "/users/0001"] {
        let response = app.get_user(TestRequest::get(path)).await;

        response.assert_problem(400);
        assert_eq!(
            response.body["detail"],
            "The user id must be written without leading zeros."
        );
    }
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn another_method_on_the_get_route_returns_405_with_the_resources_methods(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    for method in ["POST", "PUT", "TRACE"] {
        let response = app.get_user(TestRequest::new(method, "/users/1")).await;
        response.assert_problem(405);
        assert_eq!(response.header("allow"), Some("GET, PATCH, DELETE"));
    }
}
