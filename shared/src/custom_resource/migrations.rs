//! Applying the migrations within a deadline, without harming the API meanwhile.
//!
//! - One session does it all, under SQLx's advisory lock, so two concurrent deploys never apply
//!   a migration twice: the second waits, then finds nothing left to do.
//! - Each migration runs in its own transaction (SQLx's default): one that fails leaves the
//!   database as it was before it.
//! - Migrations recorded in the database that this release does not know come from a newer
//!   release: redeploying the previous release (what an operator does first when a release
//!   misbehaves) runs on the newer schema, since migrations are expand-only (docs/operations.md),
//!   so they are logged and let be. An applied migration whose text differs from this
//!   release's copy is refused: the schema is not what the release was built for.
//! - DDL waits for a lock at most [`LOCK_TIMEOUT`]: an `ALTER TABLE` queued behind a long
//!   query would otherwise queue every API query behind itself. A migration that times out
//!   waiting is retried while the budget lasts.
//! - When the deadline passes the session is terminated from a second connection: the server
//!   stops working, rolls back and releases the advisory lock at once, rather than when it next
//!   notices the client has gone. Its `statement_timeout` (the time left, and a little more) is
//!   the backstop.

use std::{borrow::Cow, collections::HashSet, time::Duration};

use anyhow::Context as _;
use serde_json::{json, Value};
use sqlx::{
    migrate::{Migrate, MigrateError, Migrator},
    Connection, PgConnection,
};
use tokio::time::Instant;

use crate::{
    config::Settings,
    db::{
        app_role::{self, Login},
        Database,
    },
    secrets::{SecretsClient, Stage},
};

/// Longest wait for a table lock by a migration's statement; then it is rolled back and
/// retried. Every API query that touches the table waits behind a queued DDL lock this long at
/// most.
const LOCK_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause between two attempts of a migration that could not get its locks.
const LOCK_RETRY_PAUSE: Duration = Duration::from_secs(1);
/// How far past the deadline the server's `statement_timeout` falls: a backstop behind the
/// termination at the deadline, well within the time kept to answer CloudFormation.
const STATEMENT_TIMEOUT_SLACK: Duration = Duration::from_secs(2);
/// Longest wait for the session that cancels a migration past its deadline.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(3);

/// Reads the configuration and the secrets, applies `migrator` by `deadline`, and creates or
/// updates the application's login role when `DB_APP_SECRET_ID` is set.
#[tracing::instrument(name = "Apply migrations", skip_all)]
pub async fn apply(
    migrator: &'static Migrator,
    deadline: std::time::Instant,
) -> anyhow::Result<Value> {
    let deadline = Instant::from_std(deadline);
    let settings = Settings::from_env().context("Invalid configuration")?;
    let reads_secrets =
        settings.database.source.is_secret() || settings.app_role_secret_id.is_some();
    let secrets = match reads_secrets {
        true => Some(SecretsClient::new(settings.secrets_extension.as_ref()).await),
        false => None,
    };
    let database = Database::new(settings.database, secrets.as_ref())
        .await
        .context("Failed to set up the database")?;
    // A session of its own: closed, or terminated, at the end.
    let mut session = database
        .open()
        .await
        .context("Failed to connect to the database")?;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut session)
        .await
        .context("Failed to start the migration session")?;
    let migrated = tokio::time::timeout_at(deadline, migrate(&mut session, migrator, deadline))
        .await
        .unwrap_or_else(|_| {
            Err(anyhow::anyhow!(
                "Migrations did not finish in the time left; the migration session was \
                 cancelled on the server and rolled back"
            ))
        });
    let newer = match migrated {
        Ok(newer) => newer,
        Err(err) => {
            // Whatever went wrong, the session may still hold the advisory lock.
            terminate(&database, pid).await;
            return Err(err);
        }
    };
    let version = migrator.iter().map(|m| m.version).max().unwrap_or_default();
    let mut data = json!({ "SchemaVersion": version.to_string() });
    if !newer.is_empty() {
        let newer: Vec<String> = newer.iter().map(i64::to_string).collect();
        data["NewerMigrations"] = json!(newer.join(","));
    }
    if let (Some(secret_id), Some(secrets)) = (&settings.app_role_secret_id, &secrets) {
        let login = application_login(secrets, secret_id).await?;
        app_role::ensure_login(&mut session, &login)
            .await
            .context("Failed to set up the application's login role")?;
        if settings.app_role_rds_iam {
            let granted = app_role::grant_rds_iam(&mut session, &login)
                .await
                .context("Failed to grant rds_iam to the application's login role")?;
            tracing::info!(granted, "rds_iam for the application's login role");
        }
        data["ApplicationRole"] = json!(login.username);
    }
    let _ = session.close().await;
    tracing::info!(version, "schema is current");
    Ok(data)
}

