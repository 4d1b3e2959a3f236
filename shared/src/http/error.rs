use lambda_http::{
    http::{header, HeaderValue, StatusCode},
    Body, Response,
};
use std::borrow::Cow;

use serde::Serialize;

use super::{echoed, APPLICATION_PROBLEM_JSON, MAX_ECHOED_PATH};
use crate::{
    auth::{AuthError, Denied},
    db,
    users::StoreError,
};

/// Every problem's `type` is this prefix and the kind's slug. A `tag:` URI (RFC 4151) names a
/// kind of problem without promising a page at that address.
pub const PROBLEM_TYPE_PREFIX: &str = "tag:users-api,2026:problem:";

/// Seconds a client should wait before retrying when a dependency is unavailable, unless the
/// database's backoff says when its next connect attempt is due.
const RETRY_AFTER_SECONDS: u64 = 5;

/// Seconds a client should wait before retrying a request whose idempotency key is in use: a
/// create takes milliseconds, so by then the first request's response can be replayed.
const IN_PROGRESS_RETRY_AFTER_SECONDS: u32 = 1;

/// Every way a request can fail.
///
/// A variant's `Display` is the problem's `detail`, written for the client. For 5xx it is fixed
/// text; the cause is the `#[source]`, which goes to the log only. Adding a kind of problem is
/// a variant here and a row in [`ApiError::kind`].
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed: bad JSON, a missing body, a bad id in the path.
    #[error("{0}")]
    BadRequest(String),
    /// No usable bearer token. The detail says only whether one was sent; why a token was
    /// refused goes to the log ([`ApiError::log_detail`]), not to whoever sent it.
    #[error("{}", unauthorized_detail(.0))]
    Unauthorized(AuthError),
    /// A valid token without the scope the route needs.
    #[error("The token does not grant the {0} scope.")]
    Forbidden(String),
    /// `allow`: the resource's methods, as the `Allow` header lists them.
    #[error("This resource supports only {allow}.")]
    MethodNotAllowed { allow: String },
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A body larger than any request of this API needs, refused before it is read.
    #[error("The request body is larger than {limit} bytes.")]
    PayloadTooLarge { limit: usize },
    /// Well-formed, but fields are missing, unknown or invalid.
    #[error("{}", validation_detail(.0))]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A request with the same idempotency key is still being processed.
    #[error(
        "A request with this Idempotency-Key is still in progress. Retry after {} second to \
         get its response.",
        IN_PROGRESS_RETRY_AFTER_SECONDS
    )]
    RequestInProgress,
    /// An idempotent create replayed after the user it made was deleted: the user is not made
    /// again, and the response recorded for the key no longer holds its data.
    #[error(
        "The user this Idempotency-Key created has since been deleted. Use a new key to create \
         it again."
    )]
    CreatedUserDeleted,
    /// An `If-Match` names none of the resource's current versions.
    #[error("{0}")]
    PreconditionFailed(String),
    /// An idempotency key used before with another request body.
    #[error(
        "This Idempotency-Key was used with a different request body. Use a new key for a new \
         request."
    )]
    IdempotencyKeyReused,
    /// The database cannot be reached or cannot serve now; the client should retry.
    #[error(
        "The service is temporarily unavailable. Retry after {} s.",
        retry_after_seconds(.0)
    )]
    Unavailable(#[source] anyhow::Error),
    /// A write whose connection to the database was lost where it may have committed: not
    /// retried, since a retry could answer 409, 412 or 404 to a change that was made.
    #[error(
        "The connection to the database was lost before the outcome of this change was known: \
         it may or may not have been made. Read the user to find out. To retry safely, send a \
         create again with the same Idempotency-Key (a create without one may then find its \
         email taken), or an update or a delete with If-Match naming the version you read."
    )]
    OutcomeUnknown(#[source] anyhow::Error),
    /// A bug or an unexpected failure: logged in full, answered generically.
    #[error("An unexpected error occurred. Quote the request_id if you report it.")]
    Internal(#[source] anyhow::Error),
}

/// One invalid field of a request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// What kind of problem an [`ApiError`] is: its status, its `type` slug and its title.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Kind {
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
}

