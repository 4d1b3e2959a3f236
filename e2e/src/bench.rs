//! `make bench`: the functions' cold starts, warm latencies, database round trips and memory,
//! a fleet of environments on one database, and one environment taking several invocations at
//! once, measured side by side in one run, under the harness's Lambda Runtime API
//! ([`crate::runtime`]), with the stand-ins of the end-to-end tests (moto, a JWKS issuer, the
//! TCP proxy that adds network distance, PgBouncer for RDS Proxy). The ratios between rows of
//! one run are the figures to read; absolute times depend on this machine.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use futures_util::future::join_all;

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use sqlx::{postgres::PgConnectOptions, ConnectOptions, Connection, PgConnection};
use test_support::{tokens, TestRequest};

use crate::{
    gateway::{rsa_token, Deployment},
    jwks::JwksServer,
    moto::Moto,
    otlp::Collector,
    pgbouncer::{PgBouncer, Pooling},
    proxy::Proxy,
    replica::ReplicatedCluster,
    runtime::Function,
    with_port, TestDatabase,
};

/// What to run, and how much.
pub struct Config {
    /// Where the function binaries are (`target/release` for `make bench`).
    pub bin_dir: PathBuf,
    /// Admin URL of the cluster to create the benchmark's database on.
    pub admin_url: String,
    pub cold_starts: usize,
    pub warm_gets: usize,
    pub warm_posts: usize,
    /// Peak RSS is read after this many warm GETs, and after all of them.
    pub rss_checkpoint: usize,
    /// Environments of each of the fleet's four functions.
    pub fleet_per_function: usize,
    /// Bursts the fleet is sent: one request to every environment at once, each.
    pub fleet_bursts: usize,
    /// Requests at each concurrency for the environment that takes several at once.
    pub concurrent_requests: usize,
    /// Requests in each burst of the gateway section, all at once on one route.
    pub gateway_burst: usize,
}

/// One-way delays of the distances a Lambda function has to its dependencies in AWS (issue
/// #13): Secrets Manager 20 ms round trip, the token issuer 40 ms, Postgres 2 ms.
const DISTANCES: [(&str, Duration); 3] = [
    ("secrets", Duration::from_millis(10)),
    ("jwks", Duration::from_millis(20)),
    ("postgres", Duration::from_millis(1)),
];

/// The report, as Markdown.
pub async fn run(config: &Config) -> String {
    let bench = Setup::new(config).await;
    let mut report = String::new();
    cold_starts(&bench, config, &mut report).await;
    credentials_at_init(&bench, config, &mut report).await;
    warm(&bench, config, &mut report).await;
    traces(&bench, config, &mut report).await;
    round_trips(&bench, &mut report).await;
    fleet(&bench, config, &mut report).await;
    gateway_bursts(config, &mut report).await;
    managed_instances(&bench, config, &mut report).await;
    readers(&bench, config, &mut report).await;
    report
}

struct Setup {
    database: TestDatabase,
    moto: Moto,
    issuer: JwksServer,
    bin_dir: PathBuf,
    get: TestRequest,
    bearer: String,
    /// The application role's URL, as the functions log in.
    role_url: String,
}

impl Setup {
    async fn new(config: &Config) -> Self {
        let database = TestDatabase::create_on(&config.admin_url, "bench").await;
        sqlx::query("INSERT INTO users (email, name) VALUES ('bench@example.com', 'Bench')")
            .execute(&mut database.connect().await)
            .await
            .expect("a user");
        let moto = Moto::start().await;
        let role = database.create_app_role("bench", "bench-pw-1").await;
        let secret = database.rds_secret(database.address.port(), &role, "bench-pw-1");
        let role_url = format!(
            "postgres://{role}:bench-pw-1@{}/{}",
            database.address, database.name
        );
        moto.create_secret("bench/db", &secret).await;
        let keys: Value = serde_json::from_str(tokens::JWKS_KEYS).expect("the JWKS fixture");
        let issuer = JwksServer::start(vec![keys["rsa-1"].clone()]).await;
        let token = tokens::sign(
            Algorithm::RS256,
            Some("rsa-1"),
            &tokens::rsa_key(tokens::RSA_PRIVATE),
            &tokens::claims(tokens::FULL_SCOPE, json!({"exp": tokens::now() + 3600})),
        );
        let bearer = format!("Bearer {token}");
        let get = TestRequest::get("/users/1").authorization(Some(&bearer));
        Self {
            database,
            moto,
            issuer,
            bin_dir: config.bin_dir.clone(),
            get,
            bearer,
            role_url,
        }
    }

    /// `POST /users` for a new user `n`.
    fn post(&self, n: &str) -> Value {
        TestRequest::post("/users")
            .authorization(Some(&self.bearer))
            .json(&json!({"email": format!("{n}@example.com"), "name": "Bench"}))
            .event()
    }