/// Applies what `migrator` has that the database lacks; answers the versions the database has
/// that `migrator` lacks (a newer release's).
async fn migrate(
    session: &mut PgConnection,
    migrator: &'static Migrator,
    deadline: Instant,
) -> anyhow::Result<Vec<i64>> {
    // The deadline itself is enforced from here (the session is terminated when it passes);
    // the server's own limit is the backstop should that fail, so it comes a little later and
    // the two never race to report the same overrun.
    let left = deadline.saturating_duration_since(Instant::now());
    set(session, "statement_timeout", left + STATEMENT_TIMEOUT_SLACK).await?;
    // The advisory lock first, waiting as long as the statement timeout allows (another
    // deploy's migrations may be running); only then the short lock timeout, for the DDL.
    session
        .lock()
        .await
        .context("Failed to take the migrations' advisory lock")?;
    set(session, "lock_timeout", LOCK_TIMEOUT).await?;
    // The server's clock: what the migration table records as each migration's install time.
    let started: time::OffsetDateTime = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(&mut *session)
        .await
        .context("Failed to read the server's clock")?;
    let unlocked = Migrator {
        migrations: Cow::Borrowed(&migrator.migrations),
        locking: false,
        // A newer release's migrations: this release runs on the schema they expanded.
        ignore_missing: true,
        ..Migrator::DEFAULT
    };
    let known: HashSet<i64> = migrator.iter().map(|m| m.version).collect();
    let newest = known.iter().copied().max().unwrap_or_default();
    // Only a newer release's migrations may be unknown: one older than this release's newest
    // was deleted or renumbered since it was applied, and the schema is not what this release
    // was written for.
    let vanished: Vec<String> = recorded_versions(session)
        .await?
        .into_iter()
        .filter(|version| !known.contains(version) && *version < newest)
        .map(|version| version.to_string())
        .collect();
    if !vanished.is_empty() {
        return Err(anyhow::anyhow!(
            "Migrations {} were applied but this release has no such migration, though it has \
             newer ones: a migration was deleted or renumbered after it was applied. Restore it \
             under its version",
            vanished.join(", ")
        ));
    }
    let mut attempt = 1;
    loop {
        match unlocked.run_direct(session).await {
            Ok(()) => break,
            Err(err)
                if lock_not_available(&err) && Instant::now() + LOCK_RETRY_PAUSE < deadline =>
            {
                let error = err.to_string();
                tracing::warn!(
                    attempt,
                    error,
                    "a migration waited too long for a lock; retrying"
                );
                attempt += 1;
                tokio::time::sleep(LOCK_RETRY_PAUSE).await;
            }
            Err(MigrateError::VersionMismatch(version)) => {
                return Err(anyhow::anyhow!(
                    "Migration {version} was applied with other text than this release's copy \
                     (its checksum differs from the one recorded in _sqlx_migrations). An \
                     applied migration must never change: restore its text and make the change \
                     in a new migration"
                ))
            }
            Err(err) => {
                return Err(anyhow::Error::new(err).context("Failed to apply the migrations"))
            }
        }
    }
    let applied: i64 =
        sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE installed_on >= $1")
            .bind(started)
            .fetch_one(&mut *session)
            .await
            .context("Failed to count the migrations applied")?;
    metrics::counter!(crate::telemetry::metric::MIGRATIONS_APPLIED)
        .increment(u64::try_from(applied).unwrap_or_default());
    tracing::info!(applied, "migrations applied");
    // A `CREATE INDEX CONCURRENTLY` that failed leaves its index INVALID, which a retry's
    // `IF NOT EXISTS` would skip: refuse to call the schema current while one is.
    let invalid: Vec<String> = sqlx::query_scalar(
        "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid ORDER BY 1",
    )
    .fetch_all(&mut *session)
    .await
    .context("Failed to look for invalid indexes")?;
    if !invalid.is_empty() {
        return Err(anyhow::anyhow!(
            "Index {} is INVALID: a CREATE INDEX CONCURRENTLY failed. Drop it (DROP INDEX \
             CONCURRENTLY) and deploy again",
            invalid.join(", ")
        ));
    }
    let mut newer: Vec<i64> = recorded_versions(session)
        .await?
        .into_iter()
        .filter(|version| !known.contains(version))
        .collect();
    newer.sort_unstable();
    if !newer.is_empty() {
        tracing::warn!(
            ?newer,
            "the database has migrations this release does not know, from a newer release; \
             they are expand-only, so this release runs on the schema they left"
        );
    }
    session
        .unlock()
        .await
        .context("Failed to release the migrations' advisory lock")?;
    Ok(newer)
}

