//! Typed configuration, read from the environment once per execution environment.

use std::{str::FromStr, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgConnectOptions;

/// Everything a function needs to start, validated before the first request.
#[derive(Debug)]
pub struct Settings {
    pub database: DatabaseSettings,
    /// How long `GET /health` waits for `SELECT 1` before answering 503.
    pub health_timeout: Duration,
}

#[derive(Debug)]
pub struct DatabaseSettings {
    /// The connection URL. It carries the password, so it stays wrapped.
    pub url: SecretString,
    /// Connections per execution environment (`DB_MAX_CONNECTIONS`, default 1).
    pub max_connections: u32,
    /// Longest wait for a connection, including connecting (`DB_ACQUIRE_TIMEOUT_MS`).
    pub acquire_timeout: Duration,
    /// Server-side cap on any one statement (`DB_STATEMENT_TIMEOUT_MS`).
    pub statement_timeout: Duration,
    /// Shown in `pg_stat_activity`; the Lambda function's name when there is one.
    pub application_name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    // Never echo the value: a database URL carries a password.
    #[error("{0} is not a valid postgres:// connection URL")]
    InvalidDatabaseUrl(&'static str),
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
        let url = lookup("DATABASE_URL")
            .filter(|url| !url.trim().is_empty())
            .ok_or(ConfigError::Missing("DATABASE_URL"))?;
        let database = DatabaseSettings {
            url: SecretString::from(url),
            max_connections: parse_or(&lookup, "DB_MAX_CONNECTIONS", 1, "a positive integer")?,
            acquire_timeout: millis_or(&lookup, "DB_ACQUIRE_TIMEOUT_MS", 3_000)?,
            statement_timeout: millis_or(&lookup, "DB_STATEMENT_TIMEOUT_MS", 5_000)?,
            application_name: lookup("AWS_LAMBDA_FUNCTION_NAME")
                .unwrap_or_else(|| "users-api".to_owned()),
        };
        if database.max_connections == 0 {
            return Err(ConfigError::Invalid {
                name: "DB_MAX_CONNECTIONS",
                expected: "a positive integer",
                value: "0".to_owned(),
            });
        }
        database.connect_options()?;
        Ok(Self {
            database,
            health_timeout: millis_or(&lookup, "HEALTH_TIMEOUT_MS", 1_000)?,
        })
    }
}

impl DatabaseSettings {
    /// Connection options for the pool: the URL plus the settings every session gets.
    pub fn connect_options(&self) -> Result<PgConnectOptions, ConfigError> {
        let options = PgConnectOptions::from_str(self.url.expose_secret())
            .map_err(|_| ConfigError::InvalidDatabaseUrl("DATABASE_URL"))?;
        let statement_timeout = self.statement_timeout.as_millis().to_string();
        Ok(options
            .application_name(&self.application_name)
            .options([("statement_timeout", statement_timeout.as_str())]))
    }
}

fn parse_or<T: FromStr>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
    expected: &'static str,
) -> Result<T, ConfigError> {
    match lookup(name) {
        None => Ok(default),
        Some(value) => value.trim().parse().map_err(|_| ConfigError::Invalid {
            name,
            expected,
            value,
        }),
    }
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
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_lookup(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn defaults_suit_one_invocation_at_a_time() {
        let settings = settings(&[("DATABASE_URL", "postgres://u:p@localhost/db")]).unwrap();
        assert_eq!(settings.database.max_connections, 1);
        assert_eq!(settings.database.acquire_timeout, Duration::from_secs(3));
        assert_eq!(settings.health_timeout, Duration::from_secs(1));
        assert_eq!(settings.database.application_name, "users-api");
    }

    #[test]
    fn a_missing_database_url_is_named() {
        let err = settings(&[]).unwrap_err();
        assert_eq!(err.to_string(), "DATABASE_URL is not set");
    }

    #[test]
    fn an_invalid_database_url_is_reported_without_its_value() {
        let err = settings(&[("DATABASE_URL", "mysql://user:hunter2@db:99999/x")]).unwrap_err();
        assert!(matches!(
            err,
            ConfigError::InvalidDatabaseUrl("DATABASE_URL")
        ));
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn the_password_never_appears_in_debug_output() {
        let settings = settings(&[("DATABASE_URL", "postgres://u:hunter2@localhost/db")]).unwrap();
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    #[test]
    fn malformed_numbers_are_rejected_by_name() {
        for (name, value) in [
            ("DB_MAX_CONNECTIONS", "0"),
            ("DB_MAX_CONNECTIONS", "many"),
            ("DB_ACQUIRE_TIMEOUT_MS", "-1"),
            ("HEALTH_TIMEOUT_MS", "1s"),
        ] {
            let err = settings(&[("DATABASE_URL", "postgres://localhost/db"), (name, value)])
                .unwrap_err();
            assert!(err.to_string().starts_with(name), "{name}={value}: {err}");
        }
    }
}
