//! Queries on the `users` table. They take domain types only, and are checked against the
//! schema at compile time (`.sqlx/` holds the offline data).
//!
//! Each is one statement, so each request costs one round trip: a precondition (`If-Match`),
//! an idempotency record and the change they guard are checked and made together, in the same
//! statement, never read first and written after. Each runs through the environment's
//! [`Database`] (a read retried on a lost connection, a write only when provably uncommitted),
//! and answers what it did, or a [`StoreError`]: a refusal or the database's failure.

use sqlx::PgConnection;
use time::OffsetDateTime;

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
            db::Error::NoConnection { .. } => false,
        };
        match taken {
            true => Self::EmailTaken,
            false => Self::Database(err),
        }
    }
}

/// The versions a change is conditional on (`If-Match`); `None` for an unconditional change.
pub type Expected<'a> = Option<&'a [i64]>;

/// What an idempotent create answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// This request created the user.
    New(User),
    /// An earlier request with the same key and body did: its status and user, as they were.
    Replayed { status: u16, user: User },
}

/// How long an idempotency key is remembered (keep in step with the README and openapi.yaml).
pub const IDEMPOTENCY_KEY_HOURS: i32 = 24;

/// Expired idempotency keys purged by each create that records a key: more than one, so that
/// the table shrinks back whenever keyed traffic falls.
const PURGED_PER_CREATE: i64 = 4;

#[tracing::instrument(name = "Insert a user", skip_all, fields(db.system.name = "postgresql"))]
pub async fn insert(db: &Database, new_user: &NewUser) -> Result<User, StoreError> {
    let inserted = db.write(|connection| {
        // Each attempt owns its copy of what it sends.
        let new_user = new_user.clone();
        Box::pin(async move { insert_row(connection, &new_user).await })
    });
    Ok(inserted.await?)
}

async fn insert_row(connection: &mut PgConnection, new_user: &NewUser) -> sqlx::Result<User> {
    sqlx::query_as!(
        User,
        r#"
        INSERT INTO users (email, name)
        VALUES ($1, $2)
        RETURNING id AS "id: UserId", email, name, created_at, updated_at, version
        "#,
        new_user.email.as_ref(),
        new_user.name.as_ref(),
    )
    .fetch_one(connection)
    .await
}

/// Creates the user under an idempotency key of `subject`'s (see migrations/0006): replays the
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
        (true, false) => Err(StoreError::KeyReused),
        // A tombstone (see `delete`): the user is gone, and so is its email and name.
        (true, true) if row.status == 410 => Err(StoreError::CreatedUserDeleted),
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

/// What an idempotent create's statement found or made.
struct IdempotentRow {
    replayed: bool,
    status: i16,
    request_hash: Vec<u8>,
    id: UserId,
    email: Option<String>,
    name: Option<String>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    version: i64,
}

