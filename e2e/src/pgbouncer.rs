//! PgBouncer in front of the test cluster: the local stand-in for RDS Proxy, started and
//! stopped per test like the cluster itself (Debian's `pgbouncer`, from `E2E_PGBOUNCER`, which
//! `make test` sets through `scripts/pgbouncer.sh`).
//!
//! Configured as strictly as RDS Proxy behaves where it matters here: no startup parameter it
//! does not know except `extra_float_digits` (`ignore_startup_parameters`, standard for
//! PgBouncer, and tolerated by RDS Proxy), so a client that sends `options` is refused as RDS
//! Proxy refuses it. Clients authenticate with SCRAM against the passwords the cluster has now
//! (`auth_query`), as RDS Proxy checks them against the secret: a rotated password is refused
//! until the client uses the new one.
//!
//! Two pooling modes ([`Pooling`]): transaction pooling, what RDS Proxy does for a session that
//! does not pin (each transaction on whichever server connection is free, a few shared by many
//! clients; Debian's PgBouncer 1.18 keeps no prepared statement for a client, so a client that
//! relies on one fails here where RDS Proxy would pin it), and session pooling, what RDS Proxy
//! does for a pinned session.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use sqlx::{postgres::PgConnectOptions, ConnectOptions, Executor};
use tokio::process::{Child, Command};

use crate::{free_port, workspace};

/// The cluster's admin, whom PgBouncer asks for the passwords and lets use its console.
const ADMIN: (&str, &str) = ("users_api", "users_api");

/// How PgBouncer lends its server connections to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// A server connection per client session, for the session's life.
    Session,
    /// A server connection per transaction, from a pool of at most `size` per database.
    Transaction { size: u16 },
}

pub struct PgBouncer {
    /// Where PgBouncer listens, on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    log_path: PathBuf,
    child: Child,
}

impl PgBouncer {
    /// Starts PgBouncer in session pooling for every database of the cluster at `upstream`, and
    /// waits until it accepts connections.
    pub async fn start(upstream: SocketAddr) -> Self {
        Self::start_pooling(upstream, Pooling::Session).await
    }

    /// The same with the given pooling.
    pub async fn start_pooling(upstream: SocketAddr, pooling: Pooling) -> Self {
        let pool = match pooling {
            Pooling::Session => "pool_mode = session\ndefault_pool_size = 20\n".to_owned(),
            // At most `size` server connections per database, whatever the number of clients
            // and users (the auth query's own connection included). A client waits for one
            // at most 5 s, then is disconnected: RDS Proxy's `ConnectionBorrowTimeout` in
            // template.yaml.
            Pooling::Transaction { size } => format!(
                "pool_mode = transaction\ndefault_pool_size = {size}\nmax_db_connections = {size}\n\
                 query_wait_timeout = 5\n"
            ),
        };
        let binary = std::env::var("E2E_PGBOUNCER")
            .expect("E2E_PGBOUNCER: run the end-to-end tests through `make test`");
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("users-api-pgbouncer-{port}"));
        std::fs::create_dir_all(&dir).expect("create PgBouncer's folder");
        let auth_file = dir.join("userlist.txt");
        std::fs::write(&auth_file, format!("\"{}\" \"{}\"\n", ADMIN.0, ADMIN.1))
            .expect("write the auth file");
        let config = dir.join("pgbouncer.ini");
        std::fs::write(
            &config,
            format!(
                "[databases]\n\
                 * = host={host} port={upstream_port}\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 {pool}\
                 ignore_startup_parameters = extra_float_digits\n\
                 auth_type = scram-sha-256\n\
                 auth_file = {auth_file}\n\
                 auth_user = {admin}\n\
                 admin_users = {admin}\n\
                 max_client_conn = 500\n\
                 server_login_retry = 1\n",
                host = upstream.ip(),
                upstream_port = upstream.port(),
                auth_file = auth_file.display(),
                admin = ADMIN.0,
            ),
        )
        .expect("write the configuration");
        let log_path = workspace()
            .join("target/e2e-logs")
            .join(format!("pgbouncer-{port}.log"));
        std::fs::create_dir_all(log_path.parent().expect("a folder")).expect("the log folder");
        let log = std::fs::File::create(&log_path).expect("create the log file");
        // PgBouncer refuses to run as root, as Postgres does: then as the cluster's owner. The
        // process itself, not through `runuser` (which would stay its parent, so that killing
        // it on drop would leave PgBouncer running).
        let mut command = Command::new(&binary);
        if let Some((uid, gid)) = running_as_root().then(postgres_ids).flatten() {
            command.uid(uid).gid(gid);
        }
        let child = command
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start pgbouncer");
        let bouncer = Self {
            port,
            dir,
            log_path,
            child,
        };
        bouncer.wait_until_accepting().await;
        bouncer
    }

    /// `url` (a database on the cluster behind it) with PgBouncer's port instead.
    pub fn url_for(&self, url: &str) -> String {
        crate::with_port(url, self.port)
    }

    /// Runs one command on PgBouncer's admin console (`PAUSE`, `DISABLE db`, `KILL db`, ...).
    pub async fn admin(&self, command: &str) {
        let mut console = self.console().connect().await.expect("the admin console");
        // The console speaks only the simple query protocol.
        console
            .execute(sqlx::raw_sql(command))
            .await
            .unwrap_or_else(|err| panic!("{command}: {err}"));
    }

    /// The client connections PgBouncer holds for `database` (`SHOW CLIENTS`).
    pub async fn clients(&self, database: &str) -> usize {
        use sqlx::Row;
        let mut console = self.console().connect().await.expect("the admin console");
        let rows = sqlx::raw_sql("SHOW CLIENTS")
            .fetch_all(&mut console)
            .await
            .expect("SHOW CLIENTS");
        rows.iter()
            .filter(|row| row.try_get::<String, _>("database").ok().as_deref() == Some(database))
            .count()
    }

    /// What PgBouncer logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn console(&self) -> PgConnectOptions {
        PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username(ADMIN.0)
            .password(ADMIN.1)
            .database("pgbouncer")
            // sqlx asks for this by default; the console knows nothing of it.
            .extra_float_digits(None)
    }

    async fn wait_until_accepting(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.console().connect().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "pgbouncer did not accept connections: {}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn running_as_root() -> bool {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() == 0 }
}

/// The user and group ids of `postgres`, the cluster's owner when the tests run as root
/// (`scripts/postgres.sh`).
fn postgres_ids() -> Option<(u32, u32)> {
    // SAFETY: getpwnam takes a NUL-terminated name and returns null or a pointer to a static
    // record, read at once, before any other call could overwrite it.
    unsafe {
        let entry = libc::getpwnam(c"postgres".as_ptr());
        entry.as_ref().map(|entry| (entry.pw_uid, entry.pw_gid))
    }
}
