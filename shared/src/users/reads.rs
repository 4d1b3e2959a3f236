//! The reads that guard no write (`GET /users/{id}`, the list), served by a read replica when
//! there is one, and by the writer when there is none, when the replica cannot answer (down,
//! failing over, too slow: a warning, never an error to the client), or when its answer is
//! older than the version the client has seen. Every read that guards a write (a precondition,
//! an idempotency record) is made on the writer, in the statement that writes.

use crate::{
    db::Database,
    domain::{Email, User, UserId},
};

use super::StoreError;

/// Where the reads go: the reader if there is one, the writer otherwise.
#[derive(Debug, Clone, Copy)]
pub struct Reads<'a> {
    pub writer: &'a Database,
    pub reader: Option<&'a Database>,
}

impl Reads<'_> {
    /// The user, never in a version older than `seen` (the newest the client presents, in
    /// `If-None-Match`): a replica that has not replayed it yet, or has no such user while
    /// the client has seen one, sends the read to the writer. Without `seen`, what the replica
    /// has: at most its replication lag behind.
    pub async fn find(self, id: UserId, seen: Option<i64>) -> Result<User, StoreError> {
        if let Some(reader) = self.reader {
            match super::find(reader, id).await {
                Ok(user) if seen.is_none_or(|seen| user.version >= seen) => return Ok(user),
                Err(StoreError::NotFound(_)) if seen.is_none() => {
                    return Err(StoreError::NotFound(id))
                }
                Ok(_) | Err(StoreError::NotFound(_)) => {
                    tracing::debug!("the reader is behind what the client has seen");
                }
                Err(err) => unanswered(err),
            }
        }
        super::find(self.writer, id).await
    }

    /// A page of the list, as [`super::list`] reads it.
    pub async fn list(self, after: Option<UserId>, limit: i64) -> Result<Vec<User>, StoreError> {
        if let Some(reader) = self.reader {
            match super::list(reader, after, limit).await {
                Ok(users) => return Ok(users),
                Err(err) => unanswered(err),
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
            match super::find_by_email(reader, email, after).await {
                Ok(user) => return Ok(user),
                Err(err) => unanswered(err),
            }
        }
        super::find_by_email(self.writer, email, after).await
    }
}

/// The reader failed: the writer answers instead, within the same request.
fn unanswered(err: StoreError) {
    let error = format!("{:#}", anyhow::Error::new(err));
    tracing::warn!(
        error,
        "the database reader did not answer; reading from the writer"
    );
}
