//! A stand-in for the API Gateway HTTP API that `template.yaml` deploys, read from the template
//! ([`HttpApi::from_template`]) for one set of parameters, in front of the real function
//! binaries under the Runtime API harness ([`Environments`]).
//!
//! What it follows, from AWS's documentation of HTTP APIs:
//! - Route selection: a route whose path matches, its method first, then `ANY`; among paths,
//!   the one with the most literal segments. No route: 404 `{"message":"Not Found"}`.
//! - CORS (`CorsConfiguration`): a preflight (`OPTIONS` with `Origin` and
//!   `Access-Control-Request-Method`) that no route matches is answered by the gateway itself,
//!   204 with the configured headers, before any authorizer or throttle; a preflight that a
//!   route matches (an `ANY` route) goes through that route, its authorizer included. Every
//!   answer to an allowed origin gets `Access-Control-Allow-Origin` and the exposed headers,
//!   and the gateway drops any `Access-Control-*` header a function sends.
//! - The JWT authorizer: a token, with or without `Bearer `, signed with an RSA key of the
//!   issuer's JWKS (RS256, RS384, RS512; anything else is refused), `iss` the configured
//!   issuer, `aud` in the audience list or, only without `aud`, `client_id` in it, `exp` and
//!   `nbf` checked, and one of the route's scopes in `scope` or `scp`. 401
//!   `{"message":"Unauthorized"}` with `www-authenticate`, 403 `{"message":"Forbidden"}` for
//!   a missing scope. The claims reach the function as strings, as API Gateway sends them.
//! - Throttling: a token bucket per route, the stage's `RouteSettings` for that route key or
//!   else its `DefaultRouteSettings` (the account's 10,000/s and 5,000 otherwise); 429
//!   `{"message":"Too Many Requests"}`.
//! - Payload format 2.0 events and responses (a response without `statusCode` is the body,
//!   as JSON), and the stage's access log format, its `$context` variables filled in.
//! - A function's reserved concurrency bounds its environments ([`Environments`]); an
//!   invocation beyond it is refused as Lambda throttles, which API Gateway answers with 500
//!   `{"message":"Internal Server Error"}`, as it does for a function error. The integration
//!   times out after 30 s: 503 `{"message":"Service Unavailable"}`.
//!
//! Where it cannot follow AWS: the authorizer reads the JWKS at the template's `JwtJwksUrl`
//! (the functions' own setting) where API Gateway discovers it from the issuer's
//! `/.well-known/openid-configuration`; the order of throttling before authorization, the exact
//! bodies of 429 and 503, the 500 for a throttled function and the 204 of a preflight are
//! observed behaviour, not documented; throttles here are exact, AWS's are "best effort"; a
//! test may stop the buckets' clock ([`Gateway::freeze_throttle_clock`]) so that what a burst
//! gets does not depend on how fast this machine sends it.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use base64::{engine::general_purpose::STANDARD, Engine};
use futures_util::future::BoxFuture;
use jsonwebtoken::{jwk::JwkSet, Algorithm, DecodingKey, Validation};
use serde_json::{json, Map, Value};
use tokio::{io::BufReader, net::TcpListener, task::JoinHandle};

use crate::{
    http1,
    runtime::{Function, Outcome},
    template::Template,
};

/// How well a route matches: (literal segments, whether it names the method rather than `ANY`).
type Rank = (usize, bool);

/// The HTTP API's integration timeout (the most API Gateway allows).
const INTEGRATION_TIMEOUT: Duration = Duration::from_secs(30);
/// A function's own timeout (template.yaml's `Globals`), the deadline its environment sees.
const FUNCTION_TIMEOUT: Duration = Duration::from_secs(10);
/// The account's default throttle, where the stage sets none.
const ACCOUNT_THROTTLE: Throttle = Throttle {
    burst: 5000.0,
    rate: 10000.0,
};

/// What the template deploys in front of the functions.
#[derive(Debug, Clone)]
pub struct HttpApi {
    pub routes: Vec<Route>,
    pub authorizer: Option<JwtAuthorizer>,
    pub cors: Option<Cors>,
    pub default_throttle: Option<Throttle>,
    pub route_throttles: BTreeMap<String, Throttle>,
    pub access_log_format: Option<String>,
    /// The JWKS the authorizer verifies with: the template's `JwtJwksUrl`.
    pub jwks_url: String,
}

