//! A local Secrets Manager: `moto_server` from the project's virtualenv on a free loopback
//! port, driven through the real AWS SDK. Mocks AWS itself, nothing else.

use std::{path::PathBuf, process::Stdio, time::Duration};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_secretsmanager::{config::Credentials, Client};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use tokio::process::{Child, Command};

use crate::{free_port, workspace};

pub struct Moto {
    pub endpoint: String,
    client: Client,
    _server: Child,
}

impl Moto {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// `INITIAL_NO_AUTH_ACTION_COUNT=n` makes moto enforce IAM after n requests.
    pub async fn start_with(env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let binary: PathBuf = workspace().join(".venv/bin/moto_server");
        let server = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "start {}: {err}; run scripts/bootstrap.sh",
                    binary.display()
                )
            });
        let endpoint = format!("http://127.0.0.1:{port}");
        let client = sdk_client(&endpoint, "testing", "testing").await;
        let moto = Self {
            endpoint,
            client,
            _server: server,
        };
        moto.wait_until_ready().await;
        moto
    }

    async fn wait_until_ready(&self) {
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(self.endpoint.trim_start_matches("http://"))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("moto_server did not start at {}", self.endpoint);
    }

    /// What a function needs to reach this Secrets Manager with the standard AWS chain.
    pub fn function_env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
    }

    /// [`Moto::function_env`] plus the database secret `secret_id` (`DB_SECRET_ID`) and
    /// `DB_SSLMODE=disable` (the throwaway cluster has no TLS; the production default is
    /// `require`).
    pub fn database_env(&self, secret_id: &str) -> Vec<(String, String)> {
        let mut env = self.function_env();
        env.push(("DB_SECRET_ID".into(), secret_id.into()));
        env.push(("DB_SSLMODE".into(), "disable".into()));
        env
    }

    pub async fn create_secret(&self, name: &str, value: &str) -> String {
        let output = self
            .client
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .expect("create the secret");
        output.arn().expect("an ARN").to_owned()
    }

    /// A new version of the secret, made current (what rotation's `finishSecret` leaves).
    pub async fn put_secret(&self, name: &str, value: &str) {
        self.client
            .put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .send()
            .await
            .expect("put the secret value");
    }

    /// A new version staged as `AWSPENDING` only (what rotation's `createSecret` leaves).
    pub async fn put_pending_secret(&self, name: &str, value: &str) {
        self.client
            .put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .version_stages("AWSPENDING")
            .send()
            .await
            .expect("put the pending secret value");
    }

    /// An IAM user with no policy, through moto's IAM query API: its keys are denied
    /// `secretsmanager:GetSecretValue`. Returns (access key id, secret access key). Two
    /// requests, for `INITIAL_NO_AUTH_ACTION_COUNT`.
    pub async fn user_without_permissions(&self, name: &str) -> (String, String) {
        self.iam(&format!("Action=CreateUser&UserName={name}"))
            .await;
        let keys = self
            .iam(&format!("Action=CreateAccessKey&UserName={name}"))
            .await;
        (
            xml_element(&keys, "AccessKeyId"),
            xml_element(&keys, "SecretAccessKey"),
        )
    }

    /// An IAM user allowed `secretsmanager:GetSecretValue` on every secret, whose keys are
    /// then the only ones that work once moto enforces IAM. Three requests.
    pub async fn user_allowed_to_read_secrets(&self, name: &str) -> (String, String) {
        let keys = self.user_without_permissions(name).await;
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("Action", "PutUserPolicy")
            .append_pair("UserName", name)
            .append_pair("PolicyName", "read-secrets")
            .append_pair("PolicyDocument", &read_secrets_policy())
            .finish();
        self.iam(&body).await;
        keys
    }

    /// A role allowed `secretsmanager:GetSecretValue` on every secret, assumed: its temporary
    /// credentials (access key id, secret access key, session token), what ECS gives a task.
    /// Three requests.
    pub async fn assumed_role_allowed_to_read_secrets(&self, name: &str) -> [String; 3] {
        let trust = serde_json::json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }]})
        .to_string();
        let policy = read_secrets_policy();
        let form = |pairs: &[(&str, &str)]| {
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish()
        };
        self.iam(&form(&[
            ("Action", "CreateRole"),
            ("RoleName", name),
            ("AssumeRolePolicyDocument", &trust),
        ]))
        .await;
        self.iam(&form(&[
            ("Action", "PutRolePolicy"),
            ("RoleName", name),
            ("PolicyName", "read-secrets"),
            ("PolicyDocument", &policy),
        ]))
        .await;
        let role = format!("arn:aws:iam::123456789012:role/{name}");
        let assumed = self
            .query(
                "sts",
                "2011-06-15",
                &form(&[
                    ("Action", "AssumeRole"),
                    ("RoleArn", &role),
                    ("RoleSessionName", "e2e"),
                ]),
            )
            .await;
        ["AccessKeyId", "SecretAccessKey", "SessionToken"].map(|name| xml_element(&assumed, name))
    }

    /// One call of moto's IAM query API (`body` without the version), its XML answer.
    async fn iam(&self, body: &str) -> String {
        self.query("iam", "2010-05-08", body).await
    }

    /// One call of a query API of moto's (`service`, `version`), its XML answer.
    async fn query(&self, service: &str, version: &str, body: &str) -> String {
        reqwest::Client::new()
            .post(&self.endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .header(
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{service}/\
                     aws4_request, SignedHeaders=host, Signature=0"
                ),
            )
            .body(format!("{body}&Version={version}"))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .unwrap_or_else(|err| panic!("moto IAM {body}: {err}"))
            .text()
            .await
            .expect("read moto's IAM answer")
    }
}

/// An IAM policy allowing `secretsmanager:GetSecretValue` on every secret.
fn read_secrets_policy() -> String {
    serde_json::json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Action": "secretsmanager:GetSecretValue",
        "Resource": "*",
    }]})
    .to_string()
}

fn xml_element(xml: &str, name: &str) -> String {
    let start = xml
        .find(&format!("<{name}>"))
        .unwrap_or_else(|| panic!("no <{name}> in {xml}"))
        + name.len()
        + 2;
    let end = xml[start..].find('<').expect("a closing tag") + start;
    xml[start..end].to_owned()
}

async fn sdk_client(endpoint: &str, key: &str, secret: &str) -> Client {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let config = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(key, secret, None, None, "e2e"))
        .load()
        .await;
    Client::new(&config)
}
