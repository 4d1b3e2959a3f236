use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use lambda_http::{Body, Request};
use secrecy::SecretString;
use serde_json::{json, Value};
use test_support::tokens::{
    self, base64url, now, EC_PRIVATE, EC_PUBLIC, FULL_SCOPE, OTHER_RSA_PRIVATE, RSA_PRIVATE,
    RSA_PUBLIC,
};

use super::*;

const SECRET: &str = "unit-test-hs256-secret-that-is-long-enough";

/// Full-scope claims for `user-1`, valid five minutes, then `extra` (`null` removes a claim).
fn claims(extra: Value) -> Value {
    let mut claims = tokens::claims(FULL_SCOPE, json!({"sub": "user-1"}));
    for (key, value) in extra.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(key);
        } else {
            claims[key] = value.clone();
        }
    }
    claims
}

fn hs256(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn rs256(private_pem: &str, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap();
    encode(&Header::new(Algorithm::RS256), claims, &key).unwrap()
}

fn authenticator(key: &str, issuer: Option<&str>, audience: Option<&str>) -> Authenticator {
    Authenticator {
        keys: Keys::from_material(&SecretString::from(key.to_owned()), "JWT_KEY").unwrap(),
        issuer: issuer.map(str::to_owned),
        audience: audience.map(str::to_owned),
        client_ids: Vec::new(),
        scopes: ScopeNames::default(),
    }
}

fn request(authorization: Option<&str>) -> Request {
    let mut builder = lambda_http::http::Request::builder().uri("/users/1");
    if let Some(value) = authorization {
        builder = builder.header("authorization", value);
    }
    builder.body(Body::Empty).unwrap()
}

async fn check(auth: &Authenticator, token: &str, scope: Scope) -> Result<Principal, Denied> {
    auth.authorize(&request(Some(&format!("Bearer {token}"))), scope)
        .await
}

#[tokio::test]
async fn valid_tokens_of_each_key_type_are_accepted() {
    let ec_key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    let es256 = encode(&Header::new(Algorithm::ES256), &claims(json!({})), &ec_key).unwrap();
    for (auth, token) in [
        (authenticator(SECRET, None, None), hs256(&claims(json!({})))),
        (
            authenticator(RSA_PUBLIC, None, None),
            rs256(RSA_PRIVATE, &claims(json!({}))),
        ),
        (authenticator(EC_PUBLIC, None, None), es256),
    ] {
        let principal = check(&auth, &token, Scope::UsersWrite).await.unwrap();
        assert_eq!(principal.subject.as_deref(), Some("user-1"));
    }
}

#[tokio::test]
async fn scopes_are_read_from_the_space_separated_scope_claim() {
    let auth = authenticator(SECRET, None, None);
    let read_only = hs256(&claims(json!({"scope": "openid users:read"})));
    assert!(check(&auth, &read_only, Scope::UsersRead).await.is_ok());
    assert_eq!(
        check(&auth, &read_only, Scope::UsersWrite).await,
        Err(Denied::InsufficientScope("users:write".to_owned()))
    );
    let prefix_only = hs256(&claims(json!({"scope": "users:reader users:writes"})));
    assert!(check(&auth, &prefix_only, Scope::UsersRead).await.is_err());
    let no_scope = hs256(&claims(json!({"scope": null})));
    assert!(check(&auth, &no_scope, Scope::UsersRead).await.is_err());
}

#[tokio::test]
async fn scopes_may_be_a_list_and_may_come_as_scp() {
    let auth = authenticator(SECRET, None, None);
    for extra in [
        json!({"scope": ["openid", "users:read"]}),
        json!({"scope": null, "scp": "users:read"}),
        json!({"scope": null, "scp": ["users:read"]}),
        json!({"scope": "openid", "scp": ["users:read"]}),
    ] {
        let token = hs256(&claims(extra.clone()));
        assert!(
            check(&auth, &token, Scope::UsersRead).await.is_ok(),
            "{extra}"
        );
        assert_eq!(
            check(&auth, &token, Scope::UsersWrite).await,
            Err(Denied::InsufficientScope("users:write".to_owned())),
            "{extra}"
        );
    }
}

#[tokio::test]
async fn a_cognito_access_token_is_bound_by_its_client_id() {
    let auth = Authenticator {
        client_ids: vec!["app-client-1".to_owned(), "app-client-2".to_owned()],
        ..authenticator(SECRET, None, None)
    };
    let ours = hs256(&claims(json!({"client_id": "app-client-2"})));
    let theirs = hs256(&claims(json!({"client_id": "other-client"})));
    let neither = hs256(&claims(json!({})));

    assert!(check(&auth, &ours, Scope::UsersRead).await.is_ok());
    for (token, reason) in [(theirs, "wrong client_id"), (neither, "no client_id claim")] {
        assert_eq!(
            check(&auth, &token, Scope::UsersRead).await,
            Err(Denied::Unauthenticated(AuthError::InvalidToken(reason)))
        );
    }
}

#[tokio::test]
async fn scope_names_are_the_issuers_cognito_writes_them_per_resource_server() {
    let auth = Authenticator {
        client_ids: vec!["app-client-1".to_owned()],
        scopes: ScopeNames {
            read: "users-api/read".to_owned(),
            write: "users-api/write".to_owned(),
        },
        ..authenticator(SECRET, None, None)
    };
    // What Cognito puts in an access token: client_id, token_use, the resource server's scopes.
    let cognito = |scope: &str| {
        hs256(&claims(json!({
            "client_id": "app-client-1",
            "token_use": "access",
            "scope": scope,
        })))
    };
    let both = cognito("users-api/read users-api/write");
    let read_only = cognito("users-api/read");
    let other_naming = cognito("users:read users:write");

    assert!(check(&auth, &both, Scope::UsersRead).await.is_ok());
    assert!(check(&auth, &both, Scope::UsersWrite).await.is_ok());
    assert_eq!(
        check(&auth, &read_only, Scope::UsersWrite).await,
        Err(Denied::InsufficientScope("users-api/write".to_owned()))
    );
    assert_eq!(
        check(&auth, &other_naming, Scope::UsersRead).await,
        Err(Denied::InsufficientScope("users-api/read".to_owned()))
    );
}

#[tokio::test]
async fn a_token_for_another_api_of_the_same_issuer_is_refused_whatever_its_scopes() {
    let auth = Authenticator {
        client_ids: vec!["app-client-1".to_owned()],
        ..authenticator(SECRET, Some("https://idp.example"), Some("users-api"))
    };
    let iss = "https://idp.example";
    let by_audience = json!({"iss": iss, "aud": "users-api"});
    let by_client = json!({"iss": iss, "client_id": "app-client-1"});
    let foreign = json!({"iss": iss, "aud": "billing-api", "client_id": "billing-client"});

    for accepted in [by_audience, by_client] {
        let token = hs256(&claims(accepted.clone()));
        assert!(
            check(&auth, &token, Scope::UsersWrite).await.is_ok(),
            "{accepted}"
        );
    }
    assert_eq!(
        check(&auth, &hs256(&claims(foreign)), Scope::UsersRead).await,
        Err(Denied::Unauthenticated(AuthError::InvalidToken(
            "wrong audience"
        )))
    );
}

#[tokio::test]
async fn time_claims_are_checked_with_a_small_leeway() {
    let auth = authenticator(SECRET, None, None);
    let cases = [
        (json!({"exp": now() - 10}), None),
        (json!({"exp": now() - 120}), Some("expired")),
        (json!({"exp": null}), Some("no exp claim")),
        (json!({"nbf": now() + 10}), None),
        (json!({"nbf": now() + 120}), Some("not valid yet (nbf)")),
    ];
    for (extra, expected) in cases {
        let result = check(&auth, &hs256(&claims(extra.clone())), Scope::UsersRead).await;
        match expected {
            None => assert!(result.is_ok(), "{extra}: {result:?}"),
            Some(reason) => assert_eq!(
                result,
                Err(Denied::Unauthenticated(AuthError::InvalidToken(reason))),
                "{extra}"
            ),
        }
    }
}

#[tokio::test]
async fn issuer_and_audience_must_match_when_configured() {
    let auth = authenticator(SECRET, Some("https://idp.example"), Some("users-api"));
    let good = json!({"iss": "https://idp.example", "aud": ["other", "users-api"]});
    assert!(check(&auth, &hs256(&claims(good)), Scope::UsersRead)
        .await
        .is_ok());
    for (extra, reason) in [
        (
            json!({"iss": "https://evil.example", "aud": "users-api"}),
            "wrong issuer",
        ),
        (json!({"iss": null, "aud": "users-api"}), "no iss claim"),
        (
            json!({"iss": "https://idp.example", "aud": "other"}),
            "wrong audience",
        ),
        (
            json!({"iss": "https://idp.example", "aud": null}),
            "no aud claim",
        ),
    ] {
        let result = check(&auth, &hs256(&claims(extra.clone())), Scope::UsersRead).await;
        assert_eq!(
            result,
            Err(Denied::Unauthenticated(AuthError::InvalidToken(reason))),
            "{extra}"
        );
    }
    // Unconfigured, `iss` and `aud` are not checked.
    let open = authenticator(SECRET, None, None);
    let any = json!({"iss": "https://anyone.example", "aud": "anything"});
    assert!(check(&open, &hs256(&claims(any)), Scope::UsersRead)
        .await
        .is_ok());
}

#[tokio::test]
async fn forged_tokens_are_rejected() {
    let rsa = authenticator(RSA_PUBLIC, None, None);
    let valid = rs256(RSA_PRIVATE, &claims(json!({})));
    let (head, rest) = valid.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let b64 = |v: &Value| base64url(v.to_string().as_bytes());
    let tampered = format!(
        "{head}.{}.{signature}",
        b64(&claims(json!({"sub": "admin"})))
    );
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims(json!({})))
    );
    // HS/RS confusion: HMAC keyed with the (public) RSA key, claiming HS256.
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &claims(json!({})),
        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
    )
    .unwrap();
    let other_key = rs256(OTHER_RSA_PRIVATE, &claims(json!({})));
    for (case, token, reason) in [
        ("tampered payload", tampered, "bad signature"),
        ("alg none", none, "malformed token"),
        (
            "HS/RS confusion",
            confused,
            "algorithm not accepted for this key",
        ),
        ("another key", other_key, "bad signature"),
        ("not a JWT", "abc.def".to_owned(), "malformed token"),
    ] {
        let result = check(&rsa, &token, Scope::UsersRead).await;
        assert_eq!(
            result,
            Err(Denied::Unauthenticated(AuthError::InvalidToken(reason))),
            "{case}"
        );
    }
}

