//! The role the API functions log in as: a member of `users_api_app` (migrations/0004), which
//! may read and change rows of the application's tables and nothing else. The `migrate`
//! function, connected as the owner, creates it from the role's own secret.

use secrecy::{ExposeSecret, SecretString};
use sqlx::PgConnection;

use super::{
    credentials::{json_object, required_string},
    CredentialsError,
};

/// The group role that holds the API's privileges (migrations/0004).
pub const APP_GROUP_ROLE: &str = "users_api_app";

/// SQLSTATE 42710: the role was created meanwhile (another deploy's `migrate`).
const DUPLICATE_OBJECT: &str = "42710";

/// The user name and password in the application role's secret (the JSON RDS writes and the
/// multi-user rotation keeps up to date).
pub struct Login {
    pub username: String,
    password: SecretString,
}

impl Login {
    pub fn from_secret(value: &SecretString) -> Result<Self, CredentialsError> {
        let json = json_object(value.expose_secret())?;
        Ok(Self {
            username: required_string(&json, "username")?.to_owned(),
            password: SecretString::from(required_string(&json, "password")?),
        })
    }
}

/// Creates the login role when it does not exist, and makes it a member of [`APP_GROUP_ROLE`]
/// either way. An existing role's password is left alone: from its first rotation on, the
/// secret's rotation owns it.
#[tracing::instrument(name = "Ensure the login role", skip_all, fields(role = login.username))]
pub async fn ensure_login(connection: &mut PgConnection, login: &Login) -> Result<(), sqlx::Error> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)")
            .bind(&login.username)
            .fetch_one(&mut *connection)
            .await?;
    if !exists {
        // Names and passwords cannot be bind parameters in DDL: the server quotes them
        // (`format`'s %I and %L), so no value is spliced into SQL text here.
        let create: String = sqlx::query_scalar(
            "SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', $1::text, $2::text)",
        )
        .bind(&login.username)
        .bind(login.password.expose_secret())
        .fetch_one(&mut *connection)
        .await?;
        match sqlx::raw_sql(&create).execute(&mut *connection).await {
            Err(sqlx::Error::Database(err)) if err.code().as_deref() == Some(DUPLICATE_OBJECT) => {}
            result => {
                result?;
                tracing::info!("created the application's login role");
            }
        }
    }
    let grant: String = sqlx::query_scalar("SELECT format('GRANT %I TO %I', $1::text, $2::text)")
        .bind(APP_GROUP_ROLE)
        .bind(&login.username)
        .fetch_one(&mut *connection)
        .await?;
    sqlx::raw_sql(&grant).execute(&mut *connection).await?;
    Ok(())
}

/// Lets `login` log in with IAM auth tokens (RDS's `rds_iam` role; after this, RDS refuses its
/// password). Outside RDS there is no such role, and nothing to grant.
pub async fn grant_rds_iam(
    connection: &mut PgConnection,
    login: &Login,
) -> Result<bool, sqlx::Error> {
    let grant: Option<String> = sqlx::query_scalar(
        "SELECT format('GRANT rds_iam TO %I', $1::text) FROM pg_roles WHERE rolname = 'rds_iam'",
    )
    .bind(&login.username)
    .fetch_optional(&mut *connection)
    .await?;
    let Some(grant) = grant else {
        return Ok(false);
    };
    sqlx::raw_sql(&grant).execute(&mut *connection).await?;
    Ok(true)
}
