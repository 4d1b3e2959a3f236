//! The environment's one connection: when it is checked, and when a statement is retried.
//!
//! Between invocations Lambda freezes the environment, and meanwhile the connection may die:
//! the server or a proxy closes it (a failover, a rotation's clean-up, an idle timeout: the
//! next write meets a reset), or a middlebox forgets it (a NAT's idle timeout, a failover that
//! moves the address: packets vanish, nothing answers, for minutes). So:
//!
//! - **After a quiet spell** (`DB_IDLE_CHECK_AFTER_MS`, 1 s), the connection is pinged before
//!   use, waiting at most `DB_LIVENESS_TIMEOUT_MS` (250 ms, hundreds of in-region round trips);
//!   a connection that fails or misses it is dropped and a new one opened, within the request.
//!   Requests in a burst (closer together than that) pay no ping: a warm request costs only its
//!   statement's round trip.
//! - **A read** that meets a lost connection anyway is retried once, on a new connection.
//! - **A write** is retried only when the error proves nothing was committed: writing the
//!   statement failed (`EPIPE`: the peer had closed, the server read no complete message), or
//!   the server said it is ending the session (`57P01`-`57P03`, read in order) before any row.
//!   A write is one statement returning every row it changes (`RETURNING`), fetched with
//!   `fetch_one` or `fetch_optional`: had it committed, its row would have been sent, and
//!   read, before the server's goodbye. A connection lost any other way mid-statement (a reset,
//!   a timeout) could have committed it: the client gets a 503 instead.
//!
//! Nothing is sent when a request is done with the connection.

use std::{
    future::Future,
    io,
    ops::{Deref, DerefMut},
    pin::Pin,
    time::Instant,
};

use sqlx::{Connection as _, PgConnection};
use tokio::sync::MutexGuard;

use super::Database;
use crate::telemetry::metric;

/// The held connection and when a request last finished with it.
#[derive(Debug)]
pub(super) struct Held {
    connection: PgConnection,
    idle_since: Instant,
}

/// The environment's connection, lent to one request. Derefs to the `PgConnection`.
pub struct Connection<'a> {
    slot: MutexGuard<'a, Option<Held>>,
    /// A statement was sent and its outcome not yet read: dropped in this state (the request
    /// was abandoned at its deadline), the connection's protocol state is unknown, so it goes.
    in_flight: bool,
}

impl Deref for Connection<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match &*self.slot {
            Some(held) => &held.connection,
            // Lent only when the slot is filled; emptied only by `discard`, which consumes.
            None => unreachable!("a lent connection is always held"),
        }
    }
}

impl DerefMut for Connection<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match &mut *self.slot {
            Some(held) => &mut held.connection,
            None => unreachable!("a lent connection is always held"),
        }
    }
}

impl Connection<'_> {
    /// Drops the connection (it is broken): the next request opens a new one.
    pub fn discard(mut self) {
        self.slot.take();
    }
}

impl Drop for Connection<'_> {
    fn drop(&mut self) {
        if self.in_flight {
            tracing::warn!("a statement was abandoned in flight; dropping its connection");
            self.slot.take();
        } else if let Some(held) = &mut *self.slot {
            held.idle_since = Instant::now();
        }
    }
}

/// A statement (or a few) to run on a connection; boxed so that its future may borrow it.
pub type Statement<'c, T> = Pin<Box<dyn Future<Output = Result<T, sqlx::Error>> + Send + 'c>>;

/// Whether a failed statement may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Reads: once, on a new connection, whenever the connection was lost.
    Read,
    /// Writes: once, only when nothing was provably committed.
    Write,
}

