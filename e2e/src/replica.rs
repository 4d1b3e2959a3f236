//! A read replica's stand-in: a cluster of its own and a streaming standby of it
//! (`scripts/postgres.sh standby`: `pg_basebackup`, then a hot standby following it with
//! `primary_conninfo`), whose replay a test can pause (the lag of a replica that falls behind)
//! and resume, or which it can stop (a replica down, or failing over).

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

use crate::{
    tls::{postgres_sh, started, tempdir},
    TestDatabase,
};

/// A primary and its standby, both stopped on drop.
pub struct ReplicatedCluster {
    /// The primary's admin URL, on 127.0.0.1.
    pub primary_url: String,
    /// The standby's admin URL.
    pub standby_url: String,
    /// Where the standby listens.
    pub standby_port: u16,
    primary: tempdir::Dir,
    standby: tempdir::Dir,
}

impl ReplicatedCluster {
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// Both servers with `pg_stat_statements` (planning timed too): what each one executed,
    /// and its CPU time, for `make bench`.
    pub fn with_statement_statistics() -> Self {
        Self::start_with(
            "-c shared_preload_libraries=pg_stat_statements \
             -c pg_stat_statements.track_planning=on",
        )
    }

    /// `options`: server settings for both (`-c name=value ...`).
    fn start_with(options: &str) -> Self {
        let primary = tempdir::Dir::new("users-api-primary");
        let primary_url = started(postgres_sh("start", primary.path()).env("PG_OPTIONS", options));
        let standby = tempdir::Dir::new("users-api-standby");
        let standby_url = started(
            postgres_sh("standby", standby.path())
                .arg(primary.path())
                .env("PG_OPTIONS", options),
        );
        let standby_port = reqwest::Url::parse(&standby_url)
            .ok()
            .and_then(|url| url.port())
            .expect("the standby's port");
        Self {
            primary_url,
            standby_url,
            standby_port,
            primary,
            standby,
        }
    }

    /// Where the standby listens, on loopback.
    pub fn standby_address(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.standby_port))
    }

    /// A migrated database on the primary, once the standby has it too.
    pub async fn database(&self, name: &str) -> TestDatabase {
        let database = TestDatabase::create_on(&self.primary_url, name).await;
        self.replayed().await;
        database
    }

    /// Waits until the standby has replayed everything the primary has written so far: up to
    /// where WAL is inserted, not where it is written (the test cluster commits with
    /// `synchronous_commit=off`, so a commit record may still sit in WAL buffers; waiting for
    /// the written position let a read find the row as it was before, under load).
    pub async fn replayed(&self) {
        self.caught_up("pg_last_wal_replay_lsn()", "replay").await;
    }

    /// Waits until the standby has received everything the primary has written so far, replayed
    /// or not (with replay paused, it then has WAL it has not applied).
    pub async fn received(&self) {
        self.caught_up("pg_last_wal_receive_lsn()", "receive").await;
    }

    async fn caught_up(&self, position: &str, what: &str) {
        let mut primary = connect(&self.primary_url).await;
        let written: String = sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
            .fetch_one(&mut primary)
            .await
            .expect("the primary's position");
        let failure = format!("the standby did not {what} {written}");
        let check = format!("SELECT {position} >= $1::pg_lsn");
        self.until(&check, Some(&written), &failure).await;
    }

    /// Waits until `check` (with `argument` as `$1`, if any) answers true on the standby: 30 s
    /// at most, then `failure`.
    async fn until(&self, check: &str, argument: Option<&str>, failure: &str) {
        let mut standby = connect(&self.standby_url).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let query = sqlx::query_scalar::<_, Option<bool>>(check);
            let query = match argument {
                Some(argument) => query.bind(argument),
                None => query,
            };
            let done = query
                .fetch_one(&mut standby)
                .await
                .unwrap_or_else(|err| panic!("{check}: {err}"));
            if done == Some(true) {
                return;
            }
            assert!(Instant::now() < deadline, "{failure}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops applying what the primary sends (it keeps receiving it): reads on the standby
    /// see the data as it was.
    pub async fn pause_replay(&self) {
        self.on_standby("SELECT pg_wal_replay_pause()").await;
        // A pause is a request, taken up before the next record: wait until it has been.
        let paused = "SELECT pg_get_wal_replay_pause_state() = 'paused'";
        self.until(paused, None, "the standby's replay did not pause")
            .await;
    }

    pub async fn resume_replay(&self) {
        self.on_standby("SELECT pg_wal_replay_resume()").await;
    }

    /// Cuts the standby off from the primary: it stops its WAL receiver and, with no
    /// `primary_conninfo`, starts none again. It goes on serving reads, of data that no longer
    /// moves.
    pub async fn cut_off(&self) {
        self.on_standby("ALTER SYSTEM SET primary_conninfo = ''")
            .await;
        self.on_standby("SELECT pg_reload_conf()").await;
        let stopped = "SELECT NOT EXISTS (SELECT FROM pg_stat_wal_receiver)";
        self.until(stopped, None, "the standby's WAL receiver did not stop")
            .await;
    }

    /// Stops the standby (fast shutdown): connects to it are refused from now on.
    pub fn stop_standby(&self) {
        let stopped = postgres_sh("stop", self.standby.path())
            .status()
            .expect("run scripts/postgres.sh");
        assert!(stopped.success(), "the standby did not stop");
    }

    async fn on_standby(&self, statement: &str) {
        sqlx::query(statement)
            .execute(&mut connect(&self.standby_url).await)
            .await
            .unwrap_or_else(|err| panic!("{statement}: {err}"));
    }
}

impl Drop for ReplicatedCluster {
    fn drop(&mut self) {
        let _ = postgres_sh("stop", self.standby.path()).output();
        let _ = postgres_sh("stop", self.primary.path()).output();
    }
}

async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url)
        .await
        .unwrap_or_else(|err| panic!("connect to {url}: {err}"))
}
