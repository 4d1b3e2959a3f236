//! The reads that guard no write (`GET /users/{id}`, the list), served by a read replica when
//! there is one, and by the writer when there is none, when the replica cannot answer (down,
//! failing over, too slow: a warning and a metric, never an error to the client), or when its
//! answer is older than the version the client has seen. Every read that guards a write (a
//! precondition, an idempotency record) is made on the writer, in the statement that writes.

use std::{
    future::Future,
    pin::Pin,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::{
    db::Database,
    domain::{Email, User, UserId},
    telemetry::metric,
};

use super::StoreError;

/// A read replica, and how much a read may spend on it before the writer answers instead.
#[derive(Debug)]
pub struct Reader {
    db: Database,
    /// The most a read waits for the replica, connecting included (`DB_READER_TIMEOUT_MS`):
    /// a replica that cannot answer costs a request no more than this.
    timeout: Duration,
    /// After a failure, reads skip the replica this long (`DB_BACKOFF_MAX_MS`), so that one
    /// that is down or has no instance to lend costs one request per interval, not each one.
    rest: Duration,
    resting_until: Mutex<Option<Instant>>,
}

impl Reader {
    pub fn new(db: Database, timeout: Duration, rest: Duration) -> Self {
        Self {
            db,
            timeout,
            rest,
            resting_until: Mutex::new(None),
        }
    }

    /// The replica's answer to `read` (not finding a user is one), or `None` when it is
    /// resting, or fails, or takes longer than its timeout: then it rests. Boxed: the
    /// statement's future, nested in a route's, is deep enough that checking it is `Send`
    /// overflowed the compiler's recursion limit.
    async fn attempt<T>(&self, read: Read<'_, T>) -> Option<Result<T, StoreError>> {
        if self.resting() {
            return None;
        }
        match tokio::time::timeout(self.timeout, read).await {
            Ok(Err(err)) if !matches!(err, StoreError::NotFound(_)) => {
                self.failed(format!("{:#}", anyhow::Error::new(err)));
                None
            }
            Ok(answer) => Some(answer),
            Err(_) => {
                self.failed(format!("no answer within {:?}", self.timeout));
                None
            }
        }
    }

    fn resting(&self) -> bool {
        let until = self
            .resting_until
            .lock()
            .unwrap_or_else(|err| err.into_inner());
        until.is_some_and(|until| Instant::now() < until)
    }

    fn failed(&self, error: String) {
        *self
            .resting_until
            .lock()
            .unwrap_or_else(|err| err.into_inner()) = Some(Instant::now() + self.rest);
        metrics::counter!(metric::DATABASE_READER_FALLBACKS).increment(1);
        tracing::warn!(
            error,
            rest = ?self.rest,
            "the database reader did not answer; reading from the writer"
        );
    }
}

type Read<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Where the reads go: the reader if there is one, the writer otherwise.
#[derive(Debug, Clone, Copy)]
pub struct Reads<'a> {
    pub writer: &'a Database,
    pub reader: Option<&'a Reader>,
}

impl Reads<'_> {
    /// The user, never in a version older than `seen` (the newest the client presents, in
    /// `If-None-Match`): a replica that has not replayed it yet, or has no such user while
    /// the client has seen one, sends the read to the writer. Without `seen`, what the replica
    /// has: at most its replication lag behind.
    pub async fn find(self, id: UserId, seen: Option<i64>) -> Result<User, StoreError> {
        if let Some(reader) = self.reader {
            match reader.attempt(Box::pin(super::find(&reader.db, id))).await {
                Some(Ok(user)) if seen.is_none_or(|seen| user.version >= seen) => return Ok(user),
                Some(Err(StoreError::NotFound(_))) if seen.is_none() => {
                    return Err(StoreError::NotFound(id))
                }
                Some(_) => tracing::debug!("the reader is behind what the client has seen"),
                None => {}
            }
        }
        super::find(self.writer, id).await
    }

    /// A page of the list, as [`super::list`] reads it.
    pub async fn list(self, after: Option<UserId>, limit: i64) -> Result<Vec<User>, StoreError> {
        if let Some(reader) = self.reader {
            if let Some(Ok(users)) = reader
                .attempt(Box::pin(super::list(&reader.db, after, limit)))
                .await
            {
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
            let read = Box::pin(super::find_by_email(&reader.db, email, after));
            if let Some(Ok(user)) = reader.attempt(read).await {
                return Ok(user);
            }
        }
        super::find_by_email(self.writer, email, after).await
    }
}