#[derive(Debug, Clone)]
pub struct Route {
    /// `GET /users/{id}`, `ANY /users`.
    pub key: String,
    /// The function (its `functions/<binary>`) the integration invokes.
    pub function: FunctionSpec,
    /// Behind the JWT authorizer, with these scopes (any one will do; none: no scope check).
    pub jwt: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSpec {
    pub logical_id: String,
    /// The binary: the last folder of `CodeUri`.
    pub binary: String,
    /// `ReservedConcurrentExecutions`: its most environments.
    pub reserved: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct JwtAuthorizer {
    pub issuer: String,
    pub audience: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Cors {
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: Option<u64>,
    pub allow_credentials: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttle {
    pub burst: f64,
    pub rate: f64,
}

impl HttpApi {
    /// The `AWS::ApiGatewayV2` resources of `template` (one API, one `$default` stage).
    pub fn from_template(template: &Template) -> Self {
        let api = template
            .resources_of("AWS::ApiGatewayV2::Api")
            .pop()
            .expect("the template has an HTTP API");
        let cors = api.properties.get("CorsConfiguration").map(|cors| Cors {
            allow_origins: strings(&cors["AllowOrigins"]),
            allow_methods: strings(&cors["AllowMethods"]),
            allow_headers: strings(&cors["AllowHeaders"]),
            expose_headers: strings(&cors["ExposeHeaders"]),
            max_age: cors["MaxAge"].as_u64(),
            allow_credentials: cors["AllowCredentials"] == true,
        });
        let authorizers = template.resources_of("AWS::ApiGatewayV2::Authorizer");
        let authorizer = authorizers.first().map(|authorizer| {
            let jwt = &authorizer.properties["JwtConfiguration"];
            assert_eq!(authorizer.properties["AuthorizerType"], "JWT");
            JwtAuthorizer {
                issuer: jwt["Issuer"].as_str().unwrap_or_default().to_owned(),
                audience: strings(&jwt["Audience"])
                    .into_iter()
                    .filter(|audience| !audience.is_empty())
                    .collect(),
            }
        });
        let routes = template
            .resources_of("AWS::ApiGatewayV2::Route")
            .into_iter()
            .map(|route| {
                let target = route.properties["Target"].as_str().expect("a target");
                let integration = target
                    .strip_prefix("integrations/")
                    .expect("integrations/<id>");
                let integration = template
                    .resource(integration)
                    .expect("the route's integration");
                assert_eq!(integration.properties["PayloadFormatVersion"], "2.0");
                let function = match &integration.properties["IntegrationUri"]["Ref"] {
                    Value::String(reference) => reference.trim_end_matches(".Alias").to_owned(),
                    other => panic!("an integration with a function's alias, not {other}"),
                };
                let jwt = (route.properties["AuthorizationType"] == "JWT")
                    .then(|| strings(&route.properties["AuthorizationScopes"]));
                let key = route.properties["RouteKey"].as_str().expect("a route key");
                // Not modelled: `$default` and greedy `{proxy+}` paths take other requests
                // (preflights among them) on AWS than here; a template with one must not pass.
                assert!(
                    key.contains(' ') && !key.contains("+}"),
                    "the gateway stand-in does not model the route {key}"
                );
                Route {
                    key: key.to_owned(),
                    function: function_spec(template, &function),
                    jwt,
                }
            })
            .collect();
        let stage = template
            .resources_of("AWS::ApiGatewayV2::Stage")
            .pop()
            .expect("the API's stage");
        let throttle = |settings: &Value| {
            let burst = settings["ThrottlingBurstLimit"].as_f64();
            let rate = settings["ThrottlingRateLimit"].as_f64();
            (burst.is_some() || rate.is_some()).then(|| Throttle {
                burst: burst.unwrap_or(ACCOUNT_THROTTLE.burst),
                rate: rate.unwrap_or(ACCOUNT_THROTTLE.rate),
            })
        };
        let route_throttles = stage.properties["RouteSettings"]
            .as_object()
            .map(|settings| {
                settings
                    .iter()
                    .filter_map(|(key, settings)| Some((key.clone(), throttle(settings)?)))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            routes,
            authorizer,
            cors,
            default_throttle: throttle(&stage.properties["DefaultRouteSettings"]),
            route_throttles,
            access_log_format: stage.properties["AccessLogSettings"]["Format"]
                .as_str()
                .map(str::to_owned),
            jwks_url: template
                .parameter("JwtJwksUrl")
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        }
    }

    /// The route API Gateway selects for `method` and `path`, with its path parameters.
    pub fn select(&self, method: &str, path: &str) -> Option<(&Route, Map<String, Value>)> {
        let segments: Vec<&str> = path.split('/').collect();
        // The route, its path parameters, and its rank: (literal segments, names the method).
        let mut best: Option<(&Route, Map<String, Value>, Rank)> = None;
        for route in &self.routes {
            let Some((route_method, route_path)) = route.key.split_once(' ') else {
                continue;
            };
            let exact = route_method.eq_ignore_ascii_case(method);
            if !exact && route_method != "ANY" {
                continue;
            }
            let pattern: Vec<&str> = route_path.split('/').collect();
            if pattern.len() != segments.len() {
                continue;
            }
            let mut parameters = Map::new();
            let mut literals = 0;
            let matched = pattern.iter().zip(&segments).all(|(pattern, segment)| {
                match pattern.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    Some(name) if !segment.is_empty() => {
                        parameters.insert(name.to_owned(), json!(percent_decode(segment)));
                        true
                    }
                    Some(_) => false,
                    None => {
                        literals += 1;
                        pattern == segment
                    }
                }
            });
            // The most literal segments first, then the route naming the method over `ANY`.
            let rank = (literals, exact);
            let better = best.as_ref().is_none_or(|(_, _, best)| rank > *best);
            if matched && better {
                best = Some((route, parameters, rank));
            }
        }
        best.map(|(route, parameters, _)| (route, parameters))
    }

    /// The route with this key, if the template has it.
    pub fn route(&self, key: &str) -> Option<&Route> {
        self.routes.iter().find(|route| route.key == key)
    }

    /// The throttle of the route `route_key`: its own, the stage's default, or the account's.
    pub fn throttle_for(&self, route_key: &str) -> Throttle {
        self.route_throttles
            .get(route_key)
            .copied()
            .or(self.default_throttle)
            .unwrap_or(ACCOUNT_THROTTLE)
    }
}

fn function_spec(template: &Template, logical_id: &str) -> FunctionSpec {
    let function = template
        .resource(logical_id)
        .unwrap_or_else(|| panic!("the function {logical_id}"));
    let code = function.properties["CodeUri"]
        .as_str()
        .expect("a function's CodeUri");
    let reserved = &function.properties["ReservedConcurrentExecutions"];
    FunctionSpec {
        logical_id: logical_id.to_owned(),
        binary: code
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or(code)
            .to_owned(),
        reserved: reserved
            .as_u64()
            .or_else(|| reserved.as_str().and_then(|text| text.parse().ok()))
            .and_then(|reserved| usize::try_from(reserved).ok()),
    }
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items
            .iter()
            .filter_map(|item| match item {
                Value::String(text) => Some(text.clone()),
                Value::Number(number) => Some(number.to_string()),
                _ => None,
            })
            .collect(),
        Value::String(text) => vec![text.clone()],
        _ => Vec::new(),
    }
}

/// `%XX` decoded (a path segment: `+` stays `+`).
fn percent_decode(segment: &str) -> String {
    let escaped = segment.replace('+', "%2B");
    form_urlencoded::parse(format!("v={escaped}").as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

/// How a function is invoked: what Lambda does between API Gateway and an environment.
pub trait Backend: Send + Sync + 'static {
    fn invoke<'a>(
        &'a self,
        function: &'a FunctionSpec,
        event: Value,
    ) -> BoxFuture<'a, Result<Value, Invocation>>;

    /// How long the gateway waits for an invocation: the HTTP API's integration timeout.
    fn timeout(&self) -> Duration {
        INTEGRATION_TIMEOUT
    }
}

/// Why an invocation gave no response.
#[derive(Debug)]
pub enum Invocation {
    /// The function's reserved concurrency was taken (Lambda's 429).
    Throttled,
    /// The handler failed (`/error`).
    Failed(Value),
}

/// Lambda's execution environments: one process per concurrent invocation of a function,
/// started on demand (a cold start) up to its reserved concurrency, then kept and reused.
pub struct Environments {
    env: Vec<(String, String)>,
    /// Where the binaries are; `None`: beside the test binary (`target/<profile>`).
    bin_dir: Option<std::path::PathBuf>,
    pools: Mutex<HashMap<String, Pool>>,
}

#[derive(Default)]
struct Pool {
    idle: Vec<Function>,
    started: usize,
}

impl Environments {
    /// Environments whose processes get these variables.
    pub fn new(env: &[(&str, &str)]) -> Arc<Self> {
        Self::with_binaries_in(None, env)
    }

    /// Environments of the binaries in `bin_dir` (`make bench`: a release build).
    pub fn with_binaries_in(bin_dir: Option<&std::path::Path>, env: &[(&str, &str)]) -> Arc<Self> {
        Arc::new(Self {
            env: env
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
            bin_dir: bin_dir.map(std::path::Path::to_path_buf),
            pools: Mutex::new(HashMap::new()),
        })
    }

    async fn start(&self, binary: &str) -> Function {
        let environment = match &self.bin_dir {
            Some(dir) => Function::start_at(&dir.join(binary), &self.env).await,
            None => Function::start(binary, &self.env).await,
        };
        environment.initialized().await;
        environment
    }

    /// How many environments of `binary` there are (started, and not ended by a timeout).
    pub fn started(&self, binary: &str) -> usize {
        lock(&self.pools).get(binary).map_or(0, |pool| pool.started)
    }

    /// How many environments were started, of every function.
    pub fn started_in_all(&self) -> usize {
        lock(&self.pools).values().map(|pool| pool.started).sum()
    }

    /// Starts `count` more environments of `function` and waits for their inits, a wave of
    /// `wave` at a time (as Lambda scales out, and as this machine's cores can start them): as
    /// provisioned concurrency would have them ready. At most its reserved concurrency.
    pub async fn prewarm(&self, function: &FunctionSpec, count: usize, wave: usize) {
        let mut left = count;
        while left > 0 {
            let now = left.min(wave);
            let started = futures_util::future::join_all((0..now).map(|_| async {
                {
                    let mut pools = lock(&self.pools);
                    let pool = pools.entry(function.binary.clone()).or_default();
                    let full = function
                        .reserved
                        .is_some_and(|reserved| pool.started >= reserved);
                    assert!(
                        !full,
                        "{} has no reserved concurrency left",
                        function.binary
                    );
                    pool.started += 1;
                }
                self.start(&function.binary).await
            }))
            .await;
            lock(&self.pools)
                .entry(function.binary.clone())
                .or_default()
                .idle
                .extend(started);
            left -= now;
        }
    }

    async fn acquire(&self, function: &FunctionSpec) -> Result<Function, Invocation> {
        {
            let mut pools = lock(&self.pools);
            let pool = pools.entry(function.binary.clone()).or_default();
            if let Some(environment) = pool.idle.pop() {
                return Ok(environment);
            }
            if function
                .reserved
                .is_some_and(|reserved| pool.started >= reserved)
            {
                return Err(Invocation::Throttled);
            }
            pool.started += 1;
        }
        // Should the start be cancelled (the gateway's timeout), its concurrency is free again.
        let reservation = Reservation {
            environments: self,
            binary: &function.binary,
        };
        let environment = self.start(&function.binary).await;
        std::mem::forget(reservation);
        Ok(environment)
    }
}

/// An environment counted as started before its process is: uncounted if dropped.
struct Reservation<'a> {
    environments: &'a Environments,
    binary: &'a str,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if let Some(pool) = lock(&self.environments.pools).get_mut(self.binary) {
            pool.started = pool.started.saturating_sub(1);
        }
    }
}

