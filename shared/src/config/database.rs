//! Where the database is, how its credentials come, and the connection policy's timings.

use std::{fmt, path::PathBuf, str::FromStr, time::Duration};

use sqlx::postgres::{PgConnectOptions, PgSslMode};

use super::{millis_or, parse_optional, parse_or, ConfigError};

#[derive(Debug)]
pub enum DatabaseSource {
    /// `DATABASE_URL`: a `postgres://` URL, for local use.
    Url(Box<DatabaseUrl>),
    /// `DB_IAM_USER`: log in as this user with an RDS IAM auth token signed with the function's
    /// role credentials (no stored password), over TLS, at `DB_HOST`/`DB_PORT`/`DB_NAME`.
    IamAuth { user: String },
    /// `DB_SECRET_ID`: a Secrets Manager secret (name or ARN), the production path.
    SecretsManager { secret_id: String },
}

impl DatabaseSource {
    /// Whether the credentials are read from Secrets Manager, which needs a client at init.
    pub fn is_secret(&self) -> bool {
        matches!(self, Self::SecretsManager { .. })
    }
}

/// A `postgres://` (or `postgresql://`) URL, parsed once. It carries a password, so `Debug`
/// shows only where it points.
#[derive(Clone)]
pub struct DatabaseUrl {
    options: PgConnectOptions,
    /// The `sslmode` the URL asked for, if it did.
    ssl_mode: Option<PgSslMode>,
}

/// Never carries the URL: it may hold a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid postgres:// URL")]
pub struct InvalidDatabaseUrl;

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, InvalidDatabaseUrl> {
        let url = url.trim();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(InvalidDatabaseUrl);
        }
        let options = PgConnectOptions::from_str(url).map_err(|_| InvalidDatabaseUrl)?;
        let asks_for_ssl_mode = url
            .split_once('?')
            .is_some_and(|(_, query)| query.split('&').any(|pair| pair.starts_with("sslmode=")));
        let ssl_mode = asks_for_ssl_mode.then(|| options.get_ssl_mode());
        Ok(Self { options, ssl_mode })
    }

    /// Host, port, user, password and database, as sqlx reads them from the URL.
    pub fn options(&self) -> &PgConnectOptions {
        &self.options
    }

    pub fn ssl_mode(&self) -> Option<PgSslMode> {
        self.ssl_mode
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options = &self.options;
        write!(
            f,
            "DatabaseUrl(postgres://{}@{}:{}/{})",
            options.get_username(),
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or_default()
        )
    }
}

/// `DB_HOST`, `DB_PORT`, `DB_NAME`: where to connect, over what the URL or secret says. An
/// RDS-managed master secret holds only `username` and `password`; an RDS Proxy has its own
/// endpoint in front of the database the secret names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoint {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub dbname: Option<String>,
}

#[derive(Debug)]
pub struct DatabaseSettings {
    pub source: DatabaseSource,
    /// `DB_HOST`, `DB_PORT`, `DB_NAME`: override where the URL or secret says to connect.
    pub endpoint: Endpoint,
    /// `DB_SSLMODE`; when unset, the database code falls back on the URL's own `sslmode`, then
    /// on a default for the source.
    pub ssl_mode: Option<PgSslMode>,
    /// `DB_SSLROOTCERT`: CA bundle to verify the server with (RDS's, for `verify-full`).
    pub ssl_root_cert: Option<PathBuf>,
    /// Longest wait for a new connection, connecting and logging in (`DB_ACQUIRE_TIMEOUT_MS`).
    pub acquire_timeout: Duration,
    /// The most connections the environment holds: one per invocation it may run at once,
    /// `AWS_LAMBDA_MAX_CONCURRENCY` on Lambda Managed Instances, otherwise 1.
    pub max_connections: usize,
    /// A read with no answer for this long is abandoned, its connection dropped, and sent once
    /// more on a new one (`DB_READ_TIMEOUT_MS`).
    pub read_timeout: Duration,
    /// After a failed connect, no new one is tried for an interval starting at this
    /// (`DB_BACKOFF_MIN_MS`), growing with each failure up to `backoff_max`, jittered.
    pub backoff_min: Duration,
    /// The longest interval between two connect attempts (`DB_BACKOFF_MAX_MS`).
    pub backoff_max: Duration,
    /// A held connection is pinged before use after sitting idle this long
    /// (`DB_IDLE_CHECK_AFTER_MS`).
    pub idle_check_after: Duration,
    /// How long that ping may take before the connection is given up (`DB_LIVENESS_TIMEOUT_MS`).
    pub liveness_timeout: Duration,
    /// Shortest time between two re-fetches of the secret after the database rejected its
    /// credentials (`DB_SECRET_REFRESH_INTERVAL_MS`).
    pub secret_refresh_interval: Duration,
    /// Shown in `pg_stat_activity`; the Lambda function's name when there is one.
    pub application_name: String,
    /// `DB_NAMED_STATEMENTS=true`: each statement is prepared once per connection, named, and
    /// executed by name after, where by default each is sent unnamed with its execution. Only
    /// for a server reached directly: a proxy that multiplexes sessions (RDS Proxy, PgBouncer in
    /// transaction mode) pins a session that names statements, or hands the name to another
    /// client's session (`db/options.rs`).
    pub named_statements: bool,
}