    /// A function as the template configures it: the secret from Secrets Manager, the keys
    /// from the issuer's JWKS, each at `endpoints` (the direct ones, or proxies).
    async fn function(&self, name: &str, endpoints: &Endpoints) -> Function {
        self.function_with(name, endpoints, &[]).await
    }

    /// [`Setup::function`] with `extra` variables.
    async fn function_with(
        &self,
        name: &str,
        endpoints: &Endpoints,
        extra: &[(&str, &str)],
    ) -> Function {
        let mut env = self.moto.function_env();
        for (key, value) in &mut env {
            if key == "AWS_ENDPOINT_URL" {
                value.clone_from(&endpoints.secrets);
            }
        }
        env.extend(
            [
                ("DB_SECRET_ID", "bench/db"),
                ("DB_SSLMODE", "disable"),
                ("JWT_JWKS_URL", &endpoints.jwks),
                ("JWT_ISSUER", tokens::TEST_ISSUER),
                ("JWT_AUDIENCE", tokens::TEST_AUDIENCE),
                ("RUST_LOG", "warn"),
            ]
            .map(|(key, value)| (key.to_owned(), value.to_owned())),
        );
        if let Some(port) = endpoints.postgres_port {
            env.push(("DB_PORT".into(), port.to_string()));
        }
        env.extend(
            extra
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned())),
        );
        Function::start_at(&self.bin_dir.join(name), &env).await
    }

    fn direct(&self) -> Endpoints {
        Endpoints {
            secrets: self.moto.endpoint.clone(),
            jwks: self.issuer.url.clone(),
            postgres_port: None,
        }
    }
}

#[derive(Clone)]
struct Endpoints {
    secrets: String,
    jwks: String,
    postgres_port: Option<u16>,
}

async fn cold_starts(bench: &Setup, config: &Config, report: &mut String) {
    let secrets = Proxy::in_front_of(&bench.moto.endpoint).await;
    let jwks = Proxy::in_front_of(&bench.issuer.url).await;
    let postgres = Proxy::start(bench.database.address).await;
    for (proxy, (_, delay)) in [&secrets, &jwks, &postgres].into_iter().zip(DISTANCES) {
        proxy.delay(delay);
    }
    let far = Endpoints {
        secrets: secrets.url_for(&bench.moto.endpoint),
        jwks: jwks.url_for(&bench.issuer.url),
        postgres_port: Some(postgres.port),
    };
    let _ = writeln!(
        report,
        "## Cold start\n\n{} fresh processes per row, one row after another; init is exec to \
         the first request for an event (config, the secret, the token keys, the first \
         connection); first response is exec to the first request answered (`GET /users/{{id}}`, \
         `POST /users`).\n\n\
         | function | distances | init p50 | init p90 | first response p50 | first response p90 |\n\
         |---|---|---|---|---|---|",
        config.cold_starts
    );
    for function in ["get-user", "create-user"] {
        for (label, endpoints) in [("none", bench.direct()), ("AWS-like", far.clone())] {
            let (mut init, mut first) = (Vec::new(), Vec::new());
            for n in 0..config.cold_starts {
                let process = bench.function(function, &endpoints).await;
                let event = match function {
                    "get-user" => bench.get.event(),
                    _ => bench.post(&format!("cold-{label}-{n}")),
                };
                let response = process
                    .invoke(&event, Duration::from_secs(10))
                    .await
                    .response();
                first.push(process.started.elapsed());
                assert!(
                    matches!(response["statusCode"].as_u64(), Some(200 | 201)),
                    "{response}"
                );
                init.push(process.init_duration().expect("the init is over"));
            }
            let _ = writeln!(
                report,
                "| {function} | {label} | {} | {} | {} | {} |",
                ms(percentile(&mut init, 0.5)),
                ms(percentile(&mut init, 0.9)),
                ms(percentile(&mut first, 0.5)),
                ms(percentile(&mut first, 0.9)),
            );
        }
    }
    let _ = writeln!(
        report,
        "\nAWS-like distances, one way, added by the harness's proxy: Secrets Manager {} ms, \
         the issuer {} ms, Postgres {} ms (each connection's set-up included). At init the \
         token keys are fetched beside the secret and the first connection.\n",
        DISTANCES[0].1.as_millis(),
        DISTANCES[1].1.as_millis(),
        DISTANCES[2].1.as_millis(),
    );
    split(bench, config, &far, report).await;
}

