//! Typed configuration, read from the environment once per execution environment.
//!
//! This is the only module that reads the environment, and it depends on nothing else in the
//! crate: it reads and validates settings; `db`, `secrets` and `auth` act on them.

use std::{fmt, net::IpAddr, path::PathBuf, str::FromStr, time::Duration};

use secrecy::SecretString;
use sqlx::postgres::{PgConnectOptions, PgSslMode};

/// Everything a function needs to start, validated before the first request.
#[derive(Debug)]
pub struct Settings {
    pub database: DatabaseSettings,
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

/// Crates whose TRACE output carries what a request or a dependency sent: `lambda_runtime`
/// logs each raw event (its headers, the bearer token among them), the AWS SDK and the HTTP
/// stack their exchanges. Whatever `RUST_LOG` says, they log at DEBUG at most.
const NEVER_TRACED: [&str; 7] = [
    "lambda_runtime",
    "lambda_http",
    "aws_smithy_runtime",
    "aws_smithy_http_client",
    "aws_sigv4",
    "hyper",
    "hyper_util",
];

/// How to log, from Lambda's advanced logging controls. Read on its own, first thing, so that
/// everything after it (invalid settings included) is logged in the function's format.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// `AWS_LAMBDA_LOG_FORMAT=JSON`: one JSON object per line.
    pub json: bool,
    /// `AWS_LAMBDA_LOG_LEVEL` (a level), else `RUST_LOG` (a level and `target=level`
    /// directives, e.g. `info,shared=debug`; no span or field filters), else `info`. A value
    /// that does not parse means `info`.
    pub filter: tracing_subscriber::filter::Targets,
}

impl LogSettings {
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let info = || {
            tracing_subscriber::filter::Targets::new()
                .with_default(tracing::level_filters::LevelFilter::INFO)
        };
        let mut filter: tracing_subscriber::filter::Targets = lookup("AWS_LAMBDA_LOG_LEVEL")
            .or_else(|| lookup("RUST_LOG"))
            .and_then(|directives| directives.trim().parse().ok())
            .unwrap_or_else(info);
        for target in NEVER_TRACED {
            if filter.would_enable(target, &tracing::Level::TRACE) {
                filter = filter.with_target(target, tracing::level_filters::LevelFilter::DEBUG);
            }
        }
        Self {
            json: lookup("AWS_LAMBDA_LOG_FORMAT").is_some_and(|f| f.eq_ignore_ascii_case("json")),
            filter,
        }
    }
}

/// Where the CloudWatch metrics go: `METRICS_NAMESPACE` (default `UsersApi`), the `service`
/// dimension, `METRICS_SERVICE` (default `users-api`; the template gives the stack's name), and
/// the `version` dimension, the function's version (`AWS_LAMBDA_FUNCTION_VERSION`), so that a
/// canary's alarms can watch the new version alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    pub namespace: String,
    pub service: String,
    pub version: String,
    /// The environment runs one invocation at a time (no `AWS_LAMBDA_MAX_CONCURRENCY` above 1),
    /// so each metrics document holds one invocation's and may carry its request id.
    pub one_invocation_at_a_time: bool,
}

impl MetricsSettings {
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let named = |name, default: &str| {
            lookup(name)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        Self {
            namespace: named("METRICS_NAMESPACE", "UsersApi"),
            service: named("METRICS_SERVICE", "users-api"),
            version: named("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            one_invocation_at_a_time: lookup("AWS_LAMBDA_MAX_CONCURRENCY")
                .and_then(|value| value.trim().parse::<u32>().ok())
                .is_none_or(|concurrency| concurrency <= 1),
        }
    }
}

/// Where traces go: an OTLP/HTTP endpoint (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or
/// `OTEL_EXPORTER_OTLP_ENDPOINT` plus `/v1/traces`), none by default; and the traces'
/// `service.name` (`OTEL_SERVICE_NAME`, else the function's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracesSettings {
    pub endpoint: Option<String>,
    pub service: String,
}

impl TracesSettings {
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let set = |name| lookup(name).filter(|value: &String| !value.trim().is_empty());
        let endpoint = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| {
            set("OTEL_EXPORTER_OTLP_ENDPOINT")
                .map(|base| format!("{}/v1/traces", base.trim_end_matches('/')))
        });
        let service = set("OTEL_SERVICE_NAME")
            .or_else(|| set("AWS_LAMBDA_FUNCTION_NAME"))
            .unwrap_or_else(|| "users-api".to_owned());
        Self { endpoint, service }
    }
}

