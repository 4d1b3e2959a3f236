//! An OpenTelemetry collector's OTLP/HTTP traces endpoint on loopback (`POST /v1/traces`,
//! protobuf), keeping every span it receives, decoded with `opentelemetry-proto`.

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, trace::v1::Span,
};
use prost::Message;
use tokio::{
    io::BufReader,
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

use crate::http1;

pub struct Collector {
    /// `http://127.0.0.1:<port>`: the value for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: String,
    received: Arc<Mutex<Vec<Span>>>,
    /// Requests received, and their paths.
    paths: Arc<Mutex<Vec<String>>>,
    server: JoinHandle<()>,
}

impl Collector {
    pub async fn start() -> Self {
        Self::start_on(0).await
    }

    /// On loopback port `port` (0: any free one).
    pub async fn start_on(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("an address"));
        let received = Arc::new(Mutex::new(Vec::new()));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let (spans, seen) = (Arc::clone(&received), Arc::clone(&paths));
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&spans), Arc::clone(&seen)));
            }
        });
        Self {
            endpoint,
            received,
            paths,
            server,
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.received.lock().expect("not poisoned").clone()
    }

    /// The path of every request received so far.
    pub fn paths(&self) -> Vec<String> {
        self.paths.lock().expect("not poisoned").clone()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// One keep-alive connection: each request kept and answered 200.
async fn serve(stream: TcpStream, spans: Arc<Mutex<Vec<Span>>>, paths: Arc<Mutex<Vec<String>>>) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    while let Some(request) = http1::read_request(&mut read).await {
        paths.lock().expect("not poisoned").push(request.path);
        if let Ok(export) = ExportTraceServiceRequest::decode(request.body.as_slice()) {
            let mut kept = spans.lock().expect("not poisoned");
            for resource in export.resource_spans {
                for scope in resource.scope_spans {
                    kept.extend(scope.spans);
                }
            }
        }
        if http1::write_response(&mut write, "200 OK", &[], &[])
            .await
            .is_err()
        {
            return;
        }
    }
}
