//! The keys that verify tokens: one static key (inline or from Secrets Manager), or the keys of
//! a JWKS document, cached and refreshed (rate-limited) when a token names an unknown `kid`.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{body::Bytes, Request};
use jsonwebtoken::{
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse},
    Algorithm, DecodingKey,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::Mutex;

use super::{AuthError, Denied};
use crate::{
    outbound_http::{self, OutboundHttp},
    secrets::{SecretsClient, Stage},
};

/// An HS256 secret shorter than the hash is guessable offline from any token (RFC 7518 3.2).
const MIN_HS256_SECRET_LEN: usize = 32;
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_JWKS_LEN: usize = 1024 * 1024;

type VerifyingKey = (Arc<DecodingKey>, Algorithm);

pub enum Keys {
    Static(VerifyingKey),
    Jwks(Box<JwksKeys>),
    /// No key: every token is refused. For functions whose routes are public.
    DenyAll,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Static((_, algorithm)) => write!(f, "Keys::Static({algorithm:?})"),
            Self::Jwks(jwks) => write!(f, "Keys::Jwks({})", jwks.url),
            Self::DenyAll => f.write_str("Keys::DenyAll"),
        }
    }
}

impl Keys {
    /// An HS256 shared secret, or a PEM public key (RSA → RS256, P-256 → ES256). `name` says
    /// where it came from, for the error.
    pub fn from_material(material: &SecretString, name: &str) -> anyhow::Result<Self> {
        let text = material.expose_secret().trim();
        if text.starts_with("-----BEGIN") {
            if text.contains("PRIVATE KEY") {
                bail!("{name} holds a private key; give the issuer's public key instead");
            }
            if let Ok(key) = DecodingKey::from_rsa_pem(text.as_bytes()) {
                return Ok(Self::Static((Arc::new(key), Algorithm::RS256)));
            }
            if let Ok(key) = DecodingKey::from_ec_pem(text.as_bytes()) {
                return Ok(Self::Static((Arc::new(key), Algorithm::ES256)));
            }
            bail!("{name} is PEM but not an RSA or EC public key");
        }
        if text.len() < MIN_HS256_SECRET_LEN {
            bail!("{name}: an HS256 secret must be at least {MIN_HS256_SECRET_LEN} bytes long");
        }
        Ok(Self::Static((
            Arc::new(DecodingKey::from_secret(text.as_bytes())),
            Algorithm::HS256,
        )))
    }

    pub async fn from_secret(
        secret_id: &str,
        secrets: Option<&SecretsClient>,
    ) -> anyhow::Result<Self> {
        let secrets =
            secrets.context("JWT_SECRET_ID is set but no Secrets Manager client was built")?;
        let secret = secrets
            .get(secret_id, Stage::Current)
            .await
            .context("Failed to read the token key secret (JWT_SECRET_ID)")?;
        Self::from_material(&secret.value, "the JWT_SECRET_ID secret")
    }

    /// Reads the JWKS at `url`. An issuer that cannot be reached, times out or fails (5xx,
    /// 429) is an outage, not a misconfiguration: the function starts without keys, answers
    /// 503 to tokens meanwhile, and tries again at most once per `refresh_interval`. A document
    /// that is not a key set, or holds no usable key, fails the init.
    pub async fn from_jwks_url(url: String, refresh_interval: Duration) -> anyhow::Result<Self> {
        let http = outbound_http::client();
        let (keys, last_refresh) = match fetch_jwks(&http, &url).await {
            Ok(keys) if keys.is_empty() => {
                bail!("the JWKS at JWT_JWKS_URL {url} has no RS256 or ES256 signing key")
            }
            Ok(keys) => {
                tracing::info!(url, kids = ?keys.keys().collect::<Vec<_>>(), "JWKS read");
                (keys, None)
            }
            Err(JwksError::Unavailable(err)) => {
                tracing::warn!(
                    url,
                    error = format!("{err:#}"),
                    "the JWKS could not be read at init; tokens get 503 until it can be"
                );
                (HashMap::new(), Some(Instant::now()))
            }
            Err(JwksError::Invalid(err)) => {
                return Err(err.context(format!("Failed to read the JWKS at JWT_JWKS_URL {url}")))
            }
        };
        Ok(Self::Jwks(Box::new(JwksKeys {
            url,
            http,
            keys: RwLock::new(keys),
            refresh_interval,
            last_refresh: Mutex::new(last_refresh),
        })))
    }

    /// The key (and the one algorithm it accepts) that must have signed `token`.
    pub(super) async fn key_for(&self, token: &str) -> Result<VerifyingKey, Denied> {
        match self {
            Self::Static(key) => Ok(key.clone()),
            Self::Jwks(jwks) => jwks.key_for(token).await,
            Self::DenyAll => {
                Err(AuthError::InvalidToken("no key is configured for this function").into())
            }
        }
    }
}

pub struct JwksKeys {
    url: String,
    http: OutboundHttp,
    keys: RwLock<HashMap<String, VerifyingKey>>,
    refresh_interval: Duration,
    last_refresh: Mutex<Option<Instant>>,
}

