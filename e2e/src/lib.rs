//! End-to-end harness: the real function binaries under `cargo lambda watch`, a real Postgres,
//! and stand-ins for the AWS parts, each in its own module:
//!
//! - [`stack`]: the functions served over HTTP, as `make dev` serves them.
//! - [`runtime`]: one function binary under a Lambda Runtime API of our own: real deadlines,
//!   and a process to freeze and thaw.
//! - [`database`]: a fresh database per test on the cluster `make test` starts.
//! - [`init`]: a function's init phase alone, for init failures.
//! - [`tls`]: a test certificate authority and a cluster of its own serving TLS with it.
//! - [`moto`]: a local Secrets Manager; [`jwks`]: a token issuer's key set;
//!   [`otlp`]: an OpenTelemetry collector's OTLP/HTTP traces endpoint;
//!   [`cloudformation`]: a custom resource's response URL and CloudFormation's sequence of
//!   requests; [`proxy`]: a database connection that can be cut; [`pg_fault`]: one cut at a
//!   chosen message of the server's answer; [`pgbouncer`]: a connection pooler standing in for
//!   RDS Proxy.
//! - [`template`]: template.yaml evaluated for a set of parameters; [`gateway`]: the HTTP API it
//!   declares (routes, JWT authorizer, CORS, throttles, access log), in front of the function
//!   binaries; [`browser`]: headless Chromium loading a page from an origin of its own.
//!
//! `cargo lambda` and `moto_server` come from the project's virtualenv (`scripts/bootstrap.sh`).

pub mod bench;
pub mod browser;
pub mod cloudformation;
pub mod container_credentials;
pub mod database;
pub mod emf;
pub mod gateway;
mod http1;
pub mod init;
pub mod jwks;
pub mod moto;
pub mod otlp;
pub mod pg_fault;
pub mod pgbouncer;
pub mod proxy;
pub mod runtime;
pub mod stack;
pub mod template;
pub mod tls;

use std::{net::TcpListener, path::PathBuf};

pub use database::TestDatabase;
pub use init::run_init;
pub use stack::Stack;

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind an ephemeral port")
}

/// `url` with `port` instead of its own: the same service reached through a proxy or pooler.
pub fn with_port(url: &str, port: u16) -> String {
    let mut url = reqwest::Url::parse(url).expect("a URL");
    url.set_port(Some(port))
        .expect("a URL that can have a port");
    url.to_string()
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ is inside the workspace")
        .to_path_buf()
}
