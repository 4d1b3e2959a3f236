//! The database: a pool built once per execution environment, credentials that follow
//! Secrets Manager rotation, the embedded migrations, and which errors mean "unavailable".

pub mod app_role;
mod credentials;
pub mod iam_auth;
mod options;
mod rotation;

use std::time::Duration;

use anyhow::Context;
use sqlx::{
    migrate::Migrator,
    pool::PoolConnection,
    postgres::{PgConnectOptions, PgPoolOptions},
    PgConnection, PgPool, Postgres,
};

pub use credentials::{Credentials, CredentialsError};
use iam_auth::{IamAuth, TokenScope};
use options::connect_options;
use rotation::Rotation;

use crate::{
    config::{DatabaseSettings, DatabaseSource},
    secrets::{SecretsClient, Stage},
};

/// Where Postgres listens unless `DB_PORT` says otherwise.
const DEFAULT_PORT: u16 = 5432;

/// The versioned SQL in `migrations/`, embedded at compile time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// The pool, and what keeps its credentials valid: for a secret, following a rotation; for
/// IAM authentication, signing a fresh token for each new connection.
#[derive(Debug)]
pub struct Database {
    pool: PgPool,
    rotation: Option<Rotation>,
    iam: Option<IamAuth>,
}

impl Database {
    /// Reads the credentials (fetching the secret now, during init, when they come from
    /// Secrets Manager through `secrets`) and builds the pool, without connecting yet.
    pub async fn connect(
        settings: DatabaseSettings,
        secrets: Option<&SecretsClient>,
    ) -> anyhow::Result<Self> {
        match &settings.source {
            DatabaseSource::Url(url) => {
                let options = connect_options(&settings, Credentials::from(&**url));
                Ok(Self::from_pool(pool(&settings, options)))
            }
            DatabaseSource::IamAuth { user, region } => {
                let scope = TokenScope {
                    host: settings
                        .endpoint
                        .host
                        .clone()
                        .context("DB_HOST is not set")?,
                    port: settings.endpoint.port.unwrap_or(DEFAULT_PORT),
                    user: user.clone(),
                    region: region.clone(),
                };
                let (iam, options) = IamAuth::new(scope, settings)
                    .await
                    .context("Failed to sign the database auth token (DB_IAM_USER)")?;
                Ok(Self {
                    pool: pool(iam.settings(), options),
                    rotation: None,
                    iam: Some(iam),
                })
            }
            DatabaseSource::SecretsManager { secret_id } => {
                let secrets = secrets
                    .context("DB_SECRET_ID is set but no Secrets Manager client was built")?
                    .clone();
                let secret = secrets
                    .get(secret_id, Stage::Current)
                    .await
                    .context("Failed to read the database secret (DB_SECRET_ID)")?;
                let credentials = Credentials::from_secret(&secret.value, &settings.endpoint)
                    .with_context(|| format!("The database secret {secret_id:?} is malformed"))?;
                tracing::info!(
                    secret_id,
                    version_id = secret.version_id,
                    "database secret read"
                );
                let pool = pool(&settings, connect_options(&settings, credentials));
                let secret_id = secret_id.clone();
                Ok(Self {
                    pool,
                    rotation: Some(Rotation::new(
                        secrets,
                        secret_id,
                        secret.version_id,
                        settings,
                    )),
                    iam: None,
                })
            }
        }
    }

    /// A database over an existing pool, with fixed credentials (tests, tools).
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            pool,
            rotation: None,
            iam: None,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A connection from the pool. With IAM authentication, a new connection gets a newly
    /// signed token. When the database rejects a secret's credentials (a rotated password or
    /// user), re-reads the secret once, rate-limited, and tries again with what it holds now.
    pub async fn acquire(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        if let Some(iam) = &self.iam {
            iam.refresh(&self.pool)
                .await
                .map_err(|err| sqlx::Error::Configuration(err.into()))?;
        }
        let seen = self.rotation.as_ref().map(Rotation::generation);
        match self.pool.acquire().await {
            Err(err) if credentials_rejected(&err) => match (&self.rotation, seen) {
                (Some(rotation), Some(seen)) if rotation.refresh(&self.pool, seen).await => {
                    self.pool.acquire().await
                }
                _ => Err(err),
            },
            result => result,
        }
    }
}

/// Builds the pool, without connecting yet.
///
/// Lambda sends one invocation at a time to an execution environment, and each handler runs
/// one query at a time, so a single connection (the default) serves every request without
/// waiting. More would only multiply the connections that thousands of concurrent
/// environments hold open against the database's `max_connections`.
fn pool(settings: &DatabaseSettings, options: PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .min_connections(0)
        // Bounds connecting too: a dead or black-holed database costs a request this long,
        // not the whole Lambda timeout.
        .acquire_timeout(settings.acquire_timeout)
        // An environment is frozen between invocations and its idle connection may have been
        // dropped by the server or a NAT meanwhile: check it before use (one round trip) rather
        // than fail the request on a dead socket.
        .test_before_acquire(true)
        .idle_timeout(Duration::from_secs(10 * 60))
        .max_lifetime(Duration::from_secs(30 * 60))
        .connect_lazy_with(options)
}

/// `SELECT 1`: proves the server answers on this connection.
#[tracing::instrument(name = "Ping the database", skip_all)]
pub async fn ping(connection: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT 1 AS "one!""#)
        .fetch_one(connection)
        .await
        .map(|_| ())
}

/// Whether the database, or a pooler in front of it, refused the credentials: `28P01` (invalid
/// password) or `28000` (invalid authorization, e.g. a user that no longer exists or may not log
/// in) from Postgres. A pooler that checks passwords itself reports its refusal as a protocol
/// error instead (PgBouncer: `08P01` "SASL authentication failed"), told apart by its message.
/// A false positive costs one rate-limited re-read of the secret.
fn credentials_rejected(err: &sqlx::Error) -> bool {
    let Some(db) = err.as_database_error() else {
        return false;
    };
    match db.code().as_deref() {
        Some("28P01" | "28000") => true,
        Some("08P01") => db.message().contains("authentication failed"),
        _ => false,
    }
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
            // 08: connection exception; 28: invalid authorization (credentials rejected even
            // after a re-read); 53: insufficient resources (too many connections);
            // 57P01-03: shutting down, crash recovery, cannot connect now; 57014: statement
            // timeout.
            code.starts_with("08")
                || code.starts_with("28")
                || code.starts_with("53")
                || matches!(&*code, "57P01" | "57P02" | "57P03" | "57014")
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;
    use crate::config::{Endpoint, Settings};

    #[tokio::test]
    async fn nothing_that_holds_a_database_password_prints_it() {
        let url = "postgres://app:hunter2@db.internal/users";
        let settings = Settings::from_lookup(|name| (name == "DATABASE_URL").then(|| url.into()))
            .unwrap()
            .database;
        let DatabaseSource::Url(parsed) = &settings.source else {
            panic!("expected a URL");
        };
        let from_url = Credentials::from(&**parsed);
        let secret = SecretString::from(r#"{"host":"h","username":"u","password":"hunter2"}"#);
        let from_secret = Credentials::from_secret(&secret, &Endpoint::default()).unwrap();
        let printed = [
            format!("{settings:?}"),
            format!("{parsed:?}"),
            format!("{from_url:?}"),
            format!("{from_secret:?}"),
        ];
        // Lazy: builds the pool without connecting.
        let database = Database::connect(settings, None).await.unwrap();

        for text in printed.into_iter().chain([format!("{database:?}")]) {
            assert!(!text.contains("hunter2"), "{text}");
        }
    }
}
