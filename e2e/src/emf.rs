//! CloudWatch Embedded Metric Format documents in a function's output, each checked against
//! the specification as it is read (CloudWatch's user guide, "Specification: Embedded metric
//! format").

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// The EMF documents in `logs`, each checked against the specification.
pub fn documents(logs: &str) -> Vec<Value> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64;
    let documents: Vec<Value> = logs
        .lines()
        .filter(|line| line.contains("\"_aws\""))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    for document in &documents {
        let aws = &document["_aws"];
        let timestamp = aws["Timestamp"]
            .as_u64()
            .expect("Timestamp: ms since the epoch");
        assert!(now_ms.abs_diff(timestamp) < 60_000, "{document}");
        let directives = aws["CloudWatchMetrics"]
            .as_array()
            .expect("CloudWatchMetrics");
        assert!(!directives.is_empty(), "{document}");
        for directive in directives {
            assert!(directive["Namespace"]
                .as_str()
                .is_some_and(|n| !n.is_empty()));
            for set in directive["Dimensions"].as_array().expect("Dimensions") {
                let set = set.as_array().expect("a dimension set");
                assert!(set.len() <= 30, "{document}");
                for key in set {
                    let key = key.as_str().expect("a dimension name");
                    assert!(
                        document[key].is_string(),
                        "dimension {key} has a value: {document}"
                    );
                }
            }
            let metrics = directive["Metrics"].as_array().expect("Metrics");
            assert!(!metrics.is_empty() && metrics.len() <= 100, "{document}");
            for metric in metrics {
                let name = metric["Name"].as_str().expect("a metric name");
                if let Some(unit) = metric.get("Unit") {
                    assert!(
                        UNITS.contains(&unit.as_str().unwrap_or_default()),
                        "{metric}"
                    );
                }
                let value = &document[name];
                let numbers = match value {
                    Value::Array(values) => {
                        values.len() <= 100 && values.iter().all(Value::is_number)
                    }
                    value => value.is_number(),
                };
                assert!(numbers, "metric {name} has a number: {document}");
            }
        }
    }
    documents
}

/// The value of `metric` in the only document of `logs` that has it.
pub fn only_value(logs: &str, metric: &str) -> Option<Value> {
    let values: Vec<Value> = documents(logs)
        .into_iter()
        .filter_map(|document| document.get(metric).cloned())
        .collect();
    assert!(
        values.len() <= 1,
        "{metric} in more than one document: {values:?}"
    );
    values.into_iter().next()
}