impl Backend for Environments {
    fn invoke<'a>(
        &'a self,
        function: &'a FunctionSpec,
        event: Value,
    ) -> BoxFuture<'a, Result<Value, Invocation>> {
        Box::pin(async move {
            let environment = self.acquire(function).await?;
            // Lambda ends an invocation at the function's timeout (the harness would only
            // panic a second later): the environment goes, and its concurrency is free again.
            let invoked = environment.invoke(&event, FUNCTION_TIMEOUT);
            let outcome = tokio::time::timeout(FUNCTION_TIMEOUT, invoked).await;
            let mut pools = lock(&self.pools);
            let pool = pools.entry(function.binary.clone()).or_default();
            match outcome {
                Ok(Outcome::Response(response)) => {
                    pool.idle.push(environment);
                    Ok(response)
                }
                Ok(Outcome::Error(error)) => {
                    pool.idle.push(environment);
                    Err(Invocation::Failed(error))
                }
                Err(_) => {
                    pool.started -= 1;
                    drop(environment);
                    Err(Invocation::Failed(json!({"errorType": "Sandbox.Timedout"})))
                }
            }
        })
    }
}

/// The gateway, serving on a free loopback port until dropped.
pub struct Gateway {
    pub url: String,
    state: Arc<State>,
    server: JoinHandle<()>,
}

