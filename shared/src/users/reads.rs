//! The reads that guard no write (`GET /users/{id}`, the list and its lookup by email), served
//! by a read replica when there is one, and by the writer when there is none, when the replica
//! cannot answer (down, failing over, too slow, too far behind: a warning and a metric, never an
//! error to the client), or when its answer is older than the version the client has seen.
//! Every read that guards a write (a precondition, an idempotency record) is made on the
//! writer, in the statement that writes.
//!
//! A read on the replica is one statement, one round trip: its rows, and how far behind the
//! writer the replica is (`replica_lag_ms()`, migrations/0009), read together. A read that
//! finds nothing there returns no row to carry the lag: the writer confirms it (so a user just
//! created is never missing, with or without a version to present).

use std::{
    future::Future,
    pin::Pin,
    sync::Mutex,
    time::{Duration, Instant},
};

use tracing::Instrument;

use super::{
    statements::{
        find_by_email_on_replica_row, find_on_replica_row, list_on_replica_rows, ReplicaRow,
    },
    StoreError,
};
use crate::{
    db::{self, Database},
    domain::{Email, User, UserId},
    sync,
    telemetry::metric,
};

/// A read replica, and how much a read may spend on it before the writer answers instead.
#[derive(Debug)]
pub struct Reader {
    db: Database,
    /// The most a read waits for the replica, connecting included (`DB_READER_TIMEOUT_MS`):
    /// a replica that cannot answer costs a request no more than this.
    timeout: Duration,
    /// The most the replica may be behind the writer for its answer to stand
    /// (`DB_READER_MAX_LAG_MS`): the staleness a read without a version to compare may see.
    max_lag: Duration,
    /// After a failure, reads skip the replica this long (`DB_BACKOFF_MAX_MS`), so that one
    /// that is down, too far behind, or has no instance to lend costs one request per
    /// interval, not each one.
    rest: Duration,
    resting_until: Mutex<Option<Instant>>,
}

impl Reader {
    pub fn new(db: Database, timeout: Duration, max_lag: Duration, rest: Duration) -> Self {
        Self {
            db,
            timeout,
            max_lag,
            rest,
            resting_until: Mutex::new(None),
        }
    }

    /// The users the replica found, or `None` when it found none (its lag is unknown then), or
    /// when it is resting, or fails, or takes longer than its timeout, or is further behind the
    /// writer than `max_lag` (or cannot tell): in these last cases it rests. Boxed: the
    /// statement's future, nested in a route's, is deep enough that checking it is `Send`
    /// overflowed the compiler's recursion limit.
    async fn attempt(&self, operation: &'static str, read: Read<'_>) -> Option<Vec<User>> {
        if self.resting() {
            return None;
        }
        let read = read.instrument(tracing::info_span!(
            "Read on the database reader",
            db.system.name = "postgresql",
            db.operation.name = operation
        ));
        let rows = match tokio::time::timeout(self.timeout, read).await {
            Ok(Ok(rows)) => rows,
            Ok(Err(err)) => {
                self.failed(format!("{:#}", anyhow::Error::new(err)));
                return None;
            }
            Err(_) => {
                self.failed(format!("no answer within {:?}", self.timeout));
                return None;
            }
        };
        let max_lag = i64::try_from(self.max_lag.as_millis()).unwrap_or(i64::MAX);
        match rows.first().map(|row| row.lag_ms) {
            None => {
                tracing::debug!("the reader found nothing; the writer confirms it");
                None
            }
            Some(Some(behind_ms)) if behind_ms <= max_lag => {
                Some(rows.into_iter().map(User::from).collect())
            }
            Some(behind_ms) => {
                self.behind(behind_ms);
                None
            }
        }
    }

    fn resting(&self) -> bool {
        let until = sync::lock(&self.resting_until);
        until.is_some_and(|until| Instant::now() < until)
    }

    /// The reader failed, or timed out: it rests, counted.
    fn failed(&self, error: String) {
        self.rest_counted();
        tracing::warn!(
            error,
            rest = ?self.rest,
            "the database reader did not answer; reading from the writer"
        );
    }

    /// The reader answered from too far behind the writer, or could not tell how far (`None`):
    /// it rests too, counted alike (a replica that lags tends to go on lagging, and each read
    /// it answers then costs a second one on the writer).
    fn behind(&self, behind_ms: Option<i64>) {
        self.rest_counted();
        tracing::warn!(
            behind_ms,
            max_lag = ?self.max_lag,
            rest = ?self.rest,
            "the database reader is too far behind the writer, or cannot tell; reading from the \
             writer"
        );
    }

    fn rest_counted(&self) {
        *sync::lock(&self.resting_until) = Some(Instant::now() + self.rest);
        metrics::counter!(metric::DATABASE_READER_FALLBACKS).increment(1);
    }
}

type Read<'a> = Pin<Box<dyn Future<Output = Result<Vec<ReplicaRow>, db::Error>> + Send + 'a>>;

/// Where the reads go: the reader if there is one, the writer otherwise.
#[derive(Debug, Clone, Copy)]
pub struct Reads<'a> {
    pub writer: &'a Database,
    pub reader: Option<&'a Reader>,
}

impl Reads<'_> {
    /// The user, never in a version older than `seen` (the newest the client presents, in
    /// `If-None-Match`): a replica that has not replayed it yet sends the read to the writer,
    /// as one that has no such user does. Without `seen`, what the replica has: at most
    /// `DB_READER_MAX_LAG_MS` behind.
    pub async fn find(self, id: UserId, seen: Option<i64>) -> Result<User, StoreError> {
        if let Some(reader) = self.reader {
            let read = reader
                .db
                .read(|connection| Box::pin(find_on_replica_row(connection, id)));
            let found = reader.attempt("Find a user by id", Box::pin(read)).await;
            match found.and_then(|users| users.into_iter().next()) {
                Some(user) if seen.is_none_or(|seen| user.version >= seen) => return Ok(user),
                Some(_) => tracing::debug!("the reader is behind what the client has seen"),
                None => {}
            }
        }
        super::find(self.writer, id).await
    }

    /// A page of the list, as [`super::list`] reads it.
    pub async fn list(self, after: Option<UserId>, limit: i64) -> Result<Vec<User>, StoreError> {
        if let Some(reader) = self.reader {
            let read = reader
                .db
                .read(|connection| Box::pin(list_on_replica_rows(connection, after, limit)));
            if let Some(users) = reader.attempt("List users", Box::pin(read)).await {
                return Ok(users);
            }
        }
        super::list(self.writer, after, limit).await
    }

    /// The user with this email address, as [`super::find_by_email`] reads it.
    pub async fn find_by_email(
        self,
        email: &Email,
        after: Option<UserId>,
    ) -> Result<Option<User>, StoreError> {
        if let Some(reader) = self.reader {
            let read = reader.db.read(|connection| {
                let email = email.clone();
                Box::pin(
                    async move { find_by_email_on_replica_row(connection, &email, after).await },
                )
            });
            let found = reader.attempt("Find a user by email", Box::pin(read)).await;
            if let Some(users) = found {
                return Ok(users.into_iter().next());
            }
        }
        super::find_by_email(self.writer, email, after).await
    }
}
