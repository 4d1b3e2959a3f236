//! Traces: with an OTLP endpoint configured, a real binary sends each request's spans to a
//! collector (`e2e::otlp`) before answering, continuing the trace Lambda passed in its X-Ray
//! header, as a tree (the request; under it the route; under that the token's verification and
//! the query), without a parameter value in any attribute.

use std::collections::HashMap;

use e2e::{otlp::Collector, runtime::Function, TestDatabase};
use opentelemetry_proto::tonic::{common::v1::any_value::Value as Any, trace::v1::Span};
use test_support::TestRequest;

/// The trace and parent span of the X-Ray header the emulator sends (e2e/src/runtime.rs).
const TRACE_ID: &str = "5759e988bd862e3fe1be46a994272793";
const PARENT_SPAN_ID: &str = "53995c3f42cd8ad8";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Every string value among the span's attributes and its events' attributes.
fn attribute_strings(span: &Span) -> Vec<String> {
    let attributes = span
        .attributes
        .iter()
        .chain(span.events.iter().flat_map(|event| &event.attributes));
    attributes
        .filter_map(
            |attribute| match attribute.value.as_ref()?.value.as_ref()? {
                Any::StringValue(text) => Some(text.clone()),
                other => Some(format!("{other:?}")),
            },
        )
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_continues_lambdas_trace_as_a_tree_without_parameter_values() {
    let database = TestDatabase::create("traces").await;
    sqlx::query(
        "INSERT INTO users (id, email, name) OVERRIDING SYSTEM VALUE \
         VALUES (424242, 'traced-user@example.com', 'Traced')",
    )
    .execute(&mut database.connect().await)
    .await
    .expect("a user");
    let collector = Collector::start().await;
    let function = Function::start_api(
        "get-user",
        &database.url,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint.as_str())],
    )
    .await;

    let reply = function.request(&TestRequest::get("/users/424242")).await;

    assert_eq!(reply.status, 200, "{}", reply.body);
    // Received before the response: the request's spans went out first.
    let spans = collector.spans();
    assert!(collector.paths().iter().all(|path| path == "/v1/traces"));
    let traced: Vec<&Span> = spans
        .iter()
        .filter(|span| hex(&span.trace_id) == TRACE_ID)
        .collect();
    let by_id: HashMap<String, &Span> = traced.iter().map(|s| (hex(&s.span_id), *s)).collect();
    let named = |name: &str| {
        traced
            .iter()
            .find(|span| span.name == name)
            .copied()
            .unwrap_or_else(|| panic!("no {name:?} span in the trace: {spans:#?}"))
    };
    let request = named("GET /users/{id}");
    assert_eq!(
        hex(&request.parent_span_id),
        PARENT_SPAN_ID,
        "Lambda's span is its parent"
    );
    let route = named("Get a user");
    assert_eq!(route.parent_span_id, request.span_id);
    for child in ["Verify the token", "Find a user by id"] {
        assert_eq!(named(child).parent_span_id, route.span_id, "{child}");
    }
    let query = named("Find a user by id");
    assert!(attribute_strings(query).contains(&"postgresql".to_owned()));
    for span in &traced {
        // Every span of the trace hangs from the request's.
        let mut at = *span;
        while at.span_id != request.span_id {
            at = by_id
                .get(&hex(&at.parent_span_id))
                .unwrap_or_else(|| panic!("{:?} is not under the request", span.name));
        }
    }
    for span in &spans {
        for value in attribute_strings(span) {
            assert!(
                !value.contains("424242") && !value.contains("traced-user"),
                "a parameter value in {:?}: {value}",
                span.name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_shutdown_what_is_pending_is_sent_before_the_process_exits() {
    let database = TestDatabase::create("traces-shutdown").await;
    let collector = Collector::start().await;
    let mut function = Function::start_api(
        "get-user",
        &database.url,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint.as_str())],
    )
    .await;
    function.initialized().await;
    // No request came: the init's spans (its first connection) are still pending.
    assert!(collector.spans().is_empty());
    assert_eq!(
        function.extensions(),
        ["_lambda-rust-runtime-no-op-graceful-shutdown-helper"],
        "an extension, so that Lambda sends SIGTERM at shutdown"
    );

    function.terminate();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !function.has_exited() {
        assert!(
            std::time::Instant::now() < deadline,
            "still running after SIGTERM"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let names: Vec<String> = collector
        .spans()
        .into_iter()
        .map(|span| span.name)
        .collect();
    assert!(
        names.iter().any(|name| name == "Connect to the database"),
        "the init's spans went out: {names:?}"
    );
    let metrics = e2e::emf::only_value(&function.logs(), "DatabaseConnectTime");
    assert!(metrics.is_some(), "and its metrics:\n{}", function.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_no_extension_is_registered() {
    let database = TestDatabase::create("traces-off").await;
    let function = Function::start_api("get-user", &database.url, &[]).await;

    let reply = function.request(&TestRequest::get("/users/1")).await;

    reply.assert_problem(404);
    assert!(function.extensions().is_empty());
}
