//! The access log: one JSON line per request at INFO from the real binary, in Lambda's JSON
//! log format, with what an operator needs to find and judge a request, and nothing a caller
//! sent that could be a secret.

use e2e::{runtime::Function, TestDatabase};
use serde_json::Value;
use test_support::{tokens, TestRequest};

/// What the Runtime API emulator (e2e/src/runtime.rs) sends as the X-Ray trace header.
const TRACE_ID: &str = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";

/// The log's lines, as JSON, without the metrics documents (e2e/tests/metrics.rs).
fn json_lines(logs: &str) -> Vec<Value> {
    logs.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .filter(|line: &Value| line.get("_aws").is_none())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_is_one_info_line_with_its_route_outcome_and_caller() {
    let database = TestDatabase::create("access-log").await;
    sqlx::query("INSERT INTO users (email, name) VALUES ('ada@example.com', 'Ada')")
        .execute(&mut database.connect().await)
        .await
        .expect("a user");
    let function = Function::start_api(
        "get-user",
        &database.url,
        &[("AWS_LAMBDA_LOG_FORMAT", "JSON")],
    )
    .await;
    function.initialized().await;
    let at_init = json_lines(&function.logs()).len();
    let token = tokens::hs256(tokens::TEST_KEY, tokens::FULL_SCOPE);
    let forged = format!("{token}x");

    let found = function.request(&TestRequest::get("/users/1")).await;
    let missing = function.request(&TestRequest::get("/users/2")).await;
    let refused = function
        .request(&TestRequest::get("/users/1").authorization(Some(&format!("Bearer {forged}"))))
        .await;

    assert_eq!(
        (found.status, missing.status, refused.status),
        (200, 404, 401)
    );
    let logs = function.logs();
    let lines = json_lines(&logs);
    let during: Vec<&Value> = lines[at_init..].iter().collect();
    assert_eq!(
        during.len(),
        3,
        "one line per request, nothing else:\n{logs}"
    );
    for (line, status, cold_start) in [(during[0], 200, true), (during[1], 404, false)] {
        assert_eq!(line["level"], "INFO");
        let fields = &line["fields"];
        assert_eq!(fields["message"], "request");
        assert_eq!(fields["route"], "GET /users/{id}");
        assert_eq!(fields["method"], "GET");
        assert_eq!(fields["status"], status);
        assert!(
            fields["latency_ms"].as_f64().is_some_and(|ms| ms > 0.0),
            "{fields}"
        );
        assert!(fields["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()));
        assert_eq!(fields["xray_trace_id"], TRACE_ID);
        assert_eq!(fields["cold_start"], cold_start);
        assert_eq!(fields["function_name"], "get-user");
        assert_eq!(fields["function_version"], "$LATEST");
        assert_eq!(fields["memory_mb"], 256);
        assert_eq!(fields["caller"], "test", "the token's subject");
    }
    assert_eq!(during[0]["fields"].get("problem"), None);
    assert_eq!(during[1]["fields"]["problem"], "not-found");
    assert_eq!(
        during[1]["fields"]["request_id"],
        missing.body["request_id"]
    );
    let refused_line = &during[2]["fields"];
    assert_eq!(refused_line["status"], 401);
    assert_eq!(refused_line["problem"], "unauthorized");
    // Why, in the log; the caller is told only that it was refused.
    assert_eq!(
        refused_line["detail"],
        "The access token was rejected: bad signature."
    );
    assert_eq!(refused.body["detail"], "The access token is invalid.");
    assert_eq!(refused_line.get("caller"), None, "no verified caller");
    assert!(!logs.contains(&token[20..]), "a token reached the log");
    assert!(
        !logs.contains("ada@example.com"),
        "a response body reached the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_even_at_trace_level_does_a_token_or_a_body_reach_the_log() {
    let database = TestDatabase::create("access-log-trace").await;
    let function =
        Function::start_api("create-user", &database.url, &[("RUST_LOG", "trace")]).await;
    let token = tokens::hs256(tokens::TEST_KEY, tokens::FULL_SCOPE);

    let created = function
        .request(
            &TestRequest::post("/users")
                .authorization(Some(&format!("Bearer {token}")))
                .json(&serde_json::json!({"email": "traced@example.com", "name": "T"})),
        )
        .await;

    assert_eq!(created.status, 201, "{}", created.body);
    let logs = function.logs();
    // Verbose, the crates that would print the raw event at TRACE capped at DEBUG.
    assert!(logs.contains("DEBUG"), "{logs}");
    assert!(!logs.contains(&token[20..]), "the token reached the log");
    assert!(
        !logs.contains("traced@example.com"),
        "the body reached the log"
    );
}