struct State {
    api: HttpApi,
    backend: Arc<dyn Backend>,
    buckets: Mutex<HashMap<String, Bucket>>,
    /// `Some` while the throttles' clock is stopped, at that instant.
    frozen: Mutex<Option<Instant>>,
    keys: tokio::sync::Mutex<Option<JwkSet>>,
    http: reqwest::Client,
    access_log: Mutex<Vec<String>>,
    /// Also print each access log line (`make dev`).
    print_access_log: std::sync::atomic::AtomicBool,
    requests: AtomicU64,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// What the gateway answered, for the access log.
#[derive(Default)]
struct Context {
    request_id: String,
    source_ip: String,
    request_time: String,
    method: String,
    route_key: Option<String>,
    status: u16,
    protocol: String,
    response_length: usize,
    integration_request_id: Option<String>,
    integration_status: Option<u16>,
    integration_latency: Option<u128>,
    response_latency: u128,
    authorizer_error: Option<String>,
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The gateway's own answer to a preflight, its CORS headers complete.
    preflight: bool,
}

impl Answer {
    fn message(status: u16, message: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: json!({ "message": message }).to_string().into_bytes(),
            preflight: false,
        }
    }
}

/// Lambda's Invoke API, as `cargo lambda watch` serves it for the functions it builds and runs
/// (`make dev`): one environment per function, no reserved concurrency.
pub struct WatchInvoke {
    url: String,
    http: reqwest::Client,
}

impl WatchInvoke {
    /// `cargo lambda watch` on `url` (`http://127.0.0.1:<invoke port>`).
    pub fn new(url: &str) -> Arc<Self> {
        Arc::new(Self {
            url: url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        })
    }
}

impl Backend for WatchInvoke {
    /// A function's first invocation, and the first after a change, waits for its build: on a
    /// new machine, minutes.
    fn timeout(&self) -> Duration {
        Duration::from_secs(30 * 60)
    }

    fn invoke<'a>(
        &'a self,
        function: &'a FunctionSpec,
        event: Value,
    ) -> BoxFuture<'a, Result<Value, Invocation>> {
        Box::pin(async move {
            let url = format!(
                "{}/2015-03-31/functions/{}/invocations",
                self.url, function.binary
            );
            // The first invocation of a function may wait for its build.
            let sent = self.http.post(url).json(&event).send().await;
            let failed = |error: String| Invocation::Failed(json!({ "errorMessage": error }));
            let response = sent.map_err(|err| failed(err.to_string()))?;
            let ok = response.status().is_success();
            let body: Value = response
                .json()
                .await
                .map_err(|err| failed(err.to_string()))?;
            match ok && body.get("errorType").is_none() {
                true => Ok(body),
                false => Err(Invocation::Failed(body)),
            }
        })
    }
}

