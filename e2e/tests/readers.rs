//! Reads from a read replica (Aurora's readers, RDS Proxy's read-only endpoint): a streaming
//! standby of a cluster of the test's own stands in for it (`e2e/src/replica.rs`). The reads
//! that guard no write go to it; a client that presents the version it wrote never reads an
//! older one; a replica that is down leaves the reads to the writer, in the same request.

use std::net::{Ipv4Addr, SocketAddr};

use e2e::{
    moto::Moto,
    pgbouncer::{PgBouncer, Pooling},
    proxy::Proxy,
    replica::ReplicatedCluster,
    runtime::Function,
    TestDatabase,
};
use serde_json::json;
use shared::routes::ROUTES;
use test_support::{
    samples::{self, Sample},
    tokens, Reply, TestRequest,
};

/// The functions' settings to read from a replica at `port` on loopback; no liveness ping
/// before a read (a ping would be one more message on the connection that is counted), and a
/// reader timeout and lag bound this machine's load cannot reach (these tests are about where
/// reads go; a paused replica's lag grows by the second).
fn reader_at(port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("DB_READER_HOST", "127.0.0.1".to_owned()),
        ("DB_READER_PORT", port.to_string()),
        ("DB_IDLE_CHECK_AFTER_MS", "60000".to_owned()),
        ("DB_READER_TIMEOUT_MS", "8000".to_owned()),
        ("DB_READER_MAX_LAG_MS", "600000".to_owned()),
    ]
}