/// `PARAMETERS_SECRETS_EXTENSION_HTTP_PORT` is set: the extension listens on this localhost
/// port and authenticates callers by the environment's session token.
#[derive(Debug)]
pub struct SecretsExtension {
    pub port: u16,
    /// `AWS_SESSION_TOKEN`, which Lambda sets for the function's role.
    pub session_token: Option<SecretString>,
}

/// Where the database credentials come from.
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
        let database = DatabaseSettings {
            source: database_source(&lookup)?,
            endpoint: Endpoint {
                host: lookup("DB_HOST"),
                port: parse_optional(&lookup, "DB_PORT", "a port number")?,
                dbname: lookup("DB_NAME"),
            },
            ssl_mode: parse_optional(&lookup, "DB_SSLMODE", SSL_MODES)?,
            ssl_root_cert: lookup("DB_SSLROOTCERT").map(PathBuf::from),
            acquire_timeout: millis_or(&lookup, "DB_ACQUIRE_TIMEOUT_MS", 1_000)?,
            max_connections: parse_or(
                &lookup,
                "AWS_LAMBDA_MAX_CONCURRENCY",
                1_usize,
                "a whole number of invocations",
            )?
            .max(1),
            read_timeout: millis_or(&lookup, "DB_READ_TIMEOUT_MS", 2_000)?,
            backoff_min: millis_or(&lookup, "DB_BACKOFF_MIN_MS", 1_000)?,
            backoff_max: millis_or(&lookup, "DB_BACKOFF_MAX_MS", 1_500)?,
            idle_check_after: millis_or(&lookup, "DB_IDLE_CHECK_AFTER_MS", 1_000)?,
            liveness_timeout: millis_or(&lookup, "DB_LIVENESS_TIMEOUT_MS", 250)?,
            secret_refresh_interval: millis_or(&lookup, "DB_SECRET_REFRESH_INTERVAL_MS", 10_000)?,
            application_name: lookup("AWS_LAMBDA_FUNCTION_NAME")
                .unwrap_or_else(|| "users-api".to_owned()),
        };
        check_iam_auth(&database)?;
        Ok(Self {
            database,
            auth: auth_settings(&lookup)?,
            secrets_extension: secrets_extension(&lookup)?,
            health_timeout: millis_or(&lookup, "HEALTH_TIMEOUT_MS", 1_000)?,
            app_role_secret_id: lookup("DB_APP_SECRET_ID"),
            app_role_rds_iam: parse_or(&lookup, "DB_APP_GRANT_RDS_IAM", false, "true or false")?,
        })
    }
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

fn secrets_extension(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<Option<SecretsExtension>, ConfigError> {
    let port = parse_optional(
        lookup,
        "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT",
        "a port number",
    )?;
    Ok(port.map(|port| SecretsExtension {
        port,
        session_token: lookup("AWS_SESSION_TOKEN").map(SecretString::from),
    }))
}

/// Where the keys that verify bearer tokens come from: exactly one of three.
#[derive(Debug)]
pub enum KeySource {
    /// `JWT_SECRET_ID`: a Secrets Manager secret holding an HS256 secret or a PEM public key.
    SecretsManager(String),
    /// `JWT_KEY`: the same, inline (local use).
    Inline(SecretString),
    /// `JWT_JWKS_URL`: an issuer's JWKS document (Cognito, Auth0, any OIDC issuer).
    Jwks(String),
}

#[derive(Debug)]
pub struct AuthSettings {
    pub keys: KeySource,
    /// `JWT_ISSUER`: when set, `iss` must equal it. Required with `JWT_JWKS_URL`.
    pub issuer: Option<String>,
    /// `JWT_AUDIENCE`: a token whose `aud` contains it is for this API.
    pub audience: Option<String>,
    /// `JWT_CLIENT_IDS` (comma-separated): a token whose `client_id` is one of these is for
    /// this API. One of the two is required, so a token minted by the same issuer for another
    /// API is refused whatever its scopes.
    pub client_ids: Vec<String>,
    /// `JWT_JWKS_REFRESH_INTERVAL_MS`: least time between two JWKS fetches.
    pub jwks_refresh_interval: Duration,
    /// `JWT_JWKS_MAX_AGE_MS`: how long a fetched key set is trusted (the document's
    /// `Cache-Control: max-age` when shorter); then it is fetched again, and a key the issuer
    /// removed verifies no more tokens.
    pub jwks_max_age: Duration,
    /// `JWT_SCOPE_READ` and `JWT_SCOPE_WRITE`: the scope names that grant reading and changing
    /// users (`users:read`, `users:write`).
    pub scopes: ScopeNames,
}

/// The scope names that grant reading and changing users: `JWT_SCOPE_READ` and
/// `JWT_SCOPE_WRITE`, by default `users:read` and `users:write`. Issuers name scopes their own
/// way: Cognito, for one, writes a resource server's `<identifier>/<scope>` (`users-api/read`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeNames {
    pub read: String,
    pub write: String,
}

