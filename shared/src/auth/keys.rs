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

use super::AuthError;
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

    pub async fn from_jwks_url(url: String, refresh_interval: Duration) -> anyhow::Result<Self> {
        let http = outbound_http::client();
        let keys = fetch_jwks(&http, &url)
            .await
            .with_context(|| format!("Failed to read the JWKS at JWT_JWKS_URL {url}"))?;
        if keys.is_empty() {
            bail!("the JWKS at JWT_JWKS_URL {url} has no RS256 or ES256 signing key");
        }
        tracing::info!(url, kids = ?keys.keys().collect::<Vec<_>>(), "JWKS read");
        Ok(Self::Jwks(Box::new(JwksKeys {
            url,
            http,
            keys: RwLock::new(keys),
            refresh_interval,
            last_refresh: Mutex::new(None),
        })))
    }

    /// The key (and the one algorithm it accepts) that must have signed `token`.
    pub(super) async fn key_for(&self, token: &str) -> Result<VerifyingKey, AuthError> {
        match self {
            Self::Static(key) => Ok(key.clone()),
            Self::Jwks(jwks) => jwks.key_for(token).await,
            Self::DenyAll => Err(AuthError::InvalidToken(
                "no key is configured for this function",
            )),
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
    async fn key_for(&self, token: &str) -> Result<VerifyingKey, AuthError> {
        let kid = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::InvalidToken("malformed token"))?
            .kid
            .ok_or(AuthError::InvalidToken("no kid in the token header"))?;
        if let Some(key) = self.cached(&kid) {
            return Ok(key);
        }
        self.refresh(&kid).await;
        self.cached(&kid)
            .ok_or(AuthError::InvalidToken("unknown signing key (kid)"))
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
        match fetch_jwks(&self.http, &self.url).await {
            Ok(keys) => {
                let kids: Vec<_> = keys.keys().collect();
                tracing::info!(kid, ?kids, "JWKS refreshed for an unknown kid");
                *self
                    .keys
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = keys;
            }
            Err(err) => tracing::warn!(error = format!("{err:#}"), "failed to refresh the JWKS"),
        }
    }
}

async fn fetch_jwks(
    http: &OutboundHttp,
    url: &str,
) -> anyhow::Result<HashMap<String, VerifyingKey>> {
    let request = Request::get(url)
        .header("accept", "application/json")
        .body(Full::new(Bytes::new()))
        .context("JWT_JWKS_URL is not a valid URL")?;
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
        .context("no answer in time")??;
    if !status.is_success() {
        bail!("it answered {status}");
    }
    let document: Value = serde_json::from_slice(&body).context("it is not JSON")?;
    let entries = document
        .get("keys")
        .and_then(Value::as_array)
        .context("it has no \"keys\" array")?;
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
