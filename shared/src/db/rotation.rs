//! Following a Secrets Manager rotation without a redeploy.
//!
//! Both rotation strategies change what the secret holds: single-user rotation changes the
//! password, alternating-users rotation switches to the other user. Either way the database
//! starts rejecting the old credentials on connect, and that is the signal to re-read the
//! secret: there is no timer and no read on the request path otherwise.
//!
//! One `Rotation` per secret and environment: the writer and its reader share it (the reader is
//! the same database at another endpoint), so init reads the secret once, and a rotation that
//! either of them notices gives both the new credentials. The secret is always read as the
//! writer reads it (its endpoint overrides); each database applies its own endpoint when it
//! connects.

use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::postgres::PgConnectOptions;
use tokio::sync::Mutex;

use super::{options::connect_options, Credentials};
use crate::{
    config::{DatabaseSettings, Endpoint},
    secrets::{SecretError, SecretValue, SecretsClient, Stage},
    sync,
};

pub(super) struct Rotation {
    secrets: SecretsClient,
    secret_id: String,
    /// The writer's endpoint overrides, which the secret is read with (an RDS secret's JSON
    /// gives the host unless `DB_HOST` does): never the reader's, whose host would otherwise
    /// reach the writer's connections through a refresh the reader made.
    endpoint: Endpoint,
    held: std::sync::Mutex<Held>,
    state: Mutex<State>,
}

/// What new connections are opened with, each at its own endpoint's settings.
struct Held {
    /// Bumped whenever the credentials change, so requests that failed with the old ones retry
    /// without reading the secret again. Read with the credentials, under one lock: a request
    /// knows which generation the credentials it tried came from.
    generation: u64,
    /// The credentials of `State::version_id`; none while the secret could not be read yet
    /// (Secrets Manager was unavailable at init).
    credentials: Option<Credentials>,
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
    /// Starts from `credentials`, read from version `version_id` of the secret with the
    /// writer's `endpoint` overrides.
    pub(super) fn new(
        secrets: SecretsClient,
        secret_id: String,
        endpoint: Endpoint,
        version_id: Option<String>,
        credentials: Credentials,
    ) -> Self {
        Self::with(
            secrets,
            secret_id,
            endpoint,
            version_id,
            Some(credentials),
            None,
        )
    }

    /// Starts without credentials: the secret could not be read at init. The first read comes
    /// with a request, once the refresh interval since that attempt has passed.
    pub(super) fn unread(secrets: SecretsClient, secret_id: String, endpoint: Endpoint) -> Self {
        Self::with(
            secrets,
            secret_id,
            endpoint,
            None,
            None,
            Some(Instant::now()),
        )
    }

    fn with(
        secrets: SecretsClient,
        secret_id: String,
        endpoint: Endpoint,
        version_id: Option<String>,
        credentials: Option<Credentials>,
        last_read: Option<Instant>,
    ) -> Self {
        Self {
            secrets,
            secret_id,
            endpoint,
            held: std::sync::Mutex::new(Held {
                generation: 0,
                credentials,
            }),
            state: Mutex::new(State {
                version_id,
                last_read,
            }),
        }
    }

    fn generation(&self) -> u64 {
        self.held().generation
    }

    /// The generation of the credentials held now, and the options to open a connection to
    /// the endpoint of `settings` with them, if there are any.
    pub(super) fn connect_options(
        &self,
        settings: &DatabaseSettings,
    ) -> (u64, Option<PgConnectOptions>) {
        let (generation, credentials) = {
            let held = self.held();
            (held.generation, held.credentials.clone())
        };
        let options = credentials.map(|credentials| connect_options(settings, credentials));
        (generation, options)
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        // Replaced whole, generation and credentials together.
        sync::lock(&self.held)
    }

    /// Re-reads the secret after the database rejected the credentials of generation `seen`, or
    /// when there are none yet. Returns whether there are now other credentials worth a try.
    ///
    /// At most one read per `interval` (`DB_SECRET_REFRESH_INTERVAL_MS`): a wrong secret must
    /// not turn every request into a Secrets Manager call (throttling, cost, latency).
    pub(super) async fn refresh(&self, seen: u64, interval: Duration) -> bool {
        let mut state = self.state.lock().await;
        if self.generation() != seen {
            return true; // another request refreshed while this one waited
        }
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
        let read = self.newer_credentials(known).await;
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
        {
            let mut held = self.held();
            held.credentials = Some(credentials);
            held.generation += 1;
        }
        tracing::info!(
            secret_id = self.secret_id,
            old_version_id = state.version_id,
            version_id,
            "re-fetched the database secret"
        );
        state.version_id = version_id;
        true
    }

    /// Credentials from a newer version of the secret, with that version's id, if there is one.
    async fn newer_credentials(
        &self,
        known: Option<&str>,
    ) -> anyhow::Result<Option<(Credentials, Option<String>)>> {
        let Some(secret) = self.newer_secret(known).await? else {
            return Ok(None);
        };
        let credentials = Credentials::from_secret(&secret.value, &self.endpoint)
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
