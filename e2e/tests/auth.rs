//! Bearer tokens against the real binaries: every rejection, each accepted key type, a JWKS
//! served from loopback (with key rotation), and a key from Secrets Manager.

use e2e::{jwks::JwksServer, moto::Moto, Stack, TestDatabase};
use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::Method;
use serde_json::{json, Value};
use test_support::{
    tokens::{self, base64url, claims, ec_key, now, rsa_key, sign},
    Reply,
};

const ISSUER: &str = "https://issuer.e2e.example";
const AUDIENCE: &str = tokens::TEST_AUDIENCE;

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Claims that satisfy the RS256 stack's issuer and audience, then `overrides`.
fn rs_claims(scope: &str, overrides: Value) -> Value {
    let mut all = json!({"iss": ISSUER, "aud": AUDIENCE});
    for (key, value) in overrides.as_object().unwrap() {
        all[key] = value.clone();
    }
    claims(scope, all)
}

fn rs256(claims: &Value) -> String {
    sign(
        Algorithm::RS256,
        None,
        &rsa_key(tokens::RSA_PRIVATE),
        claims,
    )
}

async fn stack_with_keys(name: &str, keys: &[(&str, &str)]) -> (Stack, TestDatabase) {
    let database = TestDatabase::create(name).await;
    let mut env = vec![("DATABASE_URL", database.url.as_str())];
    env.extend_from_slice(keys);
    (Stack::spawn(name, &env).await, database)
}

