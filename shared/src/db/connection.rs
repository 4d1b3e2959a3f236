//! The environment's connections: how many, when one is checked, and when a statement is
//! retried.
//!
//! **How many.** One per invocation the environment may run at once: one on Lambda's classic
//! model, `AWS_LAMBDA_MAX_CONCURRENCY` on Lambda Managed Instances, each opened when a request
//! first needs it and held across invocations. A request borrows the one used last, so under a
//! light load the others sit idle and the server's `idle_session_timeout` takes them back. A
//! warm request costs its statement's round trip and nothing else: no check before, nothing
//! sent after.
//!
//! **Checks.** Between invocations Lambda freezes the environment, and meanwhile a connection
//! may die: the server or a proxy closes it (a failover, a rotation's clean-up, an idle
//! timeout: the next write meets a reset), or a middlebox forgets it (a NAT's idle timeout, a
//! failover that moves the address: packets vanish, nothing answers, for minutes). So:
//!
//! - **After a quiet spell** (`DB_IDLE_CHECK_AFTER_MS`, 1 s), a connection is pinged before
//!   use, waiting at most `DB_LIVENESS_TIMEOUT_MS` (250 ms, hundreds of in-region round trips);
//!   one that fails or misses it is dropped and another used or opened, within the request.
//!   Requests in a burst (closer together than that) pay no ping.
//! - **New connections** are opened within the request that needs one while the database is
//!   reachable. After a failed connect they are opened under the [`backoff`](super::backoff):
//!   a request that needs one is refused at once (a 503 with `Retry-After`); when the next
//!   attempt is due, the request that finds it so starts it in the background and waits for
//!   it no longer than `DB_LIVENESS_TIMEOUT_MS`: a database that is back answers within that,
//!   and the request is served; one that is not costs the request no more than that, and no
//!   request waits out a connect timeout against an address that may not answer. A
//!   connection the request stopped waiting for serves the next request.
//!
//! What a statement that meets a lost connection does is [`retry`](super::retry)'s.

use std::{
    io,
    ops::{Deref, DerefMut},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use sqlx::{Connection as _, PgConnection};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::{
    backoff::{Attempt, Backoff},
    no_credentials_yet,
    retry::{is_timeout, no_answer, Statement},
    Database, Error,
};
use crate::{config::DatabaseSettings, sync, telemetry::metric};

/// The connections the environment holds, and the leave to open more.
#[derive(Debug)]
pub(super) struct Pool {
    /// Connections not lent to a request, the one used last at the end.
    idle: Mutex<Vec<Held>>,
    /// One per connection lent or being opened: at most `max_connections` exist at once.
    permits: Arc<Semaphore>,
    backoff: Backoff,
}

impl Pool {
    pub(super) fn new(settings: &DatabaseSettings) -> Self {
        Self {
            idle: Mutex::default(),
            permits: Arc::new(Semaphore::new(settings.max_connections)),
            backoff: Backoff::new(settings.backoff_min, settings.backoff_max),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Held>> {
        // Pushes and pops only.
        sync::lock(&self.idle)
    }
}

/// A connection and when a request last finished with it.
#[derive(Debug)]
struct Held {
    connection: PgConnection,
    idle_since: Instant,
}

/// A connection lent to one request. Derefs to the `PgConnection`; goes back to the
/// environment's idle connections when dropped.
pub struct Connection<'a> {
    /// Always `Some` while lent: emptied only by `discard` and `drop`, which end the loan.
    held: Option<Held>,
    pool: &'a Pool,
    _permit: OwnedSemaphorePermit,
    /// A statement was sent and its outcome not yet read: dropped in this state (the request
    /// was abandoned at its deadline), the connection's protocol state is unknown, so it goes.
    in_flight: bool,
}

impl Deref for Connection<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match &self.held {
            Some(held) => &held.connection,
            None => unreachable!("a lent connection is always held"),
        }
    }
}

impl DerefMut for Connection<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match &mut self.held {
            Some(held) => &mut held.connection,
            None => unreachable!("a lent connection is always held"),
        }
    }
}

impl Connection<'_> {
    /// Drops the connection (it is broken) instead of giving it back.
    pub fn discard(mut self) {
        self.held.take();
    }

    /// Runs `statement` on this connection, bounded by `timeout` when given; `in_flight` until
    /// it has answered.
    pub(super) async fn run<T, F>(
        &mut self,
        statement: &mut F,
        timeout: Option<Duration>,
    ) -> Result<T, sqlx::Error>
    where
        F: for<'c> FnMut(&'c mut PgConnection) -> Statement<'c, T>,
    {
        self.in_flight = true;
        let answer = statement(self);
        let result = match timeout {
            Some(timeout) => tokio::time::timeout(timeout, answer)
                .await
                .unwrap_or_else(|_| Err(no_answer(timeout))),
            None => answer.await,
        };
        // Abandoned at its timeout, the statement may still be answered: the connection's
        // protocol state is unknown, so it stays in flight, and goes when dropped.
        self.in_flight = result.as_ref().is_err_and(is_timeout);
        result
    }
}

impl Drop for Connection<'_> {
    fn drop(&mut self) {
        let Some(mut held) = self.held.take() else {
            return;
        };
        if self.in_flight {
            tracing::warn!("a statement was abandoned in flight; dropping its connection");
            return;
        }
        held.idle_since = Instant::now();
        self.pool.idle().push(held);
    }
}