/// The init of `health` (no token keys) with the database credentials in `DATABASE_URL`, and
/// with them read from Secrets Manager through the SDK (`aws-config` resolving the region and
/// credentials, then `GetSecretValue` from moto on loopback): the two interleaved, so the
/// machine's drift touches both alike. With `BENCH_BIN_DIR` pointed at two builds in turn, the
/// same rows compare the builds.
async fn credentials_at_init(bench: &Setup, config: &Config, report: &mut String) {
    let env = |credentials: &[(&str, &str)]| {
        let mut env = bench.moto.function_env();
        env.extend(
            credentials
                .iter()
                .chain(&[("RUST_LOG", "warn")])
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned())),
        );
        env
    };
    let from_url = env(&[("DATABASE_URL", &bench.role_url)]);
    let from_secret = env(&[("DB_SECRET_ID", "bench/db"), ("DB_SSLMODE", "disable")]);
    let binary = bench.bin_dir.join("health");
    let (mut url, mut secret) = (Vec::new(), Vec::new());
    for _ in 0..config.cold_starts {
        for (env, inits) in [(&from_url, &mut url), (&from_secret, &mut secret)] {
            let process = Function::start_at(&binary, env).await;
            process.initialized().await;
            inits.push(process.init_duration().expect("the init is over"));
        }
    }
    let _ = writeln!(
        report,
        "## Credentials at init\n\n`health`'s init (exec to the first request for an event, \
         the first connection included), {} fresh processes each, interleaved.\n\n\
         | credentials | init p50 | init p90 |\n|---|---|---|\n\
         | `DATABASE_URL` | {} | {} |\n\
         | `DB_SECRET_ID`: the SDK, configured by `aws-config`, reads the secret from moto \
         | {} | {} |\n",
        config.cold_starts,
        ms(percentile(&mut url, 0.5)),
        ms(percentile(&mut url, 0.9)),
        ms(percentile(&mut secret, 0.5)),
        ms(percentile(&mut secret, 0.9)),
    );
}

