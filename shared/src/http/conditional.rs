//! Entity tags and the conditional request headers that carry them (RFC 9110, section 13).
//!
//! A user's `ETag` is its version, quoted: strong, since a version names exactly one body.

use lambda_http::{
    http::{header, HeaderName, HeaderValue},
    Request,
};

use super::ApiError;

/// The `ETag` of a user in `version`.
pub fn etag(version: i64) -> HeaderValue {
    // Digits and quotes only: always a valid header value.
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// What `If-Match` asks of a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: any current version, so long as there is one.
    Any,
    /// One of these versions. Weak tags never match a strong comparison and tags this API did
    /// not issue name no version, so both are left out: with no version left, none matches.
    Versions(Vec<i64>),
}

/// `If-Match` for a change: `None` when it is absent. Either way, with no current user the
/// condition is false (RFC 9110, section 13.1.1): 412, not 404.
pub fn if_match(req: &Request) -> Result<Option<IfMatch>, ApiError> {
    Ok(match EntityTags::from_request(req, header::IF_MATCH)? {
        None => None,
        Some(EntityTags::Any) => Some(IfMatch::Any),
        Some(EntityTags::List(tags)) => Some(IfMatch::Versions(
            tags.iter()
                .filter(|tag| !tag.weak)
                .filter_map(|tag| version_of(&tag.opaque))
                .collect(),
        )),
    })
}

/// Whether `If-None-Match` names the user's current version (weak comparison), so that a GET
/// answers 304 Not Modified.
pub fn if_none_match(req: &Request, version: i64) -> Result<bool, ApiError> {
    Ok(
        match EntityTags::from_request(req, header::IF_NONE_MATCH)? {
            None => false,
            Some(EntityTags::Any) => true,
            Some(EntityTags::List(tags)) => tags
                .iter()
                .any(|tag| version_of(&tag.opaque) == Some(version)),
        },
    )
}

/// The newest version of the user the client presents in `If-None-Match`: the largest its
/// tags name (`*`, some version: 0), `None` without the header. A read replica behind it sends
/// the read to the writer (`users::Reads`), so a client never reads older than it has seen.
pub fn newest_seen(req: &Request) -> Result<Option<i64>, ApiError> {
    Ok(
        match EntityTags::from_request(req, header::IF_NONE_MATCH)? {
            None => None,
            Some(EntityTags::Any) => Some(0),
            Some(EntityTags::List(tags)) => {
                tags.iter().filter_map(|tag| version_of(&tag.opaque)).max()
            }
        },
    )
}

/// The version an opaque tag names, if it is one this API issued: a canonical decimal.
fn version_of(opaque: &str) -> Option<i64> {
    opaque
        .parse::<i64>()
        .ok()
        .filter(|version| version.to_string() == opaque)
}

#[derive(Debug, PartialEq, Eq)]
enum EntityTags {
    Any,
    List(Vec<EntityTag>),
}

#[derive(Debug, PartialEq, Eq)]
struct EntityTag {
    weak: bool,
    opaque: String,
}

impl EntityTags {
    /// The header's value (every line of it, as one list), `None` when absent, 400 when it is
    /// not `*` or a list of entity tags.
    fn from_request(req: &Request, name: HeaderName) -> Result<Option<Self>, ApiError> {
        let mut values = req.headers().get_all(&name).iter().peekable();
        if values.peek().is_none() {
            return Ok(None);
        }
        let malformed = || {
            ApiError::BadRequest(format!(
                "The {name} header must be * or a list of entity tags, such as \"3\"."
            ))
        };
        let mut joined = String::new();
        for value in values {
            let value = value.to_str().map_err(|_| malformed())?;
            if !joined.is_empty() {
                joined.push(',');
            }
            joined.push_str(value);
        }
        Self::parse(&joined).ok_or_else(malformed).map(Some)
    }

    /// RFC 9110's `If-Match = "*" / #entity-tag`: a list whose empty elements are ignored,
    /// of tags whose opaque part may hold commas (`"a,b"` is one tag).
    fn parse(value: &str) -> Option<Self> {
        const OWS: &[char] = &[' ', '\t'];
        let value = value.trim_matches(OWS);
        if value == "*" {
            return Some(Self::Any);
        }
        let mut tags = Vec::new();
        let mut rest = value;
        loop {
            rest = rest.trim_start_matches(|c| c == ',' || OWS.contains(&c));
            if rest.is_empty() {
                break;
            }
            let (weak, quoted) = match rest.strip_prefix("W/") {
                Some(after) => (true, after),
                None => (false, rest),
            };
            let (opaque, after) = quoted.strip_prefix('"')?.split_once('"')?;
            // etagc: visible ASCII but the quote (obs-text is not accepted here).
            if !opaque.bytes().all(|b| b.is_ascii_graphic()) {
                return None;
            }
            tags.push(EntityTag {
                weak,
                opaque: opaque.to_owned(),
            });
            // Between two tags, a comma; after the last, nothing.
            let after = after.trim_start_matches(OWS);
            if !(after.is_empty() || after.starts_with(',')) {
                return None;
            }
            rest = after;
        }
        (!tags.is_empty()).then_some(Self::List(tags))
    }
}

#[cfg(test)]
mod tests {
    use test_support::TestRequest;

    use super::*;

    fn with(name: &str, value: &str) -> Request {
        TestRequest::get("/users/1").header(name, value).build().0
    }

    #[test]
    fn if_match_names_the_strong_versions_this_api_issued() {
        for (value, expected) in [
            ("*", IfMatch::Any),
            ("\"3\"", IfMatch::Versions(vec![3])),
            (" \"3\" , \"5\",", IfMatch::Versions(vec![3, 5])),
            ("W/\"3\"", IfMatch::Versions(vec![])),
            ("\"03\", \"x\", \"3\"", IfMatch::Versions(vec![3])),
            ("\"a,b\", \"4\",, ", IfMatch::Versions(vec![4])),
            ("\"\"", IfMatch::Versions(vec![])),
        ] {
            assert_eq!(
                if_match(&with("if-match", value)).ok(),
                Some(Some(expected)),
                "{value}"
            );
        }
        assert_eq!(
            if_match(&TestRequest::get("/users/1").build().0).ok(),
            Some(None)
        );
    }

    #[test]
    fn if_none_match_compares_weakly() {
        for (value, version, expected) in [
            ("*", 7, true),
            ("\"7\"", 7, true),
            ("W/\"7\"", 7, true),
            ("\"6\", \"8\"", 7, false),
        ] {
            let matched = if_none_match(&with("if-none-match", value), version).ok();
            assert_eq!(matched, Some(expected), "{value}");
        }
    }

    #[test]
    fn a_malformed_condition_is_a_bad_request() {
        for value in [
            "3",
            "\"3",
            "W/3",
            "\"a b\"",
            ",",
            "\"3\" \"4\"",
            "**",
            "*, \"3\"",
            "w/\"3\"",
        ] {
            let err = if_match(&with("if-match", value)).err();
            assert!(
                matches!(err, Some(ApiError::BadRequest(_))),
                "{value}: {err:?}"
            );
        }
    }
}