impl Database {
    /// A connection for one request: the idle one used last (pinged first if it sat idle for
    /// `DB_IDLE_CHECK_AFTER_MS` or more; dropped if it does not answer within
    /// `DB_LIVENESS_TIMEOUT_MS`), or a new one, opened under the backoff.
    pub async fn acquire(&self) -> Result<Connection<'_>, Error> {
        let permit = self.permit().await?;
        loop {
            let next = self.inner.pool.idle().pop();
            let Some(mut held) = next else { break };
            if self.answers(&mut held).await {
                return Ok(self.lend(held, permit));
            }
        }
        self.open_for(permit).await
    }

    /// A newly opened connection for one request (the retry of a read whose connection was
    /// lost: the idle ones may be just as lost).
    pub(super) async fn acquire_new(&self) -> Result<Connection<'_>, Error> {
        let permit = self.permit().await?;
        self.open_for(permit).await
    }

    async fn permit(&self) -> Result<OwnedSemaphorePermit, Error> {
        // The semaphore is never closed.
        Arc::clone(&self.inner.pool.permits)
            .acquire_owned()
            .await
            .map_err(|err| Error::Query(sqlx::Error::Io(io::Error::other(err))))
    }

    fn lend(&self, held: Held, permit: OwnedSemaphorePermit) -> Connection<'_> {
        Connection {
            held: Some(held),
            pool: &self.inner.pool,
            _permit: permit,
            in_flight: false,
        }
    }

    /// Whether an idle connection is fit to lend: at once after a short spell, pinged after a
    /// longer one.
    async fn answers(&self, held: &mut Held) -> bool {
        let idle = held.idle_since.elapsed();
        if idle < self.inner.settings.idle_check_after {
            return true;
        }
        let timeout = self.inner.settings.liveness_timeout;
        match tokio::time::timeout(timeout, held.connection.ping()).await {
            Ok(Ok(())) => true,
            Ok(Err(err)) => {
                tracing::info!(error = %err, ?idle, "an idle connection is gone");
                false
            }
            Err(_) => {
                tracing::warn!(?idle, ?timeout, "an idle connection did not answer");
                false
            }
        }
    }

    /// Opens a connection for the holder of `permit`, unless the backoff refuses.
    async fn open_for(&self, permit: OwnedSemaphorePermit) -> Result<Connection<'_>, Error> {
        let opened = self.open_under_backoff(permit).await.inspect_err(|_| {
            metrics::counter!(metric::DATABASE_ACQUIRE_FAILURES).increment(1);
        })?;
        let (connection, permit) = opened;
        let held = Held {
            connection,
            idle_since: Instant::now(),
        };
        Ok(self.lend(held, permit))
    }

    async fn open_under_backoff(
        &self,
        permit: OwnedSemaphorePermit,
    ) -> Result<(PgConnection, OwnedSemaphorePermit), Error> {
        let backoff = &self.inner.pool.backoff;
        let attempt = backoff.try_begin().map_err(|refusal| Error::NoConnection {
            retry_after: Some(refusal.retry_after),
            cause: None,
            last_failure: refusal.last_failure,
        })?;
        if attempt.is_probe() {
            // The database failed the last attempt and may still not answer: try in the
            // background, waiting briefly for the outcome.
            let (outcome, opened) = oneshot::channel();
            let database = self.clone();
            tokio::spawn(async move { database.probe(attempt, outcome).await });
            let patience = self.inner.settings.liveness_timeout;
            return match tokio::time::timeout(patience, opened).await {
                Ok(Ok(connection)) => Ok((connection, permit)),
                _ => Err(Error::NoConnection {
                    retry_after: Some(Duration::ZERO),
                    cause: None,
                    last_failure: None,
                }),
            };
        }
        match self.open().await {
            Ok(connection) => {
                backoff.succeeded(attempt);
                Ok((connection, permit))
            }
            Err(cause) => Err(self.failed(attempt, cause)),
        }
    }

    /// A connect attempt after a failure: its connection goes to the request that started it
    /// if that one still waits, otherwise with the idle ones for the next request. It takes no
    /// permit: while it runs the backoff lets no other connection open, and when it opens, no
    /// more than `max_connections - 1` others are (the request that started it held a permit
    /// and found none idle).
    async fn probe(self, attempt: Attempt, outcome: oneshot::Sender<PgConnection>) {
        let backoff = &self.inner.pool.backoff;
        // Ends the attempt should this task be dropped before it does (the runtime shutting
        // down): the next request may try again.
        let mut attempt = AbandonOnDrop(backoff, Some(attempt));
        let opened = self.open().await;
        let Some(attempt) = attempt.1.take() else {
            return;
        };
        match opened {
            Ok(connection) => {
                if let Err(connection) = outcome.send(connection) {
                    self.inner.pool.idle().push(Held {
                        connection,
                        idle_since: Instant::now(),
                    });
                }
                backoff.succeeded(attempt);
            }
            Err(cause) => {
                let err = self.failed(attempt, cause);
                tracing::info!(error = %err, "the database is still unreachable");
            }
        }
    }

    /// The error for a failed connect, which the backoff counts unless no connect was tried.
    fn failed(&self, attempt: Attempt, cause: sqlx::Error) -> Error {
        let backoff = &self.inner.pool.backoff;
        let retry_after = if no_credentials_yet(&cause) {
            // The secret could not be read: its own interval applies.
            backoff.abandoned(attempt);
            None
        } else {
            Some(backoff.failed(attempt, &cause.to_string()))
        };
        Error::NoConnection {
            retry_after,
            cause: Some(cause),
            last_failure: None,
        }
    }
}

/// Abandons the attempt it holds when dropped.
struct AbandonOnDrop<'a>(&'a Backoff, Option<Attempt>);

impl Drop for AbandonOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(attempt) = self.1.take() {
            self.0.abandoned(attempt);
        }
    }
}
