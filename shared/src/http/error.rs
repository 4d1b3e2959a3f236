use lambda_http::{
    http::{header, HeaderValue, Method, StatusCode},
    Body, Response,
};
use serde::Serialize;

use super::APPLICATION_PROBLEM_JSON;
use crate::auth::{AuthError, Denied};

/// Seconds a client should wait before retrying when the database is unavailable.
const RETRY_AFTER_SECONDS: u32 = 5;

/// Every way a request can fail, each with its HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed: bad JSON, a missing body, a bad id in the path.
    #[error("{0}")]
    BadRequest(String),
    /// No usable bearer token (401).
    #[error("{0}")]
    Unauthorized(AuthError),
    /// A valid token without the scope the route needs (403).
    #[error("{0}")]
    Forbidden(Denied),
    #[error("the method is not allowed")]
    MethodNotAllowed { allowed: Method },
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Well-formed, but fields are missing, unknown or invalid.
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The database cannot be reached or cannot serve now; the client should retry.
    #[error("the database is unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// A bug or an unexpected failure: logged in full, answered generically.
    #[error("an unexpected error occurred")]
    Internal(#[source] anyhow::Error),
}

/// One invalid field of a request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl From<Denied> for ApiError {
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::Unauthenticated(err) => Self::Unauthorized(err),
            insufficient @ Denied::InsufficientScope(_) => Self::Forbidden(insufficient),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&err) {
            Self::Unavailable(err.into())
        } else {
            Self::Internal(anyhow::Error::new(err).context("Database query failed"))
        }
    }
}

/// RFC 9457 problem details, plus `request_id` and, for validation, `errors`.
#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    type_: &'static str,
    title: &'static str,
    status: u16,
    detail: String,
    instance: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [FieldError]>,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable identifier for the kind of problem (RFC 9457 `type`), and its title.
    /// `tag:` URIs (RFC 4151) name a problem without promising a page at that address.
    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            Self::BadRequest(_) => ("tag:users-api,2026:problem:bad-request", "Bad request"),
            Self::Unauthorized(_) => ("tag:users-api,2026:problem:unauthorized", "Unauthorized"),
            Self::Forbidden(_) => ("tag:users-api,2026:problem:forbidden", "Forbidden"),
            Self::MethodNotAllowed { .. } => (
                "tag:users-api,2026:problem:method-not-allowed",
                "Method not allowed",
            ),
            Self::UnsupportedMediaType(_) => (
                "tag:users-api,2026:problem:unsupported-media-type",
                "Unsupported media type",
            ),
            Self::Validation(_) => ("tag:users-api,2026:problem:validation", "Validation failed"),
            Self::NotFound(_) => ("tag:users-api,2026:problem:not-found", "Not found"),
            Self::Conflict(_) => ("tag:users-api,2026:problem:conflict", "Conflict"),
            Self::Unavailable(_) => (
                "tag:users-api,2026:problem:service-unavailable",
                "Service unavailable",
            ),
            Self::Internal(_) => ("tag:users-api,2026:problem:internal", "Internal error"),
        }
    }

    /// What the client is told. Never internals: 5xx details are fixed text.
    fn detail(&self) -> String {
        match self {
            Self::BadRequest(detail)
            | Self::UnsupportedMediaType(detail)
            | Self::NotFound(detail)
            | Self::Conflict(detail) => detail.clone(),
            Self::MethodNotAllowed { allowed } => {
                format!("This resource only supports {allowed}.")
            }
            Self::Unauthorized(AuthError::Missing | AuthError::WrongScheme) => {
                "Send an access token: Authorization: Bearer <token>.".to_owned()
            }
            Self::Unauthorized(AuthError::InvalidToken(reason)) => {
                format!("The access token was rejected: {reason}.")
            }
            Self::Forbidden(denied) => format!("{}.", capitalize(&denied.to_string())),
            Self::Validation(errors) => match errors.len() {
                1 => "1 field of the request is invalid.".to_owned(),
                n => format!("{n} fields of the request are invalid."),
            },
            Self::Unavailable(_) => format!(
                "The service is temporarily unavailable. Retry after {RETRY_AFTER_SECONDS} seconds."
            ),
            Self::Internal(_) => {
                "An unexpected error occurred. Quote the request_id if you report it.".to_owned()
            }
        }
    }

    /// Logs the error (5xx with its whole cause chain) and renders it as problem+json.
    pub fn into_problem_response(self, request_id: Option<&str>, path: &str) -> Response<Body> {
        let status = self.status();
        self.log(status, request_id);
        let (type_, title) = self.kind();
        let problem = Problem {
            type_,
            title,
            status: status.as_u16(),
            detail: self.detail(),
            instance: path,
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
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(APPLICATION_PROBLEM_JSON),
        );
        match &self {
            Self::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
            }
            Self::MethodNotAllowed { allowed } => {
                if let Ok(value) = HeaderValue::from_str(allowed.as_str()) {
                    headers.insert(header::ALLOW, value);
                }
            }
            // RFC 6750 section 3: no error code when no credentials were sent.
            Self::Unauthorized(AuthError::Missing | AuthError::WrongScheme) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::Unauthorized(AuthError::InvalidToken(_)) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer error="invalid_token""#),
                );
            }
            Self::Forbidden(Denied::InsufficientScope(scope)) => {
                let challenge = format!(r#"Bearer error="insufficient_scope", scope="{scope}""#);
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
            }
            _ => {}
        }
        response
    }

    fn log(&self, status: StatusCode, request_id: Option<&str>) {
        // The reason only; a token never reaches the log.
        let status = status.as_u16();
        match self {
            // `{:#}` prints anyhow's whole chain: "context: cause: root cause".
            Self::Internal(cause) => {
                tracing::error!(
                    status,
                    request_id,
                    error = format!("{cause:#}"),
                    "request failed"
                )
            }
            Self::Unavailable(cause) => {
                tracing::warn!(
                    status,
                    request_id,
                    error = format!("{cause:#}"),
                    "database unavailable"
                )
            }
            _ => tracing::info!(status, request_id, problem = %self, "request rejected"),
        }
    }
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
