//! The keys that verify tokens: one static key (inline or from Secrets Manager), or the keys of
//! a JWKS document, cached for at most `JWT_JWKS_MAX_AGE_MS` (or the document's own
//! `Cache-Control: max-age`, when shorter), and refreshed, rate-limited, when they have aged out
//! or a token names an unknown `kid`. A refreshed set replaces the old one whole, so a key the
//! issuer removed verifies no more tokens; the old set is kept only while the issuer cannot be
//! reached (or serves no usable key).

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
    /// that is not a key set, or holds no usable key, fails the init. Keys are trusted for
    /// `max_age` at most (see the module's documentation).
    pub async fn from_jwks_url(
        url: String,
        refresh_interval: Duration,
        max_age: Duration,
    ) -> anyhow::Result<Self> {
        let http = outbound_http::client();
        let (set, last_refresh) = match fetch_jwks(&http, &url).await {
            Ok(document) if document.keys.is_empty() => {
                bail!("the JWKS at JWT_JWKS_URL {url} has no RS256 or ES256 signing key")
            }
            Ok(document) => {
                let kids: Vec<_> = document.keys.keys().collect();
                tracing::info!(url, ?kids, "JWKS read");
                (KeySet::fetched(document, max_age), None)
            }
            Err(JwksError::Unavailable(err)) => {
                tracing::warn!(
                    url,
                    error = format!("{err:#}"),
                    "the JWKS could not be read at init; tokens get 503 until it can be"
                );
                (KeySet::default(), Some(Instant::now()))
            }
            Err(JwksError::Invalid(err)) => {
                return Err(err.context(format!("Failed to read the JWKS at JWT_JWKS_URL {url}")))
            }
        };
        Ok(Self::Jwks(Box::new(JwksKeys {
            url,
            http,
            set: RwLock::new(set),
            refresh_interval,
            max_age,
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
    set: RwLock<KeySet>,
    refresh_interval: Duration,
    /// `JWT_JWKS_MAX_AGE_MS`.
    max_age: Duration,
    last_refresh: Mutex<Option<Instant>>,
}

/// The keys of the last usable JWKS document, and until when they are trusted without asking
/// the issuer again.
#[derive(Default)]
struct KeySet {
    keys: HashMap<String, VerifyingKey>,
    /// `None` while no document has been read.
    fresh_until: Option<Instant>,
}

impl KeySet {
    /// A document just fetched, trusted for `max_age` or the document's own max-age.
    fn fetched(document: Jwks, max_age: Duration) -> Self {
        let max_age = document.max_age.map_or(max_age, |own| own.min(max_age));
        Self {
            keys: document.keys,
            fresh_until: Some(Instant::now() + max_age),
        }
    }

    fn is_stale(&self) -> bool {
        self.fresh_until
            .is_some_and(|until| Instant::now() >= until)
    }
}

/// Why the key set is fetched again.
#[derive(Debug, Clone, Copy)]
enum Refresh<'a> {
    /// A token names a `kid` the set does not hold (the issuer added a key).
    UnknownKid(&'a str),
    /// The set is older than its max age (the issuer may have removed a key).
    Aged,
}

impl JwksKeys {
    async fn key_for(&self, token: &str) -> Result<VerifyingKey, Denied> {
        let kid = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::InvalidToken("malformed token"))?
            .kid
            .ok_or(AuthError::InvalidToken("no kid in the token header"))?;
        // A set fetched anew because it had aged is the issuer's word on every kid: an unknown
        // one is not worth another fetch.
        let renewed = self.read().is_stale() && self.refresh(Refresh::Aged).await;
        if let Some(key) = self.cached(&kid) {
            return Ok(key);
        }
        if !renewed {
            self.refresh(Refresh::UnknownKid(&kid)).await;
        }
        match self.cached(&kid) {
            Some(key) => Ok(key),
            // Never read: whether the token is good cannot be known, so not a 401.
            None if self.read().keys.is_empty() => Err(Denied::KeysUnavailable),
            None => Err(AuthError::InvalidToken("unknown signing key (kid)").into()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, KeySet> {
        // A poisoned lock only means a panic elsewhere; the set is replaced whole.
        self.set
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn cached(&self, kid: &str) -> Option<VerifyingKey> {
        self.read().keys.get(kid).cloned()
    }

    /// Fetches the JWKS again, at most once per `refresh_interval` whatever the reason, so that
    /// tokens with made-up `kid`s, or an issuer that is down, cannot turn into a fetch per
    /// request. Returns whether the set was replaced.
    async fn refresh(&self, why: Refresh<'_>) -> bool {
        let mut last = self.last_refresh.lock().await;
        // Another request refreshed while this one waited.
        let done = match why {
            Refresh::UnknownKid(kid) => self.cached(kid).is_some(),
            Refresh::Aged => !self.read().is_stale(),
        };
        if done {
            return false;
        }
        if last.is_some_and(|at| at.elapsed() < self.refresh_interval) {
            tracing::info!(?why, "the JWKS was fetched recently; not again yet");
            return false;
        }
        *last = Some(Instant::now());
        metrics::counter!(crate::telemetry::metric::JWKS_REFRESHES).increment(1);
        match fetch_jwks(&self.http, &self.url).await {
            // A usable key set is never replaced by an unusable one: the issuer's mistake
            // must not lock every caller out.
            Ok(document) if document.keys.is_empty() => {
                tracing::warn!(
                    ?why,
                    "the refreshed JWKS has no usable key; keeping the last good set"
                );
                false
            }
            Ok(document) => {
                let kids: Vec<_> = document.keys.keys().collect();
                tracing::info!(?why, ?kids, "JWKS refreshed");
                *self
                    .set
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) =
                    KeySet::fetched(document, self.max_age);
                true
            }
            Err(JwksError::Unavailable(err) | JwksError::Invalid(err)) => {
                tracing::warn!(
                    ?why,
                    error = format!("{err:#}"),
                    "failed to refresh the JWKS; keeping the last good set meanwhile"
                );
                false
            }
        }
    }
}

/// A JWKS document's usable keys, and its own `Cache-Control: max-age`, if any.
struct Jwks {
    keys: HashMap<String, VerifyingKey>,
    max_age: Option<Duration>,
}

/// Why a JWKS could not be read: the issuer is unavailable (worth another try later), or what
/// it serves is not a key set.
enum JwksError {
    Unavailable(anyhow::Error),
    Invalid(anyhow::Error),
}

#[tracing::instrument(name = "Fetch the JWKS", skip_all)]
async fn fetch_jwks(http: &OutboundHttp, url: &str) -> Result<Jwks, JwksError> {
    let invalid = |err: anyhow::Error| JwksError::Invalid(err);
    let request = Request::get(url)
        .header("accept", "application/json")
        .body(Full::new(Bytes::new()))
        .context("JWT_JWKS_URL is not a valid URL")
        .map_err(invalid)?;
    let exchange = async {
        let response = http.request(request).await?;
        let status = response.status();
        let max_age = response
            .headers()
            .get_all(hyper::header::CACHE_CONTROL)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(max_age);
        let body = Limited::new(response.into_body(), MAX_JWKS_LEN)
            .collect()
            .await
            .map_err(|err| anyhow::anyhow!("reading the body: {err}"))?
            .to_bytes();
        anyhow::Ok((status, max_age, body))
    };
    let (status, max_age, body) = tokio::time::timeout(JWKS_TIMEOUT, exchange)
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
    let keys = entries
        .iter()
        .filter_map(|entry| serde_json::from_value::<Jwk>(entry.clone()).ok())
        .filter_map(|jwk| verifying_key(&jwk))
        .collect();
    Ok(Jwks { keys, max_age })
}

/// The `max-age` of a `Cache-Control` header value (`public, max-age=3600`), if it has one;
/// `no-store` and `no-cache` mean none at all.
fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control
        .split(',')
        .map(str::trim)
        .find_map(|directive| {
            if directive.eq_ignore_ascii_case("no-store")
                || directive.eq_ignore_ascii_case("no-cache")
            {
                return Some(Duration::ZERO);
            }
            let (name, seconds) = directive.split_once('=')?;
            let seconds = seconds.trim().trim_matches('"').parse().ok()?;
            name.trim()
                .eq_ignore_ascii_case("max-age")
                .then(|| Duration::from_secs(seconds))
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_documents_cache_control_gives_its_max_age_and_no_store_none() {
        for (header, expected) in [
            ("public, max-age=3600", Some(3600)),
            ("MAX-AGE=\"60\", must-revalidate", Some(60)),
            ("no-store", Some(0)),
            ("private, no-cache", Some(0)),
            ("public", None),
            ("max-age=soon", None),
        ] {
            assert_eq!(
                max_age(header),
                expected.map(Duration::from_secs),
                "{header}"
            );
        }
    }
}
