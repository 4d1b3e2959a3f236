//! Requests forged into the events Lambda receives: an API Gateway REST API (v1), an HTTP API
//! (v2) or a Function URL event, starting from the real documents in `fixtures/events/`, and
//! parsed by `lambda_http` exactly as the runtime parses them.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    OnceLock,
};

use lambda_http::{Context, Request, RequestExt};
use serde_json::{json, Value};

use crate::{
    tokens::{self, FULL_SCOPE},
    workspace,
};

/// What invokes the function: each builds a different event shape.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    RestApi,
    HttpApi,
    FunctionUrl,
}

pub const SOURCES: [Source; 3] = [Source::RestApi, Source::HttpApi, Source::FunctionUrl];

impl Source {
    fn fixture(self) -> &'static str {
        match self {
            Self::RestApi => include_str!("../fixtures/events/rest-api.json"),
            Self::HttpApi => include_str!("../fixtures/events/http-api.json"),
            Self::FunctionUrl => include_str!("../fixtures/events/function-url.json"),
        }
    }

    /// API Gateway matches a route and extracts its parameters; a Function URL has no routes.
    fn has_routes(self) -> bool {
        !matches!(self, Self::FunctionUrl)
    }
}

/// A request to forge into an event. By default it comes through an HTTP API and carries a
/// full-scope token signed with [`tokens::TEST_KEY`].
#[derive(Debug, Clone)]
pub struct TestRequest {
    source: Source,
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
    base64: bool,
    authorization: Option<String>,
    /// The invocation's deadline, in milliseconds since the epoch, as Lambda sends it.
    deadline_ms: Option<u64>,
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
            authorization: Some(tokens::bearer(FULL_SCOPE)),
            deadline_ms: None,
        }
    }

    pub fn get(path: impl Into<String>) -> Self {
        Self::new("GET", path)
    }

    pub fn post(path: impl Into<String>) -> Self {
        Self::new("POST", path)
    }

    pub fn patch(path: impl Into<String>) -> Self {
        Self::new("PATCH", path)
    }

    pub fn delete(path: impl Into<String>) -> Self {
        Self::new("DELETE", path)
    }

    pub fn from(mut self, source: Source) -> Self {
        self.source = source;
        self
    }

    pub fn path(&self) -> &str {
        &self.path
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

    /// The invocation's deadline, as Lambda gives it (none by default, as `cargo lambda watch`
    /// gives none usable).
    pub fn deadline(mut self, at: std::time::SystemTime) -> Self {
        let since_epoch = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        self.deadline_ms = u64::try_from(since_epoch.as_millis()).ok();
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

    /// The event document, as the invoking service would send it.
    pub fn event(&self) -> Value {
        let mut headers = self.headers.clone();
        if let Some(value) = &self.authorization {
            headers.push(("Authorization".to_owned(), value.clone()));
        }
        let mut event: Value =
            serde_json::from_str(self.source.fixture()).expect("fixture is valid JSON");
        let (path, query) = self.path.split_once('?').unwrap_or((&self.path, ""));
        // The route API Gateway would match, and the path parameters it would extract.
        let matched = route_of(path).filter(|_| self.source.has_routes());
        let (resource, path_parameters) = match matched {
            Some((resource, parameters)) if !parameters.is_empty() => {
                (resource, Value::Object(parameters))
            }
            Some((resource, _)) => (resource, Value::Null),
            None => (path.to_owned(), Value::Null),
        };
        match self.source {
            Source::RestApi => {
                event["resource"] = json!(resource);
                event["path"] = json!(path);
                event["httpMethod"] = json!(self.method);
                // REST APIs pass the query decoded, repeated parameters in the multi-value map.
                let mut single = serde_json::Map::new();
                let mut multi = serde_json::Map::new();
                for (name, value) in form_urlencoded::parse(query.as_bytes()) {
                    single.insert(name.to_string(), json!(value));
                    let values = multi.entry(name.to_string()).or_insert_with(|| json!([]));
                    if let Some(values) = values.as_array_mut() {
                        values.push(json!(value));
                    }
                }
                if !single.is_empty() {
                    event["queryStringParameters"] = Value::Object(single);
                    event["multiValueQueryStringParameters"] = Value::Object(multi);
                }
                event["pathParameters"] = path_parameters;
                event["requestContext"]["resourcePath"] = json!(resource);
                event["requestContext"]["httpMethod"] = json!(self.method);
                event["requestContext"]["path"] = json!(format!("/prod{path}"));
                // A repeated header: every value in the multi-value map, the last in `headers`.
                for (name, value) in &headers {
                    event["headers"][name] = json!(value);
                    let values = &mut event["multiValueHeaders"][name];
                    match values.as_array_mut() {
                        Some(values) => values.push(json!(value)),
                        None => *values = json!([value]),
                    }
                }
            }
            Source::HttpApi | Source::FunctionUrl => {
                if self.source.has_routes() {
                    let route_key = format!("{} {resource}", self.method);
                    event["routeKey"] = json!(route_key);
                    event["requestContext"]["routeKey"] = json!(route_key);
                    event["pathParameters"] = path_parameters;
                }
                event["rawPath"] = json!(path);
                event["rawQueryString"] = json!(query);
                event["requestContext"]["http"]["method"] = json!(self.method);
                event["requestContext"]["http"]["path"] = json!(path);
                // A repeated header arrives as one, its values joined with commas.
                for (name, value) in &headers {
                    let slot = &mut event["headers"][name.to_ascii_lowercase()];
                    *slot = match slot.as_str() {
                        Some(earlier) => json!(format!("{earlier},{value}")),
                        None => json!(value),
                    };
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
        if let Some(deadline) = self.deadline_ms {
            context.deadline = deadline;
        }
        (request.with_lambda_context(context), request_id)
    }
}

/// The workspace's manifest: its watch router, generated from the route declarations, lists
/// the API's paths as API Gateway routes them.
fn workspace_manifest() -> &'static str {
    static MANIFEST: OnceLock<String> = OnceLock::new();
    MANIFEST.get_or_init(|| workspace::file("Cargo.toml"))
}

/// The path template of the API's that `path` matches (segment by segment, `{name}` matching
/// any one segment), with the path parameters it extracts.
fn route_of(path: &str) -> Option<(String, serde_json::Map<String, Value>)> {
    let templates = workspace_manifest().lines().filter_map(|line| {
        let (template, _) = line.strip_prefix('"')?.split_once("\" = [")?;
        template.starts_with('/').then_some(template)
    });
    templates.into_iter().find_map(|template| {
        let (mut want, mut have) = (template.split('/'), path.split('/'));
        let mut parameters = serde_json::Map::new();
        loop {
            match (want.next(), have.next()) {
                (None, None) => return Some((template.to_owned(), parameters)),
                (Some(part), Some(segment)) if part.starts_with('{') && !segment.is_empty() => {
                    let name = part.trim_start_matches('{').trim_end_matches('}');
                    parameters.insert(name.to_owned(), json!(segment));
                }
                (Some(part), Some(segment)) if part == segment => {}
                _ => return None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_takes_the_parameters_of_the_template_it_matches_segment_by_segment() {
        let (template, parameters) = route_of("/users/42").unwrap();
        assert_eq!(template, "/users/{id}");
        assert_eq!(parameters["id"], "42");
        assert_eq!(route_of("/users").unwrap().0, "/users");
        assert!(route_of("/users/42/activation").is_none());
        assert!(route_of("/elsewhere").is_none());
    }
}
