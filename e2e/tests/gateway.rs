//! The API as deployed: the gateway that template.yaml declares (e2e/src/gateway.rs reads it),
//! in front of the real function binaries, one environment per concurrent invocation.

use std::time::Duration;

use e2e::{
    gateway::{rsa_token, Deployment, HttpApi},
    template::Template,
};
use futures_util::future::join_all;
use reqwest::{Method, RequestBuilder};
use serde_json::{json, Value};
use shared::routes::ROUTES;
use test_support::tokens::{self, FULL_SCOPE, TEST_ISSUER};

const ORIGIN: &str = "https://app.example.com";

/// A deploy with the gateway, and a client.
struct Deployed {
    deployment: Deployment,
    client: reqwest::Client,
}

impl std::ops::Deref for Deployed {
    type Target = Deployment;

    fn deref(&self) -> &Deployment {
        &self.deployment
    }
}

impl Deployed {
    async fn new(name: &str, parameters: &[(&str, &str)]) -> Self {
        Self {
            deployment: Deployment::start(name, parameters).await,
            client: reqwest::Client::new(),
        }
    }

    async fn with_cors(name: &str) -> Self {
        Self::new(name, &[("CorsAllowedOrigins", ORIGIN)]).await
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.gateway.url))
            .timeout(Duration::from_secs(60))
    }

    /// `method path` with a token of `scope` (RS256, from the issuer's JWKS) and the origin.
    fn as_app(&self, method: Method, path: &str, scope: &str) -> RequestBuilder {
        self.request(method, path)
            .header("origin", ORIGIN)
            .bearer_auth(rsa_token(scope, json!({})))
    }
}

/// A response, read whole.
struct Got {
    status: u16,
    headers: reqwest::header::HeaderMap,
}

async fn send(request: RequestBuilder) -> (Got, Value) {
    let response = request.send().await.expect("the gateway answers");
    let got = Got {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
    };
    let body = response.text().await.expect("a body");
    let parsed = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (got, parsed)
}

fn header<'a>(response: &'a Got, name: &str) -> Option<&'a str> {
    response.headers.get(name)?.to_str().ok()
}

/// A concrete path for a route's path (`{id}` becomes `1`).
fn concrete(path: &str) -> String {
    path.replace("{id}", "1")
}

#[test]
fn every_declared_route_is_deployed_to_its_function_behind_its_scope() {
    let template = Template::workspace(&[("JwtIssuer", TEST_ISSUER)]);
    let api = HttpApi::from_template(&template);
    let scope_name = |read: bool| {
        let parameter = if read {
            "JwtScopeRead"
        } else {
            "JwtScopeWrite"
        };
        template
            .parameter(parameter)
            .as_str()
            .expect("a scope")
            .to_owned()
    };

    for declared in ROUTES {
        let route = api.route(declared.key).unwrap_or_else(|| {
            panic!(
                "{} is declared but template.yaml has no such route",
                declared.key
            )
        });
        assert_eq!(route.function.binary, declared.function, "{}", declared.key);
        let scopes = declared
            .scope
            .map(|scope| vec![scope_name(matches!(scope, shared::auth::Scope::UsersRead))]);
        assert_eq!(route.jwt, scopes, "{}", declared.key);
    }
    for route in &api.routes {
        let (_, path) = route.key.split_once(' ').expect("METHOD path");
        let served = ROUTES
            .iter()
            .find(|declared| declared.key == route.key || declared.path() == path)
            .unwrap_or_else(|| panic!("{} serves no declared route's path", route.key));
        assert!(
            ROUTES
                .iter()
                .any(|declared| declared.path() == path
                    && declared.function == route.function.binary),
            "{} reaches {}, which serves nothing of {}",
            route.key,
            route.function.binary,
            served.path()
        );
    }
}