impl JwksKeys {
    async fn key_for(&self, token: &str) -> Result<VerifyingKey, Denied> {
        let kid = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::InvalidToken("malformed token"))?
            .kid
            .ok_or(AuthError::InvalidToken("no kid in the token header"))?;
        if let Some(key) = self.cached(&kid) {
            return Ok(key);
        }
        self.refresh(&kid).await;
        match self.cached(&kid) {
            Some(key) => Ok(key),
            // Never read: whether the token is good cannot be known, so not a 401.
            None if self.is_empty() => Err(Denied::KeysUnavailable),
            None => Err(AuthError::InvalidToken("unknown signing key (kid)").into()),
        }
    }

    fn is_empty(&self) -> bool {
        self.keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_empty()
    }

    fn cached(&self, kid: &str) -> Option<VerifyingKey> {
        // A poisoned lock only means a panic elsewhere; the map itself is always whole.
        let keys = self
            .keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        keys.get(kid).cloned()
    }

    /// Re-reads the JWKS for an unknown `kid` (the issuer rotated its keys), at most once per
    /// `refresh_interval`, so tokens with made-up `kid`s cannot turn into a fetch storm.
    async fn refresh(&self, kid: &str) {
        let mut last = self.last_refresh.lock().await;
        if self.cached(kid).is_some() {
            return; // another request refreshed while this one waited
        }
        if last.is_some_and(|at| at.elapsed() < self.refresh_interval) {
            tracing::info!(
                kid,
                "unknown kid; the JWKS was refreshed recently, not again yet"
            );
            return;
        }
        *last = Some(Instant::now());
        metrics::counter!(crate::telemetry::metric::JWKS_REFRESHES).increment(1);
        match fetch_jwks(&self.http, &self.url).await {
            // A usable key set is never replaced by an unusable one: the issuer's mistake
            // must not lock every caller out.
            Ok(keys) if keys.is_empty() => tracing::warn!(
                kid,
                "the refreshed JWKS has no usable key; keeping the last good set"
            ),
            Ok(keys) => {
                let kids: Vec<_> = keys.keys().collect();
                tracing::info!(kid, ?kids, "JWKS refreshed for an unknown kid");
                *self
                    .keys
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = keys;
            }
            Err(JwksError::Unavailable(err) | JwksError::Invalid(err)) => {
                tracing::warn!(error = format!("{err:#}"), "failed to refresh the JWKS")
            }
        }
    }
}

/// Why a JWKS could not be read: the issuer is unavailable (worth another try later), or what
/// it serves is not a key set.
enum JwksError {
    Unavailable(anyhow::Error),
    Invalid(anyhow::Error),
}

#[tracing::instrument(name = "Fetch the JWKS", skip_all)]
async fn fetch_jwks(
    http: &OutboundHttp,
    url: &str,
) -> Result<HashMap<String, VerifyingKey>, JwksError> {
    let invalid = |err: anyhow::Error| JwksError::Invalid(err);
    let request = Request::get(url)
        .header("accept", "application/json")
        .body(Full::new(Bytes::new()))
        .context("JWT_JWKS_URL is not a valid URL")
        .map_err(invalid)?;
    let exchange = async {
        let response = http.request(request).await?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_JWKS_LEN)
            .collect()
            .await
            .map_err(|err| anyhow::anyhow!("reading the body: {err}"))?
            .to_bytes();
        anyhow::Ok((status, body))
    };
    let (status, body) = tokio::time::timeout(JWKS_TIMEOUT, exchange)
        .await
        .context("no answer in time")
        .and_then(|answer| answer)
        .map_err(JwksError::Unavailable)?;
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(JwksError::Unavailable(anyhow::anyhow!(
            "it answered {status}"
        )));
    }
    if !status.is_success() {
        return Err(invalid(anyhow::anyhow!("it answered {status}")));
    }
    let document: Value = serde_json::from_slice(&body)
        .context("it is not JSON")
        .map_err(invalid)?;
    let entries = document
        .get("keys")
        .and_then(Value::as_array)
        .context("it has no \"keys\" array")
        .map_err(invalid)?;
    // Key by key: one key of a kind we do not use must not hide the others.
    Ok(entries
        .iter()
        .filter_map(|entry| serde_json::from_value::<Jwk>(entry.clone()).ok())
        .filter_map(|jwk| verifying_key(&jwk))
        .collect())
}

/// A JWK's `kid` and key, if it is an RS256 or ES256 (P-256) signing key.
fn verifying_key(jwk: &Jwk) -> Option<(String, VerifyingKey)> {
    let kid = jwk.common.key_id.clone()?;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let algorithm = match (&jwk.algorithm, &jwk.common.key_algorithm) {
        (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
        (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
            if ec.curve == EllipticCurve::P256 =>
        {
            Algorithm::ES256
        }
        _ => return None,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some((kid, (Arc::new(key), algorithm)))
}
