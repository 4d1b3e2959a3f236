//! `make traces`: an OTLP/HTTP traces endpoint on http://127.0.0.1:4318 (the harness's,
//! `e2e::otlp`) that prints each trace it receives as a tree. Run it beside
//! `OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 make dev` to see a request's spans.

use std::{collections::HashMap, time::Duration};

use e2e::otlp::Collector;
use opentelemetry_proto::tonic::{common::v1::any_value::Value as Any, trace::v1::Span};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn attributes(span: &Span) -> String {
    let pairs: Vec<String> = span
        .attributes
        .iter()
        .filter_map(|attribute| {
            let value = match attribute.value.as_ref()?.value.as_ref()? {
                Any::StringValue(text) => text.clone(),
                Any::IntValue(number) => number.to_string(),
                Any::BoolValue(flag) => flag.to_string(),
                other => format!("{other:?}"),
            };
            Some(format!("{}={value}", attribute.key))
        })
        .collect();
    pairs.join(" ")
}

fn print(spans: &[Span], parent: &[u8], depth: usize) {
    for span in spans.iter().filter(|span| span.parent_span_id == parent) {
        let micros = span
            .end_time_unix_nano
            .saturating_sub(span.start_time_unix_nano)
            / 1000;
        println!(
            "{}{} ({micros} µs) {}",
            "  ".repeat(depth + 1),
            span.name,
            attributes(span)
        );
        print(spans, &span.span_id, depth + 1);
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port = std::env::var("OTLP_PORT")
        .ok()
        .and_then(|port| port.parse().ok())
        .unwrap_or(4318);
    let collector = Collector::start_on(port).await;
    println!(
        "OTLP/HTTP traces endpoint on {}/v1/traces",
        collector.endpoint
    );
    let mut shown = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let spans = collector.spans();
        if spans.len() == shown {
            continue;
        }
        let new = &spans[shown..];
        shown = spans.len();
        let mut traces: HashMap<Vec<u8>, Vec<Span>> = HashMap::new();
        for span in new {
            traces
                .entry(span.trace_id.clone())
                .or_default()
                .push(span.clone());
        }
        for (trace, spans) in traces {
            println!("trace {}", hex(&trace));
            // Roots: spans whose parent is not among these (Lambda's, or none).
            let ids: Vec<&[u8]> = spans.iter().map(|span| span.span_id.as_slice()).collect();
            let mut parents: Vec<&[u8]> = spans
                .iter()
                .map(|span| span.parent_span_id.as_slice())
                .filter(|parent| !ids.contains(parent))
                .collect();
            parents.sort_unstable();
            parents.dedup();
            for parent in parents {
                if !parent.is_empty() {
                    println!("  (under {})", hex(parent));
                }
                print(&spans, parent, 0);
            }
        }
    }
}
