//! Following a Secrets Manager rotation without a redeploy.
//!
//! Both rotation strategies change what the secret holds: single-user rotation changes the
//! password, alternating-users rotation switches to the other user. Either way the database
//! starts rejecting the old credentials on connect, and that is the signal to re-read the
//! secret: there is no timer and no read on the request path otherwise.
//!
//! One `Rotation` per secret and environment: the writer and its reader share it (the reader is
//! the same database at another endpoint), so init reads the secret once, and a rotation that
//! either of them notices gives both the new credentials.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

use anyhow::Context;
use sqlx::postgres::PgConnectOptions;
use tokio::sync::Mutex;

use super::{options::connect_options, Credentials};
use crate::{
    config::DatabaseSettings,
    secrets::{SecretError, SecretValue, SecretsClient, Stage},
    sync,
};

pub(super) struct Rotation {
    secrets: SecretsClient,
    secret_id: String,
    /// Bumped whenever the credentials change, so requests that failed with the old ones retry
    /// without reading the secret again.
    generation: AtomicU64,
    /// What new connections are opened with, at each endpoint's settings: the credentials of
    /// `State::version_id`; none while the secret could not be read yet (Secrets Manager was
    /// unavailable at init).
    credentials: std::sync::Mutex<Option<Credentials>>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The version the current credentials came from.
    version_id: Option<String>,
    last_read: Option<Instant>,
}

/// Not the credentials: they hold the password.
impl std::fmt::Debug for Rotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotation")
            .field("secret_id", &self.secret_id)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl Rotation {
    /// Starts from `credentials`, read from version `version_id` of the secret.
    pub(super) fn new(
        secrets: SecretsClient,
        secret_id: String,
        version_id: Option<String>,
        credentials: Credentials,
    ) -> Self {
        Self::with(secrets, secret_id, version_id, Some(credentials), None)
    }

    /// Starts without credentials: the secret could not be read at init. The first read comes
    /// with a request, once the refresh interval since that attempt has passed.
    pub(super) fn unread(secrets: SecretsClient, secret_id: String) -> Self {
        Self::with(secrets, secret_id, None, None, Some(Instant::now()))
    }

    fn with(
        secrets: SecretsClient,
        secret_id: String,
        version_id: Option<String>,
        credentials: Option<Credentials>,
        last_read: Option<Instant>,
    ) -> Self {
        Self {
            secrets,
            secret_id,
            credentials: std::sync::Mutex::new(credentials),
            generation: AtomicU64::new(0),
            state: Mutex::new(State {
                version_id,
                last_read,
            }),
        }
    }

    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Options to open a connection to the endpoint of `settings` with: the credentials held
    /// now, if any.
    pub(super) fn connect_options(&self, settings: &DatabaseSettings) -> Option<PgConnectOptions> {
        let credentials = self.credentials_lock().clone()?;
        Some(connect_options(settings, credentials))
    }

    fn credentials_lock(&self) -> std::sync::MutexGuard<'_, Option<Credentials>> {
        // Replaced whole.
        sync::lock(&self.credentials)
    }

    /// Re-reads the secret after the database rejected the credentials of generation `seen`, or
    /// when there are none yet. Returns whether there are now other credentials worth a try.
    ///
    /// At most one read per `secret_refresh_interval`: a wrong secret must not turn every
    /// request into a Secrets Manager call (throttling, cost, latency).
    ///
    /// `settings` are those of the database that asks (the writer's or its reader's): the
    /// refresh interval, and the endpoint overrides the secret is read with.
    pub(super) async fn refresh(&self, seen: u64, settings: &DatabaseSettings) -> bool {
        let mut state = self.state.lock().await;
        if self.generation() != seen {
            return true; // another request refreshed while this one waited
        }
        let interval = settings.secret_refresh_interval;
        if state
            .last_read
            .is_some_and(|last| last.elapsed() < interval)
        {
            tracing::warn!(
                ?interval,
                "no usable database credentials; the secret was read less than the interval \
                 ago, so not again yet"
            );
            return false;
        }
        metrics::counter!(crate::telemetry::metric::SECRET_REREADS).increment(1);
        let known = state.version_id.as_deref();
        let read = self.newer_credentials(known, settings).await;
        // Once the read is over: a read abandoned midway (its request ran out of time) does not
        // hold the next one off.
        state.last_read = Some(Instant::now());
        let (credentials, version_id) = match read {
            Ok(Some(newer)) => newer,
            Ok(None) => {
                tracing::warn!(
                    secret_id = self.secret_id,
                    "the database rejected the credentials and the secret holds no newer ones"
                );
                return false;
            }
            Err(err) => {
                let error = format!("{err:#}");
                tracing::error!(error, "failed to re-read the database secret");
                return false;
            }
        };
        *self.credentials_lock() = Some(credentials);
        tracing::info!(
            secret_id = self.secret_id,
            old_version_id = state.version_id,
            version_id,
            "re-fetched the database secret"
        );
        state.version_id = version_id;
        self.generation.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// Credentials from a newer version of the secret, with that version's id, if there is one.
    async fn newer_credentials(
        &self,
        known: Option<&str>,
        settings: &DatabaseSettings,
    ) -> anyhow::Result<Option<(Credentials, Option<String>)>> {
        let Some(secret) = self.newer_secret(known).await? else {
            return Ok(None);
        };
        let credentials = Credentials::from_secret(&secret.value, &settings.endpoint)
            .with_context(|| format!("The database secret {:?} is malformed", self.secret_id))?;
        Ok(Some((credentials, secret.version_id)))
    }

    /// The secret's current version if it differs from `known`; else its pending version, if
    /// any: single-user rotation sets the new password in the database (`setSecret`) a moment
    /// before it makes the pending version current (`finishSecret`).
    async fn newer_secret(&self, known: Option<&str>) -> Result<Option<SecretValue>, SecretError> {
        let current = self.secrets.get(&self.secret_id, Stage::Current).await?;
        if current.version_id.is_none() || current.version_id.as_deref() != known {
            return Ok(Some(current));
        }
        match self.secrets.get(&self.secret_id, Stage::Pending).await {
            Ok(pending) if pending.version_id != current.version_id => Ok(Some(pending)),
            Ok(_) | Err(SecretError::NotFound(_)) => Ok(None),
            Err(err) => Err(err),
        }
    }
}
