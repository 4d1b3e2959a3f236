//! What the API leaves on its database sessions: nothing a transaction-pooling proxy would have
//! to keep for it (RDS Proxy pins such a session; PgBouncer would hand it to another client).

use serde_json::json;
use sqlx::PgPool;
use test_support::TestRequest;

use crate::app::TestApp;

#[sqlx::test(migrator = "shared::db::MIGRATOR")]
async fn every_route_leaves_no_prepared_statement_and_no_changed_setting_on_its_session(
    pool: PgPool,
) {
    let app = TestApp::new(&pool).await;
    let user = app.given_a_user("ada@example.com", "Ada").await;
    let path = format!("/users/{}", user["id"]);

    let replies = [
        app.create_user(
            TestRequest::post("/users")
                .header("idempotency-key", "k-1")
                .json(&json!({"email": "grace@example.com", "name": "Grace"})),
        )
        .await,
        app.get_user(TestRequest::get(&path)).await,
        app.list_users(TestRequest::get("/users?limit=5")).await,
        app.list_users(TestRequest::get("/users?email=ada%40example.com"))
            .await,
        app.update_user(TestRequest::patch(&path).json(&json!({"name": "Ada L."})))
            .await,
        app.delete_user(TestRequest::delete(&path)).await,
        app.health(TestRequest::get("/health")).await,
    ];
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

    for reply in &replies {
        assert!(reply.status < 300, "{}: {}", reply.status, reply.body);
    }
    assert_eq!(prepared, 0, "named prepared statements on the session");
    assert_eq!(
        changed,
        Vec::<String>::new(),
        "settings changed by the session"
    );
}
