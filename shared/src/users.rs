//! Queries on the `users` table. They take domain types only, and are checked against the
//! schema at compile time (`.sqlx/` holds the offline data).

use sqlx::PgConnection;

use crate::domain::{NewUser, User, UserId};

/// The unique index that makes emails unique case-insensitively (migrations/0001).
const EMAIL_UNIQUE_INDEX: &str = "users_email_lower_key";

#[derive(Debug, thiserror::Error)]
pub enum InsertUserError {
    #[error("a user with this email already exists")]
    EmailTaken,
    #[error("failed to insert the user")]
    Database(#[source] sqlx::Error),
}

#[tracing::instrument(name = "Insert a user", skip_all)]
pub async fn insert(
    connection: &mut PgConnection,
    new_user: &NewUser,
) -> Result<User, InsertUserError> {
    sqlx::query_as!(
        User,
        r#"
        INSERT INTO users (email, name)
        VALUES ($1, $2)
        RETURNING id AS "id: UserId", email, name, created_at, updated_at
        "#,
        new_user.email.as_ref(),
        new_user.name.as_ref(),
    )
    .fetch_one(connection)
    .await
    .map_err(|err| match err.as_database_error() {
        Some(db) if db.is_unique_violation() && db.constraint() == Some(EMAIL_UNIQUE_INDEX) => {
            InsertUserError::EmailTaken
        }
        _ => InsertUserError::Database(err),
    })
}

#[tracing::instrument(name = "Find a user by id", skip(connection))]
pub async fn find(connection: &mut PgConnection, id: UserId) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as!(
        User,
        r#"
        SELECT id AS "id: UserId", email, name, created_at, updated_at
        FROM users
        WHERE id = $1
        "#,
        id.get(),
    )
    .fetch_optional(connection)
    .await
}
