//! The database: the environment's connections (one per invocation it may run at once), held
//! across invocations and checked after a quiet spell, new ones opened under a backoff while
//! the database cannot be reached; credentials that follow Secrets Manager rotation; the
//! embedded migrations; and which errors mean "unavailable".
//!
//! Each handler runs one statement, so one connection per concurrent invocation serves every
//! request without waiting, and a general-purpose pool would bring only its round trips: a
//! liveness ping before each use and another on each release. A warm request costs its
//! statement's round trip and nothing else (see [`connection`] for when a connection is checked
//! and when a statement is retried, [`backoff`] for how often a new one is tried).

pub mod app_role;
mod backoff;
mod connection;
mod credentials;
pub mod iam_auth;
mod options;
mod retry;
mod rotation;

use anyhow::Context;
use std::{sync::Arc, time::Duration};

use sqlx::{
    migrate::Migrator,
    postgres::{PgConnectOptions, PgConnection},
    ConnectOptions,
};

pub use connection::Connection;
pub use credentials::{Credentials, CredentialsError};
use iam_auth::IamAuth;
use options::connect_options;
pub use retry::{write_returning, Statement};
use rotation::Rotation;

use crate::telemetry::metric;
use crate::{
    config::{DatabaseSettings, DatabaseSource},
    secrets::{SecretError, SecretsClient, Stage},
};

/// Where Postgres listens unless `DB_PORT` says otherwise.
const DEFAULT_PORT: u16 = 5432;

/// The versioned SQL in `migrations/`, embedded at compile time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// The environment's connections, and how to open a new one. Cloning it shares them.
#[derive(Debug, Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    credentials: Source,
    settings: DatabaseSettings,
    pool: connection::Pool,
}

/// Why a request got no answer from the database.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No connection could be had: opening one failed just now (`cause`), or the backoff
    /// refused to try (`last_failure` says why the last attempt failed).
    #[error("no database connection{}{}", due(.retry_after), because(.last_failure))]
    NoConnection {
        /// When the next connect attempt is due, if one is being backed off.
        retry_after: Option<Duration>,
        #[source]
        cause: Option<sqlx::Error>,
        last_failure: Option<Arc<str>>,
    },
    /// The statement failed, on a connection that was open.
    #[error(transparent)]
    Query(#[from] sqlx::Error),
    /// A write's connection was lost where the write may have committed: not retried (see
    /// [`retry`]).
    #[error("the outcome of the write is unknown: {0}")]
    OutcomeUnknown(#[source] sqlx::Error),
}

fn because(last_failure: &Option<Arc<str>>) -> String {
    last_failure.as_ref().map_or_else(String::new, |reason| {
        format!("; the last attempt failed: {reason}")
    })
}

fn due(retry_after: &Option<Duration>) -> String {
    match retry_after {
        None => String::new(),
        Some(after) if after.is_zero() => " (the next attempt is due now)".to_owned(),
        Some(after) => format!(" (the next attempt is due in {after:?})"),
    }
}

impl Error {
    /// Whether the client should retry later (the database cannot be reached or cannot serve
    /// now), as opposed to a bug or a bad query.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::NoConnection { .. } | Self::OutcomeUnknown(_) => true,
            Self::Query(err) => is_unavailable(err),
        }
    }

    /// When a retry may succeed, if known.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::NoConnection { retry_after, .. } => *retry_after,
            Self::Query(_) | Self::OutcomeUnknown(_) => None,
        }
    }
}

/// Where new connections get their credentials.
// One per process: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Source {
    Fixed(PgConnectOptions),
    /// A secret, re-read when the database rejects what it held; shared with the reader.
    Rotating(Arc<Rotation>),
    /// IAM authentication: a newly signed token per connection.
    Iam(IamAuth),
}

/// `PgConnectOptions` prints its password: show where it points only.
impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fixed(options) => f
                .debug_struct("Fixed")
                .field("host", &options.get_host())
                .field("port", &options.get_port())
                .field("user", &options.get_username())
                .field("database", &options.get_database())
                .finish_non_exhaustive(),
            Self::Rotating(rotation) => f.debug_tuple("Rotating").field(rotation).finish(),
            Self::Iam(iam) => f.debug_tuple("Iam").field(iam).finish(),
        }
    }
}

impl Database {
    /// Reads the credentials (fetching the secret now, during init, when they come from
    /// Secrets Manager through `secrets`), without connecting yet.
    pub async fn new(
        settings: DatabaseSettings,
        secrets: Option<&SecretsClient>,
    ) -> anyhow::Result<Self> {
        let credentials = match &settings.source {
            DatabaseSource::Url(url) => {
                Source::Fixed(connect_options(&settings, Credentials::from(&**url)))
            }
            DatabaseSource::IamAuth { user } => {
                let host = settings
                    .endpoint
                    .host
                    .clone()
                    .context("DB_HOST is not set")?;
                let port = settings.endpoint.port.unwrap_or(DEFAULT_PORT);
                let aws = crate::aws::sdk_config().await;
                let iam = IamAuth::new(user.clone(), host, port, &aws, &settings)
                    .await
                    .context("Failed to sign the database auth token (DB_IAM_USER)")?;
                Source::Iam(iam)
            }
            DatabaseSource::SecretsManager { secret_id } => {
                let secrets = secrets
                    .context("DB_SECRET_ID is set but no Secrets Manager client was built")?
                    .clone();
                let secret = match secrets.get(secret_id, Stage::Current).await {
                    Ok(secret) => secret,
                    // An outage is not a misconfiguration: start, answer 503s, read it later.
                    Err(err @ SecretError::Unavailable { .. }) => {
                        let error = format!("{:#}", anyhow::Error::new(err));
                        tracing::warn!(
                            error,
                            "the database secret could not be read at init; requests get 503 \
                             until it can be"
                        );
                        let rotation =
                            Rotation::unread(secrets, secret_id.clone(), settings.endpoint.clone());
                        return Ok(Self::with(Source::Rotating(Arc::new(rotation)), settings));
                    }
                    Err(err) => {
                        return Err(anyhow::Error::new(err)
                            .context("Failed to read the database secret (DB_SECRET_ID)"))
                    }
                };
                let credentials = Credentials::from_secret(&secret.value, &settings.endpoint)
                    .with_context(|| format!("The database secret {secret_id:?} is malformed"))?;
                tracing::info!(
                    secret_id,
                    version_id = secret.version_id,
                    "database secret read"
                );
                Source::Rotating(Arc::new(Rotation::new(
                    secrets,
                    secret_id.clone(),
                    settings.endpoint.clone(),
                    secret.version_id,
                    credentials,
                )))
            }
        };
        Ok(Self::with(credentials, settings))
    }