/// The versions `_sqlx_migrations` records (none before the first deploy made it).
async fn recorded_versions(session: &mut PgConnection) -> anyhow::Result<Vec<i64>> {
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
        .fetch_all(&mut *session)
        .await
        .or_else(
            |err| match err.as_database_error().and_then(|db| db.code()) {
                // 42P01: no such table yet.
                Some(code) if code == "42P01" => Ok(Vec::new()),
                _ => Err(err),
            },
        )
        .context("Failed to read the migrations recorded")
}

/// `SET <name>` for this session, in milliseconds.
async fn set(session: &mut PgConnection, name: &str, value: Duration) -> anyhow::Result<()> {
    // At least 1 ms: 0 would mean no limit at all.
    let millis = value.as_millis().max(1).to_string();
    sqlx::query("SELECT set_config($1, $2, false)")
        .bind(name)
        .bind(millis)
        .execute(session)
        .await
        .with_context(|| format!("Failed to set {name}"))?;
    Ok(())
}

/// SQLSTATE 55P03: a statement gave up waiting for a lock (`lock_timeout`).
fn lock_not_available(err: &MigrateError) -> bool {
    let sql_error = match err {
        MigrateError::Execute(err) | MigrateError::ExecuteMigration(err, _) => err,
        _ => return false,
    };
    sql_error
        .as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| code == "55P03")
}

/// Ends the migration session on the server, from another connection: its transaction rolls
/// back and its advisory lock is released now. Best effort: the session's own statement timeout
/// ends it soon after anyway.
async fn terminate(database: &Database, pid: i32) {
    let terminated = tokio::time::timeout(CANCEL_TIMEOUT, async {
        let mut connection = database.open().await?;
        sqlx::query_scalar::<_, bool>("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(&mut connection)
            .await
    })
    .await;
    match terminated {
        Ok(Ok(true)) => tracing::warn!(pid, "terminated the migration session"),
        Ok(Ok(false)) => tracing::info!(pid, "the migration session had already ended"),
        Ok(Err(err)) => {
            tracing::error!(pid, error = %err, "could not terminate the migration session")
        }
        Err(_) => tracing::error!(pid, "could not terminate the migration session in time"),
    }
}

/// The login in the application role's secret (`DB_APP_SECRET_ID`).
async fn application_login(secrets: &SecretsClient, secret_id: &str) -> anyhow::Result<Login> {
    let secret = secrets
        .get(secret_id, Stage::Current)
        .await
        .context("Failed to read the application role's secret (DB_APP_SECRET_ID)")?;
    Login::from_secret(&secret.value)
        .with_context(|| format!("The application role's secret {secret_id:?} is malformed"))
}
