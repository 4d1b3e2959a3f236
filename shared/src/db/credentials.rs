//! Database credentials from a secret's value: a `postgres://` URL, or the JSON document that
//! RDS and Secrets Manager rotation maintain.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use crate::config::{DatabaseUrl, Endpoint};

/// Where and as whom to connect, before the session settings are applied.
#[derive(Clone)]
pub struct Credentials {
    pub(super) options: PgConnectOptions,
    /// The `sslmode` a URL asked for, if it did.
    pub(super) ssl_mode: Option<PgSslMode>,
}

/// Where the credentials point, never the password.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let options = &self.options;
        f.debug_struct("Credentials")
            .field("username", &options.get_username())
            .field("host", &options.get_host())
            .field("port", &options.get_port())
            .field("database", &options.get_database())
            .finish_non_exhaustive()
    }
}

impl From<&DatabaseUrl> for Credentials {
    fn from(url: &DatabaseUrl) -> Self {
        Self {
            options: url.options().clone(),
            ssl_mode: url.ssl_mode(),
        }
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
            return match DatabaseUrl::parse(text) {
                Ok(url) => Ok(Self::from(&url)),
                Err(_) if text.contains("://") => Err(CredentialsError::InvalidUrl),
                Err(_) => Err(CredentialsError::NotUrlOrJson),
            };
        }
        Self::from_json(&json_object(text)?, endpoint)
    }

    fn from_json(json: &Map<String, Value>, endpoint: &Endpoint) -> Result<Self, CredentialsError> {
        let string = |field| required_string(json, field);
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

/// A secret's value as the JSON object RDS and rotation write.
pub(super) fn json_object(text: &str) -> Result<Map<String, Value>, CredentialsError> {
    // serde_json's messages can quote the input; report our own instead.
    serde_json::from_str(text).map_err(|_| CredentialsError::NotUrlOrJson)
}

/// A member of that object that must be a non-empty string.
pub(super) fn required_string<'a>(
    json: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a str, CredentialsError> {
    json.get(field)
        .and_then(Value::as_str)
        .filter(|value| !value.is_empty())
        .ok_or(CredentialsError::MissingField(field))
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

        assert_eq!(
            credentials.options.get_host(),
            "users.cluster-x.eu-west-1.rds.amazonaws.com"
        );
        assert_eq!(credentials.options.get_username(), "postgres");
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
        let mut secret = serde_json::json!({
            "engine": "postgres",
            "host": "db.cluster-x.eu-west-1.rds.amazonaws.com",
            "username": "app",
            "password": "p@ss/w%rd:",
            "dbname": "users",
            "dbClusterIdentifier": "x",
        });
        secret["port"] = serde_json::from_str(port).unwrap();
        secret.to_string()
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
