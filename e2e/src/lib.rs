//! End-to-end harness: a [`Stack`] is the real function binaries served by `cargo lambda watch`
//! (with the workspace's router, as `make dev` serves them) over a fresh, migrated database of
//! the test Postgres cluster, on free loopback ports. Dropping it stops every process it
//! started.
//!
//! The cluster's admin URL comes from `E2E_DATABASE_URL` (`make test` starts the cluster and
//! sets it); `cargo lambda` must be on `PATH`. [`moto::Moto`] is a local Secrets Manager and
//! [`proxy::Proxy`] a database connection that can be cut.

pub mod cloudformation;
pub mod jwks;
pub mod moto;
pub mod proxy;
pub mod tokens;

use std::{
    ffi::OsStr,
    fs::File,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Stdio,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use serde_json::Value;
use sqlx::{postgres::PgConnectOptions, ConnectOptions, Connection, PgConnection};
use tokio::process::{Child, Command};

/// Longest wait for the stack to serve its first request: it may have to build the functions.
const START_TIMEOUT: Duration = Duration::from_secs(300);

pub struct Stack {
    pub base_url: String,
    /// The database [`Stack::start`] created for this stack.
    pub database: Option<TestDatabase>,
    pub log_path: PathBuf,
    /// Sent as `Authorization: Bearer …` by [`Stack::get`] and the POST helpers: full scopes,
    /// signed with [`tokens::DEFAULT_KEY`], which a stack gets unless its env names a key.
    pub token: Option<String>,
    client: reqwest::Client,
    watch: Child,
}

/// A response: status, headers and the body as JSON (`Value::Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Asserts an RFC 9457 problem with this status and a Lambda request id.
    #[track_caller]
    pub fn assert_problem(&self, status: u16) {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        assert_eq!(self.body["status"], status, "body: {}", self.body);
        for member in ["type", "title", "detail", "request_id"] {
            assert!(
                self.body[member].as_str().is_some_and(|s| !s.is_empty()),
                "problem member {member} missing: {}",
                self.body
            );
        }
    }
}

impl Stack {
    /// A stack over its own freshly created and migrated database, given as `DATABASE_URL`.
    pub async fn start(name: &str) -> Self {
        let database = TestDatabase::create(name).await;
        let mut stack = Self::spawn(name, &[("DATABASE_URL", database.url.as_str())]).await;
        stack.database = Some(database);
        stack
    }

    /// A stack whose functions get exactly these variables (and no `DATABASE_URL` otherwise),
    /// plus `JWT_KEY` = [`tokens::DEFAULT_KEY`] unless they name a `JWT_` key source.
    pub async fn spawn<K: AsRef<OsStr>, V: AsRef<OsStr>>(name: &str, env: &[(K, V)]) -> Self {
        let own_keys = env.iter().any(|(key, _)| {
            let key = key.as_ref().to_string_lossy();
            matches!(&*key, "JWT_KEY" | "JWT_SECRET_ID" | "JWT_JWKS_URL")
        });
        let port = free_port();
        let log_dir = workspace().join("target").join("e2e-logs");
        std::fs::create_dir_all(&log_dir).expect("create the log folder");
        let log_path = log_dir.join(format!("{name}.log"));
        let log = File::create(&log_path).expect("create the log file");
        let mut command = Command::new("cargo");
        // What `cargo test` sets for this test binary must not reach the cargo the watcher runs:
        // build scripts would see a changed environment and rebuild (ring, then all above it).
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key == "CARGO"
                || key == "LD_LIBRARY_PATH"
                || key.starts_with("CARGO_PKG_")
                || key.starts_with("CARGO_MANIFEST_")
                || matches!(
                    &*key,
                    "CARGO_CRATE_NAME" | "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR"
                )
            {
                command.env_remove(&*key);
            }
        }
        command
            .current_dir(workspace())
            .args(["lambda", "watch", "--ignore-changes", "--invoke-address"])
            .args(["127.0.0.1", "--invoke-port", &port.to_string()])
            .env("SQLX_OFFLINE", "true")
            .env("RUST_LOG", "info")
            .env_remove("DATABASE_URL")
            .envs((!own_keys).then_some(("JWT_KEY", tokens::DEFAULT_KEY)))
            .envs(env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            // Its own process group, so that stopping it also stops the functions it ran.
            .process_group(0)
            .kill_on_drop(true);
        let watch = command
            .spawn()
            .expect("run `cargo lambda watch`; is it on PATH?");
        let stack = Self {
            base_url: format!("http://127.0.0.1:{port}"),
            database: None,
            log_path,
            token: (!own_keys).then(|| tokens::hs256(tokens::DEFAULT_KEY, tokens::FULL_SCOPE)),
            client: reqwest::Client::new(),
            watch,
        };
        stack.wait_until_serving().await;
        stack
    }

    /// Waits until the router answers for a function; any HTTP answer from `/health` will do,
    /// since a stack may be started with an unreachable database on purpose.
    async fn wait_until_serving(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let attempt = self
                .client
                .get(format!("{}/health", self.base_url))
                .timeout(Duration::from_secs(60))
                .send()
                .await;
            if let Ok(response) = attempt {
                if response.headers().contains_key("content-type") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the stack did not serve within {START_TIMEOUT:?}; see {}",
                self.log_path.display()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.authorized(self.client.get(self.url(path))))
            .await
    }

    /// Invokes a function directly, as `aws lambda invoke` would, and returns its result.
    pub async fn invoke(&self, function: &str, event: &Value) -> Reply {
        let url = self.url(&format!("/2015-03-31/functions/{function}/invocations"));
        self.send(self.client.post(url).json(event)).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.send(self.authorized(self.client.post(self.url(path)).json(body)))
            .await
    }

