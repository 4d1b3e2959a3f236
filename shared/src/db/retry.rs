//! When a statement is sent again after its connection was lost.
//!
//! - **A read** that meets a lost connection, or no answer within `DB_READ_TIMEOUT_MS` (a
//!   connection gone silent), is sent once more, on a newly opened connection.
//! - **A write** is sent again only when the error proves it committed nothing. A write is one
//!   statement that returns every row it changes (`RETURNING`), read with [`write_returning`]
//!   to the end of its answer; Postgres commits it at the `Sync` that follows its rows and its
//!   `CommandComplete`. So the proofs are: sending it failed with `EPIPE` (the kernel reports
//!   it only once the peer has closed: the server read no complete message), or the server
//!   said it is ending the session (`57P01`-`57P03`, read in order on the connection) before
//!   any row came. Anything else (a reset or an end of stream, at any point; the server's
//!   goodbye after a row, where the commit may have happened before it) leaves the outcome
//!   unknown: the client gets [`Error::OutcomeUnknown`], a 503 of its own that says how to find
//!   out or retry safely, never a retry that would answer 409, 412 or 404 to a change that was
//!   made. Only the deadline bounds a write's wait.
//! - **With named statements** (`DB_NAMED_STATEMENTS`), a statement the server refuses because
//!   the schema changed under its prepared form is sent again, read or write, on a new
//!   connection ([`Database::is_stale_statement`]).

use std::{future::Future, io, pin::Pin, time::Duration};

use futures_util::{Stream, StreamExt};
use sqlx::{postgres::PgDatabaseError, PgConnection};

use super::{Database, Error};

/// A statement (or a few) to run on a connection; boxed so that its future may borrow it.
pub type Statement<'c, T> = Pin<Box<dyn Future<Output = Result<T, sqlx::Error>> + Send + 'c>>;

/// Whether a failed statement may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Reads: once, on a new connection, whenever the connection was lost or went silent.
    Read,
    /// Writes: once, only when nothing was provably committed.
    Write,
}

impl Database {
    /// Runs `read` on a connection; when the connection turns out lost, or `read` gets no
    /// answer within `DB_READ_TIMEOUT_MS`, once more on a new one.
    pub async fn read<T, F>(&self, read: F) -> Result<T, Error>
    where
        F: for<'c> FnMut(&'c mut PgConnection) -> Statement<'c, T>,
    {
        self.run(Retry::Read, read).await
    }

    /// Runs `write` on a connection; once more on a new one only when the first attempt
    /// provably committed nothing. `write` must be one statement that returns every row it
    /// changes (`RETURNING`), read with [`write_returning`] (never `fetch_one` or
    /// `fetch_optional`, which report the server's goodbye even when a row came first).
    pub async fn write<T, F>(&self, write: F) -> Result<T, Error>
    where
        F: for<'c> FnMut(&'c mut PgConnection) -> Statement<'c, T>,
    {
        self.run(Retry::Write, write).await
    }

    /// Whether the server refused to run a statement this session prepared
    /// (`DB_NAMED_STATEMENTS`) because the schema changed under it: `cached plan must not
    /// change result type` (a column's type changed), raised by `RevalidateCachedQuery` (the
    /// routine, unlike the message, is never translated). SQLx keeps the statement cached, so
    /// the session would fail it every time: the connection is dropped, and the statement sent
    /// again on a new one, which prepares it afresh. The refusal ran nothing (each statement is
    /// its own transaction), so a write is sent again too.
    fn is_stale_statement(&self, err: &sqlx::Error) -> bool {
        self.inner.settings.named_statements
            && err
                .as_database_error()
                .and_then(|db| db.try_downcast_ref::<PgDatabaseError>())
                .is_some_and(|db| db.routine() == Some("RevalidateCachedQuery"))
    }

    async fn run<T, F>(&self, retry: Retry, mut statement: F) -> Result<T, Error>
    where
        F: for<'c> FnMut(&'c mut PgConnection) -> Statement<'c, T>,
    {
        let timeout = (retry == Retry::Read).then_some(self.inner.settings.read_timeout);
        let mut connection = self.acquire().await?;
        let err = match connection.run(&mut statement, timeout).await {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        let stale = self.is_stale_statement(&err);
        if !stale && !is_connection_lost(&err) {
            return Err(err.into());
        }
        connection.discard();
        let retried = match retry {
            Retry::Read => true,
            Retry::Write => stale || committed_nothing(&err),
        };
        if !retried {
            tracing::warn!(
                error = %err,
                "the connection was lost during a write, which may have committed; not retried"
            );
            return Err(Error::OutcomeUnknown(err));
        }
        if stale {
            tracing::warn!(
                error = %err,
                ?retry,
                "a prepared statement went stale; retrying on a new connection"
            );
        } else {
            tracing::warn!(error = %err, ?retry, "the connection was lost; retrying on a new one");
        }
        let mut connection = self.acquire_new().await?;
        let result = connection.run(&mut statement, timeout).await;
        match result {
            Err(err) if is_connection_lost(&err) => {
                connection.discard();
                match retry == Retry::Write && !committed_nothing(&err) {
                    true => Err(Error::OutcomeUnknown(err)),
                    false => Err(err.into()),
                }
            }
            result => Ok(result?),
        }
    }
}

