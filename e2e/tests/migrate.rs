//! The `migrate` function as CloudFormation drives it: the real binary under a Lambda Runtime
//! API of the harness's own, a real Postgres, and a loopback server as the pre-signed response
//! URL. The failure, rollback, deadline and concurrency cases are in `deploys.rs`.

use std::time::{Duration, Instant};

use e2e::{
    cloudformation::{properties, CustomResource},
    emf, free_port,
    moto::Moto,
    runtime::Function,
    Stack, TestDatabase,
};
use serde_json::json;
use sqlx::{Connection, PgConnection};

async fn applied_migrations(connection: &mut PgConnection) -> Vec<i64> {
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(connection)
        .await
        .expect("read _sqlx_migrations")
}

async fn table_exists(connection: &mut PgConnection, table: &str) -> bool {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(connection)
        .await
        .expect("look the table up")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_migrates_an_empty_database_update_is_idempotent_and_delete_changes_nothing() {
    let database = TestDatabase::create_empty("migrate").await;
    let function = Function::start("migrate", &[("DATABASE_URL", database.url.as_str())]).await;
    let mut resource = CustomResource::default();
    let all: Vec<i64> = shared::db::MIGRATOR.iter().map(|m| m.version).collect();

    let created = resource.create(&function, properties("1")).await;
    assert_eq!(created["Status"], "SUCCESS", "{created}");
    let applied = emf::only_value(&function.logs(), "MigrationsApplied");
    assert_eq!(
        applied,
        Some(all.len().into()),
        "the metric counts what was applied"
    );
    assert_eq!(
        created["Data"]["SchemaVersion"],
        all.last().unwrap().to_string()
    );
    let mut connection = database.connect().await;
    assert_eq!(applied_migrations(&mut connection).await, all);
    sqlx::query("INSERT INTO users (email, name) VALUES ('kept@example.com', 'Kept')")
        .execute(&mut connection)
        .await
        .expect("the schema is usable");

    let updated = resource.update(&function, properties("2")).await;
    assert_eq!(updated["Status"], "SUCCESS", "{updated}");
    let applied = emf::only_value(&function.logs(), "MigrationsApplied");
    assert_eq!(applied, Some(all.len().into()), "nothing more applied");
    assert_eq!(applied_migrations(&mut connection).await, all);

    let deleted = resource.delete(&function).await;
    assert_eq!(deleted["Status"], "SUCCESS", "{deleted}");
    assert_eq!(applied_migrations(&mut connection).await, all);
    assert!(table_exists(&mut connection, "users").await);
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(kept, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn this_release_deploys_over_a_newer_releases_schema_and_its_api_works_on_it() {
    let database = TestDatabase::create_empty("migrate-newer").await;
    let function = Function::start("migrate", &[("DATABASE_URL", database.url.as_str())]).await;
    let mut resource = CustomResource::default();
    let created = resource.create(&function, properties("1")).await;
    assert_eq!(created["Status"], "SUCCESS", "{created}");
    // A newer release expanded the schema: a column this release never reads, recorded as a
    // migration this release does not have.
    let mut connection = database.connect().await;
    for statement in [
        "ALTER TABLE users ADD COLUMN nickname text",
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'a newer release', true, '\\x00', 0)",
    ] {
        sqlx::query(statement)
            .execute(&mut connection)
            .await
            .expect("the newer release's migration");
    }

    // This release is deployed again over it (the rollback of a release that misbehaved).
    let redeployed = resource.update(&function, properties("2")).await;

    assert_eq!(redeployed["Status"], "SUCCESS", "{redeployed}");
    assert_eq!(redeployed["Data"]["NewerMigrations"], "99990101000000");
    let stack = Stack::spawn("migrate-newer", &[("DATABASE_URL", database.url.as_str())]).await;
    stack.create_and_fetch_a_user("newer@example.com").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applied_migration_this_release_lost_and_an_invalid_index_are_refused_by_name() {
    let database = TestDatabase::create_empty("migrate-refusals").await;
    let function = Function::start("migrate", &[("DATABASE_URL", database.url.as_str())]).await;
    let mut resource = CustomResource::default();
    let created = resource.create(&function, properties("1")).await;
    assert_eq!(created["Status"], "SUCCESS", "{created}");
    let mut connection = database.connect().await;
    let run = |statement: &'static str| sqlx::query(statement);

    // A version older than this release's newest that it does not have: deleted or renumbered.
    run(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (0, 'a migration since deleted', true, '\\x00', 0)",
    )
    .execute(&mut connection)
    .await
    .expect("the lost migration's record");
    let lost = resource.update(&function, properties("2")).await;
    run("DELETE FROM _sqlx_migrations WHERE version = 0")
        .execute(&mut connection)
        .await
        .expect("restore the record");
    // What a CREATE INDEX CONCURRENTLY that failed leaves behind.
    run("CREATE INDEX users_name_invalid ON users (name)")
        .execute(&mut connection)
        .await
        .expect("an index");
    run("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'users_name_invalid'::regclass")
        .execute(&mut connection)
        .await
        .expect("made invalid");
    let invalid = resource.update(&function, properties("3")).await;

    assert_eq!(lost["Status"], "FAILED", "{lost}");
    let reason = lost["Reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("Migrations 0 were applied") && reason.contains("renumbered"),
        "{reason}"
    );
    assert_eq!(invalid["Status"], "FAILED", "{invalid}");
    let reason = invalid["Reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("users_name_invalid") && reason.contains("INVALID"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_migration_answers_failed_with_the_reason() {
    let database = TestDatabase::create_empty("migrate-conflict").await;
    // Someone's table is in the way of migration 0001.
    sqlx::query("CREATE TABLE users (id integer)")
        .execute(&mut database.connect().await)
        .await
        .unwrap();
    let function = Function::start("migrate", &[("DATABASE_URL", database.url.as_str())]).await;

    let answer = CustomResource::default()
        .create(&function, properties("1"))
        .await;

    assert_eq!(answer["Status"], "FAILED", "{answer}");
    let failures = emf::only_value(&function.logs(), "MigrationFailures");
    assert_eq!(failures, Some(1.into()));
    let reason = answer["Reason"].as_str().unwrap();
    assert!(
        reason.contains("Failed to apply the migrations"),
        "{reason}"
    );
    assert!(reason.contains("already exists"), "{reason}");
    assert!(applied_migrations(&mut database.connect().await)
        .await
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_answers_failed_quickly() {
    let url = format!(
        "postgres://app:unreachable-pw@127.0.0.1:{}/users",
        free_port()
    );
    let function = Function::start(
        "migrate",
        &[
            ("DATABASE_URL", url.as_str()),
            ("DB_ACQUIRE_TIMEOUT_MS", "1000"),
        ],
    )
    .await;

    let started = Instant::now();
    let answer = CustomResource::default()
        .create(&function, properties("1"))
        .await;

    assert_eq!(answer["Status"], "FAILED", "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let reason = answer["Reason"].as_str().unwrap();
    assert!(
        reason.contains("Failed to connect to the database"),
        "{reason}"
    );
    assert!(!reason.contains("unreachable-pw"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_runs_as_a_role_that_may_only_read_and_change_rows() {
    let database = TestDatabase::create_empty("least-privilege").await;
    // Roles belong to the whole cluster: a name of this test's own.
    let role = format!("app_{}", database.name.trim_start_matches("e2e_"));
    let password = "least-privilege-pw-3";
    let (host, port) = (database.address.ip().to_string(), database.address.port());
    let moto = Moto::start().await;
    let app_secret = json!({
        "engine": "postgres", "host": host, "port": port, "dbname": database.name,
        "username": role, "password": password,
    });
    moto.create_secret("db/app", &app_secret.to_string()).await;

    // RDS's `rds_iam` role, which IAM authentication straight to RDS needs the login role in.
    sqlx::raw_sql(
        "DO $$ BEGIN CREATE ROLE rds_iam NOLOGIN; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
    )
    .execute(&mut database.connect().await)
    .await
    .expect("a stand-in for rds_iam");

    // `migrate` connects as the owner and creates the application's login role.
    let mut owner_env = moto.function_env();
    owner_env.push(("DATABASE_URL".into(), database.url.clone()));
    owner_env.push(("DB_APP_SECRET_ID".into(), "db/app".into()));
    owner_env.push(("DB_APP_GRANT_RDS_IAM".into(), "true".into()));
    let owner = Function::start("migrate", &owner_env).await;
    let mut resource = CustomResource::default();
    let created = resource.create(&owner, properties("1")).await;
    let updated = resource.update(&owner, properties("2")).await;
    for answer in [created, updated] {
        assert_eq!(answer["Status"], "SUCCESS", "{answer}");
        assert_eq!(answer["Data"]["ApplicationRole"], role.as_str());
    }
    let memberships: Vec<String> = sqlx::query_scalar(
        "SELECT g.rolname::text FROM pg_auth_members m
         JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
         WHERE u.rolname = $1 ORDER BY 1",
    )
    .bind(&role)
    .fetch_all(&mut database.connect().await)
    .await
    .unwrap();
    assert_eq!(memberships, ["rds_iam", "users_api_app"]);

    // The API logs in as that role, with the credentials from its secret, and works.
    let mut api_env = moto.function_env();
    api_env.push(("DB_SECRET_ID".into(), "db/app".into()));
    api_env.push(("DB_SSLMODE".into(), "disable".into()));
    let api = Stack::spawn("least-privilege-api", &api_env).await;
    api.create_and_fetch_a_user("least@example.com").await;
    let api_roles: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT usename::text FROM pg_stat_activity
         WHERE datname = $1 AND application_name IN ('create-user', 'get-user')",
    )
    .bind(&database.name)
    .fetch_all(&mut database.connect().await)
    .await
    .unwrap();
    assert_eq!(api_roles, [role.as_str()]);

    // As that role: rows yes, anything else no.
    let url = format!(
        "postgres://{role}:{password}@{host}:{port}/{}",
        database.name
    );
    let mut app = PgConnection::connect(&url)
        .await
        .expect("log in as the role");
    let superuser: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut app)
            .await
            .unwrap();
    assert!(!superuser);
    sqlx::query("UPDATE users SET name = 'Changed' WHERE email = 'least@example.com'")
        .execute(&mut app)
        .await
        .expect("the role may change rows");
    for statement in [
        "DROP TABLE users",
        "ALTER TABLE users ADD COLUMN role text",
        "TRUNCATE users",
        "CREATE TABLE intruder (id int)",
        "CREATE SCHEMA intruder",
        "CREATE ROLE intruder",
        "SELECT rolpassword FROM pg_authid",
        "DELETE FROM _sqlx_migrations",
    ] {
        let err = sqlx::raw_sql(statement)
            .execute(&mut app)
            .await
            .expect_err(statement);
        let code = err
            .as_database_error()
            .and_then(|db| db.code().map(|c| c.into_owned()));
        // 42501: insufficient_privilege.
        assert_eq!(code.as_deref(), Some("42501"), "{statement}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_roles_password_never_reaches_the_servers_log() {
    let log = std::env::var("E2E_POSTGRES_LOG")
        .expect("E2E_POSTGRES_LOG: run the end-to-end tests through `make test`");
    let database = TestDatabase::create_empty("password-log").await;
    let role = format!("app_{}", database.name.trim_start_matches("e2e_"));
    let password = format!("never-logged-{}", std::process::id());
    // Every statement of every session on this database in the server's log, as with pgaudit.
    database.alter("SET log_statement = 'all'").await;
    let moto = Moto::start().await;
    let (host, port) = (database.address.ip().to_string(), database.address.port());
    let app_secret = json!({
        "engine": "postgres", "host": host, "port": port, "dbname": database.name,
        "username": role, "password": password,
    });
    moto.create_secret("db/app", &app_secret.to_string()).await;
    let mut env = moto.function_env();
    env.push(("DATABASE_URL".into(), database.url.clone()));
    env.push(("DB_APP_SECRET_ID".into(), "db/app".into()));
    let migrate = Function::start("migrate", &env).await;

    let created = CustomResource::default()
        .create(&migrate, properties("1"))
        .await;

    assert_eq!(created["Status"], "SUCCESS", "{created}");
    let server_log = std::fs::read_to_string(&log).expect("the server's log");
    let create_role = server_log
        .lines()
        .find(|line| line.contains("CREATE ROLE") && line.contains(&role))
        .unwrap_or_else(|| panic!("the CREATE ROLE statement is logged"));
    assert!(
        create_role.contains("PASSWORD 'SCRAM-SHA-256$4096:"),
        "{create_role}"
    );
    assert!(
        !server_log.contains(&password),
        "the password reached the server's log"
    );
    // The verifier is the password's: the role logs in with it.
    let url = format!(
        "postgres://{role}:{password}@{}/{}",
        database.address, database.name
    );
    PgConnection::connect(&url)
        .await
        .expect("the role logs in with its secret's password");
}
