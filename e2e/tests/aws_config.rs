//! The AWS SDK configured by `aws-config`, end to end: the real binary reads its database secret
//! from moto, enforcing IAM, with credentials from where developers and containers keep them,
//! never in its environment.

use std::path::{Path, PathBuf};

use e2e::{
    container_credentials::ContainerCredentials, moto::Moto, runtime::Function, TestDatabase,
};
use test_support::TestRequest;

/// moto answers the set-up's requests (an IAM user or role: three; the secret: one) without
/// checking their signatures, and every later one only when that user's or role's keys signed
/// it.
const SET_UP_REQUESTS: &str = "4";

/// A database whose URL is the secret `db/url` in a moto that enforces IAM, and the keys of the
/// one user allowed to read it.
async fn secret_only_a_user_can_read(name: &str) -> (TestDatabase, Moto, (String, String)) {
    let database = TestDatabase::create(name).await;
    let moto = Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", SET_UP_REQUESTS)]).await;
    let keys = moto.user_allowed_to_read_secrets("reader").await;
    moto.create_secret("db/url", &database.url).await;
    (database, moto, keys)
}

/// An empty home folder of the test's own (no `~/.aws`).
fn home(name: &str) -> PathBuf {
    let home = e2e::workspace().join("target").join("e2e-homes").join(name);
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).expect("create the home folder");
    home
}

/// The health function with the secret and `aws`, and nothing else of AWS's: no keys, and a
/// home without `~/.aws`.
async fn health(moto: &Moto, home: &Path, aws: &[(&str, &str)]) -> u16 {
    let mut env = vec![
        ("HOME", home.to_str().expect("a UTF-8 path")),
        ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("DB_SECRET_ID", "db/url"),
        ("DB_SSLMODE", "disable"),
    ];
    env.extend_from_slice(aws);
    let function = Function::start("health", &env).await;
    function.request(&TestRequest::get("/health")).await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_a_named_profile_read_the_secret() {
    let (_database, moto, (key, secret)) = secret_only_a_user_can_read("aws-profile").await;
    let home = home("aws-profile");
    let credentials = home.join("credentials");
    let config = home.join("config");
    std::fs::write(
        &credentials,
        format!("[laptop]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n"),
    )
    .expect("write the credentials file");
    std::fs::write(&config, "[profile laptop]\nregion = us-east-1\n").expect("write the config");
    let files = [
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            credentials.to_str().expect("UTF-8"),
        ),
        ("AWS_CONFIG_FILE", config.to_str().expect("UTF-8")),
    ];

    let with_profile = health(
        &moto,
        &home,
        &[&files[..], &[("AWS_PROFILE", "laptop")]].concat(),
    )
    .await;
    // The same files, another profile: no credentials, no region.
    let other_profile = health(
        &moto,
        &home,
        &[&files[..], &[("AWS_PROFILE", "default")]].concat(),
    )
    .await;

    assert_eq!(with_profile, 200, "the profile's keys read the secret");
    assert_ne!(other_profile, 200, "without the profile nothing could have");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_a_container_endpoint_read_the_secret() {
    let database = TestDatabase::create("aws-container").await;
    // A task role's: created, given its policy and assumed during the set-up.
    let moto = Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", SET_UP_REQUESTS)]).await;
    let role = moto.assumed_role_allowed_to_read_secrets("task").await;
    moto.create_secret("db/url", &database.url).await;
    let endpoint = ContainerCredentials::start(&role).await;
    let home = home("aws-container");
    let container = [
        ("AWS_REGION", "us-east-1"),
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", endpoint.url.as_str()),
    ];

    let with_token = health(
        &moto,
        &home,
        &[
            &container[..],
            &[("AWS_CONTAINER_AUTHORIZATION_TOKEN", endpoint.token.as_str())],
        ]
        .concat(),
    )
    .await;
    let served = endpoint.served();
    let with_another_token = health(
        &moto,
        &home,
        &[
            &container[..],
            &[("AWS_CONTAINER_AUTHORIZATION_TOKEN", "not-the-token")],
        ]
        .concat(),
    )
    .await;

    assert_eq!(with_token, 200, "the endpoint's keys read the secret");
    assert!(served >= 1, "the credentials came from the endpoint");
    assert_ne!(with_another_token, 200);
    assert!(
        endpoint.refused() >= 1,
        "the endpoint refused the wrong token"
    );
}
