//! What a function builds once per execution environment and borrows on every request.

use std::time::Duration;

use anyhow::Context;

use crate::{config::Settings, db::Database};

#[derive(Debug)]
pub struct AppState {
    pub db: Database,
    pub health_timeout: Duration,
}

impl AppState {
    /// Reads the configuration, the database secret and builds the pool. Runs in the Lambda
    /// init phase, so the secret is fetched once per execution environment, before the first
    /// request.
    ///
    /// A failure is logged as one line (no secret in it) in the function's log format, and
    /// the process exits: Lambda reports the init error and retries the environment, rather
    /// than serving from a function that can never work.
    pub async fn init_or_exit() -> Self {
        match Self::from_env().await {
            Ok(state) => state,
            Err(err) => {
                tracing::error!(error = format!("{err:#}"), "init failed");
                std::process::exit(1)
            }
        }
    }

    pub async fn from_env() -> anyhow::Result<Self> {
        let settings = Settings::from_env().context("Invalid configuration")?;
        Self::build(settings).await
    }

    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let db = Database::connect(settings.database)
            .await
            .context("Failed to set up the database")?;
        warm_up(&db, settings.health_timeout).await;
        Ok(Self {
            db,
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
        Ok(Err(err)) => tracing::warn!(error = %err, "database not reachable during init"),
        Err(_) => tracing::warn!(?timeout, "database did not answer during init"),
    }
}
