//! Traces: tracing's spans as OpenTelemetry spans, sent as OTLP/HTTP (protobuf) when an
//! endpoint is configured (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or `OTEL_EXPORTER_OTLP_ENDPOINT`
//! plus `/v1/traces`): the ADOT collector layer's `http://localhost:4318`, say. With none, no
//! OpenTelemetry layer is installed at all.
//!
//! Spans are kept in memory as they end and sent by [`flush`] at the end of each request, before
//! its response (after it, Lambda may freeze the environment): one POST per invocation to a
//! collector beside the function, over plain HTTP. The collector does the rest (batching, SigV4
//! for CloudWatch's OTLP endpoint, retries).
//!
//! Each request's span continues the trace Lambda started (the X-Ray trace header, read by
//! `opentelemetry-aws`'s propagator), so the function's spans sit under API Gateway's and
//! Lambda's in one trace.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use opentelemetry::{propagation::TextMapPropagator, trace::TracerProvider as _, Context};
use opentelemetry_proto::{
    tonic::collector::trace::v1::ExportTraceServiceRequest,
    transform::{common::tonic::ResourceAttributesWithSchema, trace::tonic},
};
use opentelemetry_sdk::{
    error::OTelSdkResult,
    trace::{SdkTracerProvider, SpanData, SpanExporter},
    Resource,
};
use prost::Message;
use tracing_subscriber::registry::LookupSpan;

use crate::{config::TracesSettings, sync::lock};

/// Longest wait for the collector: it runs beside the function.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(1);

/// What [`flush`] needs, once [`layer`] has set it up.
struct Exporting {
    endpoint: hyper::Uri,
    client: Client<HttpConnector, Full<Bytes>>,
    ended: Arc<Mutex<Vec<SpanData>>>,
    resource: Resource,
    /// Kept for as long as the process runs: dropping it would end the exports.
    _provider: SdkTracerProvider,
}

static EXPORTING: OnceLock<Exporting> = OnceLock::new();

/// Keeps each ended span for the next [`flush`].
#[derive(Debug)]
struct Kept(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Kept {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        lock(&self.0).extend(batch);
        Ok(())
    }
}

/// The OpenTelemetry layer, when `settings` name an endpoint (`None` otherwise: then tracing
/// costs what it did before, spans for the log only).
pub fn layer<S>(settings: TracesSettings) -> Option<impl tracing_subscriber::Layer<S>>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    let endpoint = settings.endpoint?;
    // Before the subscriber exists: stderr is where this can be said.
    let endpoint: hyper::Uri = match endpoint.parse::<hyper::Uri>() {
        Ok(uri) if uri.scheme_str() == Some("http") => uri,
        _ => {
            eprintln!(
                "no traces: the OTLP endpoint {endpoint:?} is not an http:// URL (a collector \
                 beside the function, such as the ADOT layer's http://localhost:4318)"
            );
            return None;
        }
    };
    let ended = Arc::new(Mutex::new(Vec::new()));
    let resource = Resource::builder_empty()
        .with_service_name(settings.service)
        .build();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(Kept(Arc::clone(&ended)))
        .with_resource(resource.clone())
        .build();
    let tracer = provider.tracer("users-api");
    let client = Client::builder(TokioExecutor::new()).build_http();
    let _ = EXPORTING.set(Exporting {
        endpoint,
        client,
        ended,
        resource,
        _provider: provider,
    });
    Some(tracing_opentelemetry::layer().with_tracer(tracer))
}

/// The trace context Lambda passed in its X-Ray header (`Root=…;Parent=…;Sampled=…`).
pub fn parent_context(xray_trace_id: Option<&str>) -> Option<Context> {
    let header = xray_trace_id?;
    let carrier = HashMap::from([("x-amzn-trace-id".to_owned(), header.to_owned())]);
    Some(opentelemetry_aws::trace::XrayPropagator::default().extract(&carrier))
}

/// Whether traces are being exported (an endpoint is configured).
pub fn enabled() -> bool {
    EXPORTING.get().is_some()
}

/// Sends the spans that ended since the last flush, if any, to the collector.
pub async fn flush() {
    let Some(exporting) = EXPORTING.get() else {
        return;
    };
    let spans = std::mem::take(&mut *lock(&exporting.ended));
    if spans.is_empty() {
        return;
    }
    let count = spans.len();
    let resource = ResourceAttributesWithSchema::from(&exporting.resource);
    let request = ExportTraceServiceRequest {
        resource_spans: tonic::group_spans_by_resource_and_scope(spans, &resource),
    };
    let body = Full::new(Bytes::from(request.encode_to_vec()));
    let post = hyper::Request::post(exporting.endpoint.clone())
        .header(hyper::header::CONTENT_TYPE, "application/x-protobuf")
        .body(body);
    let Ok(post) = post else {
        return;
    };
    let sent = tokio::time::timeout(EXPORT_TIMEOUT, async {
        let response = exporting.client.request(post).await?;
        let status = response.status();
        // Read to the end, so that the connection can be reused.
        let _ = response.into_body().collect().await;
        Ok::<_, hyper_util::client::legacy::Error>(status)
    })
    .await;
    match sent {
        Ok(Ok(status)) if status.is_success() => {}
        Ok(Ok(status)) => tracing::warn!(%status, count, "the collector refused the spans"),
        Ok(Err(err)) => tracing::warn!(error = %err, count, "the spans could not be sent"),
        Err(_) => tracing::warn!(
            ?EXPORT_TIMEOUT,
            count,
            "the collector did not answer in time"
        ),
    }
}
