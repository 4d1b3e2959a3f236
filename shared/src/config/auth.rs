//! Who may call the users routes: where the keys that verify tokens come from, the issuer,
//! what binds a token to this API, and the scope names.

use std::{net::IpAddr, time::Duration};

use secrecy::SecretString;

use super::{millis_or, ConfigError};

/// Where the keys that verify bearer tokens come from: exactly one of three.
#[derive(Debug)]
pub enum KeySource {
    /// `JWT_SECRET_ID`: a Secrets Manager secret holding an HS256 secret or a PEM public key.
    SecretsManager(String),
    /// `JWT_KEY`: the same, inline (local use).
    Inline(SecretString),
    /// `JWT_JWKS_URL`: an issuer's JWKS document (Cognito, Auth0, any OIDC issuer).
    Jwks(String),
}

#[derive(Debug)]
pub struct AuthSettings {
    pub keys: KeySource,
    /// `JWT_ISSUER`: when set, `iss` must equal it. Required with `JWT_JWKS_URL`.
    pub issuer: Option<String>,
    /// `JWT_AUDIENCE`: a token whose `aud` contains it is for this API.
    pub audience: Option<String>,
    /// `JWT_CLIENT_IDS` (comma-separated): a token whose `client_id` is one of these is for
    /// this API. One of the two is required, so a token minted by the same issuer for another
    /// API is refused whatever its scopes.
    pub client_ids: Vec<String>,
    /// `JWT_JWKS_REFRESH_INTERVAL_MS`: least time between two JWKS fetches.
    pub jwks_refresh_interval: Duration,
    /// `JWT_JWKS_MAX_AGE_MS`: how long a fetched key set is trusted (the document's
    /// `Cache-Control: max-age` when shorter); then it is fetched again, and a key the issuer
    /// removed verifies no more tokens.
    pub jwks_max_age: Duration,
    /// `JWT_SCOPE_READ` and `JWT_SCOPE_WRITE`: the scope names that grant reading and changing
    /// users (`users:read`, `users:write`).
    pub scopes: ScopeNames,
}

/// The scope names that grant reading and changing users: `JWT_SCOPE_READ` and
/// `JWT_SCOPE_WRITE`, by default `users:read` and `users:write`. Issuers name scopes their own
/// way: Cognito, for one, writes a resource server's `<identifier>/<scope>` (`users-api/read`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeNames {
    pub read: String,
    pub write: String,
}

impl Default for ScopeNames {
    fn default() -> Self {
        Self {
            read: "users:read".to_owned(),
            write: "users:write".to_owned(),
        }
    }
}

