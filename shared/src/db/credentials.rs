//! Database credentials from a secret's value: a `postgres://` URL, or the JSON document that
//! RDS and Secrets Manager rotation maintain.

use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

/// Where and as whom to connect, before the session settings are applied.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub(crate) options: PgConnectOptions,
    /// The `sslmode` the URL asked for, if it did.
    pub(crate) ssl_mode: Option<PgSslMode>,
}

/// `DB_HOST`, `DB_PORT`, `DB_NAME`: where to connect, over what the secret says. An
/// RDS-managed master secret holds only `username` and `password`; an RDS Proxy has its own
/// endpoint in front of the database the secret names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoint {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub dbname: Option<String>,
}

impl Endpoint {
    pub(crate) fn apply(&self, mut options: PgConnectOptions) -> PgConnectOptions {
        if let Some(host) = &self.host {
            options = options.host(host);
        }
        if let Some(port) = self.port {
            options = options.port(port);
        }
        if let Some(dbname) = &self.dbname {
            options = options.database(dbname);
        }
        options
    }
}

/// What is wrong with a secret. Messages name fields, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("the value is not a valid postgres:// URL")]
    InvalidUrl,
    #[error("the value is neither a postgres:// URL nor a JSON object")]
    NotUrlOrJson,
    #[error("the JSON has no {0:?} string")]
    MissingField(&'static str),
    #[error("the JSON's \"port\" is not a port number")]
    InvalidPort,
    #[error("the JSON's \"engine\" is {0:?}, not postgres")]
    WrongEngine(String),
}

