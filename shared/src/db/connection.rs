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
//!   one attempt at a time (a probe), in the background, as soon as the interval is over,
//!   whether or not a request waits for it, so that a database that is back is used again
//!   within the interval and a connect, however the requests come. A request that needs a
//!   connection meanwhile is refused at once (a 503 with `Retry-After`), unless a probe began
//!   less than `DB_LIVENESS_TIMEOUT_MS` ago: then it waits for the probe until then. A
//!   database that is back answers within that, and the request is served; one that is not
//!   costs the request no more than that, and no request waits out a connect timeout against
//!   an address that may not answer. The probe's connection serves the next request.
//!
//! What a statement that meets a lost connection does is [`retry`](super::retry)'s.

use std::{
    io,
    ops::{Deref, DerefMut},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use sqlx::{Connection as _, PgConnection};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

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
    /// Bumped whenever a probe ends, either way: what requests waiting for one watch.
    probes_ended: watch::Sender<u64>,
}

impl Pool {
    pub(super) fn new(settings: &DatabaseSettings) -> Self {
        Self {
            idle: Mutex::default(),
            permits: Arc::new(Semaphore::new(settings.max_connections)),
            backoff: Backoff::new(settings.backoff_min, settings.backoff_max),
            probes_ended: watch::Sender::new(0),
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
        match self.idle_that_answers().await {
            Some(held) => Ok(self.lend(held, permit)),
            None => self.open_for(permit).await,
        }
    }

    /// The idle connection used last that is fit to lend, dropping those that are not.
    async fn idle_that_answers(&self) -> Option<Held> {
        loop {
            let mut held = self.inner.pool.idle().pop()?;
            if self.answers(&mut held).await {
                return Some(held);
            }
        }
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
        let pool = &self.inner.pool;
        // Watched before the backoff is asked, so that no probe's end is missed.
        let mut probes_ended = pool.probes_ended.subscribe();
        let probe_started = match pool.backoff.try_begin() {
            Ok(attempt) if !attempt.is_probe() => return self.open_now(attempt, permit).await,
            Ok(attempt) => {
                let started = attempt.started();
                tokio::spawn(self.clone().probe(attempt));
                started
            }
            Err(refusal) => match refusal.probe_started {
                Some(started) => started,
                None => return Err(refused(refusal.retry_after, refusal.last_failure)),
            },
        };
        // A probe is in flight: wait for it until the patience since it began is over.
        let patience = self.inner.settings.liveness_timeout;
        let until = tokio::time::Instant::from_std(probe_started + patience);
        let _ = tokio::time::timeout_at(until, probes_ended.changed()).await;
        if let Some(held) = self.idle_that_answers().await {
            return Ok((held.connection, permit));
        }
        // The probe failed or is still connecting, or another request took its connection.
        match pool.backoff.try_begin() {
            Ok(attempt) if !attempt.is_probe() => self.open_now(attempt, permit).await,
            Ok(attempt) => {
                tokio::spawn(self.clone().probe(attempt));
                Err(refused(Duration::ZERO, None))
            }
            Err(refusal) => Err(refused(refusal.retry_after, refusal.last_failure)),
        }
    }

    /// Opens a connection within the request, the database being reachable.
    async fn open_now(
        &self,
        attempt: Attempt,
        permit: OwnedSemaphorePermit,
    ) -> Result<(PgConnection, OwnedSemaphorePermit), Error> {
        match self.open().await {
            Ok(connection) => {
                self.inner.pool.backoff.succeeded(attempt);
                Ok((connection, permit))
            }
            Err(cause) => Err(self.failed(attempt, cause)),
        }
    }

    /// A connect attempt after a failure, off the request path: its connection goes with the
    /// idle ones, for the request waiting for it or the next one. It takes no permit: while it
    /// runs the backoff lets no other connection open, and when it opens, no more than
    /// `max_connections - 1` others are (the attempt that failed before it was made for a
    /// request that held a permit and found none idle).
    async fn probe(self, attempt: Attempt) {
        let pool = &self.inner.pool;
        // Ends the attempt should this task be dropped before it does (the runtime shutting
        // down): the next request may try again.
        let mut attempt = AbandonOnDrop(&pool.backoff, Some(attempt));
        let opened = self.open().await;
        let Some(attempt) = attempt.1.take() else {
            return;
        };
        match opened {
            Ok(connection) => {
                pool.idle().push(Held {
                    connection,
                    idle_since: Instant::now(),
                });
                pool.backoff.succeeded(attempt);
            }
            Err(cause) => {
                let err = self.failed(attempt, cause);
                tracing::info!(error = %err, "the database is still unreachable");
            }
        }
        pool.probes_ended
            .send_modify(|ended| *ended = ended.wrapping_add(1));
    }

    /// The error for a failed connect, which the backoff counts unless no connect was tried;
    /// the next attempt is then made when due, in the background.
    fn failed(&self, attempt: Attempt, cause: sqlx::Error) -> Error {
        let backoff = &self.inner.pool.backoff;
        let retry_after = if no_credentials_yet(&cause) {
            // The secret could not be read: its own interval applies, on the next request.
            backoff.abandoned(attempt);
            None
        } else {
            let due_in = backoff.failed(attempt, &cause.to_string());
            tokio::spawn(self.clone().probe_when_due(due_in));
            Some(due_in)
        };
        Error::NoConnection {
            retry_after,
            cause: Some(cause),
            last_failure: None,
        }
    }

    /// Makes the next attempt after `due_in`, unless a request has made it first, another
    /// failure has put it off (whoever put it off waits for it), or the database is reachable
    /// again. Under Lambda's freeze the timer waits with the environment, and fires as the next
    /// invocation thaws it.
    async fn probe_when_due(self, due_in: Duration) {
        tokio::time::sleep(due_in).await;
        if let Some(attempt) = self.inner.pool.backoff.try_probe() {
            self.probe(attempt).await;
        }
    }
}

/// No connection, for the backoff's reason.
fn refused(retry_after: Duration, last_failure: Option<Arc<str>>) -> Error {
    Error::NoConnection {
        retry_after: Some(retry_after),
        cause: None,
        last_failure,
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
