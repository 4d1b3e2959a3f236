//! What a function builds once per execution environment and borrows on every request.

use std::time::Duration;

use anyhow::Context;

use crate::{
    auth::Authenticator,
    config::{KeySource, Settings},
    db::Database,
    http::Route,
    secrets::SecretsClient,
    users::{Reader, Reads},
};

#[derive(Debug)]
pub struct AppState {
    /// The writer: every write, and every read that guards one.
    pub db: Database,
    /// A read replica for the reads that guard nothing (`GET /users/{id}`, the list), when
    /// one is configured (`DB_READER_HOST`): `users::Reads` falls back to the writer.
    pub reader: Option<Reader>,
    pub auth: Authenticator,
    pub health_timeout: Duration,
}

/// Whether a function's route needs callers to present a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The users routes: a JWT key source must be configured, or init fails.
    Authenticated,
    /// `GET /health`: no keys are read; every token is refused should a protected route ever
    /// be wired to this state.
    Public,
}

impl Access {
    /// A route with a scope needs a token; one without is public.
    pub fn of(route: &Route) -> Self {
        match route.scope {
            Some(_) => Self::Authenticated,
            None => Self::Public,
        }
    }
}

impl AppState {
    /// Where the reads that guard no write go: the reader, if there is one, else the writer.
    pub fn reads(&self) -> Reads<'_> {
        Reads {
            writer: &self.db,
            reader: self.reader.as_ref(),
        }
    }

    /// Reads the configuration and the secrets and parses the token keys, as `route` needs. Runs
    /// in the Lambda init phase, so all of it happens once per execution environment, before
    /// the first request.
    ///
    /// A failure is logged as one line (no secret in it) in the function's log format, and
    /// the process exits: Lambda reports the init error and retries the environment, rather
    /// than serving from a function that can never work.
    ///
    /// The state is the environment's, for as long as the process lives, so it is allocated
    /// once and never freed: every invocation borrows it, several at once on Lambda Managed
    /// Instances (`lambda_http::run_concurrent`).
    pub async fn init_or_exit(route: &Route) -> &'static Self {
        Self::init_or_exit_with(Access::of(route)).await
    }

    /// [`AppState::init_or_exit`] for a function that serves no route (the scheduled purge).
    pub async fn init_or_exit_with(access: Access) -> &'static Self {
        match Self::from_env(access).await {
            Ok(state) => Box::leak(Box::new(state)),
            Err(err) => {
                tracing::error!(error = format!("{err:#}"), "init failed");
                std::process::exit(1)
            }
        }
    }

    pub async fn from_env(access: Access) -> anyhow::Result<Self> {
        let settings = Settings::from_env().context("Invalid configuration")?;
        Self::build(settings, access).await
    }

    pub async fn build(settings: Settings, access: Access) -> anyhow::Result<Self> {
        let auth_settings = match access {
            Access::Public => None,
            Access::Authenticated => Some(settings.auth.context(
                "No token key source: set one of JWT_JWKS_URL, JWT_SECRET_ID or JWT_KEY",
            )?),
        };
        // One Secrets Manager client for every secret this function reads.
        let database_secret = settings.database.source.is_secret();
        let key_secret = auth_settings
            .as_ref()
            .is_some_and(|auth| matches!(auth.keys, KeySource::SecretsManager(_)));
        let secrets = match database_secret || key_secret {
            true => Some(SecretsClient::new(settings.secrets_extension.as_ref()).await),
            false => None,
        };
        // Side by side: the token keys (a JWKS or a secret) and the database (its secret, then
        // the first connection). Init takes the longer of the two, not their sum: at worst
        // Secrets Manager's 5 s operation timeout plus the 1 s warm-up, within Lambda's 10 s.
        let auth = async {
            match auth_settings {
                Some(auth) => Authenticator::from_settings(auth, secrets.as_ref())
                    .await
                    .context("Failed to set up token verification"),
                None => Ok(Authenticator::deny_all()),
            }
        };
        // The reader shares the writer's credentials (its secret is read once), then both open
        // their first connection side by side.
        let database = async {
            let db = Database::new(settings.database, secrets.as_ref())
                .await
                .context("Failed to set up the database")?;
            let Some(reader_settings) = settings.reader else {
                warm_up(&db, settings.health_timeout).await;
                return anyhow::Ok((db, None));
            };
            let rest = reader_settings.backoff_max;
            let reader = db
                .reader(reader_settings, secrets.as_ref())
                .await
                .context("Failed to set up the database reader")?;
            tokio::join!(
                warm_up(&db, settings.health_timeout),
                warm_up(&reader, settings.health_timeout)
            );
            let reader = Reader::new(
                reader,
                settings.reader_timeout,
                settings.reader_max_lag,
                rest,
            );
            anyhow::Ok((db, Some(reader)))
        };
        let (auth, (db, reader)) = tokio::try_join!(auth, database)?;
        Ok(Self {
            db,
            reader,
            auth,
            health_timeout: settings.health_timeout,
        })
    }
}

/// Opens the first connection during init, when Lambda gives the environment a full CPU burst,
/// instead of on the first request. A database that is down now must not fail init (the
/// function would then answer opaque 502s instead of 503 problems), so failure only logs.
async fn warm_up(db: &Database, timeout: Duration) {
    match tokio::time::timeout(timeout, db.acquire()).await {
        Ok(Ok(_connection)) => tracing::debug!("database connection ready"),
        Ok(Err(err)) => {
            let error = format!("{:#}", anyhow::Error::new(err));
            tracing::warn!(error, "database not reachable during init");
        }
        Err(_) => tracing::warn!(?timeout, "database did not answer during init"),
    }
}
