//! The main paths again, through a connection pooler in front of Postgres, as with
//! `UseRdsProxy=true`: PgBouncer (no startup parameter relaxed beyond `extra_float_digits`)
//! stands in for RDS Proxy, which refuses a startup packet carrying `options`. In transaction
//! pooling, what RDS Proxy does for sessions that carry no state (ours: no `SET`, no named
//! statement), and in session pooling, what it does for a session it pins.
//!
//! Create, get and health; a password rotation; the migrate custom resource creating the
//! schema and the application's login straight on the database, then the API logging in as
//! that role through the proxy; the per-session limits reaching the sessions without any
//! per-session statement. The proxy's own refusals: `outage.rs`. Many environments sharing a
//! few server connections: `fleet.rs`.

use std::{net::SocketAddr, str::FromStr};

use e2e::{
    cloudformation::{properties, CustomResource},
    moto::Moto,
    pgbouncer::{PgBouncer, Pooling},
    proxy::Proxy,
    runtime::Function,
    Stack, TestDatabase,
};
use futures_util::future::join;
use serde_json::json;
use sqlx::{postgres::PgConnectOptions, types::Json, Connection, PgConnection};

const REFETCH_LOG: &str = "re-fetched the database secret";
/// RDS Proxy's multiplexing, with a small pool.
const TRANSACTIONS: Pooling = Pooling::Transaction { size: 4 };

/// A migrated database with an application role, PgBouncer in front of it (pooling as given),
/// the role's secret in moto pointing at PgBouncer, and a stack reading it that has served a
/// create and a fetch.
struct BehindTheProxy {
    database: TestDatabase,
    bouncer: PgBouncer,
    role: String,
    moto: Moto,
    stack: Stack,
}

