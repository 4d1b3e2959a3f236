use std::collections::{BTreeSet, HashMap};

use serde_json::{json, Value};
use sqlx::PgPool;
use test_support::{tokens, TestRequest, SOURCES};

use crate::app::TestApp;

impl TestApp {
    /// `n` users named `user{i}@example.com`, created through the API, by id ascending.
    async fn given_users(&self, n: usize) -> Vec<Value> {
        let mut users = Vec::new();
        for i in 0..n {
            users.push(
                self.given_a_user(&format!("user{i}@example.com"), &format!("User {i}"))
                    .await,
            );
        }
        users
    }

    /// Every page of the listing from `first` on, calling `between` after each page.
    async fn pages(&self, first: &str, mut between: impl AsyncFnMut(usize)) -> Vec<Vec<Value>> {
        let mut pages = Vec::new();
        let mut path = first.to_owned();
        loop {
            let response = self.list_users(TestRequest::get(&path)).await;
            assert_eq!(response.status, 200, "{path}: {}", response.body);
            let items = response.body["items"].as_array().expect("items").clone();
            pages.push(items);
            between(pages.len()).await;
            match &response.body["next_cursor"] {
                Value::Null => return pages,
                Value::String(cursor) => {
                    let separator = if first.contains('?') { '&' } else { '?' };
                    path = format!("{first}{separator}cursor={cursor}");
                }
                other => panic!("next_cursor is a string or null: {other}"),
            }
        }
    }
}

fn ids(items: &[Value]) -> Vec<i64> {
    items
        .iter()
        .map(|user| user["id"].as_i64().unwrap())
        .collect()
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn the_listing_pages_by_id_ascending_20_by_default(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let users = app.given_users(25).await;

    let pages = app.pages("/users", async |_| {}).await;

    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [20, 5]);
    assert_eq!(pages.concat(), users, "every user, whole, in id order");
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn the_last_page_has_no_next_cursor_even_when_it_is_full(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    app.given_users(6).await;

    let pages = app.pages("/users?limit=3", async |_| {}).await;
    sqlx::query("DELETE FROM users")
        .execute(&pool)
        .await
        .unwrap();
    let none = app.list_users(TestRequest::get("/users")).await;

    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3]);
    assert_eq!(none.body, json!({"items": [], "next_cursor": null}));
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn paging_while_users_come_and_go_neither_repeats_nor_skips_a_user_that_stayed(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let users = app.given_users(30).await;
    let all_ids = ids(&users);
    // Between pages: delete one user already listed and one not yet listed, add one.
    let deleted = std::cell::RefCell::new(BTreeSet::new());
    let pool_ref = &pool;
    let app_ref = &app;
    let pages = app
        .pages("/users?limit=7", async |page| {
            let gone = [
                all_ids[(page * 7 - 1).min(29)],
                all_ids[(page * 7 + 3).min(29)],
            ];
            for id in gone {
                sqlx::query("DELETE FROM users WHERE id = $1")
                    .bind(id)
                    .execute(pool_ref)
                    .await
                    .unwrap();
                deleted.borrow_mut().insert(id);
            }
            app_ref
                .given_a_user(&format!("late{page}@example.com"), "Late")
                .await;
        })
        .await;

    let listed = ids(&pages.concat());
    let mut sorted = listed.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(listed, sorted, "ascending, no repeats");
    let deleted = deleted.into_inner();
    for id in all_ids.iter().filter(|id| !deleted.contains(id)) {
        assert!(
            listed.contains(id),
            "user {id} existed throughout and was skipped"
        );
    }
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn an_email_finds_its_one_user_case_insensitively_from_every_event_source(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    app.given_users(3).await;
    let ada = app.given_a_user("Ada+Tag@Example.com", "Ada").await;

    for source in SOURCES {
        let found = app
            .list_users(TestRequest::get("/users?email=ada%2Btag%40example.COM").from(source))
            .await;
        let missing = app
            .list_users(TestRequest::get("/users?email=nobody@example.com").from(source))
            .await;

        assert_eq!(found.status, 200, "{source:?}: {}", found.body);
        assert_eq!(
            found.body,
            json!({"items": [ada], "next_cursor": null}),
            "{source:?}"
        );
        assert_eq!(
            missing.body,
            json!({"items": [], "next_cursor": null}),
            "{source:?}"
        );
    }
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_bad_limit_cursor_email_or_parameter_is_a_400(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    app.given_users(3).await;
    let first = app.list_users(TestRequest::get("/users?limit=1")).await;
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let mut tampered = cursor.clone().into_bytes();
    tampered[4] = if tampered[4] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();

    let queries = [
        "limit=0".to_owned(),
        "limit=101".to_owned(),
        "limit=-1".to_owned(),
        "limit=ten".to_owned(),
        "limit=".to_owned(),
        "limit=1&limit=2".to_owned(),
        format!("cursor={tampered}"),
        format!("cursor={cursor}x"),
        "cursor=".to_owned(),
        "cursor=1".to_owned(),
        "email=not-an-address".to_owned(),
        "email=".to_owned(),
        "offset=10".to_owned(),
    ];
    for query in queries {
        let response = app
            .list_users(TestRequest::get(format!("/users?{query}")))
            .await;
        response.assert_problem_of_type(400, "bad-request");
    }
    let next = app
        .list_users(TestRequest::get(format!("/users?limit=1&cursor={cursor}")))
        .await;
    assert_eq!(
        next.status, 200,
        "the untampered cursor works: {}",
        next.body
    );
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn listing_needs_the_read_scope(pool: PgPool) {
    let app = TestApp::new(&pool).await;
    let mut statuses = HashMap::new();
    for scope in ["users:read", "users:write"] {
        let response = app
            .list_users(TestRequest::get("/users").authorization(Some(&tokens::bearer(scope))))
            .await;
        statuses.insert(scope, response.status);
    }

    assert_eq!(statuses["users:read"], 200);
    assert_eq!(statuses["users:write"], 403);
}
