//! A panic while handling a request, in a real binary (the test-only `panic-on-demand`
//! function, behind the same request wrapper as the routes): the caller gets a 500 problem with
//! the request id, the log says what panicked where, and the same process serves the next
//! request, warm.

use base64::{engine::general_purpose::STANDARD, Engine};
use e2e::Stack;
use serde_json::Value;
use test_support::TestRequest;

/// Invokes the function with an HTTP API event for `path`; returns the status and the body.
async fn call(stack: &Stack, path: &str) -> (u64, Value) {
    let event = TestRequest::get(path).event();
    let invoked = stack.invoke("panic-on-demand", &event).await;
    assert_eq!(
        invoked.status, 200,
        "the invocation itself: {}",
        invoked.body
    );
    let response = invoked.body;
    let text = response["body"].as_str().unwrap_or_default();
    let bytes = if response["isBase64Encoded"] == true {
        STANDARD.decode(text).expect("base64")
    } else {
        text.as_bytes().to_vec()
    };
    let body: Value = serde_json::from_slice(&bytes).expect("a JSON body");
    let content_type = &response["headers"]["content-type"];
    let status = response["statusCode"].as_u64().expect("a status");
    if status >= 400 {
        assert_eq!(content_type, "application/problem+json", "{response}");
    }
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_request_gets_a_500_problem_and_the_environment_stays_warm() {
    // The stack's health function needs a database URL; nothing here uses it.
    let unused = format!(
        "postgres://unused:unused@127.0.0.1:{}/unused",
        e2e::free_port()
    );
    let stack = Stack::spawn("panics", &[("DATABASE_URL", unused.as_str())]).await;

    let (before_status, before) = call(&stack, "/pid").await;
    let (panicked_status, problem) = call(&stack, "/panic").await;
    let (after_status, after) = call(&stack, "/pid").await;

    assert_eq!(
        (before_status, panicked_status, after_status),
        (200, 500, 200)
    );
    assert_eq!(problem["status"], 500);
    assert_eq!(
        problem["detail"],
        "An unexpected error occurred. Quote the request_id if you report it."
    );
    let request_id = problem["request_id"].as_str().expect("a request id");
    assert_eq!(
        after["pid"], before["pid"],
        "a new process served the next request"
    );
    let logs = stack.logs();
    let panicked = logs
        .lines()
        .find(|line| line.contains("panicked") && line.contains("asked to panic"))
        .unwrap_or_else(|| panic!("no panic line:\n{logs}"));
    assert!(
        panicked.contains("e2e/functions/panic-on-demand/src/main.rs"),
        "{panicked}"
    );
    assert!(
        logs.lines()
            .any(|line| line.contains("request failed") && line.contains(request_id)),
        "{logs}"
    );
}
