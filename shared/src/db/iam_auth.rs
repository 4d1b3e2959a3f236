//! IAM database authentication: the password is an RDS auth token, a SigV4-presigned `connect`
//! request signed locally with the function's role credentials (no network call), valid for 15
//! minutes. A new one is signed for every new connection.

use std::{
    sync::Mutex,
    time::{Duration, SystemTime},
};

use anyhow::Context;
use aws_config::SdkConfig;
use aws_credential_types::{
    provider::{ProvideCredentials, SharedCredentialsProvider},
    Credentials as AwsCredentials,
};
use aws_sigv4::{
    http_request::{sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings},
    sign::v4,
};
use aws_smithy_runtime_api::client::identity::Identity;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgConnectOptions;

use super::{options::connect_options, Credentials};
use crate::{config::DatabaseSettings, sync};

const SERVICE: &str = "rds-db";
/// The longest validity RDS accepts.
const VALIDITY: Duration = Duration::from_secs(15 * 60);
/// Credentials that expire sooner than this are fetched again before signing: a token signed
/// with them must still be good when the connection presents it.
const CREDENTIALS_MARGIN: Duration = Duration::from_secs(5 * 60);

/// What a token is for: a user on a database endpoint, in a region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenScope {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub region: String,
}

/// The auth token for `scope`, signed with `credentials` at `now`: what the AWS SDKs' RDS
/// signers produce, `host:port/?Action=connect&DBUser=user&X-Amz-…`.
pub fn auth_token(
    scope: &TokenScope,
    credentials: &AwsCredentials,
    now: SystemTime,
) -> anyhow::Result<SecretString> {
    let identity: Identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.expires_in = Some(VALIDITY);
    settings.signature_location = SignatureLocation::QueryParams;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&scope.region)
        .name(SERVICE)
        .time(now)
        .settings(settings)
        .build()
        .context("Invalid signing parameters")?;
    let location = format!("{}:{}/?", scope.host, scope.port);
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("Action", "connect")
        .append_pair("DBUser", &scope.user)
        .finish();
    let url = format!("https://{location}{query}");
    let request = SignableRequest::new("GET", &url, std::iter::empty(), SignableBody::empty())
        .context("The database endpoint does not make a valid URL")?;
    let (instructions, _signature) = sign(request, &params.into())
        .context("Failed to sign the auth token")?
        .into_parts();
    let query_start = location.len();
    let mut token = form_urlencoded::Serializer::for_suffix(location + &query, query_start);
    // The signature last, as presigned URLs are written (boto3 and the other SDKs do; aws-sigv4
    // puts the session token after it). RDS checks the signature, not the order.
    let (signature, rest): (Vec<_>, Vec<_>) = instructions
        .params()
        .iter()
        .partition(|(name, _)| *name == "X-Amz-Signature");
    for (name, value) in rest.into_iter().chain(signature) {
        token.append_pair(name, value);
    }
    Ok(SecretString::from(token.finish()))
}

/// Credentials that are IAM auth tokens: a token is signed for each new connection (a
/// connection, once open, outlives its token), with the role's credentials from `aws-config`
/// (the environment on Lambda), kept until they near their expiry.
#[derive(Debug)]
pub(super) struct IamAuth {
    scope: TokenScope,
    provider: SharedCredentialsProvider,
    cached: Mutex<Option<AwsCredentials>>,
}

impl IamAuth {
    /// Checks that a token can be signed for `user` at `host:port`: a region and credentials
    /// are there, or the init fails here, naming the cause.
    pub(super) async fn new(
        user: String,
        host: String,
        port: u16,
        aws: &SdkConfig,
        settings: &DatabaseSettings,
    ) -> anyhow::Result<Self> {
        let region = aws.region().context(
            "No AWS region to sign the database auth token for (AWS_REGION, or the profile's)",
        )?;
        let provider = aws
            .credentials_provider()
            .context("No AWS credentials provider to sign the database auth token with")?;
        let iam = Self {
            scope: TokenScope {
                host,
                port,
                user,
                region: region.to_string(),
            },
            provider,
            cached: Mutex::new(None),
        };
        iam.connect_options(settings).await?;
        Ok(iam)
    }