/// What each dependency of the init costs on its own at the AWS-like distances, measured from
/// the harness in the same run, each on a new connection as at init: the split of the rows
/// above (the rest is the init with no distance).
async fn split(bench: &Setup, config: &Config, far: &Endpoints, report: &mut String) {
    let samples = config.cold_starts;
    let mut secret = Vec::new();
    let mut keys = Vec::new();
    let mut connection = Vec::new();
    let role_url = crate::with_port(
        &bench.role_url,
        far.postgres_port.expect("a proxy in front of Postgres"),
    );
    for _ in 0..samples {
        // A new client each time: a new connection, as a new process makes.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("a client");
        let started = Instant::now();
        let answer = http
            .post(&far.secrets)
            .header("x-amz-target", "secretsmanager.GetSecretValue")
            .header("content-type", "application/x-amz-json-1.1")
            .body(r#"{"SecretId":"bench/db"}"#)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        answer.expect("GetSecretValue from moto");
        secret.push(started.elapsed());
        let started = Instant::now();
        http.get(&far.jwks)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("the JWKS");
        keys.push(started.elapsed());
        let started = Instant::now();
        let opened = PgConnection::connect(&role_url)
            .await
            .expect("a connection");
        connection.push(started.elapsed());
        let _ = opened.close().await;
    }
    let median = |samples: &mut Vec<Duration>| ms(percentile(samples, 0.5));
    let _ = writeln!(
        report,
        "The split at those distances, medians over {samples} from the harness, each on a new \
         connection: the secret {}, then the first connection {}; beside them, the keys {}.\n",
        median(&mut secret),
        median(&mut connection),
        median(&mut keys),
    );
}

async fn warm(bench: &Setup, config: &Config, report: &mut String) {
    let get_user = bench.function("get-user", &bench.direct()).await;
    let create_user = bench.function("create-user", &bench.direct()).await;
    let hello =
        Function::start_at(&bench.bin_dir.join("hello-world"), &[("RUST_LOG", "warn")]).await;
    let event = bench.get.event();
    let limit = Duration::from_secs(10);
    // Warm-up: the first invocation of each prepares its statement and caches its keys.
    get_user.invoke(&event, limit).await.response();
    hello.invoke(&event, limit).await.response();

    let mut gets = Vec::with_capacity(config.warm_gets);
    let mut rss_at_checkpoint = 0;
    for n in 1..=config.warm_gets {
        let started = Instant::now();
        get_user.invoke(&event, limit).await.response();
        gets.push(started.elapsed());
        if n == config.rss_checkpoint {
            rss_at_checkpoint = get_user.peak_rss_kb();
        }
    }
    let rss_at_end = get_user.peak_rss_kb();

    let options: PgConnectOptions = bench.database.url.parse().expect("the database's URL");
    let mut direct = options.connect().await.expect("connect");
    // Without a statement cache, as the functions connect: a statement is never named.
    let mut uncached = options
        .statement_cache_capacity(0)
        .connect()
        .await
        .expect("connect");
    let statement = "SELECT id, email, name, created_at, updated_at FROM users WHERE id = $1";
    // The statement prepared once and cached on the connection (SQLx's default; a warm-up
    // prepares it), and unnamed, parsed and planned in the flight that executes it (what the
    // functions send, so that a transaction-pooling proxy can share their sessions): the two
    // alternating, so that the machine's drift hits both alike.
    let execute = async |connection: &mut PgConnection| {
        let started = Instant::now();
        sqlx::query(statement)
            .bind(1_i64)
            .fetch_optional(connection)
            .await
            .expect("the statement");
        started.elapsed()
    };
    execute(&mut direct).await;
    execute(&mut uncached).await;
    let (mut raw, mut unnamed) = (Vec::new(), Vec::new());
    for _ in 0..config.warm_gets {
        raw.push(execute(&mut direct).await);
        unnamed.push(execute(&mut uncached).await);
    }

    let mut floor = Vec::with_capacity(config.warm_gets);
    for _ in 0..config.warm_gets {
        let started = Instant::now();
        hello.invoke(&event, limit).await.response();
        floor.push(started.elapsed());
    }

    let mut posts = Vec::with_capacity(config.warm_posts);
    for n in 0..=config.warm_posts {
        let event = bench.post(&format!("warm-{n}"));
        let started = Instant::now();
        create_user.invoke(&event, limit).await.response();
        // The first one prepares the statement.
        if n > 0 {
            posts.push(started.elapsed());
        }
    }

    let _ = writeln!(
        report,
        "## Warm\n\nEach row measured in this run, one after another; a function's time is the \
         invocation as the Runtime API sees it (event handed over to response posted), so the \
         hello-world row is the floor every function pays.\n\n\
         | what | n | p50 | p99 | p99.9 |\n|---|---|---|---|---|"
    );
    for (label, samples) in [
        ("`GET /users/{id}` (get-user)", &mut gets),
        (
            "the same statement, SQLx on one connection from the harness, prepared once",
            &mut raw,
        ),
        (
            "the same statement, unnamed: parsed in its flight, as the functions send it",
            &mut unnamed,
        ),
        ("hello-world `lambda_http` (the runtime floor)", &mut floor),
        ("`POST /users` (create-user)", &mut posts),
    ] {
        let _ = writeln!(
            report,
            "| {label} | {} | {} | {} | {} |",
            samples.len(),
            micros(percentile(samples, 0.5)),
            micros(percentile(samples, 0.99)),
            micros(percentile(samples, 0.999)),
        );
    }
    let get_p50 = percentile(&mut gets, 0.5).as_secs_f64();
    let raw_p50 = percentile(&mut raw, 0.5).as_secs_f64();
    let unnamed_p50 = percentile(&mut unnamed, 0.5).as_secs_f64();
    let floor_p50 = percentile(&mut floor, 0.5).as_secs_f64();
    let _ = writeln!(
        report,
        "\nget-user p50 over the unnamed statement: {:.2}x; over the runtime floor plus the \
         unnamed statement: {:.2}x. Unnamed over prepared once, at p50: {:.2}x (the server \
         parses and plans the statement each time).\n\n## Memory\n\nget-user's peak RSS: {} kB \
         after {} warm requests, {} kB after {}.\n",
        get_p50 / unnamed_p50,
        get_p50 / (floor_p50 + unnamed_p50),
        unnamed_p50 / raw_p50,
        rss_at_checkpoint,
        config.rss_checkpoint,
        rss_at_end,
        config.warm_gets,
    );
}

/// The cost of traces: get-user without an OTLP endpoint (no OpenTelemetry layer at all) and
/// with one (a collector on loopback, each request's spans sent before its response), measured
/// in alternation so that the machine's drift hits both alike.
async fn traces(bench: &Setup, config: &Config, report: &mut String) {
    let collector = Collector::start().await;
    let endpoint = [("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint.as_str())];
    let off = bench.function("get-user", &bench.direct()).await;
    let on = bench
        .function_with("get-user", &bench.direct(), &endpoint)
        .await;
    let event = bench.get.event();
    let limit = Duration::from_secs(10);
    on.invoke(&event, limit).await.response();
    off.invoke(&event, limit).await.response();
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for _ in 0..config.warm_gets / 2 {
        for (function, samples) in [(&off, &mut without), (&on, &mut with)] {
            let started = Instant::now();
            function.invoke(&event, limit).await.response();
            samples.push(started.elapsed());
        }
    }
    let _ = writeln!(
        report,
        "## Traces

get-user, warm, the two alternating request by request: without an OTLP \
         endpoint, and sending each request's spans to a collector on loopback before \
         answering.\n\n| traces | n | p50 | p99 |\n|---|---|---|---|"
    );
    for (label, samples) in [("off (no endpoint)", &mut without), ("on", &mut with)] {
        let _ = writeln!(
            report,
            "| {label} | {} | {} | {} |",
            samples.len(),
            micros(percentile(samples, 0.5)),
            micros(percentile(samples, 0.99)),
        );
    }
    let _ = writeln!(
        report,
        "\nOn over off at p50: {:.2}x; {} spans received.\n",
        percentile(&mut with, 0.5).as_secs_f64() / percentile(&mut without, 0.5).as_secs_f64(),
        collector.spans().len(),
    );
}

/// Messages each function sends per warm request, counted at a proxy in front of Postgres,
/// and in front of PgBouncer in transaction pooling (RDS Proxy's stand-in).
async fn round_trips(bench: &Setup, report: &mut String) {
    const N: usize = 100;
    let bouncer =
        PgBouncer::start_pooling(bench.database.address, Pooling::Transaction { size: 4 }).await;
    let mut rows = Vec::new();
    for upstream in [
        bench.database.address,
        SocketAddr::from(([127, 0, 0, 1], bouncer.port)),
    ] {
        let postgres = Proxy::start(upstream).await;
        let endpoints = Endpoints {
            postgres_port: Some(postgres.port),
            ..bench.direct()
        };
        let get_user = bench.function("get-user", &endpoints).await;
        let create_user = bench.function("create-user", &endpoints).await;
        let limit = Duration::from_secs(10);
        let get = bench.get.event();
        let post = |n: usize| bench.post(&format!("trip-{}-{n}", postgres.port));
        get_user.invoke(&get, limit).await.response();
        create_user.invoke(&post(0), limit).await.response();
        let before = postgres.sent();
        for _ in 0..N {
            get_user.invoke(&get, limit).await.response();
        }
        let gets = postgres.sent() - before;
        let before = postgres.sent();
        for n in 1..=N {
            create_user.invoke(&post(n), limit).await.response();
        }
        rows.push((gets, postgres.sent() - before));
    }
    let per_request = |messages: u64| messages as f64 / N as f64;
    let _ = writeln!(
        report,
        "## Database round trips per warm request\n\nCounted at a proxy in front of Postgres \
         (messages the function sent, each awaited), over {N} requests in a burst; directly, \
         and through PgBouncer in transaction pooling.\n\n\
         | route | directly | through the pooler |\n|---|---|---|\n\
         | `GET /users/{{id}}` | {:.2} | {:.2} |\n| `POST /users` | {:.2} | {:.2} |\n",
        per_request(rows[0].0),
        per_request(rows[1].0),
        per_request(rows[0].1),
        per_request(rows[1].1),
    );
}

/// The functions of the fleet, and each one's request for the `n`th burst.
const FLEET: [&str; 4] = ["get-user", "list-users", "create-user", "health"];
/// The database's connection limit in the fleet section.
const FLEET_DATABASE_LIMIT: u16 = 25;
/// PgBouncer's server connections in the fleet section.
const FLEET_POOL: u16 = 8;

/// Many environments on a database that allows [`FLEET_DATABASE_LIMIT`] connections: each
/// environment connecting directly (more environments than the database allows), then through
/// PgBouncer in transaction pooling with [`FLEET_POOL`] server connections. Every environment
/// is sent a request at once, [`Config::fleet_bursts`] times.
async fn fleet(bench: &Setup, config: &Config, report: &mut String) {
    let database = &bench.database;
    let limit = async |connections: i32| {
        database
            .alter(&format!("CONNECTION LIMIT {connections}"))
            .await;
    };
    limit(i32::from(FLEET_DATABASE_LIMIT)).await;
    let bouncer =
        PgBouncer::start_pooling(database.address, Pooling::Transaction { size: FLEET_POOL }).await;
    let environments = config.fleet_per_function * FLEET.len();
    let _ = writeln!(
        report,
        "## Fleet\n\n{environments} environments ({} of each of {}), real release processes under \
         the harness's Runtime API, on a database limited to {FLEET_DATABASE_LIMIT} connections; \
         {} bursts of one request to every environment at once. Directly, each environment \
         holds a connection; through PgBouncer in transaction pooling, they share \
         {FLEET_POOL}. Latency is the invocation's, seen from the Runtime API; server \
         connections are the database's sessions, sampled every 5 ms.\n\n\
         | topology | environments | burst | requests | succeeded | p50 | p99 | \
         peak server connections |\n\
         |---|---|---|---|---|---|---|---|",
        config.fleet_per_function,
        FLEET.map(|name| format!("`{name}`")).join(", "),
        config.fleet_bursts,
    );
    for (topology, (label, postgres_port)) in [
        ("directly, over the limit", None),
        ("through the pooler", Some(bouncer.port)),
    ]
    .into_iter()
    .enumerate()
    {
        let endpoints = Endpoints {
            postgres_port,
            ..bench.direct()
        };
        // The sessions of the sections before are gone: what the watcher sees is this fleet's.
        database.wait_until_unused().await;
        let mut fleet = Vec::new();
        for _ in 0..config.fleet_per_function {
            for name in FLEET {
                fleet.push((name, bench.function(name, &endpoints).await));
            }
        }
        for (_, function) in &fleet {
            function.initialized().await;
        }
        let sessions = database.watch_sessions().await;
        let (mut latencies, mut succeeded) = (Vec::new(), 0);
        for burst in 0..config.fleet_bursts {
            let requests = fleet.iter().enumerate().map(|(n, (name, function))| {
                let event = match *name {
                    "get-user" => bench.get.event(),
                    "list-users" => TestRequest::get("/users?limit=10")
                        .authorization(Some(&bench.bearer))
                        .event(),
                    "create-user" => bench.post(&format!("fleet-{topology}-{burst}-{n}")),
                    _ => TestRequest::get("/health").event(),
                };
                async move {
                    let started = Instant::now();
                    let response = function.invoke(&event, Duration::from_secs(10)).await;
                    (
                        started.elapsed(),
                        response.response()["statusCode"].as_u64(),
                    )
                }
            });
            for (took, status) in join_all(requests).await {
                latencies.push(took);
                succeeded += usize::from(matches!(status, Some(200 | 201)));
            }
        }
        let peak = sessions.peak().await;
        let requests = latencies.len();
        let _ = writeln!(
            report,
            "| {label} | {environments} | {environments} | {requests} | {:.1}% | {} | {} | \
             {peak} |",
            100.0 * succeeded as f64 / requests as f64,
            ms(percentile(&mut latencies, 0.5)),
            ms(percentile(&mut latencies, 0.99)),
        );
    }
    limit(-1).await;
    let _ = writeln!(report);
}

/// What a default deploy absorbs: the gateway template.yaml declares, with its throttles
/// running in real time, in front of the release binaries, one environment per concurrent
/// invocation up to the template's reserved concurrency; behind the proxy (PgBouncer in
/// transaction pooling, [`FLEET_POOL`] server connections) and directly. Two bursts of
/// [`Config::gateway_burst`] `GET /users/{id}` at once: the first meets no environment (cold
/// starts), the second the ones the first left.
async fn gateway_bursts(config: &Config, report: &mut String) {
    let _ = writeln!(
        report,
        "## Bursts through the gateway

A default deploy, read from template.yaml by the \
         gateway stand-in (e2e/src/gateway.rs: routes, JWT authorizer, throttles), in front of \
         the release binaries, one environment per concurrent invocation up to each function's \
         reserved concurrency: behind the proxy (`CreateDatabase=true`, PgBouncer in \
         transaction pooling with {FLEET_POOL} server connections standing in for RDS Proxy) \
         and directly against the database. Two bursts of {} `GET /users/{{id}}` \
         at once each, the first cold, the second on the environments the first left; latency \
         is the client's.\n\n\
         | topology | burst | 200 | 429 | 5xx | p50 | p99 | environments | peak server \
         connections |\n|---|---|---|---|---|---|---|---|---|",
        config.gateway_burst
    );
    for (n, (label, parameters, pooling)) in [
        (
            "behind the proxy",
            &[("CreateDatabase", "true")][..],
            Some(Pooling::Transaction { size: FLEET_POOL }),
        ),
        ("directly", &[][..], None),
    ]
    .into_iter()
    .enumerate()
    {
        let database =
            TestDatabase::create_on(&config.admin_url, &format!("bench_burst_{n}")).await;
        database.insert_users("burst", "Burst", 100).await;
        let deployment =
            Deployment::start_on(database, parameters, pooling, Some(&config.bin_dir), &[]).await;
        let client = reqwest::Client::new();
        let token = rsa_token(tokens::FULL_SCOPE, json!({}));
        let sessions = deployment.database.watch_sessions().await;
        for burst in ["cold", "warm"] {
            let requests = (1..=config.gateway_burst).map(|id| {
                let request = client
                    .get(format!("{}/users/{id}", deployment.gateway.url))
                    .bearer_auth(&token)
                    .timeout(Duration::from_secs(60));
                async move {
                    let started = Instant::now();
                    let status = request.send().await.map(|r| r.status().as_u16());
                    (started.elapsed(), status.unwrap_or(0))
                }
            });
            let answers = join_all(requests).await;
            let count = |wanted: fn(u16) -> bool| {
                answers.iter().filter(|(_, status)| wanted(*status)).count()
            };
            let mut latencies: Vec<Duration> = answers.iter().map(|(took, _)| *took).collect();
            let _ = writeln!(
                report,
                "| {label} | {} ({burst}) | {} | {} | {} | {} | {} | {} | |",
                config.gateway_burst,
                count(|status| status == 200),
                count(|status| status == 429),
                count(|status| status >= 500 || status == 0),
                ms(percentile(&mut latencies, 0.5)),
                ms(percentile(&mut latencies, 0.99)),
                deployment.environments.started_in_all(),
            );
        }
        let peak = sessions.peak().await;
        // The peak belongs to the topology's two rows: written into the last one.
        if report.ends_with(" | |\n") {
            report.truncate(report.len() - 2);
            let _ = writeln!(report, "{peak} |");
        }
    }
    let _ = writeln!(report);
}

/// One environment taking up to eight invocations at once (`AWS_LAMBDA_MAX_CONCURRENCY`, Lambda
/// Managed Instances), the database 10 ms away each way: requests one at a time, then eight at
/// a time, in the same process.
async fn managed_instances(bench: &Setup, config: &Config, report: &mut String) {
    const AT_ONCE: usize = 8;
    let postgres = Proxy::start(bench.database.address).await;
    postgres.delay(Duration::from_millis(10));
    let endpoints = Endpoints {
        postgres_port: Some(postgres.port),
        ..bench.direct()
    };
    let concurrency = AT_ONCE.to_string();
    let function = bench
        .function_with(
            "get-user",
            &endpoints,
            &[("AWS_LAMBDA_MAX_CONCURRENCY", &concurrency)],
        )
        .await;
    function.initialized().await;
    let event = bench.get.event();
    let requests = config.concurrent_requests;
    let mut rows = Vec::new();
    for at_once in [1, AT_ONCE, AT_ONCE] {
        let started = Instant::now();
        for _ in 0..requests / at_once {
            let batch = (0..at_once).map(|_| function.invoke(&event, Duration::from_secs(10)));
            for outcome in join_all(batch).await {
                assert_eq!(outcome.response()["statusCode"], 200);
            }
        }
        rows.push((at_once, started.elapsed(), postgres.accepted()));
    }
    // The first batch of eight opened the connections it needed: the third row is the warm one.
    let (_, one, _) = rows[0];
    let (_, eight, connections) = rows[2];
    let rate = |took: Duration| requests as f64 / took.as_secs_f64();
    let _ = writeln!(
        report,
        "## Lambda Managed Instances\n\nOne get-user process with \
         `AWS_LAMBDA_MAX_CONCURRENCY={AT_ONCE}`, Postgres 10 ms away each way (a 20 ms round \
         trip), \
         {requests} requests one at a time, then {AT_ONCE} at a time (once warm), in the same \
         process.\n\n| invocations at once | requests per second | connections opened |\n\
         |---|---|---|\n| 1 | {:.0} | {} |\n| {AT_ONCE} | {:.0} | {connections} |\n\n\
         {AT_ONCE} at a time over one at a time: {:.1}x.\n",
        rate(one),
        rows[0].2,
        rate(eight),
        one.as_secs_f64() / eight.as_secs_f64(),
    );
}

/// Reads on a read replica: a streaming standby of a cluster of its own, each server as far
/// as Postgres is in AWS ([`DISTANCES`]). Per warm `GET /users/{id}`: the statements each
/// server ran (`pg_stat_statements`), the messages the function sent each (a round trip
/// apiece), and the server's time per read, planning and execution (the CPU that bounds a
/// database); then a burst from several environments at once, with the reader and without.
async fn readers(bench: &Setup, config: &Config, report: &mut String) {
    const ENVIRONMENTS: usize = 4;
    const USERS: usize = 100;
    let cluster = ReplicatedCluster::with_statement_statistics();
    let database = cluster.database("bench-reads").await;
    database.insert_users("reads", "Reader", USERS as i32).await;
    sqlx::query("CREATE EXTENSION pg_stat_statements")
        .execute(&mut database.connect().await)
        .await
        .expect("pg_stat_statements");
    cluster.replayed().await;
    let on_standby = with_port(&database.url, cluster.standby_port);
    let [writer, reader] = [database.address, cluster.standby_address()].map(Proxy::start);
    let (writer, reader) = (writer.await, reader.await);
    let postgres = DISTANCES[2].1;
    writer.delay(postgres);
    reader.delay(postgres);
    let limit = Duration::from_secs(10);
    let event = |n: usize| {
        TestRequest::get(format!("/users/{}", n % USERS + 1))
            .authorization(Some(&bench.bearer))
            .event()
    };
    let gets = config.warm_gets;
    let mut rows = Vec::new();
    for (with_reader, named) in [(false, false), (false, true), (true, false), (true, true)] {
        let url = writer.url_for(&database.url);
        let reader_port = reader.port.to_string();
        let named_statements = if named { "true" } else { "false" };
        let mut extra = vec![
            ("DATABASE_URL", url.as_str()),
            ("DB_IDLE_CHECK_AFTER_MS", "600000"),
            ("DB_NAMED_STATEMENTS", named_statements),
            ("DB_READER_NAMED_STATEMENTS", named_statements),
        ];
        if with_reader {
            extra.extend([
                ("DB_READER_HOST", "127.0.0.1"),
                ("DB_READER_PORT", reader_port.as_str()),
            ]);
        }
        let mut environments = Vec::new();
        for _ in 0..ENVIRONMENTS {
            let function = bench
                .function_with("get-user", &bench.direct(), &extra)
                .await;
            function.initialized().await;
            function.invoke(&event(0), limit).await.response();
            environments.push(function);
        }
        for url in [&database.url, &on_standby] {
            reset_statements(url).await;
        }
        let (to_writer, to_reader) = (writer.sent(), reader.sent());
        let cpu = [
            backends_cpu(&database.url).await,
            backends_cpu(&on_standby).await,
        ];
        for n in 0..gets {
            let response = environments[0].invoke(&event(n), limit).await.response();
            assert_eq!(response["statusCode"], 200, "{response}");
        }
        let (to_writer, to_reader) = (writer.sent() - to_writer, reader.sent() - to_reader);
        let cpu_ns =
            cpu_since(&database.url, &cpu[0]).await + cpu_since(&on_standby, &cpu[1]).await;
        let (on_writer, writer_ms) = statements_by_id(&database.url).await;
        let (on_reader, reader_ms) = statements_by_id(&on_standby).await;
        let started = Instant::now();
        join_all(environments.iter().map(|function| async {
            for n in 0..gets {
                function.invoke(&event(n), limit).await.response();
            }
        }))
        .await;
        let rate = (ENVIRONMENTS * gets) as f64 / started.elapsed().as_secs_f64();
        let server_ms = (writer_ms + reader_ms) / (on_writer + on_reader).max(1) as f64;
        rows.push(format!(
            "| {} | {on_writer} | {on_reader} | {:.2} | {:.0} µs | {:.0} µs | {rate:.0} |",
            match (with_reader, named) {
                (false, false) => "the writer",
                (false, true) => "the writer, named statements",
                (true, false) => "the reader",
                (true, true) => "the reader, named statements",
            },
            (to_writer + to_reader) as f64 / gets as f64,
            server_ms * 1000.0,
            cpu_ns as f64 / gets as f64 / 1000.0,
        ));
    }
    let _ = writeln!(
        report,
        "## Reads on a replica\n\n`GET /users/{{id}}` from get-user, {gets} warm reads one at a \
         time, then {ENVIRONMENTS} environments reading {gets} each at once; the writer and a \
         streaming standby each {} ms away each way. Statements and server time from \
         `pg_stat_statements` on each server (planning and execution of the statement that \
         reads a user by id), round trips counted at a proxy in front of each, and the CPU the \
         server processes serving the function's sessions ran per read (`/proc/<pid>/schedstat`: \
         parsing and analysis too, and the protocol). Statements are unnamed, each parsed in the \
         flight that executes it, but on the lines that say otherwise (`DB_NAMED_STATEMENTS=true`, \
         `DB_READER_NAMED_STATEMENTS=true`: each prepared once per connection, then executed by \
         name).\n\n\
         | reads from | statements on the writer | statements on the reader | round trips per \
         read | server time per read | server CPU per read | burst, requests/s |\n\
         |---|---|---|---|---|---|---|\n{}\n",
        postgres.as_millis(),
        rows.join("\n"),
    );
}

/// The CPU time, in nanoseconds, each process serving a function's session (its application
/// name ends with its binary's name, the reader's with " (reader)") on the server at `url` has
/// run so far, by process id.
async fn backends_cpu(url: &str) -> Vec<(i32, u64)> {
    let mut connection = PgConnection::connect(url).await.expect("connect");
    let pids: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity \
         WHERE application_name LIKE 'get-user%' AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut connection)
    .await
    .expect("pg_stat_activity");
    pids.into_iter()
        .filter_map(|pid| {
            // The first field: time spent on the CPU, in nanoseconds.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
            Some((pid, stat.split_whitespace().next()?.parse().ok()?))
        })
        .collect()
}

/// The CPU time, in nanoseconds, the processes in `before` have run since, on the server at
/// `url`.
async fn cpu_since(url: &str, before: &[(i32, u64)]) -> u64 {
    let after = backends_cpu(url).await;
    before
        .iter()
        .filter_map(|(pid, then)| {
            let (_, now) = after.iter().find(|(other, _)| other == pid)?;
            Some(now.saturating_sub(*then))
        })
        .sum()
}

/// Starts `pg_stat_statements`' counts over on the server at `url`.
async fn reset_statements(url: &str) {
    sqlx::query("SELECT pg_stat_statements_reset()")
        .execute(&mut PgConnection::connect(url).await.expect("connect"))
        .await
        .expect("reset pg_stat_statements");
}

/// The calls of the statements that read a user by id on the server at `url` (the writer's,
/// and the replica's with its lag), and their planning and execution time in milliseconds.
async fn statements_by_id(url: &str) -> (i64, f64) {
    let mut connection = PgConnection::connect(url).await.expect("connect");
    sqlx::query_as(
        "SELECT coalesce(sum(calls), 0)::bigint, \
                coalesce(sum(total_plan_time + total_exec_time), 0)::float8 \
         FROM pg_stat_statements \
         WHERE query ~ 'FROM\\s+users\\s+WHERE\\s+id\\s*=\\s*\\$1'",
    )
    .fetch_one(&mut connection)
    .await
    .expect("pg_stat_statements")
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    let rank = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1]
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

fn micros(duration: Duration) -> String {
    format!("{} µs", duration.as_micros())
}
