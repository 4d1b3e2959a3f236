//! Bearer-token authentication and scope-based authorization for the users routes.
//!
//! Tokens are JWTs. The accepted algorithm is fixed by the key, never by the token: an HS256
//! secret accepts only HS256, an RSA public key only RS256, a P-256 key only ES256, so
//! `alg: none` and HS/RS confusion are rejected before any signature check. `exp` is required,
//! `nbf` is honoured, `iss` and `aud` must match when configured, with [`LEEWAY_SECONDS`] of
//! clock skew. Keys are parsed once per execution environment.
mod keys;

use jsonwebtoken::{errors::ErrorKind, Validation};
use lambda_http::{http::header, Request};
use serde::Deserialize;

pub use keys::Keys;

tokio::task_local! {
    /// The verified caller's subject, for the request being handled: [`with_caller`] opens
    /// the slot around a request, [`Authenticator::authorize`] fills it.
    static CALLER: std::cell::RefCell<Option<String>>;
}

/// Runs `request` with a slot for its caller, and returns its output with the subject of the
/// token it authorized, if any (the access log's `caller`).
pub async fn with_caller<T>(request: impl std::future::Future<Output = T>) -> (T, Option<String>) {
    CALLER
        .scope(std::cell::RefCell::new(None), async {
            let output = request.await;
            let caller = CALLER.with(|slot| slot.borrow_mut().take());
            (output, caller)
        })
        .await
}

use crate::{
    config::{AuthSettings, KeySource, ScopeNames},
    secrets::SecretsClient,
};

/// Clock skew tolerated on `exp` and `nbf`: clocks of issuers and Lambda hosts drift by
/// seconds, not minutes.
pub const LEEWAY_SECONDS: u64 = 30;
/// Far above any real token; bounds the work an anonymous caller can ask for.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// What a route needs from the token's `scope` claim: reading users or changing them, under
/// the names the issuer gives these scopes ([`ScopeNames`], from the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    UsersRead,
    UsersWrite,
}

impl Scope {
    /// What the issuer calls this scope (`JWT_SCOPE_READ`, `JWT_SCOPE_WRITE`).
    pub fn name(self, names: &ScopeNames) -> &str {
        match self {
            Self::UsersRead => &names.read,
            Self::UsersWrite => &names.write,
        }
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
    /// The client the token was issued to, when it says (Cognito's `client_id`).
    pub client_id: Option<String>,
    scopes: Vec<String>,
}

impl Principal {
    pub fn has_scope(&self, name: &str) -> bool {
        self.scopes.iter().any(|granted| granted == name)
    }

    /// Who owns what this caller records (its idempotency keys): its `sub`; without one (a
    /// client-credentials token of an issuer that sets none), the client it authenticated as,
    /// in a namespace of its own. `None` when the token names neither: such a caller cannot be
    /// told from another.
    pub fn owner(&self) -> Option<String> {
        // An empty claim names nobody: every caller with one would share it.
        let named = |claim: &Option<String>| claim.clone().filter(|value| !value.is_empty());
        match (named(&self.subject), named(&self.client_id)) {
            (Some(subject), _) => Some(subject),
            (None, Some(client)) => Some(format!("client_id:{client}")),
            (None, None) => None,
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    /// Space-separated (RFC 8693), or a list as some issuers write it.
    scope: Option<StringOrList>,
    /// The same, under the name Microsoft Entra ID and others use.
    scp: Option<StringOrList>,
    aud: Option<StringOrList>,
    /// The app client a Cognito access token was issued to (it carries no `aud`).
    client_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    List(Vec<String>),
}

impl StringOrList {
    fn contains(&self, wanted: &str) -> bool {
        match self {
            Self::One(value) => value == wanted,
            Self::List(values) => values.iter().any(|value| value == wanted),
        }
    }

    fn scopes(self) -> Vec<String> {
        match self {
            Self::One(text) => text.split_ascii_whitespace().map(str::to_owned).collect(),
            Self::List(scopes) => scopes,
        }
    }
}

/// Verifies bearer tokens. Built once per execution environment.
#[derive(Debug)]
pub struct Authenticator {
    keys: Keys,
    issuer: Option<String>,
    /// A token must carry this `aud`, or one of `client_ids` as its `client_id` (when either
    /// is configured; the configuration requires one for the users functions).
    audience: Option<String>,
    client_ids: Vec<String>,
    scopes: ScopeNames,
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
                Keys::from_jwks_url(url, settings.jwks_refresh_interval, settings.jwks_max_age)
                    .await?
            }
        };
        Ok(Self {
            keys,
            issuer: settings.issuer,
            audience: settings.audience,
            client_ids: settings.client_ids,
            scopes: settings.scopes,
        })
    }

