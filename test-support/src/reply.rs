//! A response, from a handler called in-process or from a real binary over HTTP, and the
//! assertions both suites make on it.

use lambda_http::{http::HeaderMap, Body, Response};
use serde_json::Value;

/// Every problem `type` the API answers with starts with this: it is part of the contract.
pub const PROBLEM_TYPE_PREFIX: &str = "tag:users-api,2026:problem:";

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body as JSON; `Value::Null` when it is empty.
    pub body: Value,
    /// The path that was requested: a problem's `instance` ends with it.
    pub path: String,
    /// The Lambda request id, when the caller chose it (in-process calls).
    pub request_id: Option<String>,
}

impl Reply {
    /// A handler's response to a request for `path` with `request_id`.
    pub fn from_handler(response: Response<Body>, path: &str, request_id: String) -> Self {
        let (parts, body) = response.into_parts();
        let bytes: &[u8] = match &body {
            Body::Empty => b"",
            Body::Text(text) => text.as_bytes(),
            Body::Binary(bytes) => bytes,
            _ => panic!("unexpected body variant"),
        };
        Self {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: parse_body(bytes),
            path: path.to_owned(),
            request_id: Some(request_id),
        }
    }

    /// A function's response document to an API Gateway event for `path` (what the Runtime API
    /// receives: `statusCode`, `headers`, `body`, maybe base64-encoded).
    pub fn from_lambda_response(response: &Value, path: &str) -> Self {
        let text = response["body"].as_str().unwrap_or_default();
        let bytes = if response["isBase64Encoded"] == true {
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, text)
                .expect("a base64 body")
        } else {
            text.as_bytes().to_vec()
        };
        let mut headers = HeaderMap::new();
        for (name, value) in response["headers"].as_object().into_iter().flatten() {
            if let (Ok(name), Some(Ok(value))) = (
                lambda_http::http::HeaderName::try_from(name.as_str()),
                value.as_str().map(lambda_http::http::HeaderValue::from_str),
            ) {
                headers.insert(name, value);
            }
        }
        Self {
            status: response["statusCode"]
                .as_u64()
                .and_then(|status| u16::try_from(status).ok())
                .expect("a statusCode"),
            headers,
            body: parse_body(&bytes),
            path: path.to_owned(),
            request_id: None,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Asserts an RFC 9457 problem with this status: the media type, every member, the
    /// requested path as `instance`, and the Lambda request id.
    #[track_caller]
    pub fn assert_problem(&self, status: u16) {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        assert_eq!(self.body["status"], status, "body: {}", self.body);
        for member in ["type", "title", "detail", "instance", "request_id"] {
            assert!(
                self.body[member].as_str().is_some_and(|s| !s.is_empty()),
                "problem member {member} missing: {}",
                self.body
            );
        }
        let type_ = self.body["type"].as_str().unwrap_or_default();
        assert!(type_.starts_with(PROBLEM_TYPE_PREFIX), "type: {type_}");
        // A REST API puts its stage in front of the path (`/prod/users/1`); the query is not
        // part of it.
        let instance = self.body["instance"].as_str().unwrap_or_default();
        let path = self.path.split('?').next().unwrap_or_default();
        match instance.strip_suffix('…') {
            // A long path is repeated cut short: its first 256 characters.
            Some(stem) => {
                assert_eq!(stem.chars().count(), 256, "instance {instance}");
                let tail: String = stem
                    .chars()
                    .rev()
                    .take(32)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                assert!(
                    path.contains(&tail),
                    "instance {instance} for {}",
                    self.path
                );
            }
            None => assert!(
                instance.ends_with(path),
                "instance {instance} for {}",
                self.path
            ),
        }
        if let Some(request_id) = &self.request_id {
            assert_eq!(self.body["request_id"], request_id.as_str());
        }
    }

    /// Asserts a 503 problem whose `Retry-After` is a whole number of seconds, at most 5 (the
    /// database's backoff, or the default), and returns it: how long to wait before retrying.
    #[track_caller]
    pub fn assert_unavailable(&self) -> std::time::Duration {
        self.assert_problem(503);
        let seconds: u64 = self
            .header("retry-after")
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("Retry-After in seconds: {:?}", self.headers));
        assert!((1..=5).contains(&seconds), "Retry-After: {seconds}");
        std::time::Duration::from_secs(seconds)
    }

    /// Asserts a problem with this status and this kind (the end of its `type`).
    #[track_caller]
    pub fn assert_problem_of_type(&self, status: u16, kind: &str) {
        self.assert_problem(status);
        assert_eq!(
            self.body["type"],
            format!("{PROBLEM_TYPE_PREFIX}{kind}"),
            "body: {}",
            self.body
        );
    }

    /// The `errors` of a validation problem, as (field, message) pairs.
    pub fn field_errors(&self) -> Vec<(String, String)> {
        self.body["errors"]
            .as_array()
            .expect("a validation problem has errors")
            .iter()
            .map(|e| {
                (
                    e["field"].as_str().unwrap_or_default().to_owned(),
                    e["message"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }
}

/// A body as JSON (`Value::Null` when empty); every body the API sends is JSON.
pub fn parse_body(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| panic!("body is JSON: {}", String::from_utf8_lossy(bytes)))
}