pub(super) fn settings(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<Option<AuthSettings>, ConfigError> {
    let mut sources = [
        lookup("JWT_SECRET_ID").map(KeySource::SecretsManager),
        lookup("JWT_KEY").map(|key| KeySource::Inline(SecretString::from(key))),
        lookup("JWT_JWKS_URL").map(KeySource::Jwks),
    ]
    .into_iter()
    .flatten();
    let keys = match (sources.next(), sources.next()) {
        (None, _) => return Ok(None),
        (Some(_), Some(_)) => return Err(ConfigError::SeveralKeySources),
        (Some(keys), None) => keys,
    };
    let issuer = lookup("JWT_ISSUER");
    if let KeySource::Jwks(url) = &keys {
        check_jwks_url(url)?;
        // A key set is an issuer's: a token must say it is that issuer's (RFC 8725, 3.8), or
        // any token another tenant of a shared issuer minted would pass.
        if issuer.is_none() {
            return Err(ConfigError::JwksWithoutIssuer);
        }
    }
    let audience = lookup("JWT_AUDIENCE");
    let client_ids: Vec<String> = lookup("JWT_CLIENT_IDS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect();
    if audience.is_none() && client_ids.is_empty() {
        return Err(ConfigError::UnboundTokens);
    }
    Ok(Some(AuthSettings {
        keys,
        issuer,
        audience,
        client_ids,
        jwks_refresh_interval: millis_or(lookup, "JWT_JWKS_REFRESH_INTERVAL_MS", 60_000)?,
        jwks_max_age: millis_or(lookup, "JWT_JWKS_MAX_AGE_MS", 600_000)?,
        scopes: scope_names(lookup)?,
    }))
}

/// `JWT_SCOPE_READ` and `JWT_SCOPE_WRITE`: each a scope token (RFC 6749, 3.3: printable ASCII
/// without spaces, `"` or `\`), and not the same one.
fn scope_names(lookup: &impl Fn(&str) -> Option<String>) -> Result<ScopeNames, ConfigError> {
    let defaults = ScopeNames::default();
    let name = |variable: &'static str, default: String| {
        let value = lookup(variable).unwrap_or(default);
        let valid = !value.is_empty()
            && value
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
        match valid {
            true => Ok(value),
            false => Err(ConfigError::Invalid {
                name: variable,
                expected: "a scope name (printable ASCII, no spaces, quotes or backslashes)",
                value,
            }),
        }
    };
    let read = name("JWT_SCOPE_READ", defaults.read)?;
    let write = name("JWT_SCOPE_WRITE", defaults.write)?;
    if read == write {
        return Err(ConfigError::Invalid {
            name: "JWT_SCOPE_WRITE",
            expected: "a scope name other than JWT_SCOPE_READ's",
            value: write,
        });
    }
    Ok(ScopeNames { read, write })
}

/// Keys fetched over plain HTTP could be swapped by anyone on the path: `https://`, or
/// `http://` for a loopback host only (local stand-ins).
fn check_jwks_url(url: &str) -> Result<(), ConfigError> {
    let invalid = || ConfigError::Invalid {
        name: "JWT_JWKS_URL",
        expected: "an https:// URL (http:// only for a loopback host)",
        value: url.to_owned(),
    };
    let uri: hyper::Uri = url.parse().map_err(|_| invalid())?;
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => Ok(()),
        Some("http") if loopback => Ok(()),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::settings;

    #[test]
    fn exactly_one_jwt_key_source_may_be_set() {
        let url = ("DATABASE_URL", "postgres://localhost/db");
        let aud = ("JWT_AUDIENCE", "users-api");
        assert!(settings(&[url]).unwrap().auth.is_none());
        let iss = ("JWT_ISSUER", "https://idp.example");
        let jwks = settings(&[
            url,
            aud,
            iss,
            ("JWT_JWKS_URL", "https://idp.example/jwks.json"),
        ]);
        assert!(matches!(
            jwks.unwrap().auth.unwrap().keys,
            KeySource::Jwks(_)
        ));
        let both = settings(&[url, aud, ("JWT_KEY", "k"), ("JWT_SECRET_ID", "jwt")]);
        assert!(matches!(both.unwrap_err(), ConfigError::SeveralKeySources));
    }

    #[test]
    fn scope_names_default_to_users_read_and_write_and_may_be_the_issuers() {
        let base = [
            ("DATABASE_URL", "postgres://localhost/db"),
            ("JWT_KEY", "k"),
            ("JWT_CLIENT_IDS", "app-client-1"),
        ];
        let scopes = |extra: &[(&'static str, &'static str)]| {
            settings(&[&base[..], extra].concat()).map(|s| s.auth.unwrap().scopes)
        };

        let defaults = scopes(&[]).unwrap();
        let cognito = scopes(&[
            ("JWT_SCOPE_READ", "users-api/read"),
            ("JWT_SCOPE_WRITE", "users-api/write"),
        ])
        .unwrap();

        assert_eq!(
            (defaults.read.as_str(), defaults.write.as_str()),
            ("users:read", "users:write")
        );
        assert_eq!(
            (cognito.read.as_str(), cognito.write.as_str()),
            ("users-api/read", "users-api/write")
        );
        for bad in [
            [
                ("JWT_SCOPE_READ", "users read"),
                ("JWT_SCOPE_WRITE", "users:write"),
            ],
            [
                ("JWT_SCOPE_READ", "a\"b"),
                ("JWT_SCOPE_WRITE", "users:write"),
            ],
            [("JWT_SCOPE_READ", "same"), ("JWT_SCOPE_WRITE", "same")],
        ] {
            assert!(
                matches!(scopes(&bad), Err(ConfigError::Invalid { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn tokens_must_be_bound_to_this_api_by_audience_or_client_ids() {
        let url = ("DATABASE_URL", "postgres://localhost/db");
        let key = ("JWT_KEY", "k");

        let unbound = settings(&[url, key]).unwrap_err();
        let by_audience = settings(&[url, key, ("JWT_AUDIENCE", "users-api")]).unwrap();
        let by_clients = settings(&[url, key, ("JWT_CLIENT_IDS", " app-1, ,app-2 ")]).unwrap();

        assert!(matches!(unbound, ConfigError::UnboundTokens));
        assert_eq!(
            by_audience.auth.unwrap().audience.as_deref(),
            Some("users-api")
        );
        assert_eq!(by_clients.auth.unwrap().client_ids, ["app-1", "app-2"]);
    }

    #[test]
    fn a_jwks_url_over_plain_http_is_accepted_only_for_loopback() {
        let base = [
            ("DATABASE_URL", "postgres://localhost/db"),
            ("JWT_AUDIENCE", "users-api"),
            ("JWT_ISSUER", "https://idp.example"),
        ];
        for (url, accepted) in [
            ("https://idp.example/.well-known/jwks.json", true),
            ("http://127.0.0.1:8080/jwks.json", true),
            ("http://localhost/jwks.json", true),
            ("http://[::1]:9000/jwks.json", true),
            ("http://idp.example/jwks.json", false),
            ("http://10.0.0.7/jwks.json", false),
            ("ftp://idp.example/jwks.json", false),
            ("not a url", false),
        ] {
            let result = settings(&[base[0], base[1], base[2], ("JWT_JWKS_URL", url)]);
            assert_eq!(result.is_ok(), accepted, "{url}: {result:?}");
        }
    }

    #[test]
    fn keys_from_an_issuers_jwks_need_the_issuer_named() {
        let url = ("DATABASE_URL", "postgres://localhost/db");
        let aud = ("JWT_AUDIENCE", "users-api");
        let jwks = ("JWT_JWKS_URL", "https://idp.example/jwks.json");

        let without = settings(&[url, aud, jwks]).unwrap_err();
        let with = settings(&[url, aud, jwks, ("JWT_ISSUER", "https://idp.example")]).unwrap();
        let inline = settings(&[url, aud, ("JWT_KEY", "k")]).unwrap();

        assert!(matches!(without, ConfigError::JwksWithoutIssuer));
        assert!(without.to_string().contains("JWT_ISSUER"), "{without}");
        let auth = with.auth.unwrap();
        assert_eq!(auth.issuer.as_deref(), Some("https://idp.example"));
        assert_eq!(auth.jwks_max_age, Duration::from_secs(600));
        assert!(
            inline.auth.unwrap().issuer.is_none(),
            "a key of one's own needs no issuer"
        );
    }
}
