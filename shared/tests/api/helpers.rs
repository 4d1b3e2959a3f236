use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use jsonwebtoken::{encode, EncodingKey, Header};
use lambda_http::{http::HeaderMap, Body, Context, Request, RequestExt, Response};
use secrecy::SecretString;
use serde_json::{json, Value};
use shared::{
    auth::Authenticator,
    config::{AuthSettings, KeySource, Settings},
    db::Database,
    routes,
    state::Access,
    AppState,
};
use sqlx::PgPool;

/// What invokes the function: each builds a different event shape.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    RestApi,
    HttpApi,
    FunctionUrl,
}

pub const SOURCES: [Source; 3] = [Source::RestApi, Source::HttpApi, Source::FunctionUrl];

/// The HS256 secret the test state verifies tokens with.
pub const TOKEN_SECRET: &str = "integration-test-hs256-secret-0123456789";

/// A token from the test key, valid for five minutes, with these scopes.
pub fn token(scope: &str) -> String {
    let exp = jsonwebtoken::get_current_timestamp() + 300;
    let claims = json!({"sub": "integration-test", "exp": exp, "scope": scope});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(TOKEN_SECRET.as_bytes()),
    )
    .expect("sign the token")
}

/// A request, turned into a real event document of its [`Source`] and parsed by `lambda_http`
/// exactly as the runtime would.
#[derive(Debug, Clone)]
pub struct TestRequest {
    source: Source,
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
    base64: bool,
    authorization: Option<String>,
}

impl TestRequest {
    pub fn new(method: &'static str, path: impl Into<String>) -> Self {
        Self {
            source: Source::HttpApi,
            method,
            path: path.into(),
            headers: Vec::new(),
            body: None,
            base64: false,
            authorization: Some(format!("Bearer {}", token("users:read users:write"))),
        }
    }

    pub fn get(path: impl Into<String>) -> Self {
        Self::new("GET", path)
    }

    pub fn post(path: impl Into<String>) -> Self {
        Self::new("POST", path)
    }

    pub fn from(mut self, source: Source) -> Self {
        self.source = source;
        self
    }

