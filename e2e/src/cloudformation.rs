//! A stand-in for CloudFormation's pre-signed response URL: a loopback HTTP server that
//! records the one request a custom resource function sends it.

use std::time::Duration;

use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    task::JoinHandle,
};

/// What the function sent to the response URL.
#[derive(Debug)]
pub struct CapturedResponse {
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    pub body: Value,
}

pub struct ResponseUrl {
    pub url: String,
    capture: JoinHandle<CapturedResponse>,
}

impl ResponseUrl {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let capture = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("a request");
            let mut received = Vec::new();
            let mut buffer = [0; 4096];
            let (head, body_start) = loop {
                let read = socket.read(&mut buffer).await.expect("read");
                assert!(read > 0, "the connection closed early");
                received.extend_from_slice(&buffer[..read]);
                if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                    break (
                        String::from_utf8_lossy(&received[..end]).into_owned(),
                        end + 4,
                    );
                }
            };
            let header = |name: &str| {
                head.lines().skip(1).find_map(|line| {
                    let (key, value) = line.split_once(':')?;
                    key.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| value.trim().to_owned())
                })
            };
            let length: usize = header("content-length")
                .and_then(|value| value.parse().ok())
                .expect("a content-length");
            while received.len() < body_start + length {
                let read = socket.read(&mut buffer).await.expect("read");
                assert!(read > 0, "the connection closed early");
                received.extend_from_slice(&buffer[..read]);
            }
            socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await
                .expect("answer");
            let mut request_line = head.lines().next().unwrap_or_default().split(' ');
            CapturedResponse {
                method: request_line.next().unwrap_or_default().to_owned(),
                path: request_line.next().unwrap_or_default().to_owned(),
                content_type: header("content-type"),
                body: serde_json::from_slice(&received[body_start..body_start + length])
                    .expect("the response is JSON"),
            }
        });
        Self {
            url: format!("http://127.0.0.1:{port}/cloudformation-response?X-Amz-Signature=test"),
            capture,
        }
    }

    /// The request the function sent, waiting up to `within` for it.
    pub async fn received(self, within: Duration) -> CapturedResponse {
        tokio::time::timeout(within, self.capture)
            .await
            .expect("the function answered CloudFormation in time")
            .expect("the capture task")
    }
}
