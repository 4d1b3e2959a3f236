//! Queries on the `users` table. They take domain types only, and are checked against the
//! schema at compile time (`.sqlx/` holds the offline data).

use sqlx::PgConnection;

use crate::domain::{NewUser, User, UserId};

/// The unique index that makes emails unique case-insensitively (migrations/0001).
const EMAIL_UNIQUE_INDEX: &str = "users_email_lower_key";

/// Another user already has the email address (case-insensitively).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a user with this email already exists")]
pub struct EmailTaken;

#[tracing::instrument(name = "Insert a user", skip_all)]
/// Inserts the user. The outer error is the database's; a taken email is an answer, not a
/// failure, so it is the inner one.
pub async fn insert(
    connection: &mut PgConnection,
    new_user: &NewUser,
) -> Result<Result<User, EmailTaken>, sqlx::Error> {
    let inserted = sqlx::query_as!(
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
    .await;
    match inserted {
        Ok(user) => Ok(Ok(user)),
        Err(err) => match err.as_database_error() {
            Some(db) if db.is_unique_violation() && db.constraint() == Some(EMAIL_UNIQUE_INDEX) => {
                Ok(Err(EmailTaken))
            }
            _ => Err(err),
        },
    }
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