impl ApiError {
    /// The table of problem kinds: one row each.
    fn kind(&self) -> Kind {
        use StatusCode as S;
        let (status, slug, title) = match self {
            Self::BadRequest(_) => (S::BAD_REQUEST, "bad-request", "Bad request"),
            Self::Unauthorized(_) => (S::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            Self::Forbidden(_) => (S::FORBIDDEN, "forbidden", "Forbidden"),
            Self::MethodNotAllowed { .. } => (
                S::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            Self::UnsupportedMediaType(_) => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            Self::PayloadTooLarge { .. } => (
                S::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
            ),
            Self::Validation(_) => (S::UNPROCESSABLE_ENTITY, "validation", "Validation failed"),
            Self::NotFound(_) => (S::NOT_FOUND, "not-found", "Not found"),
            Self::Conflict(_) => (S::CONFLICT, "conflict", "Conflict"),
            Self::RequestInProgress => (S::CONFLICT, "request-in-progress", "Request in progress"),
            Self::CreatedUserDeleted => (S::GONE, "created-user-deleted", "Created user deleted"),
            Self::PreconditionFailed(_) => (
                S::PRECONDITION_FAILED,
                "precondition-failed",
                "Precondition failed",
            ),
            Self::IdempotencyKeyReused => (
                S::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency key reused",
            ),
            Self::Unavailable(_) => (
                S::SERVICE_UNAVAILABLE,
                "service-unavailable",
                "Service unavailable",
            ),
            Self::OutcomeUnknown(_) => {
                (S::SERVICE_UNAVAILABLE, "outcome-unknown", "Outcome unknown")
            }
            Self::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
        };
        Kind {
            status,
            slug,
            title,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.kind().status
    }

    /// The kind's name, the end of the problem's `type` (the access log's `problem`).
    pub fn slug(&self) -> &'static str {
        self.kind().slug
    }

    /// What the access log says of it: the detail, and for a refused token, why.
    pub fn log_detail(&self) -> String {
        match self {
            Self::Unauthorized(AuthError::InvalidToken(reason)) => {
                format!("The access token was rejected: {reason}.")
            }
            _ => self.to_string(),
        }
    }

    /// Logs the error (5xx with its whole cause chain) and renders it as problem+json.
    pub fn into_problem_response(self, request_id: Option<&str>, path: &str) -> Response<Body> {
        let kind = self.kind();
        self.log(kind.status, request_id);
        let problem = Problem {
            type_: format!("{PROBLEM_TYPE_PREFIX}{}", kind.slug),
            title: kind.title,
            status: kind.status.as_u16(),
            detail: self.to_string(),
            instance: echoed(path, MAX_ECHOED_PATH),
            request_id,
            errors: match &self {
                Self::Validation(errors) => Some(errors),
                _ => None,
            },
        };
        // Serialising this struct of strings and numbers cannot fail; fall back to an empty
        // body rather than panic all the same.
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = Response::new(Body::Binary(body));
        *response.status_mut() = kind.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(APPLICATION_PROBLEM_JSON),
        );
        if let Some((name, value)) = self.extra_header() {
            headers.insert(name, value);
        }
        response
    }

    /// The header a kind of problem adds, if any.
    fn extra_header(&self) -> Option<(header::HeaderName, HeaderValue)> {
        match self {
            Self::Unavailable(cause) => Some((
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_seconds(cause)),
            )),
            Self::RequestInProgress => Some((
                header::RETRY_AFTER,
                HeaderValue::from(IN_PROGRESS_RETRY_AFTER_SECONDS),
            )),
            // The database answered a moment ago: reading the outcome may start at once.
            Self::OutcomeUnknown(_) => Some((header::RETRY_AFTER, HeaderValue::from(1_u32))),
            // Methods are tokens: always a valid header value.
            Self::MethodNotAllowed { allow } => HeaderValue::from_str(allow)
                .ok()
                .map(|allow| (header::ALLOW, allow)),
            // RFC 6750 section 3: no error code when no credentials were sent.
            Self::Unauthorized(AuthError::Missing | AuthError::WrongScheme) => {
                Some((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")))
            }
            Self::Unauthorized(AuthError::InvalidToken(_)) => Some((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer error="invalid_token""#),
            )),
            Self::Forbidden(scope) => {
                let challenge = format!(r#"Bearer error="insufficient_scope", scope="{scope}""#);
                HeaderValue::from_str(&challenge)
                    .ok()
                    .map(|value| (header::WWW_AUTHENTICATE, value))
            }
            _ => None,
        }
    }

    /// 5xx with the whole cause chain (`{:#}`: "context: cause: root cause"), at WARN when the
    /// client is told to retry. A 4xx has no cause to log: the access log gives its kind and
    /// detail (`http::handle`).
    fn log(&self, status: StatusCode, request_id: Option<&str>) {
        let retry = status == StatusCode::SERVICE_UNAVAILABLE;
        let status = status.as_u16();
        match self.cause().map(|cause| format!("{cause:#}")) {
            Some(error) if retry => {
                tracing::warn!(status, request_id, error, "database unavailable")
            }
            Some(error) => tracing::error!(status, request_id, error, "request failed"),
            None => {}
        }
    }

    fn cause(&self) -> Option<&anyhow::Error> {
        match self {
            Self::Unavailable(cause) | Self::OutcomeUnknown(cause) | Self::Internal(cause) => {
                Some(cause)
            }
            _ => None,
        }
    }
}

/// RFC 9457 problem details, plus `request_id` and, for validation, `errors`.
#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    type_: String,
    title: &'static str,
    status: u16,
    detail: String,
    instance: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [FieldError]>,
}

/// When to retry: when the database's next connect attempt is due, if that is what refused
/// (rounded up to whole seconds), otherwise [`RETRY_AFTER_SECONDS`].
fn retry_after_seconds(cause: &anyhow::Error) -> u64 {
    cause
        .chain()
        .find_map(|err| err.downcast_ref::<db::Error>())
        .and_then(db::Error::retry_after)
        .map_or(RETRY_AFTER_SECONDS, |after| {
            after
                .as_secs()
                .saturating_add(u64::from(after.subsec_nanos() > 0))
                .max(1)
        })
}

fn unauthorized_detail(err: &AuthError) -> String {
    match err {
        AuthError::Missing | AuthError::WrongScheme => {
            "Send an access token: Authorization: Bearer <token>.".to_owned()
        }
        AuthError::InvalidToken(_) => "The access token is invalid.".to_owned(),
    }
}

fn validation_detail(errors: &[FieldError]) -> String {
    match errors.len() {
        1 => "1 field of the request is invalid.".to_owned(),
        n => format!("{n} fields of the request are invalid."),
    }
}

impl From<Denied> for ApiError {
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::Unauthenticated(err) => Self::Unauthorized(err),
            Denied::InsufficientScope(scope) => Self::Forbidden(scope),
            Denied::KeysUnavailable => Self::Unavailable(anyhow::anyhow!(
                "no token keys yet: the issuer's JWKS could not be read"
            )),
        }
    }
}