    /// This database's reader, at the endpoint of `settings` (the writer's settings but for the
    /// host, port, application name and named statements: `config::database::reader_settings`),
    /// with the credentials the writer holds. A secret is not read again: the two share it, and
    /// its rotation. An IAM token is signed for the reader's host.
    pub async fn reader(
        &self,
        settings: DatabaseSettings,
        secrets: Option<&SecretsClient>,
    ) -> anyhow::Result<Self> {
        match &self.inner.credentials {
            Source::Rotating(rotation) => {
                Ok(Self::with(Source::Rotating(Arc::clone(rotation)), settings))
            }
            Source::Fixed(_) | Source::Iam(_) => Self::new(settings, secrets).await,
        }
    }

    fn with(credentials: Source, settings: DatabaseSettings) -> Self {
        let inner = Inner {
            credentials,
            pool: connection::Pool::new(&settings),
            settings,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// A new connection of its own, not the environment's (the `migrate` function's sessions),
    /// each connect within `DB_ACQUIRE_TIMEOUT_MS`. When the database rejects a secret's
    /// credentials (a rotated password or user), re-reads the secret once, rate-limited, and
    /// tries again with what it holds now. The re-read is not bounded by the connect timeout
    /// (Secrets Manager is a network call of its own, with the SDK's timeouts): cut short, it
    /// would leave the environment with the old credentials until the next read is allowed.
    #[tracing::instrument(name = "Connect to the database", skip_all)]
    pub async fn open(&self) -> Result<PgConnection, sqlx::Error> {
        let started = std::time::Instant::now();
        let settings = &self.inner.settings;
        let opened = match &self.inner.credentials {
            Source::Fixed(options) => self.connect_with(options).await,
            Source::Iam(iam) => {
                let options = iam
                    .connect_options(settings)
                    .await
                    .map_err(|err| sqlx::Error::Configuration(err.into()))?;
                self.connect_with(&options).await
            }
            Source::Rotating(rotation) => {
                let interval = settings.secret_refresh_interval;
                let (mut seen, mut options) = rotation.connect_options(settings);
                if options.is_none() {
                    if !rotation.refresh(seen, interval).await {
                        return Err(credentials_unavailable());
                    }
                    (seen, options) = rotation.connect_options(settings);
                }
                let options = options.ok_or_else(credentials_unavailable)?;
                match self.connect_with(&options).await {
                    Err(err)
                        if credentials_rejected(&err) && rotation.refresh(seen, interval).await =>
                    {
                        let (_, options) = rotation.connect_options(settings);
                        self.connect_with(&options.ok_or_else(credentials_unavailable)?)
                            .await
                    }
                    result => result,
                }
            }
        };
        if opened.is_ok() {
            metrics::histogram!(metric::DATABASE_CONNECT_TIME)
                .record(started.elapsed().as_secs_f64() * 1000.0);
        }
        opened
    }

    /// One connect (TCP, TLS, authentication) within `DB_ACQUIRE_TIMEOUT_MS`.
    async fn connect_with(&self, options: &PgConnectOptions) -> Result<PgConnection, sqlx::Error> {
        let timeout = self.inner.settings.acquire_timeout;
        tokio::time::timeout(timeout, options.connect())
            .await
            .unwrap_or_else(|_| {
                Err(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connecting took longer than {timeout:?}"),
                )))
            })
    }
}

/// `SELECT 1`: proves the server answers on this connection.
#[tracing::instrument(name = "Ping the database", skip_all)]
pub async fn ping(connection: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT 1 AS "one!""#)
        .fetch_one(connection)
        .await
        .map(|_| ())
}

/// No credentials yet: the secret could not be read (an outage, so: try again later).
fn credentials_unavailable() -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::other(NoCredentialsYet))
}

#[derive(Debug, thiserror::Error)]
#[error("no database credentials yet: the secret could not be read")]
struct NoCredentialsYet;

/// Whether `open` failed before trying to connect, for want of credentials.
fn no_credentials_yet(err: &sqlx::Error) -> bool {
    let sqlx::Error::Io(io) = err else {
        return false;
    };
    io.get_ref()
        .is_some_and(|inner| inner.is::<NoCredentialsYet>())
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
        // Lazy: reads the settings without connecting.
        let database = Database::new(settings, None).await.unwrap();

        for text in printed.into_iter().chain([format!("{database:?}")]) {
            assert!(!text.contains("hunter2"), "{text}");
        }
    }
}
