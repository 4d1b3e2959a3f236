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
//!   RDS Proxy; [`replica`]: a cluster and a streaming standby, an Aurora reader's stand-in.
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
pub mod replica;
pub mod runtime;
pub mod stack;
pub mod template;
pub mod tls;

use std::{net::TcpListener, path::PathBuf};

pub use database::TestDatabase;
pub use init::run_init;
pub use stack::Stack;

/// A loopback port nobody listens on right now, for a server a test starts (often another
/// process, which binds it later), below the kernel's ephemeral range: a port from that range
/// (what binding port 0 gives) can be taken as the local port of any outgoing connection
/// before the server binds it (CI failed so: "Address already in use", a proxy's port taken
/// while the tests beside it opened connections). Below the range only another test's server
/// can take it, one chance in thousands, since each draws at random.
pub fn free_port() -> u16 {
    let (first, end) = (10_000, ephemeral_ports_start());
    for _ in 0..1000 {
        let port = first + (random() % u64::from(end - first)) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {first}..{end}")
}

/// Where the kernel's ephemeral ports start (`net.ipv4.ip_local_port_range`).
fn ephemeral_ports_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .filter(|start| *start > 20_000)
        .unwrap_or(32_768)
}

/// A random number (std's per-process random hash keys, no extra crate).
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos()),
    );
    hasher.finish()
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