impl Gateway {
    pub async fn start(api: HttpApi, backend: Arc<dyn Backend>) -> Self {
        Self::start_at("127.0.0.1:0", api, backend).await
    }

    /// Serving on `address` (`make dev`: the port the API is known by).
    pub async fn start_at(address: &str, api: HttpApi, backend: Arc<dyn Backend>) -> Self {
        let listener = TcpListener::bind(address)
            .await
            .unwrap_or_else(|err| panic!("bind {address}: {err}"));
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let state = Arc::new(State {
            api,
            backend,
            buckets: Mutex::new(HashMap::new()),
            frozen: Mutex::new(None),
            keys: tokio::sync::Mutex::new(None),
            http: reqwest::Client::new(),
            access_log: Mutex::new(Vec::new()),
            print_access_log: std::sync::atomic::AtomicBool::new(false),
            requests: AtomicU64::new(0),
        });
        let serving = Arc::clone(&state);
        if serving.api.authorizer.is_some() {
            // Read before the first request, so that no request waits on it (API Gateway has
            // the issuer's keys long before a burst).
            let keys = serving.fetch_keys(Duration::from_secs(10)).await;
            *serving.keys.lock().await = Some(keys.expect("the issuer's JWKS"));
        }
        let server = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        tokio::spawn(connection(stream, peer, Arc::clone(&serving)));
                    }
                    Err(err) => {
                        eprintln!("gateway: accept: {err}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        });
        Self { url, state, server }
    }

    /// The API as read from the template.
    pub fn api(&self) -> &HttpApi {
        &self.state.api
    }

    /// Stops the throttles' clock: no bucket refills until [`Self::advance_throttle_clock`].
    pub fn freeze_throttle_clock(&self) {
        *lock(&self.state.frozen) = Some(Instant::now());
    }

    pub fn advance_throttle_clock(&self, by: Duration) {
        if let Some(at) = lock(&self.state.frozen).as_mut() {
            *at += by;
        }
    }

    /// Prints each access log line to standard output from now on.
    pub fn print_access_log(&self) {
        self.state.print_access_log.store(true, Ordering::Relaxed);
    }

    /// The access log's lines so far, in the stage's format.
    pub fn access_log(&self) -> Vec<String> {
        lock(&self.state.access_log).clone()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn connection(stream: tokio::net::TcpStream, peer: SocketAddr, state: Arc<State>) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    while let Some(request) = http1::read_request(&mut read).await {
        let answer = state.handle(request, peer).await;
        let headers: Vec<(&str, String)> = answer
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.clone()))
            .collect();
        let status = format!("{} {}", answer.status, reason(answer.status));
        if http1::write_response(&mut write, &status, &headers, &answer.body)
            .await
            .is_err()
        {
            return;
        }
    }
}

impl State {
    async fn handle(&self, request: http1::Request, peer: SocketAddr) -> Answer {
        let started = Instant::now();
        let number = self.requests.fetch_add(1, Ordering::Relaxed);
        let mut context = Context {
            request_id: format!("gw{number:010}="),
            source_ip: peer.ip().to_string(),
            request_time: time::OffsetDateTime::now_utc()
                .format(time::macros::format_description!(
                    "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
                ))
                .unwrap_or_default(),
            method: request.method.clone(),
            protocol: "HTTP/1.1".into(),
            ..Context::default()
        };
        let mut answer = self.answer(&request, &mut context).await;
        self.add_cors(&request, &mut answer);
        answer
            .headers
            .push(("apigw-requestid".into(), context.request_id.clone()));
        context.status = answer.status;
        context.response_length = answer.body.len();
        context.response_latency = started.elapsed().as_millis();
        self.log(&context);
        answer
    }

    async fn answer(&self, request: &http1::Request, context: &mut Context) -> Answer {
        let (path, query) = request
            .path
            .split_once('?')
            .unwrap_or((request.path.as_str(), ""));
        let selected = self.api.select(&request.method, path);
        let preflight = request.method == "OPTIONS"
            && request.header("origin").is_some()
            && request.header("access-control-request-method").is_some();
        if let (Some(cors), true, None) = (&self.api.cors, preflight, &selected) {
            return cors.preflight(request.header("origin").unwrap_or_default());
        }
        let Some((route, parameters)) = selected else {
            return Answer::message(404, "Not Found");
        };
        context.route_key = Some(route.key.clone());
        if !self.take_token(&route.key) {
            return Answer::message(429, "Too Many Requests");
        }
        let authorizer = match &route.jwt {
            Some(scopes) => match self.authorize(request, scopes).await {
                Ok(authorizer) => Some(authorizer),
                Err((answer, error)) => {
                    context.authorizer_error = Some(error);
                    return answer;
                }
            },
            None => None,
        };
        let event = event(request, route, path, query, parameters, authorizer, context);
        let invoked = Instant::now();
        context.integration_request_id = Some(format!("{}-invocation", context.request_id));
        let outcome = tokio::time::timeout(
            self.backend.timeout(),
            self.backend.invoke(&route.function, event),
        )
        .await;
        context.integration_latency = Some(invoked.elapsed().as_millis());
        match outcome {
            Ok(Ok(response)) => {
                let answer = from_response(&response);
                context.integration_status = Some(answer.status);
                answer
            }
            Ok(Err(Invocation::Throttled)) => {
                context.integration_status = Some(429);
                Answer::message(500, "Internal Server Error")
            }
            Ok(Err(Invocation::Failed(_))) => {
                context.integration_status = Some(200);
                Answer::message(500, "Internal Server Error")
            }
            Err(_) => Answer::message(503, "Service Unavailable"),
        }
    }