    /// A request with exactly this `Authorization` header (or none).
    pub async fn send_with_authorization(
        &self,
        method: reqwest::Method,
        path: &str,
        authorization: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let mut request = self.client.request(method, self.url(path));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request).await
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// A POST with a raw body and, when given, a content type.
    pub async fn post_raw(&self, path: &str, content_type: Option<&str>, body: &str) -> Reply {
        let mut request = self.authorized(self.client.post(self.url(path)).body(body.to_owned()));
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        self.send(request).await
    }

    /// Everything the functions and the watcher printed so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// An open admin connection to this stack's database, to arrange and inspect state.
    pub async fn database(&self) -> PgConnection {
        self.database
            .as_ref()
            .expect("this stack has a database")
            .connect()
            .await
    }

    /// How many log lines contain `needle`.
    pub fn log_lines_containing(&self, needle: &str) -> usize {
        self.logs()
            .lines()
            .filter(|line| line.contains(needle))
            .count()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("the stack answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("read the body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("body is JSON: {}", String::from_utf8_lossy(&bytes)))
        };
        Reply {
            status,
            headers,
            body,
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SIGTERM to the watcher's own process group (watcher, cargo, function binaries);
        // kill_on_drop then reaps the watcher itself.
        let Some(pgid) = self.watch.id().and_then(|pid| i32::try_from(pid).ok()) else {
            return;
        };
        if pgid > 1 {
            // SAFETY: killpg only sends a signal; the group is the one spawn() created.
            unsafe {
                libc::killpg(pgid, libc::SIGTERM);
            }
        }
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind an ephemeral port")
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ is inside the workspace")
        .to_path_buf()
}

/// A fresh, migrated database on the test cluster, reached as its admin.
pub struct TestDatabase {
    /// Admin URL of this database.
    pub url: String,
    pub name: String,
    /// Where the cluster listens.
    pub address: SocketAddr,
}

impl TestDatabase {
    /// Creates `e2e_<name>_<pid>_<n>` on the test cluster and migrates it.
    pub async fn create(name: &str) -> Self {
        let database = Self::create_empty(name).await;
        shared::db::MIGRATOR
            .run(&mut database.connect().await)
            .await
            .expect("migrate the test database");
        database
    }

    /// Creates `e2e_<name>_<pid>_<n>` on the test cluster, without any schema.
    pub async fn create_empty(name: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let admin_url = std::env::var("E2E_DATABASE_URL")
            .expect("E2E_DATABASE_URL: run the end-to-end tests through `make test`");
        let admin: PgConnectOptions = admin_url
            .parse()
            .expect("E2E_DATABASE_URL is a Postgres URL");
        let database = format!(
            "e2e_{}_{}_{}",
            name.replace('-', "_"),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut connection = admin.connect().await.expect("connect to the test cluster");
        sqlx::query(&format!(r#"CREATE DATABASE "{database}""#))
            .execute(&mut connection)
            .await
            .expect("create the test database");
        let mut url = reqwest::Url::parse(&admin_url).expect("E2E_DATABASE_URL is a URL");
        url.set_path(&format!("/{database}"));
        let address = format!("{}:{}", admin.get_host(), admin.get_port())
            .parse()
            .expect("the test cluster listens on an IP address");
        Self {
            url: url.to_string(),
            name: database,
            address,
        }
    }

    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .expect("connect to the test database")
    }

    /// A login role with the grants the API needs on this database. Roles belong to the whole
    /// cluster, so the name gets this database's unique suffix; returns the role's name.
    pub async fn create_app_role(&self, role: &str, password: &str) -> String {
        let role = format!("{role}_{}", self.name.trim_start_matches("e2e_"));
        let mut connection = self.connect().await;
        for statement in [
            format!(r#"CREATE ROLE "{role}" LOGIN PASSWORD '{password}'"#),
            format!(r#"GRANT CONNECT ON DATABASE "{}" TO "{role}""#, self.name),
            format!(
                r#"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}""#
            ),
            format!(r#"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO "{role}""#),
        ] {
            sqlx::query(&statement)
                .execute(&mut connection)
                .await
                .unwrap_or_else(|err| panic!("{statement}: {err}"));
        }
        role
    }

    /// Ends every session of `role`, as a rotation's clean-up or a failover would.
    pub async fn terminate_sessions_of(&self, role: &str) {
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1")
            .bind(role)
            .execute(&mut self.connect().await)
            .await
            .expect("terminate the sessions");
    }

    /// The roles of the API's open sessions on this database.
    pub async fn session_roles(&self) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT DISTINCT usename::text FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid() AND application_name <> ''
             ORDER BY 1",
        )
        .bind(&self.name)
        .fetch_all(&mut self.connect().await)
        .await
        .expect("list the sessions")
    }
}

/// What running a function binary outside any runtime printed before it exited.
pub struct InitOutcome {
    pub success: bool,
    pub output: String,
    pub elapsed: Duration,
}

/// Runs a function's binary with `env` (on top of a bare environment) until it exits: how a
/// failed init looks in Lambda, where the process exits before it asks for an event.
pub async fn run_init(function: &str, env: &[(String, String)]) -> InitOutcome {
    let binary = std::env::current_exe()
        .expect("the test binary's path")
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .join(function);
    let started = Instant::now();
    let output = Command::new(&binary)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        // Were init to succeed, the runtime would find nothing here and exit too; the tests
        // therefore assert on what the init failure says, not only on the exit status.
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", function)
        .envs(env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .unwrap_or_else(|_| panic!("{} hung during init", binary.display()))
        .unwrap_or_else(|err| panic!("run {}: {err}", binary.display()));
    InitOutcome {
        success: output.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
        elapsed: started.elapsed(),
    }
}