/// A rest longer than the test: a reader that failed, or was too far behind, is not tried
/// again in it.
fn resting(env: &mut Vec<(&'static str, String)>) {
    env.push(("DB_BACKOFF_MAX_MS", "600000".to_owned()));
    env.push(("DB_BACKOFF_MIN_MS", "600000".to_owned()));
}

/// `GET path`, presenting the version `seen` (an `ETag`) in `If-None-Match` if there is one.
fn read(path: &str, seen: Option<&str>) -> TestRequest {
    let request = TestRequest::get(path);
    match seen {
        Some(tag) => request.header("if-none-match", tag),
        None => request,
    }
}

/// Both reads see the writer's rename ([`renamed`]), which the replica lacks: the writer
/// answered them.
async fn the_writer_answers(get_user: &Function, list_users: &Function) {
    let reply = get_user.request(&TestRequest::get("/users/1")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["name"], "Renamed");
    let reply = list_users
        .request(&TestRequest::get("/users?limit=5"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["items"][0]["name"], "Renamed");
}

async fn api(name: &str, writer_url: &str, env: &[(&'static str, String)]) -> Function {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let function = Function::start_api(name, writer_url, &env).await;
    function.initialized().await;
    function
}

/// Renames user 1 to "Renamed" through update-user, on the writer: the change each test
/// looks for on one server or the other.
async fn renamed(update_user: &Function) -> Reply {
    let reply = update_user
        .request(&TestRequest::patch("/users/1").json(&json!({"name": "Renamed"})))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply
}

async fn seeded(cluster: &ReplicatedCluster, name: &str) -> TestDatabase {
    let database = cluster.database(name).await;
    database.insert_users(name, "Reader", 8).await;
    cluster.replayed().await;
    database
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reads_go_to_the_replica_and_none_to_the_writer() {
    let cluster = ReplicatedCluster::start();
    let database = seeded(&cluster, "reads").await;
    let writer = Proxy::start(database.address).await;
    let reader = Proxy::start(cluster.standby_address()).await;
    let env = reader_at(reader.port);
    let get_user = api("get-user", &writer.url_for(&database.url), &env).await;
    let list_users = api("list-users", &writer.url_for(&database.url), &env).await;

    // Once each, uncounted: a connect that init's warm-up did not finish in time (a loaded
    // machine) would be counted otherwise.
    assert_eq!(
        get_user.request(&TestRequest::get("/users/1")).await.status,
        200
    );
    assert_eq!(
        list_users.request(&TestRequest::get("/users")).await.status,
        200
    );
    let (on_writer, on_reader) = (writer.sent(), reader.sent());
    for id in 1..=8 {
        let reply = get_user
            .request(&TestRequest::get(format!("/users/{id}")))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    for path in ["/users?limit=5", "/users?email=reads3%40example.com"] {
        let reply = list_users.request(&TestRequest::get(path)).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    }

    assert_eq!(writer.sent() - on_writer, 0, "statements on the writer");
    // One round trip each: the statement, parsed in the flight that executes it.
    assert_eq!(reader.sent() - on_reader, 10, "round trips on the reader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_replay_paused_a_client_that_presents_its_version_never_reads_an_older_one() {
    let cluster = ReplicatedCluster::start();
    let database = seeded(&cluster, "lagging").await;
    let env = reader_at(cluster.standby_port);
    let get_user = api("get-user", &database.url, &env).await;
    let update_user = api("update-user", &database.url, &env).await;
    let create_user = api("create-user", &database.url, &env).await;

    cluster.pause_replay().await;
    let patched = renamed(&update_user).await;
    assert_eq!(patched.header("etag"), Some("\"2\""));
    let created = create_user
        .request(
            &TestRequest::post("/users").json(&json!({"email": "new@example.com", "name": "New"})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let location = created.header("location").expect("a Location").to_owned();

    // Presenting what the writes returned: the writer answers what the replica lacks.
    let current = get_user.request(&read("/users/1", Some("\"2\""))).await;
    assert_eq!(
        (current.status, current.header("etag")),
        (304, Some("\"2\""))
    );
    let current = get_user
        .request(&read("/users/1", Some("\"1\", \"2\"")))
        .await;
    assert_eq!(
        (current.status, current.header("etag")),
        (304, Some("\"2\""))
    );
    let new = get_user.request(&read(&location, Some("\"1\""))).await;
    assert_eq!((new.status, new.header("etag")), (304, Some("\"1\"")));
    // Without it, the replica's data as of the pause: eventually consistent.
    let stale = get_user.request(&read("/users/1", None)).await;
    assert_eq!((stale.status, stale.header("etag")), (200, Some("\"1\"")));
    assert_eq!(stale.body["name"], "Reader");
    // A user the replica does not have: no lag to judge its answer by, the writer confirms.
    let new = get_user.request(&read(&location, None)).await;
    assert_eq!((new.status, new.header("etag")), (200, Some("\"1\"")));

    cluster.resume_replay().await;
    cluster.replayed().await;
    let caught_up = get_user.request(&read("/users/1", None)).await;
    assert_eq!(
        (caught_up.status, caught_up.header("etag")),
        (200, Some("\"2\""))
    );
    assert_eq!(caught_up.body["name"], "Renamed");
}

/// With its credentials in Secrets Manager, an environment reads the secret once at init, not
/// once for the writer and again for the reader; a rotation the reader meets first gives both
/// the new password with one more read, and the writer keeps its own host: the secret's, not
/// the reader's (here 127.0.0.2, where nothing listens on the writer's port).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_and_the_reader_share_one_read_of_their_secret() {
    let cluster = ReplicatedCluster::start();
    let database = seeded(&cluster, "secret").await;
    let role = database
        .create_app_role("replicated", "replicated-pw-1")
        .await;
    cluster.replayed().await;
    let writer = Proxy::start(database.address).await;
    let reader = Proxy::start_on(Ipv4Addr::new(127, 0, 0, 2), cluster.standby_address()).await;
    let moto = Moto::start().await;
    // The writer's host and port from the secret (no DB_HOST), as for an existing database.
    let secret = |password| database.rds_secret(writer.port, &role, password);
    moto.create_secret("db", &secret("replicated-pw-1")).await;
    let mut env = moto.database_env("db");
    env.push(("JWT_KEY".into(), tokens::TEST_KEY.into()));
    env.push(("JWT_AUDIENCE".into(), tokens::TEST_AUDIENCE.into()));
    env.extend(
        reader_at(reader.port)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v)),
    );
    env.retain(|(name, _)| name != "DB_READER_HOST");
    env.push(("DB_READER_HOST".into(), reader.ip.to_string()));
    let get_user = Function::start("get-user", &env).await;
    get_user.initialized().await;
    // Answered by the replica alone (the writer sees nothing), or by the writer alone.
    let on_reader = |reply: &Reply, sent: (u64, u64)| {
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(reader.sent() > sent.1, "the replica answered");
        assert_eq!(writer.sent(), sent.0, "the writer answered too");
    };
    let sent = || (writer.sent(), reader.sent());

    let before = sent();
    on_reader(&get_user.request(&read("/users/1", None)).await, before);
    assert_eq!(get_user.logs().matches("database secret read").count(), 1);

    // Rotated; the replica's connection cut first: the reader meets the new password first.
    sqlx::query(&format!(
        r#"ALTER ROLE "{role}" PASSWORD 'replicated-pw-2'"#
    ))
    .execute(&mut database.connect().await)
    .await
    .expect("rotate the password");
    cluster.replayed().await;
    moto.put_secret("db", &secret("replicated-pw-2")).await;
    reader.cut_connections().await;
    let before = sent();
    on_reader(&get_user.request(&read("/users/1", None)).await, before);
    // Then the writer's: it connects anew, to its own host, with what the reader read.
    writer.cut_connections().await;
    let on_writer = writer.sent();
    // A version newer than the replica's row: the writer answers.
    let reply = get_user.request(&read("/users/1", Some("\"2\""))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(writer.sent() > on_writer, "the writer answered");

    let logs = get_user.logs();
    assert_eq!(
        logs.matches("re-fetched the database secret").count(),
        1,
        "{logs}"
    );
    assert_eq!(logs.matches("database secret read").count(), 1);
    assert!(
        !logs.contains("reading from the writer"),
        "a read fell back:\n{logs}"
    );
    assert!(
        !logs.contains("replicated-pw"),
        "a password reached the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_replica_down_the_writer_answers_the_reads() {
    let cluster = ReplicatedCluster::start();
    let database = seeded(&cluster, "down").await;
    let env = reader_at(cluster.standby_port);
    let get_user = api("get-user", &database.url, &env).await;
    let list_users = api("list-users", &database.url, &env).await;
    let update_user = api("update-user", &database.url, &env).await;
    // A change only the writer has: the answers below can come from nowhere else.
    cluster.pause_replay().await;
    renamed(&update_user).await;
    let stale = get_user.request(&TestRequest::get("/users/1")).await;
    assert_eq!(stale.body["name"], "Reader", "the replica serves the reads");

    cluster.stop_standby();

    // The held connection is gone, then the reader rests: every read answered by the writer.
    for _ in 0..3 {
        the_writer_answers(&get_user, &list_users).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_further_behind_than_its_bound_leaves_the_reads_to_the_writer() {
    let cluster = ReplicatedCluster::start();
    let database = seeded(&cluster, "behind").await;
    let reader = Proxy::start(cluster.standby_address()).await;
    let mut env = reader_at(reader.port);
    env.push(("DB_READER_MAX_LAG_MS", "200".to_owned()));
    resting(&mut env);
    let get_user = api("get-user", &database.url, &env).await;
    let list_users = api("list-users", &database.url, &env).await;
    let update_user = api("update-user", &database.url, &env).await;

    let before = reader.sent();
    let reply = get_user.request(&TestRequest::get("/users/1")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reader.sent() > before, "the replica was read");

    // A change the replica has received and not applied, and more than the bound since the
    // last one it applied (before the pause) committed: it is behind by more than the bound.
    cluster.pause_replay().await;
    renamed(&update_user).await;
    cluster.received().await;
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;

    // Without a version to compare, the read still never sees data older than the bound.
    the_writer_answers(&get_user, &list_users).await;
    // And the replica rests: the next read does not try it.
    let before = reader.sent();
    let reply = get_user.request(&TestRequest::get("/users/2")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reader.sent(), before, "the resting reader was tried again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_from_the_writer_cannot_tell_its_lag_and_leaves_the_reads_to_it() {
    let cluster = ReplicatedCluster::start();
    let database = seeded(&cluster, "cut-off").await;
    // A bound no lag here reaches: only "cannot tell" sends the reads to the writer.
    let env = reader_at(cluster.standby_port);
    let get_user = api("get-user", &database.url, &env).await;
    let update_user = api("update-user", &database.url, &env).await;

    cluster.cut_off().await;
    renamed(&update_user).await;

    // The replica has replayed all it received, and will receive nothing more: its data may
    // be of any age, so the writer answers.
    let reply = get_user.request(&TestRequest::get("/users/1")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["name"], "Renamed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_gone_silent_costs_one_read_its_timeout_then_rests() {
    let cluster = ReplicatedCluster::start();
    let database = seeded(&cluster, "silent").await;
    let reader = Proxy::start(cluster.standby_address()).await;
    let mut env = reader_at(reader.port);
    resting(&mut env);
    env.push(("DB_READER_TIMEOUT_MS", "1000".to_owned()));
    let get_user = api("get-user", &database.url, &env).await;
    assert_eq!(
        get_user.request(&TestRequest::get("/users/1")).await.status,
        200
    );

    // Nothing forwarded either way, new connections included: no answer, no refusal.
    reader.black_hole_all();
    let first = get_user.request(&TestRequest::get("/users/2")).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let (sent, accepted) = (reader.sent(), reader.accepted());
    for id in 3..=8 {
        let reply = get_user
            .request(&TestRequest::get(format!("/users/{id}")))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    assert_eq!(
        (reader.sent(), reader.accepted()),
        (sent, accepted),
        "the resting reader was tried again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_transaction_pooler_in_front_of_each_server_every_route_is_served() {
    let cluster = ReplicatedCluster::start();
    let database = seeded(&cluster, "pooled").await;
    let standby = cluster.standby_address();
    let writer = PgBouncer::start_pooling(database.address, Pooling::Transaction { size: 1 }).await;
    let reader = PgBouncer::start_pooling(standby, Pooling::Transaction { size: 1 }).await;
    let counted = Proxy::start(SocketAddr::from(([127, 0, 0, 1], reader.port))).await;
    let env = reader_at(counted.port);

    // Two environments of every route's function, each server's pool one connection.
    let mut environments = Vec::new();
    for route in ROUTES {
        for _ in 0..2 {
            let function = api(route.function, &writer.url_for(&database.url), &env).await;
            environments.push((route.key, function));
        }
    }
    for (n, (route, function)) in environments.iter().enumerate() {
        let sample = Sample {
            n,
            user: 1,
            doomed: n as i64 % 7 + 2,
        };
        let (request, status) = samples::request(route, sample);
        let before = counted.sent();
        let reply = function.request(&request).await;
        assert_eq!(reply.status, status, "{route}: {}", reply.body);
        // The reads went through the reader's pooler, not around it to the writer.
        let read_on_replica = counted.sent() > before;
        let reads = ROUTES
            .iter()
            .any(|declared| declared.key == *route && declared.method() == "GET")
            && *route != "GET /health";
        assert_eq!(read_on_replica, reads, "{route}");
    }
}