    fn take_token(&self, route_key: &str) -> bool {
        let throttle = self.api.throttle_for(route_key);
        let now = lock(&self.frozen).unwrap_or_else(Instant::now);
        let mut buckets = lock(&self.buckets);
        let bucket = buckets.entry(route_key.to_owned()).or_insert(Bucket {
            tokens: throttle.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * throttle.rate).min(throttle.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// The JWT authorizer's verdict: the claims and scopes for the event, or the answer.
    async fn authorize(
        &self,
        request: &http1::Request,
        scopes: &[String],
    ) -> Result<Value, (Answer, String)> {
        let unauthorized = |description: &str| {
            let mut answer = Answer::message(401, "Unauthorized");
            answer.headers.push((
                "www-authenticate".into(),
                format!(
                    "Bearer scope=\"\" error=\"invalid_token\" error_description=\"{description}\""
                ),
            ));
            (answer, description.to_owned())
        };
        let authorizer = self
            .api
            .authorizer
            .as_ref()
            .expect("a route behind the authorizer has one");
        let Some(header) = request.header("authorization") else {
            return Err(unauthorized("no token"));
        };
        let token = header.strip_prefix("Bearer ").unwrap_or(header).trim();
        let claims = self
            .verify(token, &authorizer.issuer)
            .await
            .map_err(|error| unauthorized(&error))?;
        let audience = match (&claims["aud"], &claims["client_id"]) {
            (Value::Null, client_id) => strings(client_id),
            (aud, _) => strings(aud),
        };
        if !audience
            .iter()
            .any(|audience| authorizer.audience.contains(audience))
        {
            return Err(unauthorized("the token does not have a valid audience"));
        }
        let granted: Vec<String> = match (&claims["scope"], &claims["scp"]) {
            (Value::String(scope), _) => scope.split_whitespace().map(str::to_owned).collect(),
            (_, scp) => strings(scp)
                .iter()
                .flat_map(|scp| {
                    scp.split_whitespace()
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .collect(),
        };
        if !scopes.is_empty() && !scopes.iter().any(|scope| granted.contains(scope)) {
            return Err((
                Answer::message(403, "Forbidden"),
                "the token has none of the route's scopes".into(),
            ));
        }
        let claims: Map<String, Value> = claims
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, value)| (name.clone(), json!(claim_text(value))))
            .collect();
        let scopes = (!scopes.is_empty()).then_some(granted);
        Ok(json!({ "jwt": { "claims": claims, "scopes": scopes } }))
    }

    async fn verify(&self, token: &str, issuer: &str) -> Result<Value, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| "not a JWT".to_owned())?;
        let mut keys = self.keys.lock().await;
        if keys.is_none() {
            // API Gateway's timeout for a JWKS endpoint.
            *keys = Some(self.fetch_keys(Duration::from_millis(1500)).await?);
        }
        let set = keys.as_ref().ok_or("no JWKS")?;
        let jwk = match &header.kid {
            Some(kid) => set.find(kid),
            None => None,
        }
        .ok_or("no key of the JWKS signed it")?;
        let key = DecodingKey::from_jwk(jwk).map_err(|_| "an unusable key".to_owned())?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.algorithms = vec![Algorithm::RS256, Algorithm::RS384, Algorithm::RS512];
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_issuer(&[issuer]);
        jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|err| format!("the token is not valid: {err}"))
    }

    async fn fetch_keys(&self, timeout: Duration) -> Result<JwkSet, String> {
        let fetched = self
            .http
            .get(&self.api.jwks_url)
            .timeout(timeout)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        match fetched {
            Ok(response) => response.json::<JwkSet>().await.ok(),
            Err(_) => None,
        }
        .ok_or_else(|| "the JWKS could not be read".to_owned())
    }

    fn add_cors(&self, request: &http1::Request, answer: &mut Answer) {
        let Some(cors) = self.api.cors.as_ref().filter(|_| !answer.preflight) else {
            return;
        };
        answer
            .headers
            .retain(|(name, _)| !name.to_ascii_lowercase().starts_with("access-control-"));
        let Some(allowed) = request
            .header("origin")
            .and_then(|origin| cors.allowed_origin(origin))
        else {
            return;
        };
        answer
            .headers
            .push(("access-control-allow-origin".into(), allowed));
        if !cors.expose_headers.is_empty() {
            answer.headers.push((
                "access-control-expose-headers".into(),
                cors.expose_headers.join(","),
            ));
        }
        if cors.allow_credentials {
            answer
                .headers
                .push(("access-control-allow-credentials".into(), "true".into()));
        }
        if cors.allow_origins.iter().any(|origin| origin != "*") {
            answer.headers.push(("vary".into(), "origin".into()));
        }
    }

