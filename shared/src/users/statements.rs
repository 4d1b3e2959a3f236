//! The statements themselves, one per operation, each returning what the database sent: what
//! it means (a refusal, a replay) is read in `users/mod.rs`. A write returns every row it
//! changes and is read with `db::write_returning`, which tells a connection lost after a row
//! (the write may have committed) from one lost before.

use sqlx::PgConnection;
use time::OffsetDateTime;

use super::{IDEMPOTENCY_KEY_HOURS, PURGED_PER_CREATE};
use crate::{
    db::write_returning,
    domain::{Email, NewUser, User, UserId, UserPatch},
};

pub(super) async fn insert_row(
    connection: &mut PgConnection,
    new_user: &NewUser,
) -> sqlx::Result<User> {
    let rows = sqlx::query_as!(
        User,
        r#"
        INSERT INTO users (email, name)
        VALUES ($1, $2)
        RETURNING id AS "id: UserId", email, name, created_at, updated_at, version
        "#,
        new_user.email.as_ref(),
        new_user.name.as_ref(),
    )
    .fetch(connection);
    write_returning(rows).await?.ok_or(sqlx::Error::RowNotFound)
}

/// What an idempotent create's statement found or made.
pub(super) struct IdempotentRow {
    pub(super) replayed: bool,
    pub(super) status: i16,
    pub(super) request_hash: Vec<u8>,
    pub(super) id: UserId,
    pub(super) email: Option<String>,
    pub(super) name: Option<String>,
    pub(super) created_at: OffsetDateTime,
    pub(super) updated_at: OffsetDateTime,
    pub(super) version: i64,
}