async fn insert_idempotently_row(
    connection: &mut PgConnection,
    subject: &str,
    key: &str,
    request_hash: &[u8; 32],
    new_user: &NewUser,
) -> sqlx::Result<Option<IdempotentRow>> {
    sqlx::query_as!(
        IdempotentRow,
        r#"
        WITH existing AS (
            SELECT k.request_hash, r.status, r.user_id, r.email, r.name, r.created_at,
                   r.updated_at, r.version
            FROM idempotency_keys k
            JOIN idempotent_responses r USING (subject, key)
            WHERE k.subject = $1 AND k.key = $2 AND k.expires_at > now()
        ),
        claim AS (
            INSERT INTO idempotency_keys AS k (subject, key, request_hash, expires_at)
            SELECT $1, $2, $3, now() + make_interval(hours => $6)
            WHERE NOT EXISTS (SELECT FROM existing)
            ON CONFLICT (subject, key) DO UPDATE
                SET request_hash = EXCLUDED.request_hash,
                    created_at = now(),
                    expires_at = EXCLUDED.expires_at
                WHERE k.expires_at <= now()
            RETURNING subject, key
        ),
        created AS (
            INSERT INTO users (email, name)
            SELECT $4, $5 FROM claim
            RETURNING id, email, name, created_at, updated_at, version
        ),
        recorded AS (
            INSERT INTO idempotent_responses AS r
                (subject, key, status, user_id, email, name, created_at, updated_at, version)
            SELECT claim.subject, claim.key, 201, created.id, created.email, created.name,
                   created.created_at, created.updated_at, created.version
            FROM claim, created
            ON CONFLICT (subject, key) DO UPDATE
                SET status = EXCLUDED.status,
                    user_id = EXCLUDED.user_id,
                    email = EXCLUDED.email,
                    name = EXCLUDED.name,
                    created_at = EXCLUDED.created_at,
                    updated_at = EXCLUDED.updated_at,
                    version = EXCLUDED.version
        ),
        purged AS (
            DELETE FROM idempotency_keys
            WHERE (subject, key) IN (
                SELECT subject, key FROM idempotency_keys
                WHERE expires_at <= now() AND (subject, key) <> ($1, $2)
                ORDER BY expires_at
                LIMIT $7
                FOR UPDATE SKIP LOCKED
            )
        )
        SELECT false AS "replayed!", 201::smallint AS "status!", $3::bytea AS "request_hash!",
               id AS "id!: UserId", email AS "email?", name AS "name?",
               created_at AS "created_at!", updated_at AS "updated_at!", version AS "version!"
        FROM created
        UNION ALL
        SELECT true, status, request_hash, user_id, email, name, created_at, updated_at, version
        FROM existing
        "#,
        subject,
        key,
        request_hash.as_slice(),
        new_user.email.as_ref(),
        new_user.name.as_ref(),
        IDEMPOTENCY_KEY_HOURS,
        PURGED_PER_CREATE,
    )
    .fetch_optional(connection)
    .await
}

#[tracing::instrument(name = "Find a user by id", skip_all, fields(db.system.name = "postgresql"))]
pub async fn find(db: &Database, id: UserId) -> Result<User, StoreError> {
    let found = db.read(|connection| Box::pin(find_row(connection, id)));
    found.await?.ok_or(StoreError::NotFound(id))
}