/// The first row a write returned, reading its answer to the end (a write returns every row it
/// changes: see the module). A lost connection after a row is reported as such: the statement
/// ran, and may have committed.
pub async fn write_returning<T>(
    rows: impl Stream<Item = Result<T, sqlx::Error>>,
) -> Result<Option<T>, sqlx::Error> {
    let mut rows = std::pin::pin!(rows);
    let mut first = None;
    while let Some(next) = rows.next().await {
        match next {
            Ok(row) => {
                first.get_or_insert(row);
            }
            Err(err) if first.is_some() && is_connection_lost(&err) => {
                return Err(sqlx::Error::Io(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    LostAfterARow(err),
                )))
            }
            Err(err) => return Err(err),
        }
    }
    Ok(first)
}

/// The connection was lost after the write had returned a row.
#[derive(Debug, thiserror::Error)]
#[error("the connection was lost after the write returned a row: {0}")]
struct LostAfterARow(#[source] sqlx::Error);

/// A read that got no answer in time.
pub(super) fn no_answer(timeout: Duration) -> sqlx::Error {
    sqlx::Error::Io(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no answer within {timeout:?}"),
    ))
}

pub(super) fn is_timeout(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Io(io) if io.kind() == io::ErrorKind::TimedOut)
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

/// Whether a write (one `RETURNING` statement read with [`write_returning`]) provably committed
/// nothing: sending it failed with `EPIPE`, which the kernel reports only once the peer has
/// closed, so the server read no complete message; or the server reported it is ending the
/// session (`57P01` terminated by an administrator, `57P02` crash, `57P03` not accepting) with
/// no row before it (an error after a row comes wrapped in [`LostAfterARow`], an I/O error),
/// while a committed statement's rows precede its commit.
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

    #[test]
    fn the_servers_goodbye_proves_nothing_was_committed_only_before_any_row() {
        let goodbye = || sqlx::Error::Protocol("57P01".into());
        let after_a_row = sqlx::Error::Io(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            LostAfterARow(goodbye()),
        ));

        assert!(is_connection_lost(&after_a_row));
        assert!(!committed_nothing(&after_a_row));
        assert!(after_a_row
            .to_string()
            .contains("after the write returned a row"));
    }

    #[test]
    fn a_read_that_got_no_answer_in_time_counts_as_a_lost_connection_and_never_as_uncommitted() {
        let silent = no_answer(Duration::from_secs(2));

        assert!(is_connection_lost(&silent));
        assert!(!committed_nothing(&silent));
    }
}
