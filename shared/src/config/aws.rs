//! The AWS parts that are not `aws-config`'s: the Parameters and Secrets Lambda Extension.
//! Region, credentials and endpoints are left to `aws-config` (`crate::aws`).

use secrecy::SecretString;

use super::{parse_optional, ConfigError};

/// `PARAMETERS_SECRETS_EXTENSION_HTTP_PORT` is set: the extension listens on this localhost
/// port and authenticates callers by the environment's session token.
#[derive(Debug)]
pub struct SecretsExtension {
    pub port: u16,
    /// `AWS_SESSION_TOKEN`, which Lambda sets for the function's role.
    pub session_token: Option<SecretString>,
}

pub(super) fn secrets_extension(
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

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use crate::config::{tests::settings, DatabaseSource};

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
}
