//! Slow or failing dependencies, within the Lambda clock: the real function binaries under the
//! harness's Runtime API (real deadlines, one process to watch), with the harness's TCP proxy
//! delaying or cutting the way to Secrets Manager (moto) or the token issuer's JWKS.
//!
//! Every request answers before its deadline, with a problem document when it cannot do
//! better; an outage at init does not fail the init (the environment answers 503s and recovers
//! by itself, asking the dependency at most once per interval); and a JWKS that turns empty
//! does not replace the last good one.

use std::time::{Duration, Instant};

use e2e::{jwks::JwksServer, moto::Moto, proxy::Proxy, runtime::Function, TestDatabase};
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use test_support::{tokens, Reply, TestRequest};

const REFETCH_LOG: &str = "re-fetched the database secret";

/// A migrated database with a user and an application role whose secret is in `moto`.
async fn database_with_a_secret(name: &str, moto: &Moto, password: &str) -> (TestDatabase, String) {
    let database = TestDatabase::create(name).await;
    sqlx::query("INSERT INTO users (email, name) VALUES ('slow@example.com', 'Slow')")
        .execute(&mut database.connect().await)
        .await
        .expect("a user");
    let role = database.create_app_role("slow", password).await;
    moto.create_secret(
        "db",
        &database.rds_secret(database.address.port(), &role, password),
    )
    .await;
    (database, role)
}

/// get-user reading the database secret from moto through `proxy`, with the test key.
async fn get_user_through(moto: &Moto, proxy: &Proxy, extra: &[(&str, &str)]) -> Function {
    let mut env = moto.database_env("db");
    for (key, value) in &mut env {
        if key == "AWS_ENDPOINT_URL" {
            *value = proxy.url_for(value);
        }
    }
    env.push(("JWT_KEY".into(), tokens::TEST_KEY.into()));
    env.push(("JWT_AUDIENCE".into(), tokens::TEST_AUDIENCE.into()));
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Function::start("get-user", &env).await
}

/// Requests during an outage at init: each a 503 problem with `Retry-After`, from an
/// environment that started all the same.
async fn assert_unavailable_but_alive(function: &mut Function, request: &TestRequest) {
    for _ in 0..3 {
        let reply = function.request(request).await;
        assert_eq!(reply.assert_unavailable(), Duration::from_secs(5));
    }
    assert!(!function.has_exited(), "an outage must not fail the init");
}