impl From<db::Error> for ApiError {
    fn from(err: db::Error) -> Self {
        if matches!(err, db::Error::OutcomeUnknown(_)) {
            Self::OutcomeUnknown(err.into())
        } else if err.is_unavailable() {
            Self::Unavailable(err.into())
        } else {
            Self::Internal(anyhow::Error::new(err).context("Database query failed"))
        }
    }
}

/// The one place a store's answer becomes the client's.
impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::EmailTaken => {
                Self::Conflict("A user with this email already exists.".to_owned())
            }
            StoreError::NotFound(id) => Self::NotFound(format!("No user has the id {id}.")),
            StoreError::VersionMismatch => Self::PreconditionFailed(
                "The user has changed since the version If-Match names; GET it again and \
                 retry with its new ETag."
                    .to_owned(),
            ),
            StoreError::NoVersionToMatch(id) => Self::PreconditionFailed(format!(
                "No user has the id {id}, so no version of it matches If-Match."
            )),
            StoreError::KeyInFlight => Self::RequestInProgress,
            StoreError::KeyReused => Self::IdempotencyKeyReused,
            StoreError::CreatedUserDeleted => Self::CreatedUserDeleted,
            StoreError::Database(err) => err.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn one_of_each() -> Vec<ApiError> {
        vec![
            ApiError::BadRequest("b".into()),
            ApiError::Unauthorized(AuthError::Missing),
            ApiError::Forbidden("users:read".into()),
            ApiError::MethodNotAllowed {
                allow: "GET".into(),
            },
            ApiError::UnsupportedMediaType("u".into()),
            ApiError::Validation(Vec::new()),
            ApiError::NotFound("n".into()),
            ApiError::Conflict("c".into()),
            ApiError::RequestInProgress,
            ApiError::CreatedUserDeleted,
            ApiError::PreconditionFailed("p".into()),
            ApiError::IdempotencyKeyReused,
            ApiError::PayloadTooLarge { limit: 8192 },
            ApiError::Unavailable(anyhow::anyhow!("down")),
            ApiError::OutcomeUnknown(anyhow::anyhow!("lost")),
            ApiError::Internal(anyhow::anyhow!("bug")),
        ]
    }

    #[test]
    fn every_kind_has_its_own_type_and_title() {
        // Statuses may repeat (409 for a taken email and for a key in use): clients tell kinds
        // apart by `type`.
        let kinds: Vec<Kind> = one_of_each().iter().map(ApiError::kind).collect();

        let slugs: HashSet<_> = kinds.iter().map(|kind| kind.slug).collect();
        let titles: HashSet<_> = kinds.iter().map(|kind| kind.title).collect();

        assert_eq!(slugs.len(), kinds.len());
        assert_eq!(titles.len(), kinds.len());
        for kind in kinds {
            assert!(kind.status.is_client_error() || kind.status.is_server_error());
            assert!(
                kind.slug
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn openapi_yaml_lists_every_kind_of_problem_and_no_other() {
        let document = test_support::openapi_document();
        let documented = document
            .lines()
            .filter(|line| line.trim_start().starts_with("- \"tag:users-api"))
            .count();

        for kind in one_of_each().iter().map(ApiError::kind) {
            let entry = format!("- \"{PROBLEM_TYPE_PREFIX}{}\"", kind.slug);
            assert!(document.contains(&entry), "openapi.yaml lacks {entry}");
        }
        assert_eq!(documented, one_of_each().len());
    }

    #[test]
    fn a_server_error_tells_the_client_nothing_of_its_cause() {
        for err in [
            ApiError::Unavailable(anyhow::anyhow!("connect to 10.0.0.7:5432 refused")),
            ApiError::Internal(anyhow::anyhow!("relation \"users\" does not exist")),
        ] {
            let detail = err.to_string();
            assert!(
                !detail.contains("10.0.0.7") && !detail.contains("relation"),
                "{detail}"
            );
        }
    }

    #[test]
    fn a_missing_scope_is_named_in_the_detail_and_the_challenge() {
        let err = ApiError::from(Denied::InsufficientScope("users:write".into()));

        let challenge = err.extra_header().map(|(_, value)| value);

        assert_eq!(
            err.to_string(),
            "The token does not grant the users:write scope."
        );
        assert_eq!(
            challenge.as_ref().and_then(|value| value.to_str().ok()),
            Some(r#"Bearer error="insufficient_scope", scope="users:write""#)
        );
    }
}
