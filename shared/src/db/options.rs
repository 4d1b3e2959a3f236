//! Connection policy: what every connection gets on top of its credentials. The endpoint
//! overrides (`DB_HOST`, `DB_PORT`, `DB_NAME`), the TLS default, the application name, and no
//! named statements.
//!
//! A session carries no state a proxy would have to keep for it, so that RDS Proxy or PgBouncer
//! in transaction mode can hand each statement to whichever server connection is free:
//!
//! - Nothing else goes into the startup packet or follows it: RDS Proxy refuses a startup
//!   packet with `options`, and pins a session that runs `SET`. Per-session limits are the
//!   database's defaults instead (`migrations/0005_session_defaults.sql`).
//! - No named prepared statements (SQLx's statement cache is off): each statement is parsed
//!   unnamed, in the same flight as its execution (vendor/README.md), so a warm request is one
//!   round trip whether or not a proxy sits in between. `DB_NAMED_STATEMENTS=true` names them
//!   instead (one more round trip the first time a connection runs each), for a server reached
//!   directly (docs/production.md, "Named statements": `make bench` compares the two).

use sqlx::postgres::{PgConnectOptions, PgSslMode};

use super::Credentials;
use crate::config::{DatabaseSettings, DatabaseSource, Endpoint};

/// Room for every statement the crate runs, named, on one connection (SQLx's cache closes the
/// least recently used one past it).
const STATEMENT_CACHE_CAPACITY: usize = 64;

/// The options to connect with `credentials` under `settings`.
///
/// TLS, unless `DB_SSLMODE` or the URL says otherwise: `require` for a secret from Secrets
/// Manager or IAM authentication (a real database in AWS), `prefer` for `DATABASE_URL` (local
/// use).
pub(super) fn connect_options(
    settings: &DatabaseSettings,
    credentials: Credentials,
) -> PgConnectOptions {
    let default_ssl_mode = match settings.source {
        DatabaseSource::SecretsManager { .. } | DatabaseSource::IamAuth { .. } => {
            PgSslMode::Require
        }
        DatabaseSource::Url(_) => PgSslMode::Prefer,
    };
    let ssl_mode = settings
        .ssl_mode
        .or(credentials.ssl_mode)
        .unwrap_or(default_ssl_mode);
    let mut options = with_endpoint(credentials.options, &settings.endpoint)
        .ssl_mode(ssl_mode)
        .application_name(&settings.application_name)
        .statement_cache_capacity(if settings.named_statements {
            STATEMENT_CACHE_CAPACITY
        } else {
            0
        });
    if let Some(path) = &settings.ssl_root_cert {
        options = options.ssl_root_cert(path);
    }
    options
}

fn with_endpoint(mut options: PgConnectOptions, endpoint: &Endpoint) -> PgConnectOptions {
    if let Some(host) = &endpoint.host {
        options = options.host(host);
    }
    if let Some(port) = endpoint.port {
        options = options.port(port);
    }
    if let Some(dbname) = &endpoint.dbname {
        options = options.database(dbname);
    }
    options
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;
    use crate::config::{DatabaseUrl, Settings};

    fn settings(vars: &[(&str, &str)]) -> DatabaseSettings {
        Settings::from_lookup(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
        .unwrap()
        .database
    }

    fn credentials(url: &str) -> Credentials {
        Credentials::from(&DatabaseUrl::parse(url).unwrap())
    }

    #[test]
    fn ssl_mode_defaults_to_require_for_secrets_and_prefer_for_urls() {
        let from_secret = settings(&[("DB_SECRET_ID", "db")]);
        let from_url = settings(&[("DATABASE_URL", "postgres://localhost/db")]);
        let url = "postgres://u:p@db.internal/app";

        let secret_mode = connect_options(&from_secret, credentials(url)).get_ssl_mode();
        let url_mode = connect_options(&from_url, credentials(url)).get_ssl_mode();

        assert!(matches!(secret_mode, PgSslMode::Require));
        assert!(matches!(url_mode, PgSslMode::Prefer));
    }

    #[test]
    fn the_startup_packet_carries_no_options_parameter_which_rds_proxy_refuses() {
        let settings = settings(&[("DB_SECRET_ID", "db")]);

        let options = connect_options(&settings, credentials("postgres://u:p@h/app"));

        assert_eq!(options.get_options(), None);
    }

    #[test]
    fn an_explicit_ssl_mode_wins_over_the_url_and_the_default() {
        let settings = settings(&[("DB_SECRET_ID", "db"), ("DB_SSLMODE", "verify-full")]);
        let credentials = credentials("postgres://u:p@h/app?sslmode=disable");

        let options = connect_options(&settings, credentials);

        assert!(matches!(options.get_ssl_mode(), PgSslMode::VerifyFull));
    }

    #[test]
    fn the_endpoint_variables_override_where_the_secret_points() {
        let settings = settings(&[
            ("DB_SECRET_ID", "db"),
            ("DB_HOST", "proxy.proxy-x.eu-west-1.rds.amazonaws.com"),
            ("DB_PORT", "6432"),
            ("DB_NAME", "users"),
            ("AWS_LAMBDA_FUNCTION_NAME", "users-api-get-user"),
        ]);
        let secret = SecretString::from(r#"{"username":"app","password":"p"}"#.to_owned());
        let credentials = Credentials::from_secret(&secret, &settings.endpoint).unwrap();

        let options = connect_options(&settings, credentials);

        assert_eq!(
            options.get_host(),
            "proxy.proxy-x.eu-west-1.rds.amazonaws.com"
        );
        assert_eq!(options.get_port(), 6432);
        assert_eq!(options.get_database(), Some("users"));
        assert_eq!(options.get_username(), "app");
        assert_eq!(options.get_application_name(), Some("users-api-get-user"));
    }
}
