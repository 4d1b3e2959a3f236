//! The one HTTP client for outbound calls: Secrets Manager (the SDK is given this client, see
//! `secrets`), a JWKS document, CloudFormation's response URL, the secrets extension on
//! localhost. (Inbound requests are [`crate::http`]'s.) HTTP/1.1, rustls on ring with the webpki
//! roots; plain HTTP is allowed for loopback.

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};

pub type OutboundHttp = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Every peer here answers a TCP connect in milliseconds when it is up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

pub fn client() -> OutboundHttp {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    Client::builder(TokioExecutor::new()).build(connector)
}
