//! What the API leaves on its database sessions: nothing a transaction-pooling proxy would have
//! to keep for it (RDS Proxy pins such a session; PgBouncer would hand it to another client);
//! with `DB_NAMED_STATEMENTS=true` (a server reached directly), its prepared statements, which
//! a change of the schema under them costs no request.

use shared::routes::ROUTES;
use sqlx::{Connection, PgPool, Row};
use test_support::{
    samples::{self, Sample},
    TestRequest,
};

use crate::app::TestApp;

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn every_route_leaves_no_prepared_statement_and_no_changed_setting_on_its_session(
    pool: PgPool,
) {
    let app = TestApp::new(&pool).await;
    let user = app.given_a_user("ada@example.com", "Ada").await;
    let doomed = app.given_a_user("grace@example.com", "Grace").await;
    let sample = Sample {
        n: 0,
        user: user["id"].as_i64().unwrap(),
        doomed: doomed["id"].as_i64().unwrap(),
    };

    // Every declared route, with its sample request; the list's by email too.
    let mut replies = Vec::new();
    let by_email = ("GET /users", Sample { n: 1, ..sample });
    for (route, sample) in ROUTES
        .iter()
        .map(|route| (route.key, sample))
        .chain([by_email])
    {
        let (request, status) = samples::request(route, sample);
        replies.push((status, app.route(route, request).await));
    }
    let (prepared, changed): (i64, Vec<String>) = app
        .state
        .db
        .read(|connection| {
            Box::pin(async move {
                let prepared = sqlx::query_scalar("SELECT count(*) FROM pg_prepared_statements")
                    .fetch_one(&mut *connection)
                    .await?;
                // Settings this session changed from what it was started with.
                let changed = sqlx::query_scalar(
                    "SELECT name FROM pg_settings WHERE source = 'session' ORDER BY name",
                )
                .fetch_all(&mut *connection)
                .await?;
                Ok((prepared, changed))
            })
        })
        .await
        .expect("the session answers");

    for (status, reply) in &replies {
        assert_eq!(reply.status, *status, "{}: {}", reply.path, reply.body);
    }
    assert_eq!(prepared, 0, "named prepared statements on the session");
    assert_eq!(
        changed,
        Vec::<String>::new(),
        "settings changed by the session"
    );
}

/// A connection as the functions open theirs: no statement cache, so every statement with
/// arguments goes unnamed, in one flight with its execution (vendor/README.md).
async fn uncached_connection(pool: &PgPool) -> sqlx::PgConnection {
    let options = pool
        .connect_options()
        .as_ref()
        .clone()
        .statement_cache_capacity(0);
    sqlx::PgConnection::connect_with(&options)
        .await
        .expect("connect")
}

#[derive(Debug, PartialEq, sqlx::Type)]
#[sqlx(type_name = "mood", rename_all = "lowercase")]
enum Mood {
    Calm,
    Merry,
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_column_of_a_type_the_connection_has_not_met_is_read_with_checked_getters(pool: PgPool) {
    sqlx::query("CREATE TYPE mood AS ENUM ('calm', 'merry')")
        .execute(&pool)
        .await
        .unwrap();
    let mut connection = uncached_connection(&pool).await;

    for _ in 0..2 {
        // The first time, the rows wait for the type's lookup; the second, it is cached.
        let row = sqlx::query("SELECT $1::text::mood AS one, ARRAY['calm', $1]::mood[] AS many")
            .bind("merry")
            .fetch_one(&mut connection)
            .await
            .expect("the statement");

        assert_eq!(row.try_get::<Mood, _>("one").unwrap(), Mood::Merry);
        assert_eq!(
            row.try_get::<Vec<Mood>, _>("many").unwrap(),
            [Mood::Calm, Mood::Merry]
        );
    }
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn a_statement_whose_bind_cannot_be_encoded_leaves_nothing_for_the_next_one(pool: PgPool) {
    let mut connection = uncached_connection(&pool).await;
    // Two parameters of 1.1 GB each: each fits the protocol, their Bind does not (2 GiB at
    // most). The statement names a table that does not exist: sent, its Parse would fail.
    let big = vec![0_u8; 1_100_000_000];

    let refused = sqlx::query("SELECT length($1) + length($2) FROM no_such_table")
        .bind(big.as_slice())
        .bind(big.as_slice())
        .fetch_optional(&mut connection)
        .await;
    drop(big);
    let next: i32 = sqlx::query_scalar("SELECT $1::int4 + 1")
        .bind(41)
        .fetch_one(&mut connection)
        .await
        .expect("the next statement, on the same connection");

    let refused = refused.expect_err("a Bind over the protocol's limit");
    assert!(refused.to_string().contains("out of range"), "{refused}");
    assert_eq!(next, 42);
}

/// The statements a session has prepared.
async fn prepared(app: &TestApp) -> i64 {
    app.state
        .db
        .read(|connection| {
            Box::pin(
                sqlx::query_scalar("SELECT count(*) FROM pg_prepared_statements")
                    .fetch_one(connection),
            )
        })
        .await
        .expect("the session answers")
}

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn with_named_statements_a_column_changing_type_under_them_costs_no_request(pool: PgPool) {
    let app = TestApp::new_with(&pool, &[("DB_NAMED_STATEMENTS", "true")]).await;
    let user = app.given_a_user("ada@example.com", "Ada").await;
    let path = format!("/users/{}", user["id"]);
    let read = async || app.get_user(TestRequest::get(&path)).await;
    let patch = async |name: &str| {
        let body = serde_json::json!({ "name": name });
        app.update_user(TestRequest::patch(&path).json(&body)).await
    };
    let retype = async |to: &str| {
        sqlx::query(&format!("ALTER TABLE users ALTER COLUMN name TYPE {to}"))
            .execute(&pool)
            .await
            .unwrap();
    };
    assert_eq!(read().await.status, 200);
    assert_eq!(patch("Ada L.").await.status, 200);
    assert!(prepared(&app).await > 0, "no statement was prepared");

    // The server refuses to run a prepared statement whose result type changed (`cached plan
    // must not change result type`): the statement is sent again on a new session, which
    // prepares it afresh. A read, then a write (prepared on that new session first).
    retype("varchar(200)").await;
    let reply = read().await;
    assert_eq!((reply.status, &reply.body["name"]), (200, &"Ada L.".into()));
    let before = patch("Ada").await;
    assert_eq!(before.status, 200);
    retype("text").await;
    let reply = patch("Ada Lovelace").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["name"], "Ada Lovelace");
    // Made once: the version moved by one.
    let version = |reply: &test_support::Reply| {
        let etag = reply.header("etag").expect("an ETag").trim_matches('"');
        etag.parse::<i64>().expect("a version")
    };
    assert_eq!(version(&reply), version(&before) + 1);
}