#[test]
fn every_other_method_reaches_a_function_but_no_route_takes_a_preflight() {
    let api = HttpApi::from_template(&Template::workspace(&[("JwtIssuer", TEST_ISSUER)]));

    for declared in ROUTES {
        let path = concrete(declared.path());
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] {
            assert!(
                api.select(method, &path).is_some(),
                "{method} {path}: no route"
            );
        }
        let (route, _) = api.select(declared.method(), &path).expect("its route");
        assert_eq!(route.key, declared.key);
        assert!(
            api.select("OPTIONS", &path).is_none(),
            "OPTIONS {path} matches a route, so a preflight would reach it rather than CORS"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preflight_is_answered_by_the_gateway_without_a_token_or_a_function() {
    let deployed = Deployed::with_cors("gateway_preflight").await;

    for path in ["/users", "/users/1", "/health"] {
        let (response, _) = send(
            deployed
                .request(Method::OPTIONS, path)
                .header("origin", ORIGIN)
                .header("access-control-request-method", "PATCH")
                .header("access-control-request-headers", "authorization,if-match"),
        )
        .await;

        assert_eq!(response.status, 204, "{path}");
        assert_eq!(
            header(&response, "access-control-allow-origin"),
            Some(ORIGIN)
        );
        let methods = header(&response, "access-control-allow-methods").unwrap_or_default();
        for method in ["GET", "POST", "PATCH", "DELETE"] {
            assert!(methods.contains(method), "{path}: {methods}");
        }
        let headers = header(&response, "access-control-allow-headers").unwrap_or_default();
        for name in [
            "authorization",
            "content-type",
            "idempotency-key",
            "if-match",
        ] {
            assert!(headers.contains(name), "{path}: {headers}");
        }
    }
    let (other_origin, _) = send(
        deployed
            .request(Method::OPTIONS, "/users")
            .header("origin", "https://evil.example")
            .header("access-control-request-method", "GET"),
    )
    .await;

    assert_eq!(header(&other_origin, "access-control-allow-origin"), None);
    assert_eq!(deployed.environments.started_in_all(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cors_a_preflight_gets_no_cors_answer() {
    let deployed = Deployed::new("gateway_no_cors", &[]).await;

    let (response, body) = send(
        deployed
            .request(Method::OPTIONS, "/users")
            .header("origin", ORIGIN)
            .header("access-control-request-method", "GET"),
    )
    .await;
    let (get, _) = send(deployed.as_app(Method::GET, "/users", FULL_SCOPE)).await;

    assert_eq!(response.status, 404);
    assert_eq!(body, json!({"message": "Not Found"}));
    assert_eq!(header(&response, "access-control-allow-origin"), None);
    assert_eq!(get.status, 200);
    assert_eq!(header(&get, "access-control-allow-origin"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_origin_client_creates_reads_lists_patches_and_deletes_through_the_gateway() {
    let deployed = Deployed::with_cors("gateway_crud").await;
    let expose = |response: &Got| {
        header(response, "access-control-expose-headers")
            .unwrap_or_default()
            .to_owned()
    };

    let (created, user) = send(
        deployed
            .as_app(Method::POST, "/users", FULL_SCOPE)
            .header("content-type", "application/json")
            .header("idempotency-key", "gateway-crud-1")
            .body(r#"{"email": "ada@example.com", "name": "Ada"}"#),
    )
    .await;
    let location = header(&created, "location").expect("a location").to_owned();
    let (read, _) = send(deployed.as_app(Method::GET, &location, FULL_SCOPE)).await;
    let etag = header(&read, "etag").expect("an etag").to_owned();
    let (listed, list) = send(deployed.as_app(Method::GET, "/users?limit=10", FULL_SCOPE)).await;
    let (patched, renamed) = send(
        deployed
            .as_app(Method::PATCH, &location, FULL_SCOPE)
            .header("content-type", "application/json")
            .header("if-match", &etag)
            .body(r#"{"name": "Ada Lovelace"}"#),
    )
    .await;
    let (deleted, _) = send(deployed.as_app(Method::DELETE, &location, FULL_SCOPE)).await;

    assert_eq!(created.status, 201, "{user}");
    assert_eq!(location, format!("/users/{}", user["id"]));
    assert_eq!(read.status, 200);
    assert_eq!(listed.status, 200);
    assert_eq!(list["items"][0]["email"], "ada@example.com", "{list}");
    assert_eq!(patched.status, 200, "{renamed}");
    assert_eq!(renamed["name"], "Ada Lovelace");
    assert_eq!(deleted.status, 204);
    for response in [&created, &read, &listed, &patched, &deleted] {
        assert_eq!(
            header(response, "access-control-allow-origin"),
            Some(ORIGIN)
        );
        let exposed = expose(response);
        for name in ["etag", "location", "retry-after"] {
            assert!(exposed.contains(name), "{exposed}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorizer_refuses_before_any_function_runs() {
    // A budget whose routes take the whole series at once: throttles are not the point here.
    let deployed = Deployed::new(
        "gateway_authorizer",
        &[
            ("CorsAllowedOrigins", ORIGIN),
            ("DatabaseConnectionBudget", "576"),
        ],
    )
    .await;
    // HS256 with the RSA key's id: API Gateway verifies only RSA signatures.
    let hs256 = tokens::sign(
        jsonwebtoken::Algorithm::HS256,
        Some("rsa-1"),
        &jsonwebtoken::EncodingKey::from_secret(tokens::TEST_KEY.as_bytes()),
        &tokens::claims(FULL_SCOPE, json!({})),
    );
    let other_audience = rsa_token(FULL_SCOPE, json!({"aud": "another-api"}));
    let expired = rsa_token(FULL_SCOPE, json!({"exp": tokens::now() - 60}));
    let other_issuer = rsa_token(FULL_SCOPE, json!({"iss": "https://other.example"}));

    let (none, none_body) = send(deployed.request(Method::GET, "/users")).await;
    let mut refused = Vec::new();
    for token in [&hs256, &other_audience, &expired, &other_issuer] {
        let (response, body) =
            send(deployed.request(Method::GET, "/users").bearer_auth(token)).await;
        refused.push((response.status, body));
    }
    let (read_only, read_only_body) = send(
        deployed
            .as_app(Method::POST, "/users", "users:read")
            .header("content-type", "application/json")
            .body(r#"{"email": "ada@example.com", "name": "Ada"}"#),
    )
    .await;
    let started_before_a_good_token = deployed.environments.started_in_all();
    let log_before = deployed.gateway.access_log();
    let (good, _) = send(deployed.as_app(Method::GET, "/users", "users:read")).await;

    assert_eq!(none.status, 401);
    assert_eq!(none_body, json!({"message": "Unauthorized"}));
    assert!(header(&none, "www-authenticate").is_some());
    for (status, body) in refused {
        assert_eq!((status, body), (401, json!({"message": "Unauthorized"})));
    }
    assert_eq!(read_only.status, 403);
    assert_eq!(read_only_body, json!({"message": "Forbidden"}));
    assert_eq!(started_before_a_good_token, 0);
    assert_eq!(good.status, 200);
    let line: Value = serde_json::from_str(&log_before[0]).expect("a JSON access log line");
    assert_eq!(line["routeKey"], "GET /users");
    assert_eq!(line["status"], "401");
    assert_eq!(line["integrationStatus"], "-");
    assert_ne!(line["authorizerError"], "-");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_route_is_throttled_as_the_stage_says_and_refills_at_its_rate() {
    let deployed = Deployed::new("gateway_throttles", &[]).await;
    deployed.gateway.freeze_throttle_clock();
    let api = deployed.gateway.api();
    let health = api.route_throttles.get("GET /health").copied();
    let users = api.default_throttle.expect("a default throttle");
    let burst = users.burst as usize;

    let (first, _) = send(deployed.request(Method::GET, "/health")).await;
    let health_burst_left = (1..health.expect("the health check's throttle").burst as usize)
        .map(|_| deployed.request(Method::GET, "/health"));
    for request in health_burst_left {
        send(request).await;
    }
    let (over, over_body) = send(deployed.request(Method::GET, "/health")).await;
    deployed
        .gateway
        .advance_throttle_clock(Duration::from_secs_f64(1.0 / health.expect("set").rate));
    let (refilled, _) = send(deployed.request(Method::GET, "/health")).await;
    let burst_of_users =
        join_all((0..burst + 3).map(|_| send(deployed.as_app(Method::GET, "/users", FULL_SCOPE))))
            .await;
    let statuses: Vec<u16> = burst_of_users
        .iter()
        .map(|(response, _)| response.status)
        .collect();

    assert_eq!(first.status, 200);
    assert_eq!(over.status, 429);
    assert_eq!(over_body, json!({"message": "Too Many Requests"}));
    assert_eq!(refilled.status, 200);
    assert_eq!(
        statuses.iter().filter(|status| **status == 200).count(),
        burst,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|status| **status == 429).count(),
        3,
        "{statuses:?}"
    );
}