async fn find_row(connection: &mut PgConnection, id: UserId) -> sqlx::Result<Option<User>> {
    sqlx::query_as!(
        User,
        r#"
        SELECT id AS "id: UserId", email, name, created_at, updated_at, version
        FROM users
        WHERE id = $1
        "#,
        id.get(),
    )
    .fetch_optional(connection)
    .await
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

async fn list_rows(
    connection: &mut PgConnection,
    after: Option<UserId>,
    limit: i64,
) -> sqlx::Result<Vec<User>> {
    sqlx::query_as!(
        User,
        r#"
        SELECT id AS "id: UserId", email, name, created_at, updated_at, version
        FROM users
        WHERE id > $1
        ORDER BY id
        LIMIT $2
        "#,
        after.map_or(0, UserId::get),
        limit,
    )
    .fetch_all(connection)
    .await
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

async fn find_by_email_row(
    connection: &mut PgConnection,
    email: &Email,
    after: Option<UserId>,
) -> sqlx::Result<Option<User>> {
    sqlx::query_as!(
        User,
        r#"
        SELECT id AS "id: UserId", email, name, created_at, updated_at, version
        FROM users
        WHERE lower(email) = lower($1) AND id > $2
        "#,
        email.as_ref(),
        after.map_or(0, UserId::get),
    )
    .fetch_optional(connection)
    .await
}

/// Applies `patch` to the user, if it is in one of the `expected` versions. A patch that
/// changes nothing leaves the user, its version and `updated_at` as they were.
#[tracing::instrument(name = "Update a user", skip_all, fields(db.system.name = "postgresql"))]
pub async fn update(
    db: &Database,
    id: UserId,
    patch: &UserPatch,
    expected: Expected<'_>,
) -> Result<User, StoreError> {
    let updated = db.write(|connection| {
        let (patch, expected) = (patch.clone(), expected.map(<[i64]>::to_vec));
        Box::pin(async move { update_row(connection, id, &patch, expected.as_deref()).await })
    });
    let Some(row) = updated.await? else {
        return Err(StoreError::NotFound(id));
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
    user.ok_or_else(|| missed(id, expected))
}

/// The user as an update left it; all `None` when the user was found but not updated.
struct UpdatedRow {
    id: Option<UserId>,
    email: Option<String>,
    name: Option<String>,
    created_at: Option<OffsetDateTime>,
    updated_at: Option<OffsetDateTime>,
    version: Option<i64>,
}

async fn update_row(
    connection: &mut PgConnection,
    id: UserId,
    patch: &UserPatch,
    expected: Expected<'_>,
) -> sqlx::Result<Option<UpdatedRow>> {
    // `target` is the row as the statement found it; the UPDATE re-checks the version against
    // the latest row, waiting for any concurrent change to commit first.
    sqlx::query_as!(
        UpdatedRow,
        r#"
        WITH target AS (
            SELECT id FROM users WHERE id = $1
        ),
        updated AS (
            UPDATE users
            SET email = coalesce($2, email), name = coalesce($3, name)
            WHERE id = $1 AND ($4::bigint[] IS NULL OR version = ANY($4))
            RETURNING id, email, name, created_at, updated_at, version
        )
        SELECT updated.id AS "id?: UserId", updated.email AS "email?", updated.name AS "name?",
               updated.created_at AS "created_at?", updated.updated_at AS "updated_at?",
               updated.version AS "version?"
        FROM target LEFT JOIN updated ON true
        "#,
        id.get(),
        patch.email.as_ref().map(AsRef::as_ref),
        patch.name.as_ref().map(AsRef::as_ref),
        expected,
    )
    .fetch_optional(connection)
    .await
}

/// Deletes the user, if it is in one of the `expected` versions, and, in the same statement,
/// every copy of its data: the responses recorded for its idempotent creates become tombstones
/// (migrations/0008).
#[tracing::instrument(name = "Delete a user", skip_all, fields(db.system.name = "postgresql"))]
pub async fn delete(db: &Database, id: UserId, expected: Expected<'_>) -> Result<(), StoreError> {
    let deleted = db.write(|connection| {
        let expected = expected.map(<[i64]>::to_vec);
        Box::pin(async move { delete_row(connection, id, expected.as_deref()).await })
    });
    match deleted.await? {
        None => Err(StoreError::NotFound(id)),
        Some(true) => Ok(()),
        Some(false) => Err(missed(id, expected)),
    }
}

/// Whether the user was deleted; `None` when there was no such user.
async fn delete_row(
    connection: &mut PgConnection,
    id: UserId,
    expected: Expected<'_>,
) -> sqlx::Result<Option<bool>> {
    sqlx::query_scalar!(
        r#"
        WITH target AS (
            SELECT id FROM users WHERE id = $1
        ),
        deleted AS (
            DELETE FROM users
            WHERE id = $1 AND ($2::bigint[] IS NULL OR version = ANY($2))
            RETURNING id
        ),
        -- Erasure: the responses recorded for the creates of this user keep no copy of it.
        erased AS (
            UPDATE idempotent_responses
            SET status = 410, email = NULL, name = NULL
            WHERE user_id IN (SELECT id FROM deleted)
        )
        SELECT EXISTS (SELECT FROM deleted) AS "deleted!"
        FROM target
        "#,
        id.get(),
        expected,
    )
    .fetch_optional(connection)
    .await
}

/// Why a user the statement found was not changed: its version did not match, or (with no
/// version expected) a concurrent delete took it first.
fn missed(id: UserId, expected: Expected<'_>) -> StoreError {
    match expected {
        Some(_) => StoreError::VersionMismatch,
        None => StoreError::NotFound(id),
    }
}
