//! Database credentials from Secrets Manager (moto on loopback, through the real SDK), end to
//! end: the real binaries, a real Postgres, rotation while warm, and failures.

use std::time::Duration;

use e2e::{moto::Moto, run_init, Stack, TestDatabase};

const REFETCH_LOG: &str = "re-fetched the database secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_secret_and_an_rds_json_secret_both_give_a_working_api() {
    let database = TestDatabase::create("secret-formats").await;
    let role = database.create_app_role("fmt_app", "fmt-pw-1").await;
    let moto = Moto::start().await;
    let port = database.address.port();
    let url = format!(
        "postgres://{role}:fmt-pw-1@{}:{port}/{}",
        database.address.ip(),
        database.name
    );
    moto.create_secret("db/url", &url).await;
    let arn = moto
        .create_secret("db/json", &database.rds_secret(port, &role, "fmt-pw-1"))
        .await;

    // By name for one, by ARN for the other: both are what DB_SECRET_ID accepts.
    for (n, secret_id) in ["db/url", arn.as_str()].into_iter().enumerate() {
        let stack =
            Stack::spawn(&format!("secret-format-{n}"), &moto.database_env(secret_id)).await;

        let health = stack.get("/health").await;
        assert_eq!(health.status, 200, "{}", health.body);
        stack
            .create_and_fetch_a_user(&format!("format{n}@example.com"))
            .await;
        assert!(
            !stack.logs().contains("fmt-pw-1"),
            "the password reached the log"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_fails_with_one_clear_line_when_the_secret_cannot_be_used() {
    let moto = Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "4")]).await;
    moto.create_secret("db/garbled", r#"{"host": "db", "password": "garbled-pw-9""#)
        .await;
    moto.create_secret(
        "db/incomplete",
        r#"{"host":"db","password":"incomplete-pw-9"}"#,
    )
    .await;
    let (key, secret) = moto.user_without_permissions("no-access").await;
    let mut denied = moto.database_env("db/garbled");
    denied.retain(|(name, _)| {
        !name.starts_with("AWS_ACCESS_KEY_ID") && !name.starts_with("AWS_SECRET")
    });
    denied.push(("AWS_ACCESS_KEY_ID".into(), key));
    denied.push(("AWS_SECRET_ACCESS_KEY".into(), secret));
    let missing_moto = Moto::start().await;

    type Env = Vec<(String, String)>;
    let cases: [(&str, Env, &[&str]); 3] = [
        (
            "neither variable",
            vec![],
            &["neither DB_SECRET_ID, DB_IAM_USER nor DATABASE_URL is set"],
        ),
        (
            "no such secret",
            missing_moto.database_env("db/absent"),
            &["db/absent", "(or that version of it) does not exist"],
        ),
        (
            "access denied",
            denied,
            &["access to secret", "db/garbled", "is denied"],
        ),
    ];
    for (case, env, expected) in cases {
        let outcome = run_init("health", &env).await;

        assert!(
            !outcome.success,
            "{case}: init succeeded:\n{}",
            outcome.output
        );
        let failures: Vec<_> = outcome
            .output
            .lines()
            .filter(|l| l.contains("init failed"))
            .collect();
        assert_eq!(
            failures.len(),
            1,
            "{case}: one init failure line:\n{}",
            outcome.output
        );
        for fragment in expected {
            assert!(failures[0].contains(fragment), "{case}: {}", failures[0]);
        }
        assert!(
            outcome.elapsed < Duration::from_secs(15),
            "{case}: took {:?}",
            outcome.elapsed
        );
    }

    // Moto enforces IAM from here on; malformed secrets need a server that lets us read.
    let readable = Moto::start().await;
    readable
        .create_secret("db/garbled", r#"{"host": "db", "password": "garbled-pw-9""#)
        .await;
    readable
        .create_secret(
            "db/incomplete",
            r#"{"host":"db","password":"incomplete-pw-9"}"#,
        )
        .await;
    let cases: [(&str, &[&str]); 2] = [
        (
            "db/garbled",
            &["is malformed: the value is neither a postgres:// URL nor a JSON object"],
        ),
        (
            "db/incomplete",
            &["is malformed: the JSON has no", "username"],
        ),
    ];
    for (secret_id, expected) in cases {
        let outcome = run_init("health", &readable.database_env(secret_id)).await;

        assert!(
            !outcome.success,
            "{secret_id}: init succeeded:\n{}",
            outcome.output
        );
        assert_eq!(outcome.output.lines().count(), 1, "{}", outcome.output);
        for fragment in expected {
            assert!(
                outcome.output.contains(fragment),
                "{secret_id}:\n{}",
                outcome.output
            );
        }
        assert!(
            !outcome.output.contains("-pw-9"),
            "{secret_id}: the secret reached the log"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_naming_an_unreachable_host_gets_503_problems_not_a_hang() {
    let database = TestDatabase::create("wrong-host").await;
    let moto = Moto::start().await;
    let closed_port = e2e::free_port();
    moto.create_secret(
        "db",
        &database.rds_secret(closed_port, "nobody", "wrong-host-pw"),
    )
    .await;
    let stack = Stack::spawn("wrong-host", &moto.database_env("db")).await;

    for reply in [stack.get("/health").await, stack.get("/users/1").await] {
        reply.assert_unavailable();
    }
    assert!(
        !stack.logs().contains("wrong-host-pw"),
        "the password reached the log"
    );
}

/// A stack reading its credentials (`role`, `password`) from the secret `db`, warm: it has
/// served a create and a fetch.
struct WarmStack {
    database: TestDatabase,
    /// The roles' real (suffixed) names, in the order given.
    roles: Vec<String>,
    moto: Moto,
    stack: Stack,
}

impl WarmStack {
    async fn start(name: &str, roles: &[(&str, &str)]) -> Self {
        let database = TestDatabase::create(name).await;
        let mut names = Vec::new();
        for (role, password) in roles {
            names.push(database.create_app_role(role, password).await);
        }
        let moto = Moto::start().await;
        let port = database.address.port();
        moto.create_secret("db", &database.rds_secret(port, &names[0], roles[0].1))
            .await;
        let stack = Stack::spawn(name, &moto.database_env("db")).await;
        stack
            .create_and_fetch_a_user(&format!("{name}-warm@example.com"))
            .await;
        Self {
            database,
            roles: names,
            moto,
            stack,
        }
    }

    /// The secret's JSON for `role` and `password` on this stack's database.
    fn secret(&self, role: &str, password: &str) -> String {
        self.database
            .rds_secret(self.database.address.port(), role, password)
    }

    /// Runs `ALTER ROLE <role n> <change>`.
    async fn alter_role(&self, n: usize, change: &str) {
        let statement = format!(r#"ALTER ROLE "{}" {change}"#, self.roles[n]);
        sqlx::query(&statement)
            .execute(&mut self.database.connect().await)
            .await
            .unwrap_or_else(|err| panic!("{statement}: {err}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_rotation_while_warm_is_followed_with_one_refetch() {
    let warm = WarmStack::start("rotation", &[("rot_app", "before-rotation-1")]).await;

    // Single-user rotation: the password changes in the database and in the secret, and the
    // sessions opened with the old one end.
    let role = &warm.roles[0];
    warm.alter_role(0, "PASSWORD 'after-rotation-2'").await;
    warm.moto
        .put_secret("db", &warm.secret(role, "after-rotation-2"))
        .await;
    warm.database.terminate_sessions_of(role).await;

    let fetched = warm.stack.get("/users/1").await;
    assert_eq!(fetched.status, 200, "{}", fetched.body);
    assert_eq!(
        warm.stack.log_lines_containing(REFETCH_LOG),
        1,
        "{}",
        warm.stack.logs()
    );
    let logs = warm.stack.logs();
    assert!(!logs.contains("before-rotation-1") && !logs.contains("after-rotation-2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pending_version_is_used_while_a_single_user_rotation_is_in_flight() {
    let warm = WarmStack::start("pending", &[("pend_app", "pending-old-1")]).await;

    // Between rotation's setSecret and finishSecret: the database has the new password, the
    // secret still has it only as AWSPENDING.
    let role = &warm.roles[0];
    warm.moto
        .put_pending_secret("db", &warm.secret(role, "pending-new-2"))
        .await;
    warm.alter_role(0, "PASSWORD 'pending-new-2'").await;
    warm.database.terminate_sessions_of(role).await;

    let fetched = warm.stack.get("/users/1").await;
    assert_eq!(fetched.status, 200, "{}", fetched.body);
    assert_eq!(
        warm.stack.log_lines_containing(REFETCH_LOG),
        1,
        "{}",
        warm.stack.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alternating_users_rotation_switches_to_the_other_role() {
    let roles = [("alt_user", "alt-pw-1"), ("alt_user_clone", "alt-pw-2")];
    let warm = WarmStack::start("alternating", &roles).await;

    // The secret moves to the clone; the next rotation retires the first user (here: it may no
    // longer log in, SQLSTATE 28000) and its sessions end.
    warm.moto
        .put_secret("db", &warm.secret(&warm.roles[1], "alt-pw-2"))
        .await;
    warm.alter_role(0, "NOLOGIN").await;
    warm.database.terminate_sessions_of(&warm.roles[0]).await;

    warm.stack
        .create_and_fetch_a_user("second@example.com")
        .await;
    // One re-fetch in each function that served a request since: create-user and get-user are
    // separate execution environments, each with its own cache.
    assert_eq!(
        warm.stack.log_lines_containing(REFETCH_LOG),
        2,
        "{}",
        warm.stack.logs()
    );
    assert_eq!(
        warm.database.session_roles().await,
        vec![warm.roles[1].clone()]
    );
}
