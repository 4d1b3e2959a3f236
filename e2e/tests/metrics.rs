//! CloudWatch metrics: the Embedded Metric Format documents a real binary writes to stdout,
//! checked against the format's specification (`e2e::emf`) and for the values a request should
//! move. The migrate function's are checked in migrate.rs.

use e2e::{emf, runtime::Function, TestDatabase};
use serde_json::Value;
use test_support::TestRequest;

/// The value of `metric` in the documents of the invocation `request_id`.
fn value(documents: &[Value], request_id: &str, metric: &str) -> Option<Value> {
    documents
        .iter()
        .filter(|document| document["request_id"] == request_id)
        .find_map(|document| document.get(metric).cloned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_invocation_writes_valid_emf_that_counts_what_happened() {
    let database = TestDatabase::create("metrics").await;
    sqlx::query("INSERT INTO users (email, name) VALUES ('ada@example.com', 'Ada')")
        .execute(&mut database.connect().await)
        .await
        .expect("a user");
    let function = Function::start_api(
        "get-user",
        &database.url,
        &[
            ("METRICS_NAMESPACE", "UsersApiTest"),
            ("METRICS_SERVICE", "users-api-e2e"),
        ],
    )
    .await;

    let found = function.request(&TestRequest::get("/users/1")).await;
    let missing = function.request(&TestRequest::get("/users/2")).await;
    let found_again = function.request(&TestRequest::get("/users/1")).await;

    assert_eq!(
        (found.status, missing.status, found_again.status),
        (200, 404, 200)
    );
    let logs = function.logs();
    let documents = emf::documents(&logs);
    let invocations: Vec<String> = {
        let mut ids: Vec<String> = documents
            .iter()
            .filter_map(|document| document["request_id"].as_str().map(str::to_owned))
            .collect();
        ids.dedup();
        ids
    };
    assert_eq!(
        invocations.len(),
        3,
        "every invocation wrote its metrics:\n{logs}"
    );
    assert_eq!(documents.len(), 3, "one document per invocation:\n{logs}");
    assert_eq!(missing.body["request_id"], invocations[1].as_str());
    for document in &documents {
        let directive = &document["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "UsersApiTest");
        assert_eq!(document["service"], "users-api-e2e");
        assert_eq!(document["route"], "GET /users/{id}");
        assert_eq!(document["version"], "$LATEST");
    }
    let [first, second, third] = [0, 1, 2].map(|n| invocations[n].as_str());
    assert_eq!(value(&documents, first, "ColdStart"), Some(1.into()));
    assert_eq!(value(&documents, second, "ColdStart"), None);
    for id in [first, second, third] {
        assert_eq!(value(&documents, id, "Requests"), Some(1.into()), "{id}");
        assert!(value(&documents, id, "Latency").is_some(), "{id}");
        assert_eq!(value(&documents, id, "5xx"), None, "{id}");
    }
    assert_eq!(value(&documents, first, "4xx"), None);
    assert_eq!(
        value(&documents, second, "4xx"),
        Some(1.into()),
        "the 404 counted"
    );
    assert_eq!(value(&documents, third, "4xx"), None);
    // The connection made at init goes out with the first invocation, and only then.
    assert!(value(&documents, first, "DatabaseConnectTime").is_some());
    assert_eq!(value(&documents, third, "DatabaseConnectTime"), None);
}