impl BehindTheProxy {
    async fn start(name: &str, password: &str, pooling: Pooling) -> Self {
        let database = TestDatabase::create(name).await;
        let role = database.create_app_role("proxied", password).await;
        let bouncer = PgBouncer::start_pooling(database.address, pooling).await;
        let moto = Moto::start().await;
        moto.create_secret("db", &database.rds_secret(bouncer.port, &role, password))
            .await;
        let stack = Stack::spawn(name, &moto.database_env("db")).await;
        stack
            .create_and_fetch_a_user(&format!("{name}@example.com"))
            .await;
        Self {
            database,
            bouncer,
            role,
            moto,
            stack,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_works_through_a_session_pooling_proxy_with_the_databases_session_limits() {
    let proxied = BehindTheProxy::start("proxy-api", "proxy-pw-1", Pooling::Session).await;

    let health = proxied.stack.get("/health").await;
    assert_eq!(health.status, 200, "{}", health.body);
    proxied
        .stack
        .create_and_fetch_a_user("second@example.com")
        .await;
    // The API's sessions are the proxy's, as its role.
    assert_eq!(proxied.database.session_roles().await, [&*proxied.role]);
    // The limits that once went in the startup packet reach a session through the proxy as
    // the database's defaults.
    let url = format!(
        "postgres://{}:proxy-pw-1@127.0.0.1:{}/{}",
        proxied.role, proxied.bouncer.port, proxied.database.name
    );
    let mut session = PgConnection::connect(&url)
        .await
        .expect("through the proxy");
    let limits: (String, String, String) = sqlx::query_as(
        "SELECT current_setting('statement_timeout'),
                current_setting('idle_in_transaction_session_timeout'),
                current_setting('idle_session_timeout')",
    )
    .fetch_one(&mut session)
    .await
    .unwrap();
    assert_eq!(
        limits,
        ("5s".to_owned(), "10s".to_owned(), "5min".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_rotation_is_followed_through_the_proxy() {
    let proxied = BehindTheProxy::start("proxy-rotation", "proxy-before-1", TRANSACTIONS).await;

    let role = &proxied.role;
    sqlx::query(&format!(r#"ALTER ROLE "{role}" PASSWORD 'proxy-after-2'"#))
        .execute(&mut proxied.database.connect().await)
        .await
        .unwrap();
    proxied
        .moto
        .put_secret(
            "db",
            &proxied
                .database
                .rds_secret(proxied.bouncer.port, role, "proxy-after-2"),
        )
        .await;
    proxied.database.terminate_sessions_of(role).await;

    // The function re-reads the secret once and logs in anew. PgBouncer, meanwhile, may have
    // tried to log its stale client in to the server with the old password, and then refuses
    // server logins for a second (`server_login_retry`): 503s to retry after, then service.
    let rotated = std::time::Instant::now();
    let mut replies = Vec::new();
    loop {
        let reply = proxied.stack.get("/users/1").await;
        replies.push(reply.status);
        if reply.status == 200 || rotated.elapsed() > std::time::Duration::from_secs(15) {
            break;
        }
        tokio::time::sleep(reply.assert_unavailable()).await;
    }
    assert_eq!(replies.last(), Some(&200), "{replies:?}");
    assert_eq!(
        proxied.stack.log_lines_containing(REFETCH_LOG),
        1,
        "{}",
        proxied.stack.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_creates_the_login_on_the_database_and_the_api_logs_in_through_the_proxy() {
    let database = TestDatabase::create_empty("proxy-migrate").await;
    let bouncer = PgBouncer::start_pooling(database.address, TRANSACTIONS).await;
    let role = format!("app_{}", database.name.trim_start_matches("e2e_"));
    let moto = Moto::start().await;
    moto.create_secret(
        "db/app",
        &database.rds_secret(bouncer.port, &role, "proxy-app-pw-4"),
    )
    .await;
    // Migrations hold a session-level advisory lock: migrate connects to the database itself,
    // as the template has it, not through the proxy (which would pin its session anyway).
    let mut env = moto.function_env();
    env.push(("DATABASE_URL".into(), database.url.clone()));
    env.push(("DB_APP_SECRET_ID".into(), "db/app".into()));
    let migrate = Function::start("migrate", &env).await;
    let mut resource = CustomResource::default();

    let created = resource.create(&migrate, properties("1")).await;
    let updated = resource.update(&migrate, properties("2")).await;

    for answer in [&created, &updated] {
        assert_eq!(answer["Status"], "SUCCESS", "{answer}");
        assert_eq!(answer["Data"]["ApplicationRole"], role.as_str());
    }
    // The API then logs in as that role, through the proxy.
    let api = Stack::spawn("proxy-migrate-api", &moto.database_env("db/app")).await;
    api.create_and_fetch_a_user("migrated@example.com").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jsonb_parameter_goes_in_one_flight_through_transaction_pooling() {
    // `Json<T>` encodes a version byte that only jsonb takes, a patch filled from the
    // parameter's type: from Parse's declared types, not from a described statement.
    let database = TestDatabase::create("proxy-jsonb").await;
    let role = database.create_app_role("jsonb", "proxy-jsonb-1").await;
    let bouncer =
        PgBouncer::start_pooling(database.address, Pooling::Transaction { size: 1 }).await;
    let counted = Proxy::start(SocketAddr::from(([127, 0, 0, 1], bouncer.port))).await;
    let url = format!(
        "postgres://{role}:proxy-jsonb-1@127.0.0.1:{}/{}",
        counted.port, database.name
    );
    let options = PgConnectOptions::from_str(&url)
        .expect("a URL")
        .statement_cache_capacity(0);
    let connect = || async { PgConnection::connect_with(&options).await.expect("connect") };
    let (mut a, mut b) = (connect().await, connect().await);
    let before = counted.sent();

    // Two clients at once, over one server connection.
    join(echo_rounds("a", &mut a), echo_rounds("b", &mut b)).await;

    assert_eq!(counted.sent() - before, 40, "one flight per statement");
}

/// Twenty statements with a `jsonb` parameter, each checked for its own answer. Each client's
/// statement text is its own, so a Bind that met the other client's Parse would answer wrong.
async fn echo_rounds(client: &str, connection: &mut PgConnection) {
    let sql = format!("SELECT '{client}:' || (($1::jsonb) ->> 'round')");
    for round in 0..20 {
        let echoed: String = sqlx::query_scalar(&sql)
            .bind(Json(json!({"round": round})))
            .fetch_one(&mut *connection)
            .await
            .unwrap_or_else(|err| panic!("{client}, round {round}: {err}"));
        assert_eq!(echoed, format!("{client}:{round}"));
    }
}
