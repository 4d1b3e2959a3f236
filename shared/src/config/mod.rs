//! Typed configuration, read from the environment once per execution environment.
//!
//! This is the only module that reads the environment, and it depends on nothing else in the
//! crate: it reads and validates settings; `db`, `secrets` and `auth` act on them. One file per
//! concern: the database, who may call (auth), the AWS parts, and telemetry.

mod auth;
mod aws;
mod database;
mod telemetry;

use std::{str::FromStr, time::Duration};

pub use auth::{AuthSettings, KeySource, ScopeNames};
pub use aws::SecretsExtension;
pub use database::{DatabaseSettings, DatabaseSource, DatabaseUrl, Endpoint, InvalidDatabaseUrl};
pub use telemetry::{LogSettings, MetricsSettings, TracesSettings};

/// Everything a function needs to start, validated before the first request.
#[derive(Debug)]
pub struct Settings {
    pub database: DatabaseSettings,
    /// A read replica for the reads that guard no write (`DB_READER_HOST`), reached with the
    /// writer's credentials, TLS and timings; `None`: every read goes to the writer.
    pub reader: Option<DatabaseSettings>,
    /// The most a read waits for the reader, connecting included, before the writer answers
    /// it (`DB_READER_TIMEOUT_MS`).
    pub reader_timeout: Duration,
    /// The most the reader may be behind the writer for a read it answers to stand
    /// (`DB_READER_MAX_LAG_MS`); past it, the writer answers.
    pub reader_max_lag: Duration,
    /// Who may call the users routes; `None` when no key source is configured.
    pub auth: Option<AuthSettings>,
    /// Read secrets through the AWS Parameters and Secrets Lambda Extension instead of the SDK.
    pub secrets_extension: Option<SecretsExtension>,
    /// How long `GET /health` waits for `SELECT 1` before answering 503.
    pub health_timeout: Duration,
    /// `DB_APP_SECRET_ID` (the `migrate` function only): the secret of the role the API
    /// functions log in as, which `migrate` creates as a member of the least-privilege group.
    pub app_role_secret_id: Option<String>,
    /// `DB_APP_GRANT_RDS_IAM=true` (the `migrate` function only): the API functions log in
    /// with IAM auth tokens straight to RDS, so their role also gets `rds_iam`.
    pub app_role_rds_iam: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "neither DB_SECRET_ID, DB_IAM_USER nor DATABASE_URL is set: set DB_SECRET_ID to the \
         Secrets Manager secret (name or ARN) holding the database credentials, DB_IAM_USER to \
         log in with IAM database authentication, or DATABASE_URL to a postgres:// URL for \
         local use"
    )]
    NoDatabase,
    // Never echo the value: a database URL carries a password.
    #[error("DATABASE_URL is not a valid postgres:// connection URL")]
    InvalidDatabaseUrl,
    #[error("DB_IAM_USER is set but {0} is not: IAM database authentication needs it")]
    IamAuthNeeds(&'static str),
    #[error(
        "DB_IAM_USER needs TLS (an auth token is a bearer credential): DB_SSLMODE must be \
         require, verify-ca or verify-full"
    )]
    IamAuthWithoutTls,
    #[error("set only one of JWT_SECRET_ID, JWT_KEY and JWT_JWKS_URL")]
    SeveralKeySources,
    #[error(
        "JWT_JWKS_URL needs JWT_ISSUER: the keys are an issuer's, and a token must name that \
         issuer in its iss claim (RFC 8725, 3.8)"
    )]
    JwksWithoutIssuer,
    #[error(
        "tokens are not bound to this API: set JWT_AUDIENCE to the audience (aud) its tokens \
         carry, or JWT_CLIENT_IDS to the app clients allowed to call it (Cognito access tokens \
         carry client_id, not aud)"
    )]
    UnboundTokens,
    #[error("{name} must be {expected}, got {value:?}")]
    Invalid {
        name: &'static str,
        expected: &'static str,
        value: String,
    },
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let lookup = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let database = database::settings(&lookup)?;
        Ok(Self {
            database,
            reader: database::reader_settings(&lookup)?,
            reader_timeout: millis_or(&lookup, "DB_READER_TIMEOUT_MS", 500)?,
            reader_max_lag: millis_or(&lookup, "DB_READER_MAX_LAG_MS", 1_000)?,
            auth: auth::settings(&lookup)?,
            secrets_extension: aws::secrets_extension(&lookup)?,
            health_timeout: millis_or(&lookup, "HEALTH_TIMEOUT_MS", 1_000)?,
            app_role_secret_id: lookup("DB_APP_SECRET_ID"),
            app_role_rds_iam: parse_or(&lookup, "DB_APP_GRANT_RDS_IAM", false, "true or false")?,
        })
    }
}

fn parse_optional<T: FromStr>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    expected: &'static str,
) -> Result<Option<T>, ConfigError> {
    lookup(name)
        .map(|value| {
            value.trim().parse().map_err(|_| ConfigError::Invalid {
                name,
                expected,
                value,
            })
        })
        .transpose()
}

fn parse_or<T: FromStr>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
    expected: &'static str,
) -> Result<T, ConfigError> {
    Ok(parse_optional(lookup, name, expected)?.unwrap_or(default))
}

fn millis_or(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default_ms: u64,
) -> Result<Duration, ConfigError> {
    let ms = parse_or(lookup, name, default_ms, "a whole number of milliseconds")?;
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Settings read from `vars` alone.
    pub(crate) fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_lookup(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }
}
