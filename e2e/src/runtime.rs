//! A Lambda Runtime API of our own, serving one function binary in one process: what Lambda
//! does for an execution environment, with the parts `cargo lambda watch` cannot give a test.
//!
//! - A real deadline per invocation (`Lambda-Runtime-Deadline-Ms`), so a function's own time
//!   budget can be tested.
//! - The process itself, to freeze (SIGSTOP) and thaw (SIGCONT) between invocations as Lambda
//!   does, and to tell whether it is still the same process.
//! - The invocation error, as the runtime reports it.
//! - Several invocations at once to one process, as Lambda Managed Instances sends them (up to
//!   `AWS_LAMBDA_MAX_CONCURRENCY`, each to one of the runtime's concurrent pollers).
//!
//! It speaks just enough HTTP/1.1 for the runtime client (`lambda_runtime`): keep-alive, a
//! `content-length` or chunked body.

use std::{
    collections::HashMap,
    ffi::OsStr,
    fs::File,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;
use test_support::{tokens, Reply, TestRequest};
use tokio::{
    io::BufReader,
    net::{TcpListener, TcpStream},
    process::{Child, Command},
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

use crate::{http1, workspace};

/// How an invocation ended, as the Runtime API heard it.
#[derive(Debug)]
pub enum Outcome {
    /// `POST /runtime/invocation/{id}/response`.
    Response(Value),
    /// `POST /runtime/invocation/{id}/error`: the handler failed or panicked.
    Error(Value),
}

impl Outcome {
    /// The response, or a panic saying what came instead.
    pub fn response(self) -> Value {
        match self {
            Self::Response(value) => value,
            Self::Error(error) => panic!("the invocation failed: {error}"),
        }
    }
}

struct Invocation {
    id: String,
    event: Value,
    deadline: SystemTime,
}

struct Api {
    /// Invocations to hand out, each to the first poller that asks (`invocation/next`).
    queue: mpsc::UnboundedSender<Invocation>,
    queued: tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    init_error: Mutex<Option<Value>>,
    /// When the function first asked for an event: its init was over.
    first_next: Mutex<Option<std::time::Instant>>,
    /// The extensions the process registered (Extensions API), by name.
    extensions: Mutex<Vec<String>>,
}

impl Api {
    fn new() -> Self {
        let (queue, queued) = mpsc::unbounded_channel();
        Self {
            queue,
            queued: tokio::sync::Mutex::new(queued),
            waiting: Mutex::default(),
            init_error: Mutex::default(),
            first_next: Mutex::default(),
            extensions: Mutex::default(),
        }
    }
}

/// One execution environment: the function's binary, started with a bare environment plus the
/// given variables, and the Runtime API it polls. Dropping it kills the process.
pub struct Function {
    pub log_path: PathBuf,
    /// When the process was started.
    pub started: std::time::Instant,
    api: Arc<Api>,
    child: Child,
    server: JoinHandle<()>,
}

impl Function {
    /// Starts `target/<profile>/<binary>` (the build the test binary belongs to).
    pub async fn start<K: AsRef<OsStr>, V: AsRef<OsStr>>(binary: &str, env: &[(K, V)]) -> Self {
        Self::start_at(&binary_path(binary), env).await
    }

    /// An API function (`get-user`, `create-user`, …) over `database_url`, verifying tokens
    /// signed with [`tokens::TEST_KEY`] for [`tokens::TEST_AUDIENCE`], plus `extra` variables.
    pub async fn start_api(binary: &str, database_url: &str, extra: &[(&str, &str)]) -> Self {
        let mut env = vec![
            ("DATABASE_URL", database_url),
            ("JWT_KEY", tokens::TEST_KEY),
            ("JWT_AUDIENCE", tokens::TEST_AUDIENCE),
        ];
        env.extend_from_slice(extra);
        Self::start(binary, &env).await
    }

    /// Starts the binary at `path` (`make bench`: a release build).
    pub async fn start_at<K: AsRef<OsStr>, V: AsRef<OsStr>>(path: &Path, env: &[(K, V)]) -> Self {
        let binary = path
            .file_name()
            .and_then(OsStr::to_str)
            .expect("a binary's path")
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("the address");
        let api = Arc::new(Api::new());
        let server = tokio::spawn(serve(listener, Arc::clone(&api)));
        let log_dir = workspace().join("target").join("e2e-logs");
        std::fs::create_dir_all(&log_dir).expect("create the log folder");
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let log_path = log_dir.join(format!(
            "{binary}-{}-{}.log",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let log = File::create(&log_path).expect("create the log file");
        let started = std::time::Instant::now();
        let child = Command::new(path)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", &binary)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .envs(env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("run {}: {err}", path.display()));
        Self {
            log_path,
            started,
            api,
            child,
            server,
        }
    }

    /// How long the init took (start to the first request for an event), once it is over.
    pub fn init_duration(&self) -> Option<Duration> {
        lock(&self.api.first_next).map(|at| at - self.started)
    }

    /// Waits until the init is over: the function asked for its first event (at most a minute;
    /// panics if the process exits first).
    pub async fn initialized(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while self.init_duration().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the function did not finish its init; see {}",
                self.log_path.display()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Sends `event` with `timeout` as the function's time limit (the deadline the function
    /// sees) and waits for the outcome, up to `timeout` plus a second. Panics when none comes.
    pub async fn invoke(&self, event: &Value, timeout: Duration) -> Outcome {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let id = format!(
            "8476a536-e9f4-11e8-9739-{:012x}",
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let (sender, receiver) = oneshot::channel();
        lock(&self.api.waiting).insert(id.clone(), sender);
        let queued = self.api.queue.send(Invocation {
            id,
            event: event.clone(),
            deadline: SystemTime::now() + timeout,
        });
        assert!(queued.is_ok(), "the Runtime API went away");
        match tokio::time::timeout(timeout + Duration::from_secs(1), receiver).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => panic!("the Runtime API went away"),
            Err(_) => panic!(
                "no outcome within the {timeout:?} time limit; see {}",
                self.log_path.display()
            ),
        }
    }

    /// Sends an API Gateway event for `request` (10 s to live, the template's timeout) and
    /// returns the HTTP response the function made of it.
    pub async fn request(&self, request: &TestRequest) -> Reply {
        let response = self
            .invoke(&request.event(), Duration::from_secs(10))
            .await
            .response();
        Reply::from_lambda_response(&response, request.path())
    }

    /// The process id: the same one before and after means the environment was kept.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the function is running")
    }

    /// Lambda's freeze between invocations: SIGSTOP.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lambda's thaw when the next invocation arrives: SIGCONT.
    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    /// The process's peak resident set size (`VmHWM`), in kilobytes.
    pub fn peak_rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the process's status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in the status")
    }

    /// Lambda shutting the environment down: SIGTERM (sent only when an extension is
    /// registered, as Lambda does).
    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    /// The extensions the process registered, by name.
    pub fn extensions(&self) -> Vec<String> {
        lock(&self.api.extensions).clone()
    }

    /// Whether the process has exited (as after a failed init or a crash).
    pub fn has_exited(&mut self) -> bool {
        self.child.try_wait().expect("poll the process").is_some()
    }

    /// What the function reported as its init error, if it did.
    pub fn init_error(&self) -> Option<Value> {
        lock(&self.api.init_error).clone()
    }

    /// Everything the function printed so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("a pid");
        // SAFETY: kill only sends a signal, to the process this Function started.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "signal {signal} to {pid}");
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        // A frozen process ignores SIGTERM until it runs again; SIGKILL does not wait.
        let _ = self.child.start_kill();
        self.server.abort();
    }
}

/// `target/<profile>/<binary>`, beside the test binary's own `deps/` folder.
pub fn binary_path(binary: &str) -> PathBuf {
    std::env::current_exe()
        .expect("the test binary's path")
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .join(binary)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn serve(listener: TcpListener, api: Arc<Api>) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(connection(stream, Arc::clone(&api)));
    }
}

/// One keep-alive connection from the runtime client: requests one after another.
async fn connection(stream: TcpStream, api: Arc<Api>) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    while let Some(request) = http1::read_request(&mut read).await {
        let (status, headers, body) = route(&api, request).await;
        if http1::write_response(&mut write, status, &headers, &body)
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn route(
    api: &Api,
    request: http1::Request,
) -> (&'static str, Vec<(&'static str, String)>, Vec<u8>) {
    let (method, path, body) = (
        request.method.as_str(),
        request.path.as_str(),
        &request.body,
    );
    // The Extensions API, as much of it as an extension that subscribes to no event uses:
    // registering, then waiting for an event that never comes.
    match (method, path) {
        ("POST", "/2020-01-01/extension/register") => {
            let name = request
                .header("lambda-extension-name")
                .unwrap_or_default()
                .to_owned();
            lock(&api.extensions).push(name.clone());
            let body = serde_json::json!({
                "functionName": "test", "functionVersion": "$LATEST", "handler": "bootstrap",
            });
            let id = ("lambda-extension-identifier", format!("extension-{name}"));
            return ("200 OK", vec![id], body.to_string().into_bytes());
        }
        ("GET", "/2020-01-01/extension/event/next") => {
            std::future::pending::<()>().await;
        }
        _ => {}
    }
    const PREFIX: &str = "/2018-06-01/runtime/";
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return ("404 Not Found", vec![], vec![]);
    };
    let parsed = || serde_json::from_slice(body).unwrap_or(Value::Null);
    match (method, rest) {
        ("GET", "invocation/next") => {
            lock(&api.first_next).get_or_insert_with(std::time::Instant::now);
            // One poller at a time waits for the next invocation; the others wait their turn.
            let Some(invocation) = api.queued.lock().await.recv().await else {
                return ("500 Internal Server Error", vec![], vec![]);
            };
            let deadline_ms = invocation
                .deadline
                .duration_since(UNIX_EPOCH)
                .expect("after 1970")
                .as_millis();
            let headers = vec![
                ("content-type", "application/json".to_owned()),
                ("lambda-runtime-aws-request-id", invocation.id),
                ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
                (
                    "lambda-runtime-invoked-function-arn",
                    "arn:aws:lambda:eu-west-1:123456789012:function:test".to_owned(),
                ),
                (
                    "lambda-runtime-trace-id",
                    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
                        .to_owned(),
                ),
            ];
            let body = serde_json::to_vec(&invocation.event).expect("JSON");
            ("200 OK", headers, body)
        }
        ("POST", "init/error") => {
            *lock(&api.init_error) = Some(parsed());
            ("202 Accepted", vec![], b"{}".to_vec())
        }
        ("POST", rest) => {
            let Some((id, kind)) = rest
                .strip_prefix("invocation/")
                .and_then(|rest| rest.split_once('/'))
            else {
                return ("404 Not Found", vec![], vec![]);
            };
            let outcome = match kind {
                "response" => Outcome::Response(parsed()),
                "error" => Outcome::Error(parsed()),
                _ => return ("404 Not Found", vec![], vec![]),
            };
            if let Some(sender) = lock(&api.waiting).remove(id) {
                let _ = sender.send(outcome);
            }
            ("202 Accepted", vec![], b"{}".to_vec())
        }
        _ => ("404 Not Found", vec![], vec![]),
    }
}
