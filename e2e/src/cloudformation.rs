//! A stand-in for CloudFormation's pre-signed response URL: a loopback HTTP server that
//! records the one request a custom resource function sends it.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    task::JoinHandle,
};

use crate::runtime::Function;

/// What the function sent to the response URL.
#[derive(Debug)]
pub struct CapturedResponse {
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    pub body: Value,
}

pub struct ResponseUrl {
    pub url: String,
    capture: JoinHandle<CapturedResponse>,
}

impl ResponseUrl {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let capture = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("a request");
            let mut received = Vec::new();
            let mut buffer = [0; 4096];
            let (head, body_start) = loop {
                let read = socket.read(&mut buffer).await.expect("read");
                assert!(read > 0, "the connection closed early");
                received.extend_from_slice(&buffer[..read]);
                if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                    break (
                        String::from_utf8_lossy(&received[..end]).into_owned(),
                        end + 4,
                    );
                }
            };
            let header = |name: &str| {
                head.lines().skip(1).find_map(|line| {
                    let (key, value) = line.split_once(':')?;
                    key.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| value.trim().to_owned())
                })
            };
            let length: usize = header("content-length")
                .and_then(|value| value.parse().ok())
                .expect("a content-length");
            while received.len() < body_start + length {
                let read = socket.read(&mut buffer).await.expect("read");
                assert!(read > 0, "the connection closed early");
                received.extend_from_slice(&buffer[..read]);
            }
            socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await
                .expect("answer");
            let mut request_line = head.lines().next().unwrap_or_default().split(' ');
            CapturedResponse {
                method: request_line.next().unwrap_or_default().to_owned(),
                path: request_line.next().unwrap_or_default().to_owned(),
                content_type: header("content-type"),
                body: serde_json::from_slice(&received[body_start..body_start + length])
                    .expect("the response is JSON"),
            }
        });
        Self {
            url: format!("http://127.0.0.1:{port}/cloudformation-response?X-Amz-Signature=test"),
            capture,
        }
    }

    /// The request the function sent, waiting up to `within` for it.
    pub async fn received(self, within: Duration) -> CapturedResponse {
        tokio::time::timeout(within, self.capture)
            .await
            .expect("the function answered CloudFormation in time")
            .expect("the capture task")
    }
}

/// The stack these tests pretend to deploy.
pub const STACK_ID: &str = concat!(
    "arn:aws:cloudformation:eu-west-1:123456789012:",
    "stack/users-api/5b8a7c10-aa11-11ef-9c2b-0a1b2c3d4e5f"
);
const LOGICAL_RESOURCE_ID: &str = "Migrations";
/// The time limit each request gets unless a test says otherwise: the function keeps 10 s of
/// it to answer.
pub const FUNCTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Custom resource properties as the template gives them: the service token and a version.
pub fn properties(version: &str) -> Value {
    json!({
        "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:users-api-migrate",
        "MigrateFunctionVersion": version,
        "Proxy": "none",
    })
}

/// CloudFormation's side of one custom resource: it sends Create; Update with the old
/// properties and the physical id it holds, followed on success by the clean-up Delete of a
/// replaced physical id; the rollback Update after a failed one; and Delete. It keeps what each
/// success established, as CloudFormation does.
#[derive(Default)]
pub struct CustomResource {
    properties: Option<Value>,
    physical_id: Option<String>,
    failed_update: Option<Value>,
    requests: u32,
}

impl CustomResource {
    /// The physical id CloudFormation holds now.
    pub fn physical_id(&self) -> Option<&str> {
        self.physical_id.as_deref()
    }

    /// Sends Create with `properties`; returns the answer.
    pub async fn create(&mut self, function: &Function, properties: Value) -> Value {
        let answer = self
            .send(function, "Create", &properties, None, FUNCTION_TIMEOUT)
            .await;
        // Even a failed Create leaves a physical id for CloudFormation to delete.
        self.physical_id = answer["PhysicalResourceId"].as_str().map(str::to_owned);
        if answer["Status"] == "SUCCESS" {
            self.properties = Some(properties);
        }
        answer
    }