impl Database {
    /// The environment's connection: the held one (pinged first if it sat idle for
    /// `DB_IDLE_CHECK_AFTER_MS` or more; replaced if it does not answer in
    /// `DB_LIVENESS_TIMEOUT_MS`), or a new one.
    pub async fn acquire(&self) -> Result<Connection<'_>, sqlx::Error> {
        let mut slot = self.held.lock().await;
        if let Some(held) = &mut *slot {
            let idle = held.idle_since.elapsed();
            if idle >= self.settings.idle_check_after {
                let timeout = self.settings.liveness_timeout;
                match tokio::time::timeout(timeout, held.connection.ping()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => {
                        tracing::info!(error = %err, ?idle, "the idle connection is gone");
                        slot.take();
                    }
                    Err(_) => {
                        tracing::warn!(?idle, ?timeout, "the idle connection did not answer");
                        slot.take();
                    }
                }
            }
        }
        if slot.is_none() {
            let connection = self.open().await.inspect_err(|_| {
                metrics::counter!(metric::DATABASE_ACQUIRE_FAILURES).increment(1);
            })?;
            *slot = Some(Held {
                connection,
                idle_since: Instant::now(),
            });
        }
        Ok(Connection {
            slot,
            in_flight: false,
        })
    }

    /// Runs `read` on the environment's connection; when the connection turns out lost, once
    /// more on a new one.
    pub async fn read<T, F>(&self, read: F) -> Result<T, sqlx::Error>
    where
        F: for<'c> FnMut(&'c mut PgConnection) -> Statement<'c, T>,
    {
        self.run(Retry::Read, read).await
    }

    /// Runs `write` on the environment's connection; once more on a new one only when the first
    /// attempt provably committed nothing. `write` must be one statement that returns every row
    /// it changes (`RETURNING`), fetched with `fetch_one` or `fetch_optional`.
    pub async fn write<T, F>(&self, write: F) -> Result<T, sqlx::Error>
    where
        F: for<'c> FnMut(&'c mut PgConnection) -> Statement<'c, T>,
    {
        self.run(Retry::Write, write).await
    }

    async fn run<T, F>(&self, retry: Retry, mut statement: F) -> Result<T, sqlx::Error>
    where
        F: for<'c> FnMut(&'c mut PgConnection) -> Statement<'c, T>,
    {
        let mut connection = self.acquire().await?;
        connection.in_flight = true;
        let first = statement(&mut connection).await;
        connection.in_flight = false;
        let err = match first {
            Err(err) if is_connection_lost(&err) => err,
            result => return result,
        };
        connection.discard();
        let retried = match retry {
            Retry::Read => true,
            Retry::Write => committed_nothing(&err),
        };
        if !retried {
            tracing::warn!(error = %err, "the connection was lost during a write; not retried");
            return Err(err);
        }
        tracing::warn!(error = %err, ?retry, "the connection was lost; retrying on a new one");
        let mut connection = self.acquire().await?;
        connection.in_flight = true;
        let result = statement(&mut connection).await;
        connection.in_flight = false;
        if result.as_ref().is_err_and(is_connection_lost) {
            connection.discard();
        }
        result
    }
}

/// Whether the error means the connection is unusable (as opposed to the statement failing).
fn is_connection_lost(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
        // 57P01-03: the server is ending the session (terminated, shutting down, restarting);
        // 08: connection exceptions.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P0")),
        _ => false,
    }
}

/// Whether a write (one `RETURNING` statement, no row read yet) provably committed nothing:
/// sending it failed with `EPIPE`, which the kernel reports only once the peer has closed, so
/// the server read no complete message; or the server reported it is ending the session
/// (`57P01` terminated by an administrator, `57P02` crash, `57P03` not accepting), read in
/// order with no row before it, while a committed statement's row precedes anything after
/// the commit.
fn committed_nothing(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(io) => io.kind() == io::ErrorKind::BrokenPipe,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| matches!(&*code, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_failed_send_of_the_statement_proves_a_write_was_not_committed_among_io_errors() {
        let io = |kind| sqlx::Error::Io(io::Error::from(kind));

        assert!(committed_nothing(&io(io::ErrorKind::BrokenPipe)));
        for kind in [
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::UnexpectedEof,
            io::ErrorKind::TimedOut,
        ] {
            assert!(!committed_nothing(&io(kind)), "{kind:?}");
            assert!(is_connection_lost(&io(kind)), "{kind:?}");
        }
        assert!(!committed_nothing(&sqlx::Error::RowNotFound));
        assert!(!is_connection_lost(&sqlx::Error::RowNotFound));
    }
}
