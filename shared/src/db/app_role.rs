//! The role the API functions log in as: a member of `users_api_app` (migrations/0004), which
//! may read and change rows of the application's tables and nothing else. The `migrate`
//! function, connected as the owner, creates it from the role's own secret.

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use super::{
    credentials::{json_object, required_string},
    CredentialsError,
};

/// The group role that holds the API's privileges (migrations/0004).
pub const APP_GROUP_ROLE: &str = "users_api_app";

/// SQLSTATE 42710: the role was created meanwhile (another deploy's `migrate`).
const DUPLICATE_OBJECT: &str = "42710";

/// PBKDF2 iterations of the verifier: Postgres's own default (`scram_iterations`).
const SCRAM_ITERATIONS: u32 = 4096;

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
        // The role gets the SCRAM verifier of its password, never the password: a statement's
        // text and parameters reach the server's log (`log_statement = all`, pgaudit, or any
        // failed statement), and the verifier lets nobody log in. Names and verifiers cannot
        // be bind parameters in DDL: the server quotes them (`format`'s %I and %L), so no value
        // is spliced into SQL text here.
        let salt: [u8; 16] = rand::thread_rng().gen();
        let verifier = scram_verifier(login.password.expose_secret(), &salt, SCRAM_ITERATIONS);
        let create: String = sqlx::query_scalar(
            "SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', $1::text, $2::text)",
        )
        .bind(&login.username)
        .bind(&verifier)
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

/// The SCRAM-SHA-256 verifier of `password` (RFC 5802, RFC 7677), as Postgres stores it and as
/// `CREATE ROLE … PASSWORD` takes it in place of a password:
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, base64.
fn scram_verifier(password: &str, salt: &[u8], iterations: u32) -> String {
    // Postgres prepares the password with SASLprep, and uses it as it is when that fails.
    let prepared = stringprep::saslprep(password)
        .map_or_else(|_| password.as_bytes().to_vec(), |p| p.as_bytes().to_vec());
    let salted = hi(&prepared, salt, iterations);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key)
    )
}

/// `Hi()` of RFC 5802: PBKDF2 with HMAC-SHA-256, one block.
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut block = mac(password);
    block.update(salt);
    block.update(&1_u32.to_be_bytes());
    let mut u: [u8; 32] = block.finalize().into_bytes().into();
    let mut result = u;
    for _ in 1..iterations {
        let mut next = mac(password);
        next.update(&u);
        u = next.finalize().into_bytes().into();
        for (acc, byte) in result.iter_mut().zip(u) {
            *acc ^= byte;
        }
    }
    result
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = mac(key);
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length: this cannot fail.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verifier_is_the_one_postgres_derives_from_the_password() {
        // Derived independently (Python's hashlib.pbkdf2_hmac and hmac) for this salt.
        let salt: Vec<u8> = (0..16).collect();

        let verifier = scram_verifier("correct horse battery staple", &salt, 4096);

        assert_eq!(
            verifier,
            "SCRAM-SHA-256$4096:AAECAwQFBgcICQoLDA0ODw==$\
             ONYbSJBXtKl6bP6PVqw8pm9e7EiacprLnoUQPFS80Hw=:\
             IPOtHuGJ2HifEQg74W2XXqqCrCyQG55GbPRHa6g6n9w="
        );
        assert!(!verifier.contains("horse"));
    }
}
