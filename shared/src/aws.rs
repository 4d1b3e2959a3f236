//! The AWS SDK's configuration, by `aws-config`, as every AWS SDK user knows it: region,
//! credentials and endpoints from the standard sources, in the standard order. On Lambda the
//! environment answers first (`AWS_REGION`, the role's `AWS_ACCESS_KEY_ID`, …), so nothing else
//! is read or probed at init; off Lambda a named profile (`AWS_PROFILE`, with SSO or a
//! `credential_process`), a container-credentials endpoint (`AWS_CONTAINER_CREDENTIALS_FULL_URI`
//! and its authorization token) or web identity work too. `AWS_ENDPOINT_URL` (or
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER`) points the SDK at a local stand-in.
//!
//! Its timeouts and retries are explicit, so that a slow or unreachable AWS costs seconds, not
//! the whole Lambda timeout, and every request goes through the crate's one HTTP client.

use std::time::Duration;

use aws_config::{retry::RetryConfig, timeout::TimeoutConfig, BehaviorVersion, SdkConfig};
use aws_smithy_runtime_api::client::{
    http::{
        http_client_fn, HttpConnector, HttpConnectorFuture, SharedHttpClient, SharedHttpConnector,
    },
    orchestrator::{HttpRequest, HttpResponse},
    result::ConnectorError,
};
use aws_smithy_types::body::SdkBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;

use crate::outbound_http::{self, OutboundHttp};

/// Connecting to an AWS endpoint takes milliseconds when it works.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// One attempt: a GetSecretValue answers in tens of milliseconds.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Every attempt together, within Lambda's 10 s init phase with room to spare.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_ATTEMPTS: u32 = 3;

/// The SDK's configuration from the environment (see the module's documentation).
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(sdk_http_client(outbound_http::client()))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
        .load()
        .await
}

/// The SDK's HTTP client: the crate's one outbound client ([`outbound_http`]: HTTP/1.1, rustls
/// on ring, the webpki roots). The SDK's own would link a second HTTP stack, with HTTP/2 and the
/// system's root store, into every binary, for one small request at init.
fn sdk_http_client(http: OutboundHttp) -> SharedHttpClient {
    let connector = SharedHttpConnector::new(SdkConnector { http });
    http_client_fn(move |_settings, _components| connector.clone())
}

#[derive(Debug)]
struct SdkConnector {
    http: OutboundHttp,
}

impl HttpConnector for SdkConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let http = self.http.clone();
        HttpConnectorFuture::new(async move {
            let request = request
                .try_into_http1x()
                .map_err(|err| ConnectorError::other(err.into(), None))?;
            let (parts, body) = request.into_parts();
            // The requests this crate makes (GetSecretValue) carry a small JSON body in memory.
            let body = body.bytes().map(Bytes::copy_from_slice).ok_or_else(|| {
                ConnectorError::other("a streaming request body is not supported".into(), None)
            })?;
            let response = http
                .request(hyper::Request::from_parts(parts, Full::new(body)))
                .await
                .map_err(|err| ConnectorError::io(err.into()))?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|err| ConnectorError::io(err.into()))?
                .to_bytes();
            HttpResponse::try_from(hyper::Response::from_parts(parts, SdkBody::from(body)))
                .map_err(|err| ConnectorError::other(err.into(), None))
        })
    }
}