#[track_caller]
fn assert_challenge(reply: &Reply, status: u16, challenge: &str) {
    reply.assert_problem(status);
    assert_eq!(
        reply.header("www-authenticate"),
        Some(challenge),
        "{}",
        reply.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_token_is_refused_with_the_right_challenge() {
    let (stack, _database) = stack_with_keys(
        "auth-rejections",
        &[
            ("JWT_KEY", tokens::RSA_PUBLIC),
            ("JWT_ISSUER", ISSUER),
            ("JWT_AUDIENCE", AUDIENCE),
        ],
    )
    .await;
    let valid = rs256(&rs_claims(tokens::FULL_SCOPE, json!({})));
    let (header, rest) = valid.split_once('.').unwrap();
    let signature = rest.split_once('.').unwrap().1;
    let forged_claims = rs_claims(tokens::FULL_SCOPE, json!({"sub": "admin"}));
    let tampered = format!(
        "{header}.{}.{signature}",
        base64url(forged_claims.to_string().as_bytes())
    );
    let alg_none = format!(
        "{}.{}.",
        base64url(br#"{"alg":"none","typ":"JWT"}"#),
        base64url(
            rs_claims(tokens::FULL_SCOPE, json!({}))
                .to_string()
                .as_bytes()
        )
    );
    // The classic confusion: HMAC keyed with the server's RSA public key, claiming HS256.
    let hs_with_public_key = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(tokens::RSA_PUBLIC.as_bytes()),
        &rs_claims(tokens::FULL_SCOPE, json!({})),
    );
    let invalid = r#"Bearer error="invalid_token""#;
    let with_claims =
        |overrides: Value| Some(bearer(&rs256(&rs_claims(tokens::FULL_SCOPE, overrides))));
    let other_key = sign(
        Algorithm::RS256,
        None,
        &rsa_key(tokens::OTHER_RSA_PRIVATE),
        &rs_claims(tokens::FULL_SCOPE, json!({})),
    );
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no Authorization header", None, "Bearer"),
        (
            "Basic scheme",
            Some("Basic dXNlcjpwYXNzd29yZA==".into()),
            "Bearer",
        ),
        ("token without a scheme", Some(valid.clone()), "Bearer"),
        ("alg none", Some(bearer(&alg_none)), invalid),
        (
            "HS256 signed with the RSA public key",
            Some(bearer(&hs_with_public_key)),
            invalid,
        ),
        ("signed by another key", Some(bearer(&other_key)), invalid),
        ("tampered payload", Some(bearer(&tampered)), invalid),
        (
            "expired",
            with_claims(json!({"exp": now() - 3600})),
            invalid,
        ),
        (
            "not yet valid",
            with_claims(json!({"nbf": now() + 3600})),
            invalid,
        ),
        ("no exp", with_claims(json!({"exp": null})), invalid),
        (
            "wrong issuer",
            with_claims(json!({"iss": "https://evil.example"})),
            invalid,
        ),
        (
            "wrong audience",
            with_claims(json!({"aud": "another-api"})),
            invalid,
        ),
        ("no audience", with_claims(json!({"aud": null})), invalid),
        (
            "another API's app client",
            with_claims(json!({"aud": null, "client_id": "billing-client"})),
            invalid,
        ),
        ("garbage", Some("Bearer not-a-jwt".into()), invalid),
    ];
    for (case, authorization, challenge) in cases {
        for (method, path, body) in [
            (Method::GET, "/users/1", None),
            (
                Method::POST,
                "/users",
                Some(json!({"email": "x@example.com", "name": "X"})),
            ),
        ] {
            let reply = stack
                .send_with_authorization(
                    method.clone(),
                    path,
                    authorization.as_deref(),
                    body.as_ref(),
                )
                .await;
            assert_eq!(reply.status, 401, "{case}: {}", reply.body);
            assert_challenge(&reply, 401, challenge);
        }
    }

    let read_only = bearer(&rs256(&rs_claims("users:read", json!({}))));
    let write = stack
        .send_with_authorization(
            Method::POST,
            "/users",
            Some(&read_only),
            Some(&json!({"email": "r@example.com", "name": "R"})),
        )
        .await;
    assert_challenge(
        &write,
        403,
        r#"Bearer error="insufficient_scope", scope="users:write""#,
    );
    let write_only = bearer(&rs256(&rs_claims("users:write", json!({}))));
    let read = stack
        .send_with_authorization(Method::GET, "/users/1", Some(&write_only), None)
        .await;
    assert_challenge(
        &read,
        403,
        r#"Bearer error="insufficient_scope", scope="users:read""#,
    );
    assert_eq!(
        stack
            .send_with_authorization(Method::GET, "/health", None, None)
            .await
            .status,
        200
    );

    let logs = stack.logs();
    assert!(
        logs.contains("The access token was rejected: wrong issuer."),
        "the reason is logged"
    );
    assert!(!logs.contains(signature), "a token reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_rs256_and_es256_keys_each_accept_their_tokens() {
    let read_write = tokens::FULL_SCOPE;
    let cases = [
        (
            "auth-hs256",
            tokens::TEST_KEY,
            tokens::hs256(tokens::TEST_KEY, read_write),
        ),
        (
            "auth-rs256",
            tokens::RSA_PUBLIC,
            sign(
                Algorithm::RS256,
                None,
                &rsa_key(tokens::RSA_PRIVATE),
                &claims(read_write, json!({})),
            ),
        ),
        (
            "auth-es256",
            tokens::EC_PUBLIC,
            sign(
                Algorithm::ES256,
                None,
                &ec_key(),
                &claims(read_write, json!({})),
            ),
        ),
    ];
    for (name, key, token) in cases {
        let (stack, _database) = stack_with_keys(name, &[("JWT_KEY", key)]).await;
        let authorization = bearer(&token);

        let created = stack
            .send_with_authorization(
                Method::POST,
                "/users",
                Some(&authorization),
                Some(&json!({"email": format!("{name}@example.com"), "name": name})),
            )
            .await;
        assert_eq!(created.status, 201, "{name}: {}", created.body);
        let fetched = stack
            .send_with_authorization(
                Method::GET,
                created.header("location").unwrap(),
                Some(&authorization),
                None,
            )
            .await;
        assert_eq!(fetched.status, 200, "{name}: {}", fetched.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_is_read_at_init_and_refreshed_once_for_a_new_kid() {
    let jwks: Value = serde_json::from_str(tokens::JWKS_KEYS).unwrap();
    let server = JwksServer::start(vec![jwks["rsa-1"].clone()]).await;
    let (stack, _database) = stack_with_keys(
        "auth-jwks",
        &[
            ("JWT_JWKS_URL", server.url.as_str()),
            ("JWT_ISSUER", ISSUER),
        ],
    )
    .await;
    let rsa_token = sign(
        Algorithm::RS256,
        Some("rsa-1"),
        &rsa_key(tokens::RSA_PRIVATE),
        &rs_claims(tokens::FULL_SCOPE, json!({})),
    );
    let ec_token = sign(
        Algorithm::ES256,
        Some("ec-1"),
        &ec_key(),
        &rs_claims(tokens::FULL_SCOPE, json!({})),
    );
    let get = |token: String| {
        let stack = &stack;
        async move {
            stack
                .send_with_authorization(Method::GET, "/users/1", Some(&bearer(&token)), None)
                .await
        }
    };

    assert_eq!(
        get(rsa_token.clone()).await.status,
        404,
        "authenticated; no such user"
    );
    let fetched_at_init = server.fetches();
    assert!(fetched_at_init >= 1);

    // The issuer rotates: a new key (another type, even) appears beside the old one.
    server.publish(vec![jwks["rsa-1"].clone(), jwks["ec-1"].clone()]);
    assert_eq!(
        get(ec_token.clone()).await.status,
        404,
        "accepted after a refresh"
    );
    assert_eq!(server.fetches(), fetched_at_init + 1, "exactly one refresh");
    assert_eq!(get(ec_token).await.status, 404, "now cached");
    assert_eq!(get(rsa_token).await.status, 404);

    // Made-up kids do not turn into a fetch per request.
    for kid in ["made-up-1", "made-up-2", "made-up-3"] {
        let forged = sign(
            Algorithm::RS256,
            Some(kid),
            &rsa_key(tokens::RSA_PRIVATE),
            &rs_claims(tokens::FULL_SCOPE, json!({})),
        );
        assert_challenge(&get(forged).await, 401, r#"Bearer error="invalid_token""#);
    }
    assert_eq!(server.fetches(), fetched_at_init + 1, "rate-limited");
    // A key of the set used with the wrong algorithm is refused too.
    let hs_with_kid = sign(
        Algorithm::HS256,
        Some("rsa-1"),
        &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
        &rs_claims(tokens::FULL_SCOPE, json!({})),
    );
    assert_challenge(
        &get(hs_with_kid).await,
        401,
        r#"Bearer error="invalid_token""#,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_from_secrets_manager_is_used() {
    let moto = Moto::start().await;
    moto.create_secret("jwt/public-key", tokens::EC_PUBLIC)
        .await;
    let database = TestDatabase::create("auth-secret").await;
    let mut env = moto.function_env();
    env.push(("JWT_SECRET_ID".into(), "jwt/public-key".into()));
    env.push(("DATABASE_URL".into(), database.url.clone()));
    let stack = Stack::spawn("auth-secret", &env).await;
    let token = sign(
        Algorithm::ES256,
        None,
        &ec_key(),
        &claims("users:read", json!({})),
    );

    let reply = stack
        .send_with_authorization(Method::GET, "/users/1", Some(&bearer(&token)), None)
        .await;

    assert_eq!(reply.status, 404, "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cognito_access_token_is_bound_by_its_client_id_and_carries_cognitos_scope_names() {
    let (stack, _database) = stack_with_keys(
        "auth-client-ids",
        &[
            ("JWT_ISSUER", ISSUER),
            ("JWT_CLIENT_IDS", "app-client-1,app-client-2"),
            // A resource server `users-api` with the scopes `read` and `write`.
            ("JWT_SCOPE_READ", "users-api/read"),
            ("JWT_SCOPE_WRITE", "users-api/write"),
        ],
    )
    .await;
    // What Cognito issues: client_id and no aud, token_use, scopes space-separated (here also
    // as a list).
    let access_token = |client_id: &str, scope: Value| {
        let overrides = json!({
            "iss": ISSUER, "aud": null, "client_id": client_id, "token_use": "access",
            "scope": scope,
        });
        let claims = claims(tokens::FULL_SCOPE, overrides);
        bearer(&tokens::sign(
            Algorithm::HS256,
            None,
            &EncodingKey::from_secret(tokens::TEST_KEY.as_bytes()),
            &claims,
        ))
    };

    for (client, scope, status) in [
        ("app-client-2", json!("users-api/read users-api/write"), 404),
        ("app-client-1", json!(["openid", "users-api/read"]), 404),
        ("billing-client", json!("users-api/read"), 401),
        ("app-client-1", json!(["users-api/write"]), 403),
        // The other naming grants nothing here.
        ("app-client-1", json!("users:read users:write"), 403),
    ] {
        let authorization = access_token(client, scope.clone());
        let reply = stack
            .send_with_authorization(Method::GET, "/users/1", Some(&authorization), None)
            .await;
        assert_eq!(reply.status, status, "{client} {scope}: {}", reply.body);
        if status == 403 {
            assert_eq!(
                reply.header("www-authenticate"),
                Some(r#"Bearer error="insufficient_scope", scope="users-api/read""#)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_refuses_to_run_without_a_key_with_a_private_one_or_a_jwks_without_its_issuer() {
    let database = TestDatabase::create("auth-init").await;
    let base = vec![
        ("DATABASE_URL".to_owned(), database.url.clone()),
        ("JWT_AUDIENCE".to_owned(), AUDIENCE.to_owned()),
    ];
    let with = |key: &str, value: &str| {
        let mut env = base.clone();
        env.push((key.to_owned(), value.to_owned()));
        env
    };
    let cases = [
        ("no key source", base.clone(), "No token key source"),
        (
            "private key",
            with("JWT_KEY", tokens::RSA_PRIVATE),
            "holds a private key",
        ),
        (
            "short secret",
            with("JWT_KEY", "too-short"),
            "at least 32 bytes",
        ),
        (
            "a JWKS over plain HTTP",
            with("JWT_JWKS_URL", "http://idp.example/.well-known/jwks.json"),
            "JWT_JWKS_URL must be an https:// URL",
        ),
        (
            "tokens bound to no audience or client",
            vec![
                ("DATABASE_URL".to_owned(), database.url.clone()),
                ("JWT_KEY".to_owned(), tokens::TEST_KEY.to_owned()),
            ],
            "tokens are not bound to this API",
        ),
        (
            "a JWKS without its issuer",
            with("JWT_JWKS_URL", "https://idp.example/.well-known/jwks.json"),
            "JWT_JWKS_URL needs JWT_ISSUER",
        ),
    ];
    for (case, env, expected) in cases {
        for function in ["get-user", "create-user"] {
            let outcome = e2e::run_init(function, &env).await;
            assert!(!outcome.success, "{case}: {function} started");
            assert!(
                outcome.output.contains(expected),
                "{case}: {}",
                outcome.output
            );
        }
    }
    // /health stays public: it needs no key.
    let health = e2e::run_init("health", &base).await;
    assert!(!health.output.contains("init failed"), "{}", health.output);
}