impl Default for ScopeNames {
    fn default() -> Self {
        Self {
            read: "users:read".to_owned(),
            write: "users:write".to_owned(),
        }
    }
}

fn auth_settings(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<Option<AuthSettings>, ConfigError> {
    let mut sources = [
        lookup("JWT_SECRET_ID").map(KeySource::SecretsManager),
        lookup("JWT_KEY").map(|key| KeySource::Inline(SecretString::from(key))),
        lookup("JWT_JWKS_URL").map(KeySource::Jwks),
    ]
    .into_iter()
    .flatten();
    let keys = match (sources.next(), sources.next()) {
        (None, _) => return Ok(None),
        (Some(_), Some(_)) => return Err(ConfigError::SeveralKeySources),
        (Some(keys), None) => keys,
    };
    let issuer = lookup("JWT_ISSUER");
    if let KeySource::Jwks(url) = &keys {
        check_jwks_url(url)?;
        // A key set is an issuer's: a token must say it is that issuer's (RFC 8725, 3.8), or
        // any token another tenant of a shared issuer minted would pass.
        if issuer.is_none() {
            return Err(ConfigError::JwksWithoutIssuer);
        }
    }
    let audience = lookup("JWT_AUDIENCE");
    let client_ids: Vec<String> = lookup("JWT_CLIENT_IDS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect();
    if audience.is_none() && client_ids.is_empty() {
        return Err(ConfigError::UnboundTokens);
    }
    Ok(Some(AuthSettings {
        keys,
        issuer,
        audience,
        client_ids,
        jwks_refresh_interval: millis_or(lookup, "JWT_JWKS_REFRESH_INTERVAL_MS", 60_000)?,
        jwks_max_age: millis_or(lookup, "JWT_JWKS_MAX_AGE_MS", 600_000)?,
        scopes: scope_names(lookup)?,
    }))
}

/// `JWT_SCOPE_READ` and `JWT_SCOPE_WRITE`: each a scope token (RFC 6749, 3.3: printable ASCII
/// without spaces, `"` or `\`), and not the same one.
fn scope_names(lookup: &impl Fn(&str) -> Option<String>) -> Result<ScopeNames, ConfigError> {
    let defaults = ScopeNames::default();
    let name = |variable: &'static str, default: String| {
        let value = lookup(variable).unwrap_or(default);
        let valid = !value.is_empty()
            && value
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
        match valid {
            true => Ok(value),
            false => Err(ConfigError::Invalid {
                name: variable,
                expected: "a scope name (printable ASCII, no spaces, quotes or backslashes)",
                value,
            }),
        }
    };
    let read = name("JWT_SCOPE_READ", defaults.read)?;
    let write = name("JWT_SCOPE_WRITE", defaults.write)?;
    if read == write {
        return Err(ConfigError::Invalid {
            name: "JWT_SCOPE_WRITE",
            expected: "a scope name other than JWT_SCOPE_READ's",
            value: write,
        });
    }
    Ok(ScopeNames { read, write })
}

/// Keys fetched over plain HTTP could be swapped by anyone on the path: `https://`, or
/// `http://` for a loopback host only (local stand-ins).
fn check_jwks_url(url: &str) -> Result<(), ConfigError> {
    let invalid = || ConfigError::Invalid {
        name: "JWT_JWKS_URL",
        expected: "an https:// URL (http:// only for a loopback host)",
        value: url.to_owned(),
    };
    let uri: hyper::Uri = url.parse().map_err(|_| invalid())?;
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => Ok(()),
        Some("http") if loopback => Ok(()),
        _ => Err(invalid()),
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
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_lookup(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn the_aws_variables_are_left_to_aws_config_and_never_printed() {
        let settings = settings(&[
            ("DATABASE_URL", "postgres://localhost/db"),
            ("AWS_ACCESS_KEY_ID", "ASIAEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret-access-key-9"),
            ("AWS_SESSION_TOKEN", "session-token-9"),
        ])
        .unwrap();

        let printed = format!("{settings:?}");
        assert!(!printed.contains("secret-access-key-9") && !printed.contains("session-token-9"));
    }

    #[test]
    fn the_log_level_and_format_follow_lambdas_controls_then_rust_log() {
        let log = |vars: &[(&str, &str)]| {
            LogSettings::from_lookup(|name| {
                vars.iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (*value).to_owned())
            })
        };

        let enabled = |settings: &LogSettings, target: &str, level| {
            settings.filter.would_enable(target, &level)
        };

        assert!(enabled(&log(&[]), "shared", tracing::Level::INFO));
        assert!(!enabled(&log(&[]), "shared", tracing::Level::DEBUG));
        assert!(!log(&[]).json);
        let directives = log(&[("RUST_LOG", "info,shared=debug,sqlx=warn")]);
        assert!(enabled(&directives, "shared::db", tracing::Level::DEBUG));
        assert!(!enabled(&directives, "sqlx::query", tracing::Level::INFO));
        assert!(enabled(&directives, "lambda_runtime", tracing::Level::INFO));
        let lambda = log(&[
            ("AWS_LAMBDA_LOG_LEVEL", "WARN"),
            ("RUST_LOG", "debug"),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ]);
        assert!(lambda.json);
        assert!(!enabled(&lambda, "shared", tracing::Level::INFO));
        assert!(enabled(&lambda, "shared", tracing::Level::WARN));
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
    fn no_log_level_lets_the_runtime_print_the_events_it_receives() {
        let log = |directives: &str| {
            LogSettings::from_lookup(|name| (name == "RUST_LOG").then(|| directives.to_owned()))
        };

        for directives in ["trace", "lambda_runtime=trace", "info,lambda_runtime=trace"] {
            let settings = log(directives);
            for target in NEVER_TRACED {
                let traced = settings.filter.would_enable(target, &tracing::Level::TRACE);
                assert!(!traced, "{directives}: {target}");
            }
        }
        let everything = log("trace");
        assert!(everything
            .filter
            .would_enable("lambda_runtime", &tracing::Level::DEBUG));
        assert!(everything
            .filter
            .would_enable("shared", &tracing::Level::TRACE));
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
    fn metrics_documents_carry_an_invocations_ids_only_when_it_runs_alone() {
        let with = |value: Option<&str>| {
            MetricsSettings::from_lookup(|name| {
                (name == "AWS_LAMBDA_MAX_CONCURRENCY")
                    .then(|| value.map(str::to_owned))
                    .flatten()
            })
            .one_invocation_at_a_time
        };

        assert!(with(None));
        assert!(with(Some("1")));
        assert!(!with(Some("8")));
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
    fn the_secret_id_and_the_extension_port_are_read() {
        let settings = settings(&[
            (
                "DB_SECRET_ID",
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf",
            ),
            ("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "2773"),
        ])
        .unwrap();
        let DatabaseSource::SecretsManager { secret_id } = settings.database.source else {
            panic!("expected Secrets Manager");
        };
        assert!(secret_id.ends_with(":secret:db-AbCdEf"));
        assert_eq!(settings.secrets_extension.unwrap().port, 2773);
    }

    #[test]
    fn exactly_one_jwt_key_source_may_be_set() {
        let url = ("DATABASE_URL", "postgres://localhost/db");
        let aud = ("JWT_AUDIENCE", "users-api");
        assert!(settings(&[url]).unwrap().auth.is_none());
        let iss = ("JWT_ISSUER", "https://idp.example");
        let jwks = settings(&[
            url,
            aud,
            iss,
            ("JWT_JWKS_URL", "https://idp.example/jwks.json"),
        ]);
        assert!(matches!(
            jwks.unwrap().auth.unwrap().keys,
            KeySource::Jwks(_)
        ));
        let both = settings(&[url, aud, ("JWT_KEY", "k"), ("JWT_SECRET_ID", "jwt")]);
        assert!(matches!(both.unwrap_err(), ConfigError::SeveralKeySources));
    }

    #[test]
    fn scope_names_default_to_users_read_and_write_and_may_be_the_issuers() {
        let base = [
            ("DATABASE_URL", "postgres://localhost/db"),
            ("JWT_KEY", "k"),
            ("JWT_CLIENT_IDS", "app-client-1"),
        ];
        let scopes = |extra: &[(&'static str, &'static str)]| {
            settings(&[&base[..], extra].concat()).map(|s| s.auth.unwrap().scopes)
        };

        let defaults = scopes(&[]).unwrap();
        let cognito = scopes(&[
            ("JWT_SCOPE_READ", "users-api/read"),
            ("JWT_SCOPE_WRITE", "users-api/write"),
        ])
        .unwrap();

        assert_eq!(
            (defaults.read.as_str(), defaults.write.as_str()),
            ("users:read", "users:write")
        );
        assert_eq!(
            (cognito.read.as_str(), cognito.write.as_str()),
            ("users-api/read", "users-api/write")
        );
        for bad in [
            [
                ("JWT_SCOPE_READ", "users read"),
                ("JWT_SCOPE_WRITE", "users:write"),
            ],
            [
                ("JWT_SCOPE_READ", "a\"b"),
                ("JWT_SCOPE_WRITE", "users:write"),
            ],
            [("JWT_SCOPE_READ", "same"), ("JWT_SCOPE_WRITE", "same")],
        ] {
            assert!(
                matches!(scopes(&bad), Err(ConfigError::Invalid { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn tokens_must_be_bound_to_this_api_by_audience_or_client_ids() {
        let url = ("DATABASE_URL", "postgres://localhost/db");
        let key = ("JWT_KEY", "k");

        let unbound = settings(&[url, key]).unwrap_err();
        let by_audience = settings(&[url, key, ("JWT_AUDIENCE", "users-api")]).unwrap();
        let by_clients = settings(&[url, key, ("JWT_CLIENT_IDS", " app-1, ,app-2 ")]).unwrap();

        assert!(matches!(unbound, ConfigError::UnboundTokens));
        assert_eq!(
            by_audience.auth.unwrap().audience.as_deref(),
            Some("users-api")
        );
        assert_eq!(by_clients.auth.unwrap().client_ids, ["app-1", "app-2"]);
    }

    #[test]
    fn a_jwks_url_over_plain_http_is_accepted_only_for_loopback() {
        let base = [
            ("DATABASE_URL", "postgres://localhost/db"),
            ("JWT_AUDIENCE", "users-api"),
            ("JWT_ISSUER", "https://idp.example"),
        ];
        for (url, accepted) in [
            ("https://idp.example/.well-known/jwks.json", true),
            ("http://127.0.0.1:8080/jwks.json", true),
            ("http://localhost/jwks.json", true),
            ("http://[::1]:9000/jwks.json", true),
            ("http://idp.example/jwks.json", false),
            ("http://10.0.0.7/jwks.json", false),
            ("ftp://idp.example/jwks.json", false),
            ("not a url", false),
        ] {
            let result = settings(&[base[0], base[1], base[2], ("JWT_JWKS_URL", url)]);
            assert_eq!(result.is_ok(), accepted, "{url}: {result:?}");
        }
    }

    #[test]
    fn keys_from_an_issuers_jwks_need_the_issuer_named() {
        let url = ("DATABASE_URL", "postgres://localhost/db");
        let aud = ("JWT_AUDIENCE", "users-api");
        let jwks = ("JWT_JWKS_URL", "https://idp.example/jwks.json");

        let without = settings(&[url, aud, jwks]).unwrap_err();
        let with = settings(&[url, aud, jwks, ("JWT_ISSUER", "https://idp.example")]).unwrap();
        let inline = settings(&[url, aud, ("JWT_KEY", "k")]).unwrap();

        assert!(matches!(without, ConfigError::JwksWithoutIssuer));
        assert!(without.to_string().contains("JWT_ISSUER"), "{without}");
        let auth = with.auth.unwrap();
        assert_eq!(auth.issuer.as_deref(), Some("https://idp.example"));
        assert_eq!(auth.jwks_max_age, Duration::from_secs(600));
        assert!(
            inline.auth.unwrap().issuer.is_none(),
            "a key of one's own needs no issuer"
        );
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
    fn the_extension_authenticates_with_the_session_token() {
        let with_port = settings(&[
            ("DB_SECRET_ID", "db"),
            ("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", "2773"),
            ("AWS_SESSION_TOKEN", "session-token"),
        ]);
        let without_port = settings(&[("DB_SECRET_ID", "db"), ("AWS_SESSION_TOKEN", "t")]);

        let extension = with_port.unwrap().secrets_extension.unwrap();
        assert_eq!(extension.port, 2773);
        assert_eq!(
            extension.session_token.unwrap().expose_secret(),
            "session-token"
        );
        assert!(without_port.unwrap().secrets_extension.is_none());
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