/// `DATABASE_URL`, `DB_IAM_USER` or `DB_SECRET_ID`, the endpoint and TLS overrides, and the
/// connection policy's timings.
pub(super) fn settings(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<DatabaseSettings, ConfigError> {
    let database = DatabaseSettings {
        source: database_source(lookup)?,
        endpoint: Endpoint {
            host: lookup("DB_HOST"),
            port: parse_optional(lookup, "DB_PORT", "a port number")?,
            dbname: lookup("DB_NAME"),
        },
        ssl_mode: parse_optional(lookup, "DB_SSLMODE", SSL_MODES)?,
        ssl_root_cert: lookup("DB_SSLROOTCERT").map(PathBuf::from),
        acquire_timeout: millis_or(lookup, "DB_ACQUIRE_TIMEOUT_MS", 1_000)?,
        max_connections: parse_or(
            lookup,
            "AWS_LAMBDA_MAX_CONCURRENCY",
            1_usize,
            "a whole number of invocations",
        )?
        .max(1),
        read_timeout: millis_or(lookup, "DB_READ_TIMEOUT_MS", 2_000)?,
        backoff_min: millis_or(lookup, "DB_BACKOFF_MIN_MS", 1_000)?,
        backoff_max: millis_or(lookup, "DB_BACKOFF_MAX_MS", 1_500)?,
        idle_check_after: millis_or(lookup, "DB_IDLE_CHECK_AFTER_MS", 1_000)?,
        liveness_timeout: millis_or(lookup, "DB_LIVENESS_TIMEOUT_MS", 250)?,
        secret_refresh_interval: millis_or(lookup, "DB_SECRET_REFRESH_INTERVAL_MS", 10_000)?,
        application_name: lookup("AWS_LAMBDA_FUNCTION_NAME")
            .unwrap_or_else(|| "users-api".to_owned()),
        named_statements: parse_or(lookup, "DB_NAMED_STATEMENTS", false, "true or false")?,
    };
    check_iam_auth(&database)?;
    Ok(database)
}

/// `DB_READER_HOST` (and `DB_READER_PORT`, else `DB_PORT`): a read replica (an Aurora
/// cluster's reader endpoint, or RDS Proxy's read-only endpoint), with everything else as the
/// writer has it: the credentials (an IAM token is signed for the reader's host), TLS
/// verification, the timings; named statements only with `DB_READER_NAMED_STATEMENTS=true`.
/// Its sessions are named `<function> (reader)`.
pub(super) fn reader_settings(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<Option<DatabaseSettings>, ConfigError> {
    let Some(host) = lookup("DB_READER_HOST") else {
        return Ok(None);
    };
    let reader = |name: &str| match name {
        "DB_HOST" => Some(host.clone()),
        "DB_PORT" => lookup("DB_READER_PORT").or_else(|| lookup("DB_PORT")),
        // Not the writer's: a reader is reached through a proxy where the writer may not be.
        "DB_NAMED_STATEMENTS" => lookup("DB_READER_NAMED_STATEMENTS"),
        _ => lookup(name),
    };
    let mut reader = settings(&reader)?;
    reader.application_name.push_str(" (reader)");
    Ok(Some(reader))
}

const SSL_MODES: &str = "one of disable, allow, prefer, require, verify-ca, verify-full";

fn database_source(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<DatabaseSource, ConfigError> {
    if let Some(url) = lookup("DATABASE_URL") {
        let url = DatabaseUrl::parse(&url).map_err(|_| ConfigError::InvalidDatabaseUrl)?;
        return Ok(DatabaseSource::Url(Box::new(url)));
    }
    if let Some(user) = lookup("DB_IAM_USER") {
        return Ok(DatabaseSource::IamAuth { user });
    }
    let secret_id = lookup("DB_SECRET_ID").ok_or(ConfigError::NoDatabase)?;
    Ok(DatabaseSource::SecretsManager { secret_id })
}

/// An auth token goes where `DB_HOST` says, and only over TLS.
fn check_iam_auth(database: &DatabaseSettings) -> Result<(), ConfigError> {
    if !matches!(database.source, DatabaseSource::IamAuth { .. }) {
        return Ok(());
    }
    if database.endpoint.host.is_none() {
        return Err(ConfigError::IamAuthNeeds("DB_HOST"));
    }
    match database.ssl_mode {
        Some(PgSslMode::Disable | PgSslMode::Allow | PgSslMode::Prefer) => {
            Err(ConfigError::IamAuthWithoutTls)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::settings;

    #[test]
    fn named_statements_are_the_writers_and_the_readers_own_choice() {
        let named = [
            ("DATABASE_URL", "postgres://localhost/users"),
            ("DB_NAMED_STATEMENTS", "true"),
            ("DB_READER_HOST", "reader.internal"),
        ];
        let writer_only = settings(&named).unwrap();
        assert!(writer_only.database.named_statements);
        assert!(!writer_only.reader.unwrap().named_statements);

        let both: Vec<_> = named
            .iter()
            .copied()
            .chain([("DB_READER_NAMED_STATEMENTS", "true")])
            .collect();
        assert!(settings(&both).unwrap().reader.unwrap().named_statements);
    }

    #[test]
    fn a_reader_takes_the_writers_settings_but_its_own_host_and_port() {
        let writer = [
            ("DB_IAM_USER", "users_api"),
            ("DB_HOST", "writer.internal"),
            ("DB_PORT", "5433"),
            ("DB_SSLMODE", "verify-full"),
            ("DB_READ_TIMEOUT_MS", "900"),
        ];
        assert!(settings(&writer).unwrap().reader.is_none());

        let with_reader: Vec<_> = writer
            .iter()
            .copied()
            .chain([("DB_READER_HOST", "reader.internal")])
            .collect();
        let reader = settings(&with_reader).unwrap().reader.unwrap();
        assert_eq!(reader.endpoint.host.as_deref(), Some("reader.internal"));
        assert_eq!(reader.endpoint.port, Some(5433));
        assert!(matches!(reader.source, DatabaseSource::IamAuth { .. }));
        assert!(matches!(reader.ssl_mode, Some(PgSslMode::VerifyFull)));
        assert_eq!(reader.read_timeout, Duration::from_millis(900));
        assert!(reader.application_name.ends_with(" (reader)"));

        let own_port: Vec<_> = with_reader
            .iter()
            .copied()
            .chain([("DB_READER_PORT", "6432")])
            .collect();
        let reader = settings(&own_port).unwrap().reader.unwrap();
        assert_eq!(reader.endpoint.port, Some(6432));
        // A reader held to the writer's rules: IAM authentication without TLS is refused.
        let plain: Vec<_> = with_reader
            .iter()
            .map(|&(name, value)| match name {
                "DB_SSLMODE" => (name, "disable"),
                _ => (name, value),
            })
            .collect();
        assert!(settings(&plain).is_err());
    }

    #[test]
    fn defaults_suit_one_invocation_at_a_time() {
        let settings = settings(&[("DATABASE_URL", "postgres://u:p@localhost/db")]).unwrap();
        assert_eq!(settings.database.acquire_timeout, Duration::from_secs(1));
        assert_eq!(settings.database.max_connections, 1);
        assert_eq!(settings.database.read_timeout, Duration::from_secs(2));
        assert_eq!(settings.database.backoff_min, Duration::from_secs(1));
        assert_eq!(settings.database.backoff_max, Duration::from_millis(1500));
        assert_eq!(settings.database.idle_check_after, Duration::from_secs(1));
        assert_eq!(
            settings.database.liveness_timeout,
            Duration::from_millis(250)
        );
        assert_eq!(settings.health_timeout, Duration::from_secs(1));
        assert_eq!(settings.database.application_name, "users-api");
    }

    #[test]
    fn an_environment_taking_several_invocations_at_once_may_hold_a_connection_for_each() {
        let url = ("DATABASE_URL", "postgres://u:p@localhost/db");

        let managed = settings(&[url, ("AWS_LAMBDA_MAX_CONCURRENCY", "8")]).unwrap();
        let zero = settings(&[url, ("AWS_LAMBDA_MAX_CONCURRENCY", "0")]).unwrap();
        let bad = settings(&[url, ("AWS_LAMBDA_MAX_CONCURRENCY", "eight")]).unwrap_err();

        assert_eq!(managed.database.max_connections, 8);
        assert_eq!(zero.database.max_connections, 1);
        assert!(
            bad.to_string().contains("AWS_LAMBDA_MAX_CONCURRENCY"),
            "{bad}"
        );
    }

    #[test]
    fn without_either_database_variable_the_error_names_both() {
        let message = settings(&[("DB_SECRET_ID", " ")]).unwrap_err().to_string();
        assert!(
            message.contains("DB_SECRET_ID") && message.contains("DATABASE_URL"),
            "{message}"
        );
    }

    #[test]
    fn database_url_overrides_the_secret_for_local_use() {
        let settings = settings(&[
            ("DATABASE_URL", "postgres://u:p@localhost/db"),
            ("DB_SECRET_ID", "prod/db"),
        ])
        .unwrap();
        assert!(matches!(settings.database.source, DatabaseSource::Url(_)));
    }

    #[test]
    fn an_invalid_database_url_is_reported_without_its_value() {
        let err = settings(&[("DATABASE_URL", "mysql://user:hunter2@db:99999/x")]).unwrap_err();
        assert!(matches!(err, ConfigError::InvalidDatabaseUrl));
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn the_password_never_appears_in_debug_output() {
        let settings = settings(&[("DATABASE_URL", "postgres://u:hunter2@localhost/db")]).unwrap();
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    #[test]
    fn a_database_url_keeps_the_sslmode_it_asked_for() {
        let url =
            DatabaseUrl::parse("postgres://app:pw@db.internal:6543/users?sslmode=verify-full")
                .unwrap();
        assert_eq!(url.options().get_host(), "db.internal");
        assert_eq!(url.options().get_port(), 6543);
        assert_eq!(url.options().get_username(), "app");
        assert_eq!(url.options().get_database(), Some("users"));
        assert!(matches!(url.ssl_mode(), Some(PgSslMode::VerifyFull)));
        let without = DatabaseUrl::parse("postgresql://app:pw@db/users").unwrap();
        assert!(without.ssl_mode().is_none());
    }

    #[test]
    fn a_database_url_shows_where_it_points_but_not_its_password() {
        let url = DatabaseUrl::parse("postgres://app:hunter2@db.internal:6543/users").unwrap();
        assert_eq!(
            format!("{url:?}"),
            "DatabaseUrl(postgres://app@db.internal:6543/users)"
        );
    }

    #[test]
    fn iam_authentication_needs_a_host_and_tls() {
        let iam = [
            ("DB_IAM_USER", "users_api"),
            ("DB_HOST", "users.cluster-x.eu-west-1.rds.amazonaws.com"),
        ];

        let accepted = settings(&iam).unwrap().database.source;
        let no_host = settings(&iam[..1]).unwrap_err();
        let plain = settings(&[iam[0], iam[1], ("DB_SSLMODE", "prefer")]).unwrap_err();

        let DatabaseSource::IamAuth { user } = accepted else {
            panic!("expected IAM authentication, got {accepted:?}");
        };
        assert_eq!(user, "users_api");
        assert!(matches!(no_host, ConfigError::IamAuthNeeds("DB_HOST")));
        assert!(matches!(plain, ConfigError::IamAuthWithoutTls));
    }

    #[test]
    fn malformed_values_are_rejected_by_name() {
        for (name, value) in [
            ("DB_IDLE_CHECK_AFTER_MS", "many"),
            ("DB_LIVENESS_TIMEOUT_MS", "0.5"),
            ("DB_ACQUIRE_TIMEOUT_MS", "-1"),
            ("HEALTH_TIMEOUT_MS", "1s"),
            ("DB_SSLMODE", "sometimes"),
        ] {
            let err = settings(&[("DATABASE_URL", "postgres://localhost/db"), (name, value)])
                .unwrap_err();
            assert!(err.to_string().starts_with(name), "{name}={value}: {err}");
        }
    }
}
