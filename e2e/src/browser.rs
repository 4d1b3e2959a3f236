//! A real browser for the cross-origin tests: Debian's Chromium, headless, loading a page that a
//! [`PageServer`] serves on its own origin (scripts/chromium.sh installs it; `make test` passes
//! its path as `E2E_CHROMIUM`). The page writes what its script saw into the document, and
//! `--dump-dom` prints the document once the page is idle: no driver needed.

use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    process::Command,
    task::JoinHandle,
};

/// Serves one HTML page at every path, on a free loopback port: the web app's origin. The page
/// can be set once the origin is known ([`PageServer::serve`]).
pub struct PageServer {
    /// `http://127.0.0.1:<port>`: the page's origin.
    pub origin: String,
    html: Arc<Mutex<String>>,
    server: JoinHandle<()>,
}

impl PageServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let origin = format!("http://{}", listener.local_addr().expect("address"));
        let html = Arc::new(Mutex::new(String::new()));
        let served = Arc::clone(&html);
        let server = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let html = served.lock().map(|html| html.clone()).unwrap_or_default();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buffer = [0; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => request.extend_from_slice(&buffer[..read]),
                        }
                    }
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\n\
                         content-length: {}\r\ncache-control: no-store\r\n\
                         connection: close\r\n\r\n{html}",
                        html.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
        });
        Self {
            origin,
            html,
            server,
        }
    }

    /// Serves `html` from now on.
    pub fn serve(&self, html: String) {
        if let Ok(mut served) = self.html.lock() {
            *served = html;
        }
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The document of `url` once headless Chromium has run its scripts (their fetches included:
/// virtual time stands still while a request is pending), as `--dump-dom` prints it.
pub async fn dump_dom(url: &str) -> String {
    let chromium = std::env::var("E2E_CHROMIUM")
        .expect("E2E_CHROMIUM: Chromium's path (make test sets it: scripts/chromium.sh)");
    let profile = tempdir();
    let run = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            // Without these, Chromium reaches for Google's hosts, which this network refuses.
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=30000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("Chromium finished within two minutes")
        .expect("run Chromium");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        output.status.success(),
        "Chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A new empty folder for a browser profile.
fn tempdir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "users-api-chromium-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("a profile folder");
    dir
}
