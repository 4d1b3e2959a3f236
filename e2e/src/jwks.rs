//! A JWKS endpoint on loopback, as an OIDC issuer serves one, whose keys (and `Cache-Control`) a
//! test can change, counting the fetches.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc, Mutex,
};

use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    task::JoinHandle,
};

pub struct JwksServer {
    pub url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    cache_control: Arc<Mutex<Option<String>>>,
    fetches: Arc<AtomicUsize>,
    server: JoinHandle<()>,
}

impl JwksServer {
    pub async fn start(keys: Vec<Value>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!(
            "http://127.0.0.1:{}/.well-known/jwks.json",
            listener.local_addr().expect("address").port()
        );
        let keys = Arc::new(Mutex::new(keys));
        let cache_control = Arc::new(Mutex::new(None::<String>));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (Arc::clone(&keys), Arc::clone(&fetches));
        let caching = Arc::clone(&cache_control);
        let server = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buffer = [0; 2048];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(read) => request.extend_from_slice(&buffer[..read]),
                    }
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let body = json!({"keys": *served.lock().expect("not poisoned")}).to_string();
                let length = body.len();
                let cache = caching
                    .lock()
                    .expect("not poisoned")
                    .as_ref()
                    .map(|value| format!("cache-control: {value}\r\n"))
                    .unwrap_or_default();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{cache}\
                     content-length: {length}\r\nconnection: close\r\n\r\n{body}"
                );
                let _ = socket.write_all(response.as_bytes()).await;
            }
        });
        Self {
            url,
            keys,
            cache_control,
            fetches,
            server,
        }
    }

    /// Sends this `Cache-Control` with the document from now on.
    pub fn cache_control(&self, value: &str) {
        *self.cache_control.lock().expect("not poisoned") = Some(value.to_owned());
    }

    /// Serves these keys from now on (the issuer rotated).
    pub fn publish(&self, keys: Vec<Value>) {
        *self.keys.lock().expect("not poisoned") = keys;
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}
