//! Reading secrets from AWS Secrets Manager: through the SDK (the default), or through the AWS
//! Parameters and Secrets Lambda Extension when `PARAMETERS_SECRETS_EXTENSION_HTTP_PORT` is set.
//!
//! The client is built once per execution environment. Its timeouts and retries are explicit so
//! a slow or unreachable Secrets Manager costs seconds, not the whole Lambda timeout.

use std::time::Duration;

use anyhow::Context;
use aws_config::SdkConfig;
use aws_sdk_secretsmanager::{
    error::{ProvideErrorMetadata, SdkError},
    operation::get_secret_value::GetSecretValueError,
};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use secrecy::{ExposeSecret, SecretString};

use crate::{
    aws,
    config::SecretsExtension,
    outbound_http::{self, OutboundHttp},
};

/// The extension's answer, like the SDK's operations ([`aws::OPERATION_TIMEOUT`]).
const OPERATION_TIMEOUT: Duration = aws::OPERATION_TIMEOUT;

/// A secret's value and the version it came from.
pub struct SecretValue {
    pub version_id: Option<String>,
    pub value: SecretString,
}

/// The staging label to read: rotation writes `AWSPENDING`, then moves `AWSCURRENT` to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Current,
    Pending,
}

impl Stage {
    fn label(self) -> &'static str {
        match self {
            Self::Current => "AWSCURRENT",
            Self::Pending => "AWSPENDING",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret {0:?} (or that version of it) does not exist")]
    NotFound(String),
    #[error(
        "access to secret {0:?} is denied: grant secretsmanager:GetSecretValue on it \
         (and kms:Decrypt on its key)"
    )]
    AccessDenied(String),
    #[error("secret {0:?} has no string value")]
    NotAString(String),
    /// Secrets Manager (or the extension) could not be reached or did not answer, or is
    /// failing or throttling: worth trying again later, unlike the other errors.
    #[error("Secrets Manager is unavailable for secret {secret_id:?}")]
    Unavailable {
        secret_id: String,
        #[source]
        source: anyhow::Error,
    },
    #[error("failed to read secret {secret_id:?}")]
    Failed {
        secret_id: String,
        #[source]
        source: anyhow::Error,
    },
}

#[derive(Clone)]
pub enum SecretsClient {
    Sdk(aws_sdk_secretsmanager::Client),
    Extension(Box<ExtensionClient>),
}

impl std::fmt::Debug for SecretsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sdk(_) => f.write_str("SecretsClient::Sdk"),
            Self::Extension(client) => write!(f, "SecretsClient::Extension(port {})", client.port),
        }
    }
}

impl SecretsClient {
    /// The extension when it is configured (`PARAMETERS_SECRETS_EXTENSION_HTTP_PORT`), else
    /// the SDK, configured by `aws-config` ([`aws::sdk_config`]).
    pub async fn new(extension: Option<&SecretsExtension>) -> Self {
        match extension {
            Some(extension) => Self::extension(extension.port, extension.session_token.clone()),
            None => Self::sdk(&aws::sdk_config().await),
        }
    }

    pub fn sdk(config: &SdkConfig) -> Self {
        Self::Sdk(aws_sdk_secretsmanager::Client::new(config))
    }

    /// The Parameters and Secrets Lambda Extension on `localhost:port`, which caches secrets
    /// inside the execution environment. It authenticates callers by the session token.
    pub fn extension(port: u16, session_token: Option<SecretString>) -> Self {
        Self::Extension(Box::new(ExtensionClient {
            port,
            session_token,
            http: outbound_http::client(),
        }))
    }

    #[tracing::instrument(name = "Read a secret", skip(self), fields(version_id))]
    pub async fn get(&self, secret_id: &str, stage: Stage) -> Result<SecretValue, SecretError> {
        let value = match self {
            Self::Sdk(client) => get_with_sdk(client, secret_id, stage).await,
            Self::Extension(client) => client.get(secret_id, stage).await,
        }?;
        tracing::Span::current().record("version_id", value.version_id.as_deref());
        Ok(value)
    }
}

async fn get_with_sdk(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
    stage: Stage,
) -> Result<SecretValue, SecretError> {
    let output = client
        .get_secret_value()
        .secret_id(secret_id)
        .version_stage(stage.label())
        .send()
        .await
        .map_err(|err| sdk_error(secret_id, err))?;
    let value = output
        .secret_string()
        .ok_or_else(|| SecretError::NotAString(secret_id.to_owned()))?;
    Ok(SecretValue {
        version_id: output.version_id().map(str::to_owned),
        value: SecretString::from(value),
    })
}

fn sdk_error(secret_id: &str, err: SdkError<GetSecretValueError>) -> SecretError {
    let status = err
        .raw_response()
        .map(|response| response.status().as_u16());
    let code = err.code().unwrap_or_default().to_owned();
    // No answer at all (connect, timeout), a server error, or throttling.
    let transient = matches!(
        err,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
    ) || status.is_some_and(|status| status >= 500 || status == 429)
        || matches!(&*code, "InternalServiceError" | "ThrottlingException");
    if transient {
        return SecretError::Unavailable {
            secret_id: secret_id.to_owned(),
            source: anyhow::Error::new(err),
        };
    }
    match err.into_service_error() {
        GetSecretValueError::ResourceNotFoundException(_) => {
            SecretError::NotFound(secret_id.to_owned())
        }
        _ if code.starts_with("AccessDenied") || status == Some(403) => {
            SecretError::AccessDenied(secret_id.to_owned())
        }
        other => SecretError::Failed {
            secret_id: secret_id.to_owned(),
            source: anyhow::Error::new(other),
        },
    }
}

