//! The `migrate` function as CloudFormation drives it: the real binary under
//! `cargo lambda watch`, a real Postgres, and a loopback server as the pre-signed response URL.

use std::time::{Duration, Instant};

use e2e::{cloudformation::ResponseUrl, free_port, moto::Moto, Stack, TestDatabase};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};

const STACK_ID: &str = concat!(
    "arn:aws:cloudformation:eu-west-1:123456789012:",
    "stack/users-api/5b8a7c10-aa11-11ef-9c2b-0a1b2c3d4e5f"
);

/// A custom resource request as CloudFormation sends it.
fn request(request_type: &str, response_url: &str) -> Value {
    let mut event = json!({
        "RequestType": request_type,
        "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:users-api-migrate",
        "ResponseURL": response_url,
        "StackId": STACK_ID,
        "RequestId": format!("{request_type}-5d9c2a44-1f0e-4b7a-9c1d-2e3f4a5b6c7d"),
        "ResourceType": "Custom::DatabaseMigrations",
        "LogicalResourceId": "Migrations",
        "ResourceProperties": {
            "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:users-api-migrate",
            "MigrateFunctionVersion": "3"
        }
    });
    if request_type != "Create" {
        event["PhysicalResourceId"] = json!("database-migrations");
        event["OldResourceProperties"] = json!({"MigrateFunctionVersion": "2"});
    }
    event
}

/// Sends one request to the `migrate` function and returns what it told CloudFormation.
async fn drive(stack: &Stack, request_type: &str) -> Value {
    let response_url = ResponseUrl::start().await;
    let invoked = stack
        .invoke("migrate", &request(request_type, &response_url.url))
        .await;
    assert_eq!(invoked.status, 200, "{}", invoked.body);
    let captured = response_url.received(Duration::from_secs(60)).await;
    assert_eq!(captured.method, "PUT");
    assert!(captured
        .path
        .starts_with("/cloudformation-response?X-Amz-Signature="));
    // The pre-signed URL is signed without a content type.
    assert_eq!(captured.content_type.as_deref(), Some(""));
    let body = captured.body;
    assert_eq!(
        body["RequestId"],
        format!("{request_type}-5d9c2a44-1f0e-4b7a-9c1d-2e3f4a5b6c7d")
    );
    assert_eq!(body["LogicalResourceId"], "Migrations");
    assert!(body["StackId"]
        .as_str()
        .unwrap()
        .contains(":stack/users-api/"));
    assert_eq!(body["PhysicalResourceId"], "database-migrations");
    body
}

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
    let stack = Stack::spawn("migrate", &[("DATABASE_URL", database.url.as_str())]).await;
    let all: Vec<i64> = shared::db::MIGRATOR.iter().map(|m| m.version).collect();

    let created = drive(&stack, "Create").await;
    assert_eq!(created["Status"], "SUCCESS", "{created}");
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

    let updated = drive(&stack, "Update").await;
    assert_eq!(updated["Status"], "SUCCESS", "{updated}");
    assert_eq!(applied_migrations(&mut connection).await, all);

    let deleted = drive(&stack, "Delete").await;
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
async fn a_failing_migration_answers_failed_with_the_reason() {
    let database = TestDatabase::create_empty("migrate-conflict").await;
    // Someone's table is in the way of migration 0001.
    sqlx::query("CREATE TABLE users (id integer)")
        .execute(&mut database.connect().await)
        .await
        .unwrap();
    let stack = Stack::spawn(
        "migrate-conflict",
        &[("DATABASE_URL", database.url.as_str())],
    )
    .await;

    let answer = drive(&stack, "Create").await;

    assert_eq!(answer["Status"], "FAILED", "{answer}");
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
    let stack = Stack::spawn(
        "migrate-unreachable",
        &[
            ("DATABASE_URL", url.as_str()),
            ("DB_ACQUIRE_TIMEOUT_MS", "1000"),
        ],
    )
    .await;

    let started = Instant::now();
    let answer = drive(&stack, "Update").await;

    assert_eq!(answer["Status"], "FAILED", "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let reason = answer["Reason"].as_str().unwrap();
    assert!(
        reason.contains("Failed to apply the migrations"),
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
    let owner = Stack::spawn("least-privilege-migrate", &owner_env).await;
    for request_type in ["Create", "Update"] {
        let answer = drive(&owner, request_type).await;
        assert_eq!(answer["Status"], "SUCCESS", "{request_type}: {answer}");
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
