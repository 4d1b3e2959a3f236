//! Minting test tokens with the test keys in `fixtures/keys` (they protect nothing).

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// The HS256 secret the test functions verify with unless a test names another key.
pub const TEST_KEY: &str = "users-api-test-only-hs256-secret-0123456789";
/// The audience (`JWT_AUDIENCE`) the test functions are bound to unless a test names another.
pub const TEST_AUDIENCE: &str = "users-api-test";
/// The issuer (`iss`) test tokens name, which a function reading a JWKS requires (`JWT_ISSUER`).
pub const TEST_ISSUER: &str = "https://issuer.users-api.test";
pub const FULL_SCOPE: &str = "users:read users:write";

pub const RSA_PRIVATE: &str = include_str!("../fixtures/keys/rsa-private.pem");
pub const RSA_PUBLIC: &str = include_str!("../fixtures/keys/rsa-public.pem");
pub const OTHER_RSA_PRIVATE: &str = include_str!("../fixtures/keys/other-rsa-private.pem");
pub const EC_PRIVATE: &str = include_str!("../fixtures/keys/ec-private.pem");
pub const EC_PUBLIC: &str = include_str!("../fixtures/keys/ec-public.pem");
/// The public halves of the RSA and EC test keys as JWKs, by `kid`.
pub const JWKS_KEYS: &str = include_str!("../fixtures/keys/jwks-keys.json");

pub fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

/// Claims from [`TEST_ISSUER`] for [`TEST_AUDIENCE`], valid for five minutes, with `scope`, then
/// `overrides` (a `null` removes a claim).
pub fn claims(scope: &str, overrides: Value) -> Value {
    let mut claims = json!({
        "iss": TEST_ISSUER,
        "sub": "test",
        "aud": TEST_AUDIENCE,
        "scope": scope,
        "exp": now() + 300,
        "iat": now(),
    });
    for (key, value) in overrides.as_object().expect("an object") {
        match value {
            Value::Null => {
                claims.as_object_mut().expect("an object").remove(key);
            }
            value => claims[key] = value.clone(),
        }
    }
    claims
}

/// A token with `scope`, valid for five minutes, signed with the HS256 `secret`.
pub fn hs256(secret: &str, scope: &str) -> String {
    sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(secret.as_bytes()),
        &claims(scope, json!({})),
    )
}

/// `Bearer <token>` for a token from [`TEST_KEY`] with `scope`.
pub fn bearer(scope: &str) -> String {
    format!("Bearer {}", hs256(TEST_KEY, scope))
}

pub fn sign(algorithm: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).expect("sign the token")
}

pub fn rsa_key(pem: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(pem.as_bytes()).expect("an RSA private key")
}

pub fn ec_key() -> EncodingKey {
    EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).expect("an EC private key")
}

/// Unpadded base64url, for hand-made (forged) tokens.
pub fn base64url(bytes: &[u8]) -> String {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    URL_SAFE_NO_PAD.encode(bytes)
}
