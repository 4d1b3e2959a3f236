//! The Postgres pool, the embedded migrations, and how database errors map to availability.

use sqlx::{migrate::Migrator, postgres::PgPoolOptions, PgPool};

use crate::config::{ConfigError, DatabaseSettings};

/// The versioned SQL in `migrations/`, embedded at compile time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Builds the pool once per execution environment, without connecting yet.
///
/// Lambda sends one invocation at a time to an execution environment, and each handler runs
/// one query at a time, so a single connection (the default) serves every request without
/// waiting. More would only multiply the connections that thousands of concurrent
/// environments hold open against the database's `max_connections`.
pub fn pool(settings: &DatabaseSettings) -> Result<PgPool, ConfigError> {
    Ok(PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .min_connections(0)
        // Bounds connecting too: a dead or black-holed database costs a request this long,
        // not the whole Lambda timeout.
        .acquire_timeout(settings.acquire_timeout)
        // An environment is frozen between invocations and its idle connection may have been
        // dropped by the server or a NAT meanwhile: check it before use (one round trip) rather
        // than fail the request on a dead socket.
        .test_before_acquire(true)
        .idle_timeout(std::time::Duration::from_secs(10 * 60))
        .max_lifetime(std::time::Duration::from_secs(30 * 60))
        .connect_lazy_with(settings.connect_options()?))
}

/// `SELECT 1` through the pool: proves a connection can be had and the server answers.
#[tracing::instrument(name = "Ping the database", skip_all)]
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT 1 AS "one!""#)
        .fetch_one(pool)
        .await
        .map(|_| ())
}

/// Whether an error means the database cannot be reached or cannot serve us right now (so the
/// client should retry later), as opposed to a bug or a bad query.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception; 28: invalid authorization (a rotated password);
            // 53: insufficient resources (too many connections); 57P01-03: shutting down,
            // crash recovery, cannot connect now; 57014: statement timeout.
            code.starts_with("08")
                || code.starts_with("28")
                || code.starts_with("53")
                || matches!(&*code, "57P01" | "57P02" | "57P03" | "57014")
        }),
        _ => false,
    }
}