#[tokio::test]
async fn a_missing_header_or_another_scheme_is_not_a_token() {
    let auth = authenticator(SECRET, None, None);
    let token = hs256(&claims(json!({})));
    for (header, expected) in [
        (None, AuthError::Missing),
        (Some(format!("Basic {token}")), AuthError::WrongScheme),
        (Some(token.clone()), AuthError::WrongScheme),
        (Some("Bearer ".to_owned()), AuthError::WrongScheme),
        (Some("Bearer    ".to_owned()), AuthError::WrongScheme),
    ] {
        let result = auth
            .authorize(&request(header.as_deref()), Scope::UsersRead)
            .await;
        assert_eq!(
            result,
            Err(Denied::Unauthenticated(expected.clone())),
            "{header:?}"
        );
    }
    let lowercase = auth
        .authorize(&request(Some(&format!("bearer {token}"))), Scope::UsersRead)
        .await;
    assert!(lowercase.is_ok());
}

#[tokio::test]
async fn a_public_functions_authenticator_accepts_nothing() {
    let auth = Authenticator::deny_all();
    let result = check(&auth, &hs256(&claims(json!({}))), Scope::UsersRead).await;
    assert!(matches!(
        result,
        Err(Denied::Unauthenticated(AuthError::InvalidToken(_)))
    ));
}

#[test]
fn unsafe_key_material_is_refused_at_init() {
    for (material, expected) in [
        (RSA_PRIVATE, "holds a private key"),
        ("short-secret", "at least 32 bytes"),
        (
            "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----",
            "not an RSA or EC public key",
        ),
    ] {
        let err =
            Keys::from_material(&SecretString::from(material.to_owned()), "JWT_KEY").unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
    }
}