    fn log(&self, context: &Context) {
        let Some(format) = &self.api.access_log_format else {
            return;
        };
        let dash = |value: Option<String>| value.unwrap_or_else(|| "-".into());
        let value = |name: &str| -> String {
            match name {
                "requestId" => context.request_id.clone(),
                "identity.sourceIp" => context.source_ip.clone(),
                "requestTime" => context.request_time.clone(),
                "httpMethod" => context.method.clone(),
                "routeKey" => dash(context.route_key.clone()),
                "status" => context.status.to_string(),
                "protocol" => context.protocol.clone(),
                "responseLength" => context.response_length.to_string(),
                "integration.requestId" => dash(context.integration_request_id.clone()),
                "integration.status" | "integrationStatus" => {
                    dash(context.integration_status.map(|status| status.to_string()))
                }
                "integrationLatency" | "integration.latency" => {
                    dash(context.integration_latency.map(|ms| ms.to_string()))
                }
                "responseLatency" => context.response_latency.to_string(),
                "authorizer.error" => dash(context.authorizer_error.clone()),
                _ => "-".into(),
            }
        };
        let mut line = String::new();
        let mut rest = format.as_str();
        while let Some(start) = rest.find("$context.") {
            line.push_str(&rest[..start]);
            let name_start = start + "$context.".len();
            let length = rest[name_start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
                .unwrap_or(rest.len() - name_start);
            let name = rest[name_start..name_start + length].trim_end_matches('.');
            line.push_str(&value(name));
            rest = &rest[name_start + name.len()..];
        }
        line.push_str(rest);
        if self.print_access_log.load(Ordering::Relaxed) {
            println!("{line}");
        }
        lock(&self.access_log).push(line);
    }
}

impl Cors {
    /// `Access-Control-Allow-Origin` for `origin`, if it is allowed.
    fn allowed_origin(&self, origin: &str) -> Option<String> {
        self.allow_origins.iter().find_map(|allowed| {
            if allowed == "*" {
                Some("*".to_owned())
            } else if allowed == origin {
                Some(origin.to_owned())
            } else {
                let prefix = allowed.strip_suffix('*')?;
                origin.starts_with(prefix).then(|| origin.to_owned())
            }
        })
    }

    /// The gateway's own answer to a preflight that no route matches.
    fn preflight(&self, origin: &str) -> Answer {
        let mut headers = Vec::new();
        if let Some(allowed) = self.allowed_origin(origin) {
            headers.push(("access-control-allow-origin".into(), allowed));
            headers.push((
                "access-control-allow-methods".into(),
                self.allow_methods.join(","),
            ));
            headers.push((
                "access-control-allow-headers".into(),
                self.allow_headers.join(","),
            ));
            if let Some(max_age) = self.max_age {
                headers.push(("access-control-max-age".into(), max_age.to_string()));
            }
            if self.allow_credentials {
                headers.push(("access-control-allow-credentials".into(), "true".into()));
            }
        }
        Answer {
            status: 204,
            headers,
            body: Vec::new(),
            preflight: true,
        }
    }
}

/// The payload format 2.0 event for `request`, as API Gateway sends it.
fn event(
    request: &http1::Request,
    route: &Route,
    path: &str,
    query: &str,
    parameters: Map<String, Value>,
    authorizer: Option<Value>,
    context: &Context,
) -> Value {
    let mut headers = Map::new();
    let mut cookies = Vec::new();
    for (name, value) in &request.headers {
        if name == "cookie" {
            cookies.extend(value.split(';').map(|cookie| json!(cookie.trim())));
            continue;
        }
        let joined = match headers.get(name) {
            Some(Value::String(before)) => format!("{before},{value}"),
            _ => value.clone(),
        };
        headers.insert(name.clone(), json!(joined));
    }
    let mut parameters_of_query = Map::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let joined = match parameters_of_query.get(name.as_ref()) {
            Some(Value::String(before)) => format!("{before},{value}"),
            _ => value.into_owned(),
        };
        parameters_of_query.insert(name.into_owned(), json!(joined));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let mut event = json!({
        "version": "2.0",
        "routeKey": route.key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "gateway",
            "domainName": request.header("host").unwrap_or("localhost"),
            "domainPrefix": "gateway",
            "http": {
                "method": request.method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": context.source_ip,
                "userAgent": request.header("user-agent").unwrap_or_default(),
            },
            "requestId": context.request_id,
            "routeKey": route.key,
            "stage": "$default",
            "time": context.request_time,
            "timeEpoch": now,
        },
        "isBase64Encoded": false,
    });
    if let Some(authorizer) = authorizer {
        event["requestContext"]["authorizer"] = authorizer;
    }
    if !cookies.is_empty() {
        event["cookies"] = Value::Array(cookies);
    }
    if !parameters_of_query.is_empty() {
        event["queryStringParameters"] = Value::Object(parameters_of_query);
    }
    if !parameters.is_empty() {
        event["pathParameters"] = Value::Object(parameters);
    }
    if !request.body.is_empty() {
        match std::str::from_utf8(&request.body) {
            Ok(text) => event["body"] = json!(text),
            Err(_) => {
                event["body"] = json!(STANDARD.encode(&request.body));
                event["isBase64Encoded"] = json!(true);
            }
        }
    }
    event
}