impl Credentials {
    pub fn from_url(url: &str) -> Result<Self, CredentialsError> {
        let url = url.trim();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(CredentialsError::InvalidUrl);
        }
        let options = PgConnectOptions::from_str(url).map_err(|_| CredentialsError::InvalidUrl)?;
        let ssl_mode = url
            .split_once('?')
            .is_some_and(|(_, query)| query.split('&').any(|pair| pair.starts_with("sslmode=")))
            .then(|| options.get_ssl_mode());
        Ok(Self { options, ssl_mode })
    }

    /// A secret holding either a URL or
    /// `{"engine":"postgres","host":…,"port":5432,"username":…,"password":…,"dbname":…}`
    /// (`port` a number or a string, `dbname` optional, other keys ignored).
    /// `host` may be absent when `endpoint` names one.
    pub fn from_secret(
        value: &SecretString,
        endpoint: &Endpoint,
    ) -> Result<Self, CredentialsError> {
        let text = value.expose_secret().trim();
        if !text.starts_with('{') {
            return match Self::from_url(text) {
                Err(CredentialsError::InvalidUrl) if !text.contains("://") => {
                    Err(CredentialsError::NotUrlOrJson)
                }
                other => other,
            };
        }
        // serde_json's messages can quote the input; report our own instead.
        let json: Map<String, Value> =
            serde_json::from_str(text).map_err(|_| CredentialsError::NotUrlOrJson)?;
        Self::from_json(&json, endpoint)
    }

    fn from_json(json: &Map<String, Value>, endpoint: &Endpoint) -> Result<Self, CredentialsError> {
        let string = |field: &'static str| {
            json.get(field)
                .and_then(Value::as_str)
                .filter(|value| !value.is_empty())
                .ok_or(CredentialsError::MissingField(field))
        };
        if let Some(engine) = json.get("engine").and_then(Value::as_str) {
            if !matches!(engine, "postgres" | "postgresql" | "aurora-postgresql") {
                return Err(CredentialsError::WrongEngine(engine.to_owned()));
            }
        }
        let port = match json.get("port") {
            None | Some(Value::Null) => 5432,
            Some(Value::Number(number)) => number
                .as_u64()
                .and_then(|port| u16::try_from(port).ok())
                .ok_or(CredentialsError::InvalidPort)?,
            Some(Value::String(text)) => text
                .trim()
                .parse()
                .map_err(|_| CredentialsError::InvalidPort)?,
            Some(_) => return Err(CredentialsError::InvalidPort),
        };
        // Built field by field, never through a URL, so any character in a rotated password
        // (`@`, `/`, `%`, …) is taken literally.
        let host = match &endpoint.host {
            Some(host) => host.as_str(),
            None => string("host")?,
        };
        let mut options = PgConnectOptions::new_without_pgpass()
            .host(host)
            .port(port)
            .username(string("username")?)
            .password(string("password")?);
        if let Some(dbname) = json.get("dbname").and_then(Value::as_str) {
            options = options.database(dbname);
        }
        Ok(Self {
            options,
            ssl_mode: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Result<Credentials, CredentialsError> {
        Credentials::from_secret(&SecretString::from(value.to_owned()), &Endpoint::default())
    }

    #[test]
    fn an_rds_managed_secret_needs_only_the_endpoint_from_the_environment() {
        let endpoint = Endpoint {
            host: Some("users.cluster-x.eu-west-1.rds.amazonaws.com".into()),
            port: Some(5432),
            dbname: Some("users".into()),
        };
        let secret = SecretString::from(r#"{"username":"postgres","password":"p"}"#.to_owned());

        let credentials = Credentials::from_secret(&secret, &endpoint).unwrap();
        let options = endpoint.apply(credentials.options);

        assert_eq!(
            options.get_host(),
            "users.cluster-x.eu-west-1.rds.amazonaws.com"
        );
        assert_eq!(options.get_database(), Some("users"));
        assert_eq!(options.get_username(), "postgres");
    }

    #[test]
    fn a_url_secret_is_read_with_its_sslmode() {
        let credentials =
            parse("postgres://app:pw@db.internal:6543/users?sslmode=verify-full").unwrap();
        assert_eq!(credentials.options.get_host(), "db.internal");
        assert_eq!(credentials.options.get_port(), 6543);
        assert_eq!(credentials.options.get_username(), "app");
        assert_eq!(credentials.options.get_database(), Some("users"));
        assert!(matches!(credentials.ssl_mode, Some(PgSslMode::VerifyFull)));
        assert!(parse("postgresql://app:pw@db/users")
            .unwrap()
            .ssl_mode
            .is_none());
    }

    #[test]
    fn the_rds_json_secret_is_read_with_a_numeric_or_string_port() {
        for port in [json_port("5433"), json_port("\"5433\"")] {
            let credentials = parse(&port).unwrap();
            assert_eq!(
                credentials.options.get_host(),
                "db.cluster-x.eu-west-1.rds.amazonaws.com"
            );
            assert_eq!(credentials.options.get_port(), 5433);
            assert_eq!(credentials.options.get_username(), "app");
            assert_eq!(credentials.options.get_database(), Some("users"));
        }
    }

    fn json_port(port: &str) -> String {
        format!(
            r#"{{"engine":"postgres","host":"db.cluster-x.eu-west-1.rds.amazonaws.com","port":{port},
                "username":"app","password":"p@ss/w%rd:","dbname":"users","dbClusterIdentifier":"x"}}"#
        )
    }

    #[test]
    fn dbname_and_port_are_optional() {
        let credentials = parse(r#"{"host":"h","username":"u","password":"p"}"#).unwrap();
        assert_eq!(credentials.options.get_port(), 5432);
    }

    #[test]
    fn bad_secrets_are_explained_without_their_values() {
        for (value, expected) in [
            ("hunter2", CredentialsError::NotUrlOrJson),
            ("", CredentialsError::NotUrlOrJson),
            ("mysql://u:hunter2@h/db", CredentialsError::InvalidUrl),
            (
                "postgres://u:hunter2@h:notaport/db",
                CredentialsError::InvalidUrl,
            ),
            (
                r#"{"host": "h", "password": "hunter2""#,
                CredentialsError::NotUrlOrJson,
            ),
            (r#"["hunter2"]"#, CredentialsError::NotUrlOrJson),
            (
                r#"{"host":"h","password":"hunter2"}"#,
                CredentialsError::MissingField("username"),
            ),
            (
                r#"{"username":"u","password":"hunter2"}"#,
                CredentialsError::MissingField("host"),
            ),
            (
                r#"{"host":"h","username":"u","password":42}"#,
                CredentialsError::MissingField("password"),
            ),
            (
                r#"{"host":"h","username":"u","password":"hunter2","port":"x"}"#,
                CredentialsError::InvalidPort,
            ),
            (
                r#"{"host":"h","username":"u","password":"hunter2","port":70000}"#,
                CredentialsError::InvalidPort,
            ),
            (
                r#"{"engine":"mysql","host":"h","username":"u","password":"hunter2"}"#,
                CredentialsError::WrongEngine("mysql".into()),
            ),
        ] {
            let err = parse(value).unwrap_err();
            assert_eq!(err, expected, "{value}");
            assert!(!err.to_string().contains("hunter2"));
        }
    }
}