    /// The `Authorization` header to send instead of a valid full-scope token (`None`: none).
    pub fn authorization(mut self, value: Option<&str>) -> Self {
        self.authorization = value.map(str::to_owned);
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// A raw body, sent without a content type unless one is added.
    pub fn body(mut self, body: &str) -> Self {
        self.body = Some(body.to_owned());
        self
    }

    /// A body API Gateway delivered base64-encoded (`isBase64Encoded: true`).
    pub fn base64_body(mut self, encoded: &str) -> Self {
        self.body = Some(encoded.to_owned());
        self.base64 = true;
        self
    }

    pub fn json(self, body: &Value) -> Self {
        self.header("content-type", "application/json")
            .body(&body.to_string())
    }

    fn event(&self) -> Value {
        let mut headers = self.headers.clone();
        if let Some(value) = &self.authorization {
            headers.push(("Authorization".to_owned(), value.clone()));
        }
        let (fixture, route) = match self.source {
            Source::RestApi => (include_str!("../fixtures/rest-api.json"), true),
            Source::HttpApi => (include_str!("../fixtures/http-api.json"), true),
            Source::FunctionUrl => (include_str!("../fixtures/function-url.json"), false),
        };
        let mut event: Value = serde_json::from_str(fixture).expect("fixture is valid JSON");
        // What API Gateway's route `/users/{id}` would extract; a Function URL has no routes.
        let id = self.path.strip_prefix("/users/").filter(|_| route);
        let resource = if id.is_some() {
            "/users/{id}"
        } else {
            self.path.as_str()
        };
        let path_parameters = id.map_or(Value::Null, |id| json!({ "id": id }));
        match self.source {
            Source::RestApi => {
                event["resource"] = json!(resource);
                event["path"] = json!(self.path);
                event["httpMethod"] = json!(self.method);
                event["pathParameters"] = path_parameters;
                event["requestContext"]["resourcePath"] = json!(resource);
                event["requestContext"]["httpMethod"] = json!(self.method);
                event["requestContext"]["path"] = json!(format!("/prod{}", self.path));
                for (name, value) in &headers {
                    event["headers"][name] = json!(value);
                    event["multiValueHeaders"][name] = json!([value]);
                }
            }
            Source::HttpApi | Source::FunctionUrl => {
                if route {
                    let route_key = format!("{} {resource}", self.method);
                    event["routeKey"] = json!(route_key);
                    event["requestContext"]["routeKey"] = json!(route_key);
                    event["pathParameters"] = path_parameters;
                }
                event["rawPath"] = json!(self.path);
                event["requestContext"]["http"]["method"] = json!(self.method);
                event["requestContext"]["http"]["path"] = json!(self.path);
                for (name, value) in &headers {
                    event["headers"][name.to_ascii_lowercase()] = json!(value);
                }
            }
        }
        event["body"] = json!(self.body);
        event["isBase64Encoded"] = json!(self.base64);
        event
    }

    /// The request as the Lambda runtime hands it to a handler, with a unique request id.
    pub fn build(&self) -> (Request, String) {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let request_id = format!("test-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let request = lambda_http::request::from_str(&self.event().to_string())
            .expect("lambda_http parses the event");
        let mut context = Context::default();
        context.request_id = request_id.clone();
        (request.with_lambda_context(context), request_id)
    }
}

/// A handler's answer, with the body parsed as JSON.
#[derive(Debug)]
pub struct TestResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    pub request_id: String,
}

impl TestResponse {
    fn new(response: Response<Body>, request_id: String) -> Self {
        let (parts, body) = response.into_parts();
        let bytes: &[u8] = match &body {
            Body::Empty => b"",
            Body::Text(text) => text.as_bytes(),
            Body::Binary(bytes) => bytes,
            _ => panic!("unexpected body variant"),
        };
        let body = serde_json::from_slice(bytes).expect("every response body is JSON");
        Self {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
            request_id,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Asserts an RFC 9457 problem with this status, carrying the request id.
    #[track_caller]
    pub fn assert_problem(&self, status: u16) {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        assert_eq!(self.body["status"], status);
        for member in ["type", "title", "detail", "instance"] {
            assert!(
                self.body[member].as_str().is_some_and(|s| !s.is_empty()),
                "problem member {member} missing: {}",
                self.body
            );
        }
        assert_eq!(self.body["request_id"], self.request_id.as_str());
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

/// The application state the functions build at init, over the test's own database.
pub struct TestApp {
    pub state: AppState,
}

impl TestApp {
    pub async fn new(pool: PgPool) -> Self {
        let auth = AuthSettings {
            keys: KeySource::Inline(SecretString::from(TOKEN_SECRET)),
            issuer: None,
            audience: None,
            jwks_refresh_interval: Duration::from_secs(60),
        };
        Self {
            state: AppState {
                db: Database::from_pool(pool),
                auth: Authenticator::from_settings(auth, None)
                    .await
                    .expect("the test key parses"),
                health_timeout: Duration::from_secs(2),
            },
        }
    }

    /// State whose database is a closed port on loopback: nothing answers there.
    pub async fn with_unreachable_database() -> Self {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let url = format!("postgres://nobody:secret@127.0.0.1:{port}/nowhere");
        let settings = Settings::from_lookup(|name| match name {
            "DATABASE_URL" => Some(url.clone()),
            "DB_ACQUIRE_TIMEOUT_MS" | "HEALTH_TIMEOUT_MS" => Some("300".to_owned()),
            "JWT_KEY" => Some(TOKEN_SECRET.to_owned()),
            _ => None,
        })
        .expect("valid settings");
        Self {
            state: AppState::build(settings, Access::Authenticated)
                .await
                .expect("state builds"),
        }
    }

    pub async fn create_user(&self, request: TestRequest) -> TestResponse {
        let (req, id) = request.build();
        let response = routes::create_user::handler(&self.state, req).await;
        TestResponse::new(response.expect("handlers never return Err"), id)
    }

    pub async fn get_user(&self, request: TestRequest) -> TestResponse {
        let (req, id) = request.build();
        let response = routes::get_user::handler(&self.state, req).await;
        TestResponse::new(response.expect("handlers never return Err"), id)
    }

    pub async fn health(&self, request: TestRequest) -> TestResponse {
        let (req, id) = request.build();
        let response = routes::health::handler(&self.state, req).await;
        TestResponse::new(response.expect("handlers never return Err"), id)
    }

    /// Creates a user through the API and returns its JSON.
    pub async fn given_a_user(&self, email: &str, name: &str) -> Value {
        let response = self
            .create_user(TestRequest::post("/users").json(&json!({"email": email, "name": name})))
            .await;
        assert_eq!(response.status, 201, "{}", response.body);
        response.body
    }
}