    /// Sends Update to `properties` within `timeout`; on success, CloudFormation's clean-up
    /// Delete of a replaced physical id follows (and must succeed). Returns the Update's
    /// answer; after a FAILED one, [`CustomResource::roll_back`] is what CloudFormation does.
    pub async fn update(&mut self, function: &Function, properties: Value) -> Value {
        self.update_within(function, properties, FUNCTION_TIMEOUT)
            .await
    }

    pub async fn update_within(
        &mut self,
        function: &Function,
        properties: Value,
        timeout: Duration,
    ) -> Value {
        let old = self.properties.clone().expect("created first");
        let answer = self
            .send(function, "Update", &properties, Some(&old), timeout)
            .await;
        if answer["Status"] == "SUCCESS" {
            let new_id = answer["PhysicalResourceId"].as_str().map(str::to_owned);
            if new_id != self.physical_id {
                let cleanup = self
                    .send(function, "Delete", &old, None, FUNCTION_TIMEOUT)
                    .await;
                assert_eq!(
                    cleanup["Status"], "SUCCESS",
                    "the clean-up Delete: {cleanup}"
                );
            }
            self.properties = Some(properties);
            self.physical_id = new_id;
        } else {
            self.failed_update = Some(properties);
        }
        answer
    }

    /// CloudFormation's rollback of the failed Update: an Update back to the properties of the
    /// last success, whose old properties are the failed request's.
    pub async fn roll_back(&mut self, function: &Function) -> Value {
        let failed = self.failed_update.take().expect("an Update failed first");
        let restored = self.properties.clone().expect("created first");
        self.send(
            function,
            "Update",
            &restored,
            Some(&failed),
            FUNCTION_TIMEOUT,
        )
        .await
    }

    /// Sends Delete for the resource as it stands.
    pub async fn delete(&mut self, function: &Function) -> Value {
        let properties = self.properties.clone().expect("created first");
        self.send(function, "Delete", &properties, None, FUNCTION_TIMEOUT)
            .await
    }

    /// One request, as CloudFormation sends it; asserts the answer is a well-formed response to
    /// it and returns the answer's body.
    async fn send(
        &mut self,
        function: &Function,
        request_type: &str,
        properties: &Value,
        old_properties: Option<&Value>,
        timeout: Duration,
    ) -> Value {
        self.requests += 1;
        let request_id = format!("5d9c2a44-1f0e-4b7a-9c1d-{:012}", self.requests);
        let response_url = ResponseUrl::start().await;
        let mut event = json!({
            "RequestType": request_type,
            "ServiceToken": properties["ServiceToken"],
            "ResponseURL": response_url.url,
            "StackId": STACK_ID,
            "RequestId": request_id,
            "ResourceType": "Custom::DatabaseMigrations",
            "LogicalResourceId": LOGICAL_RESOURCE_ID,
            "ResourceProperties": properties,
        });
        if let Some(old) = old_properties {
            event["OldResourceProperties"] = old.clone();
        }
        if let Some(id) = &self.physical_id {
            if request_type != "Create" {
                event["PhysicalResourceId"] = json!(id);
            }
        }
        function.invoke(&event, timeout).await.response();
        let captured = response_url.received(Duration::from_secs(5)).await;
        assert_eq!(captured.method, "PUT");
        assert!(captured
            .path
            .starts_with("/cloudformation-response?X-Amz-Signature="));
        // The pre-signed URL is signed without a content type.
        assert_eq!(captured.content_type.as_deref(), Some(""));
        let body = captured.body;
        assert_eq!(body["RequestId"], request_id.as_str(), "{body}");
        assert_eq!(body["StackId"], STACK_ID, "{body}");
        assert_eq!(body["LogicalResourceId"], LOGICAL_RESOURCE_ID, "{body}");
        assert!(body["PhysicalResourceId"].is_string(), "{body}");
        body
    }
}
