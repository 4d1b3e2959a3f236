//! `GET /users?limit=&cursor=&email=`: 200 with a page of users by id ascending and the
//! cursor of the next page (`null` on the last).

use lambda_http::{http::StatusCode, Body, Error, Request, Response};
use serde::Serialize;

use crate::{
    auth::Scope,
    domain::{Cursor, Email, User},
    http::{self, ApiError, Query, Route},
    state::AppState,
};

/// Page sizes: `limit` defaults to 20 and may be 1 to 100.
const DEFAULT_LIMIT: i64 = 20;
const MAX_LIMIT: i64 = 100;

#[derive(Serialize)]
struct Page {
    items: Vec<User>,
    next_cursor: Option<String>,
}

/// The route this module serves.
pub const ROUTE: Route = Route {
    key: "GET /users",
    scope: Some(Scope::UsersRead),
    function: "list-users",
};

pub async fn handler(state: &AppState, req: Request) -> Result<Response<Body>, Error> {
    Ok(http::handle(&req, ROUTE.key, list_users(state, &req)).await)
}

#[tracing::instrument(name = "List users", skip_all)]
async fn list_users(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    super::admit(state, req, &ROUTE).await?;
    let query = Query::from_request(req, &["limit", "cursor", "email"])?;
    let limit = query.parse("limit", parse_limit)?.unwrap_or(DEFAULT_LIMIT);
    let after = query
        .parse("cursor", Cursor::parse)?
        .map(|cursor| cursor.after);
    let email = query.parse("email", Email::parse)?;
    let page = match email {
        // At most one user has an address: never a next page.
        Some(email) => {
            let user = state.reads().find_by_email(&email, after).await?;
            Page {
                items: user.into_iter().collect(),
                next_cursor: None,
            }
        }
        None => {
            // One more than the page: whether there is a next page, without a count.
            let mut items = state.reads().list(after, limit + 1).await?;
            let more = items.len() as i64 > limit;
            items.truncate(usize::try_from(limit).unwrap_or(0));
            let next_cursor = match items.last() {
                Some(last) if more => Some(Cursor { after: last.id }.encode()),
                _ => None,
            };
            Page { items, next_cursor }
        }
    };
    http::json(StatusCode::OK, &page)
}

fn parse_limit(raw: &str) -> Result<i64, String> {
    let invalid = || format!("must be an integer from 1 to {MAX_LIMIT}");
    // Digits only, as in an id: no sign, no spaces, no leading zeros.
    if raw.is_empty()
        || raw.len() > 3
        || !raw.bytes().all(|b| b.is_ascii_digit())
        || raw.starts_with('0')
    {
        return Err(invalid());
    }
    raw.parse::<i64>()
        .ok()
        .filter(|limit| (1..=MAX_LIMIT).contains(limit))
        .ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_is_a_plain_integer_from_1_to_100() {
        for (raw, expected) in [("1", Some(1)), ("20", Some(20)), ("100", Some(100))] {
            assert_eq!(parse_limit(raw).ok(), expected, "{raw}");
        }
        for raw in [
            "",
            "0",
            "101",
            "-1",
            "+5",
            "05",
            " 5",
            "5.0",
            "1e2",
            "abc",
            "99999999999",
        ] {
            assert!(parse_limit(raw).is_err(), "{raw}");
        }
    }
}