    /// An authenticator that accepts no token: for functions whose routes are public, so that a
    /// protected route wired to them by mistake answers 401, never runs open.
    pub fn deny_all() -> Self {
        Self {
            keys: Keys::DenyAll,
            issuer: None,
            audience: None,
            client_ids: Vec::new(),
            scopes: ScopeNames::default(),
        }
    }

    /// The caller of `req`, verified, holding `scope`: else 401 (no or bad token) or 403.
    #[tracing::instrument(name = "Verify the token", skip_all)]
    pub async fn authorize(&self, req: &Request, scope: Scope) -> Result<Principal, Denied> {
        let principal = self.authenticate(req).await?;
        // Outside `with_caller` (a test calling this directly) there is no slot to fill.
        let _ = CALLER.try_with(|slot| slot.borrow_mut().clone_from(&principal.subject));
        let name = scope.name(&self.scopes);
        if principal.has_scope(name) {
            Ok(principal)
        } else {
            Err(Denied::InsufficientScope(name.to_owned()))
        }
    }

    async fn authenticate(&self, req: &Request) -> Result<Principal, Denied> {
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
        // Checked below, where `client_id` can stand in for `aud`.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&required);
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|err| AuthError::InvalidToken(reason(err.kind())))?
            .claims;
        self.check_binding(&claims)?;
        let scopes = [claims.scope, claims.scp].into_iter().flatten();
        Ok(Principal {
            subject: claims.sub,
            client_id: claims.client_id,
            scopes: scopes.flat_map(StringOrList::scopes).collect(),
        })
    }

    /// The token was issued for this API: its `aud` holds the audience, or its `client_id` is
    /// an allowed client. A token for another API of the same issuer fails here, whatever
    /// scopes it carries.
    fn check_binding(&self, claims: &Claims) -> Result<(), AuthError> {
        if self.audience.is_none() && self.client_ids.is_empty() {
            return Ok(());
        }
        let audience_matches = match (&self.audience, &claims.aud) {
            (Some(audience), Some(aud)) => aud.contains(audience),
            _ => false,
        };
        let client_matches = claims
            .client_id
            .as_ref()
            .is_some_and(|client| self.client_ids.contains(client));
        if audience_matches || client_matches {
            return Ok(());
        }
        let reason = if self.audience.is_some() && claims.aud.is_some() {
            "wrong audience"
        } else if !self.client_ids.is_empty() && claims.client_id.is_some() {
            "wrong client_id"
        } else if self.audience.is_some() {
            "no aud claim"
        } else {
            "no client_id claim"
        };
        Err(AuthError::InvalidToken(reason))
    }
}

/// Why a request may not proceed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error(transparent)]
    Unauthenticated(#[from] AuthError),
    /// The name of the scope the token lacks.
    #[error("the token does not grant the {0} scope")]
    InsufficientScope(String),
    /// The token could not be checked: no keys yet (the issuer is unavailable). Try again.
    #[error("the token keys are not available yet")]
    KeysUnavailable,
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
        // `aud` is not among them: `check_binding` checks it, with `client_id`.
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "exp" => "no exp claim",
            "iss" => "no iss claim",
            _ => "a required claim is missing",
        },
        _ => "malformed token",
    }
}

#[cfg(test)]
mod tests;
