//! IAM database authentication with the real binary: the function signs an RDS auth token with
//! its role credentials and logs in with it over verified TLS. Its clock is frozen (Debian's
//! libfaketime), so the token it signs is the one an independent implementation (boto3) signs
//! for that instant, which the test set as the role's password.

use std::process::Command;

use e2e::{
    run_init,
    tls::{TestPki, TlsCluster},
    workspace, TestDatabase,
};
use sqlx::{Connection, PgConnection};
use test_support::tokens;

const REGION: &str = "eu-west-1";
const ACCESS_KEY_ID: &str = "AKIDEXAMPLE";
const SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLE/session+token=";
/// 2026-01-01T12:00:00Z, the instant the function's clock is frozen at.
const FROZEN_AT: u64 = 1_767_268_800;

/// The token boto3 signs for this user on `localhost:port` at `unix_time`.
fn boto3_token(port: u16, user: &str, unix_time: u64) -> String {
    let output = Command::new(workspace().join(".venv/bin/python"))
        .current_dir(workspace())
        .args([
            "-m",
            "devtools.rds_auth_token",
            "localhost",
            &port.to_string(),
            user,
        ])
        .args([REGION, ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN])
        .arg(unix_time.to_string())
        .output()
        .expect("run devtools.rds_auth_token");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned()
}

fn frozen_clock(unix_time: u64) -> Vec<(String, String)> {
    let library = std::env::var("E2E_LIBFAKETIME")
        .expect("E2E_LIBFAKETIME: run the end-to-end tests through `make test`");
    [
        ("LD_PRELOAD", library),
        // Without a leading `@`, the wall clock stands still at that instant, however long the
        // init takes; timers run on the monotonic clock, which must keep going.
        ("FAKETIME", format_utc(unix_time)),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()),
        ("FAKETIME_NO_CACHE", "1".to_owned()),
        ("TZ", "UTC".to_owned()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect()
}

fn format_utc(unix_time: u64) -> String {
    let output = Command::new("date")
        .args(["-u", "-d", &format!("@{unix_time}"), "+%Y-%m-%d %H:%M:%S"])
        .output()
        .expect("run date");
    String::from_utf8(output.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_logs_in_with_an_rds_auth_token_over_verified_tls() {
    let pki = TestPki::new();
    let cluster = TlsCluster::start(&pki);
    let database = TestDatabase::create_on(&cluster.admin_url, "iam").await;
    let port = database.address.port();
    let user = format!("iam_{}", database.name.trim_start_matches("e2e_"));
    let token = boto3_token(port, &user, FROZEN_AT);
    let mut admin = PgConnection::connect(&database.url).await.unwrap();
    let create: String =
        sqlx::query_scalar("SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', $1::text, $2::text)")
            .bind(&user)
            .bind(&token)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    sqlx::raw_sql(&create).execute(&mut admin).await.unwrap();
    sqlx::raw_sql(&format!(r#"GRANT users_api_app TO "{user}""#))
        .execute(&mut admin)
        .await
        .unwrap();
    let ca = pki.ca().to_string_lossy().into_owned();
    let function_env = |unix_time: u64| {
        let mut env: Vec<(String, String)> = [
            ("DB_IAM_USER", user.as_str()),
            ("DB_HOST", "localhost"),
            ("DB_PORT", &port.to_string()),
            ("DB_NAME", database.name.as_str()),
            ("DB_SSLMODE", "verify-full"),
            ("DB_SSLROOTCERT", ca.as_str()),
            ("AWS_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
            ("AWS_SESSION_TOKEN", SESSION_TOKEN),
            ("JWT_KEY", tokens::TEST_KEY),
            ("JWT_AUDIENCE", tokens::TEST_AUDIENCE),
            ("RUST_LOG", "info,shared=debug"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
        env.extend(frozen_clock(unix_time));
        env
    };

    // The init opens the first connection: with the token for this instant, it logs in.
    let at_the_instant = run_init("get-user", &function_env(FROZEN_AT)).await;
    // A minute later the function signs another token, which is not the role's password.
    let a_minute_later = run_init("get-user", &function_env(FROZEN_AT + 60)).await;

    assert!(
        at_the_instant.output.contains("database connection ready"),
        "{}",
        at_the_instant.output
    );
    assert!(
        a_minute_later
            .output
            .contains("database not reachable during init")
            && a_minute_later
                .output
                .contains("password authentication failed"),
        "{}",
        a_minute_later.output
    );
    let signature = token.rsplit('=').next().expect("a signature");
    for outcome in [&at_the_instant, &a_minute_later] {
        assert!(
            !outcome.output.contains(signature),
            "the token reached the log"
        );
    }
}
