use serde::Serialize;
use time::OffsetDateTime;

use super::{Email, UserId, UserName};

/// A user as stored and as returned by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Moves on every change (the database's trigger): the user's `ETag`, not part of the body.
    #[serde(skip)]
    pub version: i64,
}

/// A user about to be created: every field already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub email: Email,
    pub name: UserName,
}

/// A change to a user (a JSON merge patch, RFC 7396): each field given is set, each absent one
/// kept. Neither may be removed, both being required.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPatch {
    pub email: Option<Email>,
    pub name: Option<UserName>,
}
