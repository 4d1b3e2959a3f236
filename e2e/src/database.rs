//! Databases on the test cluster (`E2E_DATABASE_URL`, which `make test` starts and sets): a
//! fresh one per test, and the roles a rotation test needs.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering},
        Arc,
    },
    time::Duration,
};

use sqlx::{postgres::PgConnectOptions, ConnectOptions, Connection, PgConnection};

/// The admin URL of the cluster `make test` started.
fn test_cluster() -> String {
    std::env::var("E2E_DATABASE_URL")
        .expect("E2E_DATABASE_URL: run the end-to-end tests through `make test`")
}

/// A fresh, migrated database on the test cluster, reached as its admin.
pub struct TestDatabase {
    /// Admin URL of this database.
    pub url: String,
    pub name: String,
    /// Where the cluster listens.
    pub address: SocketAddr,
}

impl TestDatabase {
    /// Creates `e2e_<name>_<pid>_<n>` on the test cluster and migrates it.
    pub async fn create(name: &str) -> Self {
        Self::create_on(&test_cluster(), name).await
    }

    /// The same on the cluster whose admin URL is `admin_url`.
    pub async fn create_on(admin_url: &str, name: &str) -> Self {
        let database = Self::create_empty_on(admin_url, name).await;
        shared::db::MIGRATOR
            .run(&mut database.connect().await)
            .await
            .expect("migrate the test database");
        database
    }

    /// Creates `e2e_<name>_<pid>_<n>` on the test cluster, without any schema.
    pub async fn create_empty(name: &str) -> Self {
        Self::create_empty_on(&test_cluster(), name).await
    }

    async fn create_empty_on(admin_url: &str, name: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let admin: PgConnectOptions = admin_url.parse().expect("a Postgres admin URL");
        let database = format!(
            "e2e_{}_{}_{}",
            name.replace('-', "_"),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut connection = admin.connect().await.expect("connect to the test cluster");
        sqlx::query(&format!(r#"CREATE DATABASE "{database}""#))
            .execute(&mut connection)
            .await
            .expect("create the test database");
        let mut url = reqwest::Url::parse(admin_url).expect("the admin URL is a URL");
        url.set_path(&format!("/{database}"));
        let address = format!("{}:{}", admin.get_host(), admin.get_port())
            .parse()
            .expect("the test cluster listens on an IP address");
        Self {
            url: url.to_string(),
            name: database,
            address,
        }
    }

    /// The secret for `username` on this database, as RDS and its rotation write it, pointing
    /// at `port` on the cluster's host (the cluster's own, or a proxy's in front of it).
    pub fn rds_secret(&self, port: u16, username: &str, password: &str) -> String {
        serde_json::json!({
            "engine": "postgres",
            "host": self.address.ip().to_string(),
            // A string, as some rotation templates write it.
            "port": port.to_string(),
            "username": username,
            "password": password,
            "dbname": self.name,
            "dbInstanceIdentifier": "users-api-test",
        })
        .to_string()
    }

    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .expect("connect to the test database")
    }

    /// `ALTER DATABASE <this one> <change>`, e.g. `SET log_statement = 'all'`: sessions opened
    /// after it see the change.
    pub async fn alter(&self, change: &str) {
        let statement = format!(r#"ALTER DATABASE "{}" {change}"#, self.name);
        sqlx::query(&statement)
            .execute(&mut self.connect().await)
            .await
            .unwrap_or_else(|err| panic!("{statement}: {err}"));
    }

    /// A login role with the grants the API needs on this database. Roles belong to the whole
    /// cluster, so the name gets this database's unique suffix; returns the role's name.
    /// Users `<prefix>1@example.com` to `<prefix><count>@example.com`, named `name`: ids 1 to
    /// `count` in a new database.
    pub async fn insert_users(&self, prefix: &str, name: &str, count: i32) {
        sqlx::query(
            "INSERT INTO users (email, name) \
             SELECT $1 || n || '@example.com', $2 FROM generate_series(1, $3) AS n",
        )
        .bind(prefix)
        .bind(name)
        .bind(count)
        .execute(&mut self.connect().await)
        .await
        .expect("insert the users");
    }

    pub async fn create_app_role(&self, role: &str, password: &str) -> String {
        let role = format!("{role}_{}", self.name.trim_start_matches("e2e_"));
        let mut connection = self.connect().await;
        for statement in [
            format!(r#"CREATE ROLE "{role}" LOGIN PASSWORD '{password}'"#),
            format!(r#"GRANT CONNECT ON DATABASE "{}" TO "{role}""#, self.name),
            format!(
                r#"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}""#
            ),
            format!(r#"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO "{role}""#),
        ] {
            sqlx::query(&statement)
                .execute(&mut connection)
                .await
                .unwrap_or_else(|err| panic!("{statement}: {err}"));
        }
        role
    }

    /// Ends every session of `role`, as a rotation's clean-up or a failover would.
    pub async fn terminate_sessions_of(&self, role: &str) {
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1")
            .bind(role)
            .execute(&mut self.connect().await)
            .await
            .expect("terminate the sessions");
    }

    /// Ends the sessions a function opened on this database (its `application_name` is the
    /// function's name): how a failover, a rotation's clean-up or an idle timeout on the server
    /// ends a frozen environment's connection. Returns how many there were.
    pub async fn terminate_sessions_of_function(&self, function: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = $1 AND application_name = $2",
        )
        .bind(&self.name)
        .bind(function)
        .fetch_one(&mut self.connect().await)
        .await
        .expect("terminate the sessions")
    }

    /// The roles of the API's open sessions on this database.
    pub async fn session_roles(&self) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT DISTINCT usename::text FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid() AND application_name <> ''
             ORDER BY 1",
        )
        .bind(&self.name)
        .fetch_all(&mut self.connect().await)
        .await
        .expect("list the sessions")
    }

    /// Waits (up to 10 s) until no session but the caller's is open on this database: the
    /// server has noticed that the clients of a test's processes, killed, are gone.
    pub async fn wait_until_unused(&self) {
        let mut session = self.connect().await;
        for _ in 0..1000 {
            let open: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid() \
                   AND backend_type = 'client backend'",
            )
            .bind(&self.name)
            .fetch_one(&mut session)
            .await
            .expect("count the sessions");
            if open == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let open: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT usename::text, application_name, coalesce(state, '') FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
        )
        .bind(&self.name)
        .fetch_all(&mut session)
        .await
        .expect("list the sessions");
        panic!("sessions still open on {} after 10 s: {open:?}", self.name);
    }

    /// Starts counting this database's sessions (client backends, whoever they are), every few
    /// milliseconds from a session of its own (not counted), until [`SessionWatch::peak`].
    pub async fn watch_sessions(&self) -> SessionWatch {
        let mut session = self.connect().await;
        let name = self.name.clone();
        let peak = Arc::new(AtomicI64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopped) = (Arc::clone(&peak), Arc::clone(&stop));
        let task = tokio::spawn(async move {
            while !stopped.load(Ordering::SeqCst) {
                let open: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = $1 AND pid <> pg_backend_pid() \
                       AND backend_type = 'client backend'",
                )
                .bind(&name)
                .fetch_one(&mut session)
                .await
                .expect("count the sessions");
                seen.fetch_max(open, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        SessionWatch { peak, stop, task }
    }
}

/// The most sessions a database had open at once, while watched ([`TestDatabase::watch_sessions`]).
pub struct SessionWatch {
    peak: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl SessionWatch {
    /// Stops watching and returns the most sessions seen at once.
    pub async fn peak(self) -> i64 {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("the watcher");
        self.peak.load(Ordering::SeqCst)
    }
}