#[derive(Clone)]
pub struct ExtensionClient {
    port: u16,
    session_token: Option<SecretString>,
    http: OutboundHttp,
}

impl ExtensionClient {
    async fn get(&self, secret_id: &str, stage: Stage) -> Result<SecretValue, SecretError> {
        let failed = |source: anyhow::Error| SecretError::Failed {
            secret_id: secret_id.to_owned(),
            source,
        };
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("secretId", secret_id)
            .append_pair("versionStage", stage.label())
            .finish();
        let mut request = hyper::Request::get(format!(
            "http://localhost:{}/secretsmanager/get?{query}",
            self.port
        ));
        if let Some(token) = &self.session_token {
            request = request.header("X-Aws-Parameters-Secrets-Token", token.expose_secret());
        }
        let request = request
            .body(Full::new(Bytes::new()))
            .context("Failed to build the extension request")
            .map_err(failed)?;
        let exchange = async {
            let response = self.http.request(request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        };
        let unavailable = |source: anyhow::Error| SecretError::Unavailable {
            secret_id: secret_id.to_owned(),
            source,
        };
        let (status, body) = tokio::time::timeout(OPERATION_TIMEOUT, exchange)
            .await
            .context("The secrets extension did not answer in time")
            .and_then(|result| result.context("The secrets extension request failed"))
            .map_err(unavailable)?;
        let text = String::from_utf8_lossy(&body);
        match status {
            200 => {}
            404 => return Err(SecretError::NotFound(secret_id.to_owned())),
            _ if text.contains("ResourceNotFoundException") => {
                return Err(SecretError::NotFound(secret_id.to_owned()))
            }
            _ if status == 403 || text.contains("AccessDenied") => {
                return Err(SecretError::AccessDenied(secret_id.to_owned()))
            }
            _ if status >= 500 || status == 429 => {
                return Err(unavailable(anyhow::anyhow!(
                    "the secrets extension answered {status}"
                )))
            }
            _ => {
                return Err(failed(anyhow::anyhow!(
                    "the secrets extension answered {status}"
                )))
            }
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Response {
            version_id: Option<String>,
            secret_string: Option<String>,
        }
        let response: Response = serde_json::from_slice(&body).map_err(|_| {
            failed(anyhow::anyhow!(
                "the secrets extension's answer is not the expected JSON"
            ))
        })?;
        let value = response
            .secret_string
            .ok_or_else(|| SecretError::NotAString(secret_id.to_owned()))?;
        Ok(SecretValue {
            version_id: response.version_id,
            value: SecretString::from(value),
        })
    }
}

#[cfg(test)]
mod tests {
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    use super::*;

    /// A stand-in for the extension: answers one request with `status` and `body`, and hands
    /// back the request head it received.
    async fn fake_extension(status: &str, body: &str) -> (u16, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let length = body.len();
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
             content-length: {length}\r\nconnection: close\r\n\r\n{body}"
        );
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buffer = [0; 1024];
            while !head.ends_with(b"\r\n\r\n") {
                let read = socket.read(&mut buffer).await.unwrap();
                head.extend_from_slice(&buffer[..read]);
            }
            socket.write_all(response.as_bytes()).await.unwrap();
            String::from_utf8(head).unwrap()
        });
        (port, server)
    }

    #[tokio::test]
    async fn the_extension_is_asked_with_the_session_token_and_its_answer_read() {
        let body = serde_json::json!({
            "ARN": "arn:aws:secretsmanager:eu-west-1:1:secret:prod/db-AbC",
            "Name": "prod/db",
            "VersionId": "v-2",
            "SecretString": "postgres://u:p@h/db",
            "VersionStages": ["AWSPENDING"],
        })
        .to_string();
        let (port, server) = fake_extension("200 OK", &body).await;
        let client = SecretsClient::extension(port, Some(SecretString::from("session-token")));

        let secret = client.get("prod/db", Stage::Pending).await.unwrap();

        assert_eq!(secret.version_id.as_deref(), Some("v-2"));
        assert_eq!(secret.value.expose_secret(), "postgres://u:p@h/db");
        let head = server.await.unwrap().to_ascii_lowercase();
        assert!(
            head.starts_with("get /secretsmanager/get?secretid=prod%2fdb&versionstage=awspending "),
            "{head}"
        );
        assert!(
            head.contains("x-aws-parameters-secrets-token: session-token"),
            "{head}"
        );
    }

    #[tokio::test]
    async fn the_extensions_errors_are_classified() {
        for (status, body, expected) in [
            ("404 Not Found", "not found", "does not exist"),
            (
                "400 Bad Request",
                "ResourceNotFoundException: no such version",
                "does not exist",
            ),
            ("403 Forbidden", "", "is denied"),
            ("500 Internal Server Error", "boom", "is unavailable"),
            (
                "400 Bad Request",
                "InvalidRequestException",
                "failed to read",
            ),
            ("200 OK", "not json", "failed to read"),
            ("200 OK", r#"{"VersionId":"v"}"#, "has no string value"),
        ] {
            let (port, _server) = fake_extension(status, body).await;
            let client = SecretsClient::extension(port, None);

            let err = client
                .get("db", Stage::Current)
                .await
                .err()
                .expect("an error");

            assert!(err.to_string().contains(expected), "{status} {body}: {err}");
        }
    }
}
