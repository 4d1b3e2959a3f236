//! Queries on the `users` table. They take domain types only, and are checked against the
//! schema at compile time (`.sqlx/` holds the offline data).
//!
//! Each is one statement, so each request costs one round trip: a precondition (`If-Match`),
//! an idempotency record and the change they guard are checked and made together, in the same
//! statement, never read first and written after. Each runs through the environment's
//! [`Database`] (a read retried on a lost connection, a write only when provably uncommitted),
//! and answers what it did, or a [`StoreError`]: a refusal or the database's failure.

mod reads;
mod statements;

pub use reads::{Reader, Reads};

use statements::{
    delete_row, find_by_email_row, find_row, insert_idempotently_row, insert_row, list_rows,
    purge_expired_keys_row, update_row,
};

use crate::{
    db::{self, Database},
    domain::{Email, NewUser, User, UserId, UserPatch},
};

/// The unique index that makes emails unique case-insensitively (migrations/0001).
const EMAIL_UNIQUE_INDEX: &str = "users_email_lower_key";

/// Why the store did not do what it was asked: a refusal (an answer for the client), or the
/// database's failure (the last variant).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("another user already has this email address")]
    EmailTaken,
    #[error("no user has the id {0}")]
    NotFound(UserId),
    /// The user exists, in a version the request's `If-Match` does not name.
    #[error("the user has changed since the version the request names")]
    VersionMismatch,
    /// The request's `If-Match` names a version, and there is no such user.
    #[error("no user has the id {0}, so no version of it matches")]
    NoVersionToMatch(UserId),
    /// Another request with the same idempotency key is being processed (or finished after
    /// this statement began): retrying later replays its response.
    #[error("a request with this idempotency key is still in progress")]
    KeyInFlight,
    /// The idempotency key was used before with another request body.
    #[error("the idempotency key was used with another request")]
    KeyReused,
    /// The idempotency key's create made a user that has since been deleted: it is not made
    /// again, and its data is gone.
    #[error("the user this request created has since been deleted")]
    CreatedUserDeleted,
    /// No connection could be had, or the statement failed.
    #[error(transparent)]
    Database(db::Error),
}

impl From<db::Error> for StoreError {
    /// A violation of the email's unique index is a refusal; any other error stays an error.
    fn from(err: db::Error) -> Self {
        let taken = match &err {
            db::Error::Query(query) => query.as_database_error().is_some_and(|db| {
                db.is_unique_violation() && db.constraint() == Some(EMAIL_UNIQUE_INDEX)
            }),
            db::Error::NoConnection { .. } | db::Error::OutcomeUnknown(_) => false,
        };
        match taken {
            true => Self::EmailTaken,
            false => Self::Database(err),
        }
    }
}

/// What a change requires of the user's current version (`If-Match`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition<'a> {
    /// Whatever version there is.
    None,
    /// Any version, but a user there must be.
    Exists,
    /// One of these versions.
    OneOf(&'a [i64]),
}

impl Precondition<'_> {
    /// The versions the statement checks; `None` when any will do.
    fn versions(&self) -> Option<Vec<i64>> {
        match self {
            Self::OneOf(versions) => Some(versions.to_vec()),
            Self::None | Self::Exists => None,
        }
    }
}

/// What an idempotent create answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// This request created the user.
    New(User),
    /// An earlier request with the same key and body did: its status and user, as they were.
    Replayed { status: u16, user: User },
}

/// How long an idempotency key is remembered (keep in step with docs/api.md and openapi.yaml).
pub const IDEMPOTENCY_KEY_HOURS: i32 = 24;

/// Expired idempotency keys purged by each create that records a key: more than one, so that
/// the table shrinks back whenever keyed traffic falls.
const PURGED_PER_CREATE: i64 = 4;

/// Expired idempotency keys purged per statement by [`purge_expired_keys`]: each statement's
/// transaction, and the locks it holds, stay short.
const PURGED_PER_STATEMENT: i64 = 1000;

#[tracing::instrument(name = "Insert a user", skip_all, fields(db.system.name = "postgresql"))]
pub async fn insert(db: &Database, new_user: &NewUser) -> Result<User, StoreError> {
    let inserted = db.write(|connection| {
        // Each attempt owns its copy of what it sends.
        let new_user = new_user.clone();
        Box::pin(async move { insert_row(connection, &new_user).await })
    });
    Ok(inserted.await?)
}

/// Creates the user under an idempotency key of `subject`'s, the caller's
/// ([`Principal::owner`](crate::auth::Principal::owner); see migrations/0006): replays the
/// recorded response when the key was used with the same request (`request_hash`) in the last
/// [`IDEMPOTENCY_KEY_HOURS`], refuses a key used with another request or still in flight, and
/// otherwise inserts the user, the key and the response together. Also purges a few expired
/// keys.
#[tracing::instrument(
    name = "Insert a user idempotently",
    skip_all,
    fields(db.system.name = "postgresql")
)]
pub async fn insert_idempotently(
    db: &Database,
    subject: &str,
    key: &str,
    request_hash: &[u8; 32],
    new_user: &NewUser,
) -> Result<Created, StoreError> {
    let row = db.write(|connection| {
        let (subject, key, new_user) = (subject.to_owned(), key.to_owned(), new_user.clone());
        let request_hash = *request_hash;
        Box::pin(async move {
            insert_idempotently_row(connection, &subject, &key, &request_hash, &new_user).await
        })
    });
    let Some(row) = row.await? else {
        return Err(StoreError::KeyInFlight);
    };
    match (row.replayed, row.request_hash == request_hash.as_slice()) {
        // A tombstone (see `delete`): the user is gone, and so are its email, its name and the
        // hash of the request that made it, so any body gets this answer.
        (true, _) if row.status == 410 => Err(StoreError::CreatedUserDeleted),
        (true, false) => Err(StoreError::KeyReused),
        (replayed, _) => {
            let (Some(email), Some(name)) = (row.email, row.name) else {
                return Err(StoreError::Database(db::Error::Query(sqlx::Error::Decode(
                    "a recorded response without its user's email or name".into(),
                ))));
            };
            let user = User {
                id: row.id,
                email,
                name,
                created_at: row.created_at,
                updated_at: row.updated_at,
                version: row.version,
            };
            Ok(match replayed {
                false => Created::New(user),
                true => Created::Replayed {
                    status: u16::try_from(row.status).unwrap_or(201),
                    user,
                },
            })
        }
    }
}