/// A payload format 2.0 response as API Gateway turns it into HTTP.
fn from_response(response: &Value) -> Answer {
    let Some(status) = response.get("statusCode").and_then(Value::as_u64) else {
        // No statusCode: the response is the body, as JSON.
        return Answer {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: response.to_string().into_bytes(),
            preflight: false,
        };
    };
    let mut headers: Vec<(String, String)> = response["headers"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, value)| (name.to_ascii_lowercase(), claim_text(value)))
        .collect();
    for cookie in response["cookies"].as_array().into_iter().flatten() {
        headers.push(("set-cookie".into(), claim_text(cookie)));
    }
    let body = response["body"].as_str().unwrap_or_default();
    let body = match response["isBase64Encoded"] == true {
        true => STANDARD.decode(body).unwrap_or_default(),
        false => body.as_bytes().to_vec(),
    };
    Answer {
        status: u16::try_from(status).unwrap_or(500),
        headers,
        body,
        preflight: false,
    }
}

/// A claim as API Gateway passes it on: a string as it is, anything else as text (an array
/// Go-style, `[a b]`).
fn claim_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(claim_text).collect::<Vec<_>>().join(" ")
        ),
        other => other.to_string(),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A deploy: the template with some parameters (an issuer whose JWKS the harness serves, the
/// test audience, and the test's own), its gateway in front of the function binaries, and
/// their environments over a database of their own. Tokens for it: [`rsa_token`].
pub struct Deployment {
    pub gateway: Gateway,
    pub environments: Arc<Environments>,
    pub database: crate::TestDatabase,
    /// The proxy's stand-in, when the deployment has one.
    pub pooler: Option<crate::pgbouncer::PgBouncer>,
    _jwks: crate::jwks::JwksServer,
}

impl Deployment {
    pub async fn start(name: &str, parameters: &[(&str, &str)]) -> Self {
        Self::start_pooled(name, parameters, None, &[]).await
    }

    /// With PgBouncer between the functions and the database, pooling as given: the local
    /// stand-in for RDS Proxy (e2e/src/pgbouncer.rs); the functions get `env` too.
    pub async fn start_pooled(
        name: &str,
        parameters: &[(&str, &str)],
        pooling: Option<crate::pgbouncer::Pooling>,
        env: &[(&str, &str)],
    ) -> Self {
        let database = crate::TestDatabase::create(name).await;
        Self::start_on(database, parameters, pooling, None, env).await
    }

    /// Over `database`, pooled as given, with the binaries in `bin_dir` (`None`: this build's),
    /// and `env` for the functions besides the database's URL and the issuer's settings.
    pub async fn start_on(
        database: crate::TestDatabase,
        parameters: &[(&str, &str)],
        pooling: Option<crate::pgbouncer::Pooling>,
        bin_dir: Option<&std::path::Path>,
        env: &[(&str, &str)],
    ) -> Self {
        use test_support::tokens::{JWKS_KEYS, TEST_AUDIENCE, TEST_ISSUER};
        let pooler = match pooling {
            Some(pooling) => {
                Some(crate::pgbouncer::PgBouncer::start_pooling(database.address, pooling).await)
            }
            None => None,
        };
        let url = match &pooler {
            Some(pooler) => pooler.url_for(&database.url),
            None => database.url.clone(),
        };
        let keys: Value = serde_json::from_str(JWKS_KEYS).expect("the test JWKS");
        let jwks = crate::jwks::JwksServer::start(vec![keys["rsa-1"].clone()]).await;
        let mut all = vec![
            ("JwtJwksUrl", jwks.url.as_str()),
            ("JwtIssuer", TEST_ISSUER),
            ("JwtAudience", TEST_AUDIENCE),
        ];
        all.extend_from_slice(parameters);
        let api = HttpApi::from_template(&Template::workspace(&all));
        let mut variables = vec![
            ("DATABASE_URL", url.as_str()),
            ("JWT_JWKS_URL", jwks.url.as_str()),
            ("JWT_ISSUER", TEST_ISSUER),
            ("JWT_AUDIENCE", TEST_AUDIENCE),
        ];
        variables.extend_from_slice(env);
        let environments = Environments::with_binaries_in(bin_dir, &variables);
        let backend: Arc<dyn Backend> = environments.clone();
        let gateway = Gateway::start(api, backend).await;
        Self {
            gateway,
            environments,
            database,
            _jwks: jwks,
            pooler,
        }
    }
}

/// A token with `scope` from the deployment's issuer (RS256, a key of its JWKS), `overrides`
/// applied to the claims as [`test_support::tokens::claims`] does.
pub fn rsa_token(scope: &str, overrides: Value) -> String {
    use test_support::tokens;
    tokens::sign(
        Algorithm::RS256,
        Some("rsa-1"),
        &tokens::rsa_key(tokens::RSA_PRIVATE),
        &tokens::claims(scope, overrides),
    )
}
