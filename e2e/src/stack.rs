//! A [`Stack`]: the real function binaries served by `cargo lambda watch` (with the
//! workspace's router; `make dev` puts the template's gateway in front of it) on a free loopback
//! port, driven over HTTP.
//! Dropping it stops every process it started.

use std::{
    ffi::OsStr,
    fs::File,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use serde_json::Value;
use test_support::{reply::parse_body, tokens, Reply};
use tokio::process::{Child, Command};

use crate::{database::TestDatabase, free_port, workspace};

/// Longest wait for the stack to serve its first request: it may have to build the functions.
const START_TIMEOUT: Duration = Duration::from_secs(300);

pub struct Stack {
    pub base_url: String,
    /// The database [`Stack::start`] created for this stack.
    pub database: Option<TestDatabase>,
    pub log_path: PathBuf,
    /// Sent as `Authorization: Bearer …` by [`Stack::get`] and the POST helpers: full scopes,
    /// signed with [`tokens::TEST_KEY`], which a stack gets unless its env names a key.
    pub token: Option<String>,
    client: reqwest::Client,
    watch: Child,
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
    /// plus `JWT_KEY` = [`tokens::TEST_KEY`] unless they name a `JWT_` key source, and
    /// `JWT_AUDIENCE` = [`tokens::TEST_AUDIENCE`] unless they name an audience or client ids.
    pub async fn spawn<K: AsRef<OsStr>, V: AsRef<OsStr>>(name: &str, env: &[(K, V)]) -> Self {
        let names = |wanted: &[&str]| {
            env.iter()
                .any(|(key, _)| wanted.contains(&&*key.as_ref().to_string_lossy()))
        };
        let own_keys = names(&["JWT_KEY", "JWT_SECRET_ID", "JWT_JWKS_URL"]);
        let own_binding = names(&["JWT_AUDIENCE", "JWT_CLIENT_IDS"]);
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
            .envs((!own_keys).then_some(("JWT_KEY", tokens::TEST_KEY)))
            .envs((!own_binding).then_some(("JWT_AUDIENCE", tokens::TEST_AUDIENCE)))
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
            token: (!own_keys).then(|| tokens::hs256(tokens::TEST_KEY, tokens::FULL_SCOPE)),
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
        self.send(path, self.authorized(self.client.get(self.url(path))))
            .await
    }

    /// Invokes a function directly, as `aws lambda invoke` would, and returns its result.
    pub async fn invoke(&self, function: &str, event: &Value) -> Reply {
        let path = format!("/2015-03-31/functions/{function}/invocations");
        self.send(&path, self.client.post(self.url(&path)).json(event))
            .await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        let request = self.authorized(self.client.post(self.url(path)).json(body));
        self.send(path, request).await
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
        self.send(path, request).await
    }

    /// An authorized request with these headers and, when given, a JSON body.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Reply {
        let mut request = self.authorized(self.client.request(method, self.url(path)));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(path, request).await
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
        self.send(path, request).await
    }

    /// Creates a user with `email` and fetches it back, asserting 201 then 200: the whole path
    /// to the database works.
    pub async fn create_and_fetch_a_user(&self, email: &str) {
        let body = serde_json::json!({"email": email, "name": "Test User"});
        let created = self.post_json("/users", &body).await;
        assert_eq!(created.status, 201, "{}", created.body);
        let fetched = self
            .get(created.header("location").expect("a location"))
            .await;
        assert_eq!(fetched.status, 200, "{}", fetched.body);
    }

    /// Everything the functions and the watcher printed so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// An open admin connection to this stack's database, to arrange and inspect state.
    pub async fn database(&self) -> sqlx::PgConnection {
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

    async fn send(&self, path: &str, request: reqwest::RequestBuilder) -> Reply {
        let response = request
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("the stack answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("read the body");
        Reply {
            status,
            headers,
            body: parse_body(&bytes),
            path: path.to_owned(),
            request_id: None,
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