/// Deletes the idempotency keys past their expiry, with the responses recorded for them, a
/// batch per statement, starting no batch after `until`; answers how many, and whether it
/// got to the end of them. Run on a schedule (`maintenance`), so that a quiet API keeps nothing
/// a create recorded past its expiry and the schedule's period.
#[tracing::instrument(
    name = "Purge expired idempotency keys",
    skip_all,
    fields(db.system.name = "postgresql")
)]
pub async fn purge_expired_keys(
    db: &Database,
    until: std::time::Instant,
) -> Result<(u64, bool), StoreError> {
    let mut purged = 0;
    while std::time::Instant::now() < until {
        let batch = db
            .write(|connection| Box::pin(purge_expired_keys_row(connection, PURGED_PER_STATEMENT)));
        let batch = batch.await?;
        purged += u64::try_from(batch).unwrap_or_default();
        if batch < PURGED_PER_STATEMENT {
            return Ok((purged, true));
        }
    }
    Ok((purged, false))
}

#[tracing::instrument(name = "Find a user by id", skip_all, fields(db.system.name = "postgresql"))]
pub async fn find(db: &Database, id: UserId) -> Result<User, StoreError> {
    let found = db.read(|connection| Box::pin(find_row(connection, id)));
    found.await?.ok_or(StoreError::NotFound(id))
}

/// Up to `limit` users with ids above `after`, by id ascending (the primary key's order: a
/// keyset page, however deep, reads only its own rows).
#[tracing::instrument(name = "List users", skip_all, fields(db.system.name = "postgresql"))]
pub async fn list(
    db: &Database,
    after: Option<UserId>,
    limit: i64,
) -> Result<Vec<User>, StoreError> {
    let listed = db.read(|connection| Box::pin(list_rows(connection, after, limit)));
    Ok(listed.await?)
}

/// The user with this email address, compared case-insensitively through the unique index,
/// if its id is above `after`.
#[tracing::instrument(
    name = "Find a user by email",
    skip_all,
    fields(db.system.name = "postgresql")
)]
pub async fn find_by_email(
    db: &Database,
    email: &Email,
    after: Option<UserId>,
) -> Result<Option<User>, StoreError> {
    let found = db.read(|connection| {
        let email = email.clone();
        Box::pin(async move { find_by_email_row(connection, &email, after).await })
    });
    Ok(found.await?)
}

/// Applies `patch` to the user, if it meets `precondition`. A patch that changes nothing leaves
/// the user, its version and `updated_at` as they were.
#[tracing::instrument(name = "Update a user", skip_all, fields(db.system.name = "postgresql"))]
pub async fn update(
    db: &Database,
    id: UserId,
    patch: &UserPatch,
    precondition: Precondition<'_>,
) -> Result<User, StoreError> {
    let updated = db.write(|connection| {
        let (patch, expected) = (patch.clone(), precondition.versions());
        Box::pin(async move { update_row(connection, id, &patch, expected.as_deref()).await })
    });
    let Some(row) = updated.await? else {
        return Err(missing(id, precondition));
    };
    let user = (|| {
        Some(User {
            id: row.id?,
            email: row.email?,
            name: row.name?,
            created_at: row.created_at?,
            updated_at: row.updated_at?,
            version: row.version?,
        })
    })();
    user.ok_or_else(|| missed(id, precondition))
}

/// Deletes the user, if it meets `precondition`, and, in the same statement, every copy of
/// its data: the responses recorded for its idempotent creates become tombstones, and their
/// keys keep no hash of the request that made it (migrations/0008).
#[tracing::instrument(name = "Delete a user", skip_all, fields(db.system.name = "postgresql"))]
pub async fn delete(
    db: &Database,
    id: UserId,
    precondition: Precondition<'_>,
) -> Result<(), StoreError> {
    let deleted = db.write(|connection| {
        let expected = precondition.versions();
        Box::pin(async move { delete_row(connection, id, expected.as_deref()).await })
    });
    match deleted.await? {
        None => Err(missing(id, precondition)),
        Some(true) => Ok(()),
        Some(false) => Err(missed(id, precondition)),
    }
}

/// Why a change found no user: there is none, which fails any `If-Match`.
fn missing(id: UserId, precondition: Precondition<'_>) -> StoreError {
    match precondition {
        Precondition::None => StoreError::NotFound(id),
        Precondition::Exists | Precondition::OneOf(_) => StoreError::NoVersionToMatch(id),
    }
}

/// Why a user the statement found was not changed: its version did not match, or a
/// concurrent delete took it first.
fn missed(id: UserId, precondition: Precondition<'_>) -> StoreError {
    match precondition {
        Precondition::OneOf(_) => StoreError::VersionMismatch,
        Precondition::None => StoreError::NotFound(id),
        Precondition::Exists => StoreError::NoVersionToMatch(id),
    }
}