    /// Options to open a connection with, carrying a newly signed token (a local HMAC, no
    /// network call), and the connection policy of the database's `settings`.
    pub(super) async fn connect_options(
        &self,
        settings: &DatabaseSettings,
    ) -> anyhow::Result<PgConnectOptions> {
        let credentials = self.credentials().await?;
        let token = auth_token(&self.scope, &credentials, SystemTime::now())?;
        let options = PgConnectOptions::new_without_pgpass()
            .host(&self.scope.host)
            .port(self.scope.port)
            .username(&self.scope.user)
            .password(token.expose_secret());
        let credentials = Credentials {
            options,
            ssl_mode: None,
        };
        Ok(connect_options(settings, credentials))
    }

    /// The cached credentials while they stay good for [`CREDENTIALS_MARGIN`], else new ones
    /// (the environment's on Lambda, which never expire within its lifetime).
    async fn credentials(&self) -> anyhow::Result<AwsCredentials> {
        let fresh_until = SystemTime::now() + CREDENTIALS_MARGIN;
        let cached = self.cached_lock().clone();
        if let Some(credentials) = cached.filter(|c| c.expiry().is_none_or(|e| e > fresh_until)) {
            return Ok(credentials);
        }
        let credentials = self
            .provider
            .provide_credentials()
            .await
            .context("No AWS credentials to sign the database auth token with")?;
        *self.cached_lock() = Some(credentials.clone());
        Ok(credentials)
    }

    fn cached_lock(&self) -> std::sync::MutexGuard<'_, Option<AwsCredentials>> {
        sync::lock(&self.cached)
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use serde_json::Value;

    use super::*;

    /// What boto3 signs for the same inputs (tests/test_rds_auth_token.py checks the vector),
    /// with a session token, as Lambda's role credentials carry.
    #[test]
    fn the_token_matches_boto3s_with_a_session_token() {
        // Read at run time, not embedded: a file outside the crate is tracked by its absolute
        // path, so a target directory shared by checkouts could link another checkout's copy.
        let fixture = test_support::workspace::file("test-support/fixtures/rds-auth-token.json");
        let vector: Value = serde_json::from_str(&fixture).unwrap();
        let text = |name: &str| vector[name].as_str().unwrap().to_owned();
        let scope = TokenScope {
            host: text("host"),
            port: u16::try_from(vector["port"].as_u64().unwrap()).unwrap(),
            user: text("user"),
            region: text("region"),
        };
        let credentials = AwsCredentials::new(
            text("access_key_id"),
            text("secret_access_key"),
            Some(text("session_token")),
            None,
            "test",
        );
        let now = UNIX_EPOCH + Duration::from_secs(vector["unix_time"].as_u64().unwrap());

        let token = auth_token(&scope, &credentials, now).unwrap();

        assert_eq!(token.expose_secret(), text("token"));
    }

    /// The known-answer vector of aws-sdk-rust's own RDS signer (`sdk/rds/src/auth_token.rs`,
    /// test `signing_works`).
    #[test]
    fn the_token_matches_the_aws_sdk_for_rusts_known_answer() {
        let scope = TokenScope {
            host: "prod-instance.us-east-1.rds.amazonaws.com".into(),
            port: 3306,
            user: "peccy".into(),
            region: "us-east-1".into(),
        };
        let credentials = AwsCredentials::new("akid", "secret", None, None, "test");
        let now = UNIX_EPOCH + Duration::from_secs(1_724_709_600);

        let token = auth_token(&scope, &credentials, now).unwrap();

        assert_eq!(
            token.expose_secret(),
            concat!(
                "prod-instance.us-east-1.rds.amazonaws.com:3306/?Action=connect&DBUser=peccy",
                "&X-Amz-Algorithm=AWS4-HMAC-SHA256",
                "&X-Amz-Credential=akid%2F20240826%2Fus-east-1%2Frds-db%2Faws4_request",
                "&X-Amz-Date=20240826T220000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host",
                "&X-Amz-Signature=dd0cba843009474347af724090233265628ace491ea17ce3eb3da098b983ad89"
            )
        );
    }
}
