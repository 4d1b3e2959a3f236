//! Bearer-token authentication and scope-based authorization for the users routes.
//!
//! Tokens are JWTs. The accepted algorithm is fixed by the key, never by the token: an HS256
//! secret accepts only HS256, an RSA public key only RS256, a P-256 key only ES256, so
//! `alg: none` and HS/RS confusion are rejected before any signature check. `exp` is required,
//! `nbf` is honoured, `iss` and `aud` must match when configured, with [`LEEWAY_SECONDS`] of
//! clock skew. Keys are parsed once per execution environment.

mod keys;

use std::fmt;

use jsonwebtoken::{errors::ErrorKind, Validation};
use lambda_http::{http::header, Request};
use serde::Deserialize;

pub use keys::Keys;

use crate::{
    config::{AuthSettings, KeySource},
    secrets::SecretsClient,
};

/// Clock skew tolerated on `exp` and `nbf`: clocks of issuers and Lambda hosts drift by
/// seconds, not minutes.
pub const LEEWAY_SECONDS: u64 = 30;
/// Far above any real token; bounds the work an anonymous caller can ask for.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// What a route needs from the token's `scope` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    UsersRead,
    UsersWrite,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UsersRead => "users:read",
            Self::UsersWrite => "users:write",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request is not authenticated. The reason is for the log and the problem's detail;
/// the token itself is never logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the request has no Authorization header")]
    Missing,
    #[error("the Authorization header does not use the Bearer scheme")]
    WrongScheme,
    #[error("the bearer token is invalid: {0}")]
    InvalidToken(&'static str),
}

/// The verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: Option<String>,
    scopes: Vec<String>,
}

impl Principal {
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|granted| granted == scope.as_str())
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

/// Verifies bearer tokens. Built once per execution environment.
#[derive(Debug)]
pub struct Authenticator {
    keys: Keys,
    issuer: Option<String>,
    audience: Option<String>,
}

impl Authenticator {
    /// Parses (or, for a secret or a JWKS, fetches) the keys. Runs in the init phase.
    pub async fn from_settings(
        settings: AuthSettings,
        secrets: Option<&SecretsClient>,
    ) -> anyhow::Result<Self> {
        let keys = match settings.keys {
            KeySource::Inline(key) => Keys::from_material(&key, "JWT_KEY")?,
            KeySource::SecretsManager(secret_id) => Keys::from_secret(&secret_id, secrets).await?,
            KeySource::Jwks(url) => {
                Keys::from_jwks_url(url, settings.jwks_refresh_interval).await?
            }
        };
        Ok(Self {
            keys,
            issuer: settings.issuer,
            audience: settings.audience,
        })
    }

    /// An authenticator that accepts no token: for functions whose routes are public, so that a
    /// protected route wired to them by mistake answers 401, never runs open.
    pub fn deny_all() -> Self {
        Self {
            keys: Keys::DenyAll,
            issuer: None,
            audience: None,
        }
    }

    /// The caller of `req`, verified, holding `scope`: else 401 (no or bad token) or 403.
    pub async fn authorize(&self, req: &Request, scope: Scope) -> Result<Principal, Denied> {
        let principal = self
            .authenticate(req)
            .await
            .map_err(Denied::Unauthenticated)?;
        if principal.has_scope(scope) {
            Ok(principal)
        } else {
            Err(Denied::InsufficientScope(scope))
        }
    }

    async fn authenticate(&self, req: &Request) -> Result<Principal, AuthError> {
        let token = bearer_token(req)?;
        let (key, algorithm) = self.keys.key_for(token).await?;
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        match &self.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|err| AuthError::InvalidToken(reason(err.kind())))?
            .claims;
        Ok(Principal {
            subject: claims.sub,
            scopes: claims
                .scope
                .unwrap_or_default()
                .split_ascii_whitespace()
                .map(str::to_owned)
                .collect(),
        })
    }
}

/// Why a request may not proceed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error(transparent)]
    Unauthenticated(AuthError),
    #[error("the token does not grant the {0} scope")]
    InsufficientScope(Scope),
}

fn bearer_token(req: &Request) -> Result<&str, AuthError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::WrongScheme)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::WrongScheme)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::WrongScheme);
    }
    let token = token.trim();
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(AuthError::InvalidToken("malformed token"));
    }
    Ok(token)
}

fn reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "expired",
        ErrorKind::ImmatureSignature => "not valid yet (nbf)",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "algorithm not accepted for this key"
        }
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "exp" => "no exp claim",
            "iss" => "no iss claim",
            "aud" => "no aud claim",
            _ => "a required claim is missing",
        },
        _ => "malformed token",
    }
}

#[cfg(test)]
mod tests;