pub(super) async fn insert_idempotently_row(
    connection: &mut PgConnection,
    subject: &str,
    key: &str,
    request_hash: &[u8; 32],
    new_user: &NewUser,
) -> sqlx::Result<Option<IdempotentRow>> {
    let rows = sqlx::query_as!(
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
    .fetch(connection);
    write_returning(rows).await
}

pub(super) async fn find_row(
    connection: &mut PgConnection,
    id: UserId,
) -> sqlx::Result<Option<User>> {
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

pub(super) async fn list_rows(
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

pub(super) async fn find_by_email_row(
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

/// A user as a replica has it, with how far behind the writer the replica was when it read it
/// (`replica_lag_ms()`, migrations/0009), in milliseconds: `None` when it cannot tell.
pub(super) struct ReplicaRow {
    pub(super) lag_ms: Option<i64>,
    pub(super) id: UserId,
    pub(super) email: String,
    pub(super) name: String,
    pub(super) created_at: OffsetDateTime,
    pub(super) updated_at: OffsetDateTime,
    pub(super) version: i64,
}

impl From<ReplicaRow> for User {
    fn from(row: ReplicaRow) -> Self {
        Self {
            id: row.id,
            email: row.email,
            name: row.name,
            created_at: row.created_at,
            updated_at: row.updated_at,
            version: row.version,
        }
    }
}

// The replica's statements are the writer's, with the lag in a scalar subquery: run once per
// statement, not per row. A read that finds nothing returns no row, hence no lag.

/// [`find_row`] on a replica.
pub(super) async fn find_on_replica_row(
    connection: &mut PgConnection,
    id: UserId,
) -> sqlx::Result<Vec<ReplicaRow>> {
    sqlx::query_as!(
        ReplicaRow,
        r#"
        SELECT (SELECT replica_lag_ms()) AS lag_ms,
               id AS "id: UserId", email, name, created_at, updated_at, version
        FROM users
        WHERE id = $1
        "#,
        id.get(),
    )
    .fetch_all(connection)
    .await
}

/// [`list_rows`] on a replica.
pub(super) async fn list_on_replica_rows(
    connection: &mut PgConnection,
    after: Option<UserId>,
    limit: i64,
) -> sqlx::Result<Vec<ReplicaRow>> {
    sqlx::query_as!(
        ReplicaRow,
        r#"
        SELECT (SELECT replica_lag_ms()) AS lag_ms,
               id AS "id: UserId", email, name, created_at, updated_at, version
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

/// [`find_by_email_row`] on a replica.
pub(super) async fn find_by_email_on_replica_row(
    connection: &mut PgConnection,
    email: &Email,
    after: Option<UserId>,
) -> sqlx::Result<Vec<ReplicaRow>> {
    sqlx::query_as!(
        ReplicaRow,
        r#"
        SELECT (SELECT replica_lag_ms()) AS lag_ms,
               id AS "id: UserId", email, name, created_at, updated_at, version
        FROM users
        WHERE lower(email) = lower($1) AND id > $2
        "#,
        email.as_ref(),
        after.map_or(0, UserId::get),
    )
    .fetch_all(connection)
    .await
}

/// The user as an update left it; all `None` when the user was found but not updated.
pub(super) struct UpdatedRow {
    pub(super) id: Option<UserId>,
    pub(super) email: Option<String>,
    pub(super) name: Option<String>,
    pub(super) created_at: Option<OffsetDateTime>,
    pub(super) updated_at: Option<OffsetDateTime>,
    pub(super) version: Option<i64>,
}

pub(super) async fn update_row(
    connection: &mut PgConnection,
    id: UserId,
    patch: &UserPatch,
    expected: Option<&[i64]>,
) -> sqlx::Result<Option<UpdatedRow>> {
    // `target` is the row as the statement found it; the UPDATE re-checks the version against
    // the latest row, waiting for any concurrent change to commit first.
    let rows = sqlx::query_as!(
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
    .fetch(connection);
    write_returning(rows).await
}

/// Whether the user was deleted; `None` when there was no such user.
pub(super) async fn delete_row(
    connection: &mut PgConnection,
    id: UserId,
    expected: Option<&[i64]>,
) -> sqlx::Result<Option<bool>> {
    let rows = sqlx::query_scalar!(
        r#"
        WITH target AS (
            SELECT id FROM users WHERE id = $1
        ),
        deleted AS (
            DELETE FROM users
            WHERE id = $1 AND ($2::bigint[] IS NULL OR version = ANY($2))
            RETURNING id
        ),
        -- Erasure: the responses recorded for the creates of this user keep no copy of it,
        -- nor do their keys keep the hash of the request that made it (a dictionary of likely
        -- addresses would reverse it): a tombstone answers 410 whatever the body.
        erased AS (
            UPDATE idempotent_responses
            SET status = 410, email = NULL, name = NULL
            WHERE user_id IN (SELECT id FROM deleted)
        ),
        unhashed AS (
            UPDATE idempotency_keys k
            SET request_hash = '\x0000000000000000000000000000000000000000000000000000000000000000'
            FROM idempotent_responses r
            WHERE r.user_id IN (SELECT id FROM deleted)
              AND (k.subject, k.key) = (r.subject, r.key)
        )
        SELECT EXISTS (SELECT FROM deleted) AS "deleted!"
        FROM target
        "#,
        id.get(),
        expected,
    )
    .fetch(connection);
    write_returning(rows).await
}

/// Deletes up to `limit` expired idempotency keys, oldest first (their recorded responses go
/// with them: `ON DELETE CASCADE`); answers how many.
pub(super) async fn purge_expired_keys_row(
    connection: &mut PgConnection,
    limit: i64,
) -> sqlx::Result<i64> {
    let rows = sqlx::query_scalar!(
        r#"
        WITH purged AS (
            DELETE FROM idempotency_keys
            WHERE (subject, key) IN (
                SELECT subject, key FROM idempotency_keys
                WHERE expires_at <= now()
                ORDER BY expires_at
                LIMIT $1
                FOR UPDATE SKIP LOCKED
            )
            RETURNING 1
        )
        SELECT count(*) AS "purged!" FROM purged
        "#,
        limit,
    )
    .fetch(connection);
    write_returning(rows).await?.ok_or(sqlx::Error::RowNotFound)
}