/// `request` with `time_limit` as the invocation's time to live, and how long it took.
async fn timed(function: &Function, request: &TestRequest, limit: Duration) -> (Reply, Duration) {
    let started = Instant::now();
    let response = function.invoke(&request.event(), limit).await.response();
    (
        Reply::from_lambda_response(&response, request.path()),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_secrets_manager_during_a_rotation_gets_a_503_before_the_deadline() {
    let moto = Moto::start().await;
    let (database, role) = database_with_a_secret("slow-rotation", &moto, "slow-pw-1").await;
    let proxy = Proxy::in_front_of(&moto.endpoint).await;
    // Nothing else cuts the re-read short here (the connect timeout bounds it otherwise), and
    // every request may re-read: only the deadline bounds the wait.
    let unbounded = [
        ("DB_ACQUIRE_TIMEOUT_MS", "30000"),
        ("DB_SECRET_REFRESH_INTERVAL_MS", "0"),
    ];
    let function = get_user_through(&moto, &proxy, &unbounded).await;
    let get = TestRequest::get("/users/1");
    assert_eq!(function.request(&get).await.status, 200);
    let pid = function.pid();

    // A rotation the function has not seen, while Secrets Manager answers 4 s late.
    sqlx::query(&format!(r#"ALTER ROLE "{role}" PASSWORD 'slow-pw-2'"#))
        .execute(&mut database.connect().await)
        .await
        .unwrap();
    moto.put_secret(
        "db",
        &database.rds_secret(database.address.port(), &role, "slow-pw-2"),
    )
    .await;
    database.terminate_sessions_of_function("get-user").await;
    proxy.delay(Duration::from_secs(4));

    // The template's 10 s, and a tighter limit than Secrets Manager's own timeouts add up to.
    for limit in [Duration::from_secs(10), Duration::from_secs(3)] {
        let (reply, took) = timed(&function, &get, limit).await;
        reply.assert_unavailable();
        assert!(took < limit, "{took:?} against {limit:?}");
    }

    // Secrets Manager recovers: a client retrying as told is served once the attempt still
    // waiting on the old, slow answer has ended (within the 5 s the SDK gives an operation),
    // and the rotation is followed, in the same environment.
    proxy.delay(Duration::ZERO);
    let recovery = Instant::now();
    let mut reply = function.request(&get).await;
    while reply.status != 200 && recovery.elapsed() < Duration::from_secs(8) {
        tokio::time::sleep(reply.assert_unavailable()).await;
        reply = function.request(&get).await;
    }
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(function.pid(), pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_manager_down_at_init_gives_503s_then_the_environment_recovers() {
    let moto = Moto::start().await;
    let (_database, _role) = database_with_a_secret("secrets-down", &moto, "down-pw-1").await;
    let proxy = Proxy::in_front_of(&moto.endpoint).await;
    proxy.down();
    let interval = [("DB_SECRET_REFRESH_INTERVAL_MS", "1000")];
    let mut function = get_user_through(&moto, &proxy, &interval).await;
    let get = TestRequest::get("/users/1");
    let pid = function.pid();

    assert_unavailable_but_alive(&mut function, &get).await;
    assert_eq!(function.logs().matches(REFETCH_LOG).count(), 0);

    proxy.up();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reply = function.request(&get).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(function.request(&get).await.status, 200);
    assert_eq!(function.pid(), pid, "no restart");
    assert_eq!(
        function.logs().matches(REFETCH_LOG).count(),
        1,
        "{}",
        function.logs()
    );
}

/// get-user checking tokens against the JWKS at `url`, refreshed at most every `interval_ms`,
/// plus `extra` variables.
async fn get_user_with_jwks(
    database: &TestDatabase,
    url: &str,
    interval_ms: &str,
    extra: &[(&str, &str)],
) -> Function {
    let mut env = vec![
        ("DATABASE_URL", database.url.as_str()),
        ("JWT_JWKS_URL", url),
        ("JWT_JWKS_REFRESH_INTERVAL_MS", interval_ms),
        ("JWT_ISSUER", tokens::TEST_ISSUER),
        ("JWT_AUDIENCE", tokens::TEST_AUDIENCE),
    ];
    env.extend_from_slice(extra);
    Function::start("get-user", &env).await
}

/// `GET /users/1` with a token signed by the test RSA key, as `kid`.
fn get_with_kid(kid: &str) -> TestRequest {
    let token = tokens::sign(
        Algorithm::RS256,
        Some(kid),
        &tokens::rsa_key(tokens::RSA_PRIVATE),
        &tokens::claims(tokens::FULL_SCOPE, json!({})),
    );
    TestRequest::get("/users/1").authorization(Some(&format!("Bearer {token}")))
}

fn jwks_keys() -> Value {
    serde_json::from_str(tokens::JWKS_KEYS).expect("the JWKS fixture")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_down_at_init_gives_503s_then_200s_in_one_environment_with_bounded_fetches() {
    let database = TestDatabase::create("issuer-down").await;
    let issuer = JwksServer::start(vec![jwks_keys()["rsa-1"].clone()]).await;
    let proxy = Proxy::in_front_of(&issuer.url).await;
    proxy.down();
    let mut function =
        get_user_with_jwks(&database, &proxy.url_for(&issuer.url), "1000", &[]).await;
    let get = get_with_kid("rsa-1");
    let pid = function.pid();

    assert_unavailable_but_alive(&mut function, &get).await;

    proxy.up();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Authenticated, then: no such user.
    assert_eq!(function.request(&get).await.status, 404);
    assert_eq!(function.request(&get).await.status, 404);
    assert_eq!(
        issuer.fetches(),
        1,
        "one fetch once it was back, then the cache"
    );
    assert_eq!(function.pid(), pid, "no restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_jwks_after_a_good_one_does_not_replace_it() {
    let database = TestDatabase::create("jwks-empty").await;
    let issuer = JwksServer::start(vec![jwks_keys()["rsa-1"].clone()]).await;
    let function = get_user_with_jwks(&database, &issuer.url, "0", &[]).await;
    assert_eq!(function.request(&get_with_kid("rsa-1")).await.status, 404);

    // The issuer breaks: an empty key set. A token naming an unknown key makes the function
    // look, and find nothing usable.
    issuer.publish(Vec::new());
    let unknown = function.request(&get_with_kid("rsa-9")).await;
    unknown.assert_problem(401);
    assert_eq!(issuer.fetches(), 2);

    // The key it had still verifies tokens.
    assert_eq!(function.request(&get_with_kid("rsa-1")).await.status, 404);
    assert!(
        function.logs().contains("keeping the last good set"),
        "{}",
        function.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_issuer_removed_is_refused_once_the_key_set_has_aged() {
    let database = TestDatabase::create("jwks-revoked").await;
    let keys = jwks_keys();
    let issuer = JwksServer::start(vec![keys["rsa-1"].clone(), keys["ec-1"].clone()]).await;
    // Long enough that the request right after the revocation comes within it on any machine.
    let max_age = [("JWT_JWKS_MAX_AGE_MS", "3000")];
    let function = get_user_with_jwks(&database, &issuer.url, "0", &max_age).await;
    assert_eq!(function.request(&get_with_kid("rsa-1")).await.status, 404);

    // The issuer revokes rsa-1: younger than its max age, the set still trusts it.
    issuer.publish(vec![keys["ec-1"].clone()]);
    assert_eq!(function.request(&get_with_kid("rsa-1")).await.status, 404);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let revoked = function.request(&get_with_kid("rsa-1")).await;

    revoked.assert_problem(401);
    assert_eq!(issuer.fetches(), 2, "read at init, then once aged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issuers_cache_control_max_age_shortens_how_long_its_keys_are_trusted() {
    let database = TestDatabase::create("jwks-cache-control").await;
    let keys = jwks_keys();
    let issuer = JwksServer::start(vec![keys["rsa-1"].clone(), keys["ec-1"].clone()]).await;
    issuer.cache_control("public, max-age=1");
    // JWT_JWKS_MAX_AGE_MS keeps its default, ten minutes.
    let function = get_user_with_jwks(&database, &issuer.url, "0", &[]).await;
    assert_eq!(function.request(&get_with_kid("rsa-1")).await.status, 404);

    issuer.publish(vec![keys["ec-1"].clone()]);
    tokio::time::sleep(Duration::from_millis(1100)).await;

    function
        .request(&get_with_kid("rsa-1"))
        .await
        .assert_problem(401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aged_key_set_is_kept_while_the_issuer_cannot_be_reached() {
    let database = TestDatabase::create("jwks-unreachable").await;
    let issuer = JwksServer::start(vec![jwks_keys()["rsa-1"].clone()]).await;
    let proxy = Proxy::in_front_of(&issuer.url).await;
    let max_age = [("JWT_JWKS_MAX_AGE_MS", "500")];
    let function = get_user_with_jwks(&database, &proxy.url_for(&issuer.url), "0", &max_age).await;
    assert_eq!(function.request(&get_with_kid("rsa-1")).await.status, 404);

    proxy.down();
    tokio::time::sleep(Duration::from_millis(600)).await;

    assert_eq!(function.request(&get_with_kid("rsa-1")).await.status, 404);
    assert!(
        function
            .logs()
            .contains("keeping the last good set meanwhile"),
        "{}",
        function.logs()
    );
}
