//! A request's query string, read strictly: every parameter known, none given twice.

use std::collections::BTreeMap;

use lambda_http::Request;

use super::{echoed, ApiError, MAX_ECHOED};

/// The query's parameters, decoded (`application/x-www-form-urlencoded`, as browsers and
/// `curl --data-urlencode` write it).
#[derive(Debug, Default)]
pub struct Query {
    parameters: BTreeMap<String, String>,
}

impl Query {
    /// The query of `req`: 400 for a parameter not in `known` or given more than once (which
    /// of two values a client meant cannot be guessed).
    ///
    /// Read from the URI: API Gateway's HTTP API passes the raw query string, which keeps
    /// repeated parameters apart (its parsed parameters join them with commas).
    pub fn from_request(req: &Request, known: &[&str]) -> Result<Self, ApiError> {
        let mut parameters = BTreeMap::new();
        let query = req.uri().query().unwrap_or_default();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if !known.contains(&&*name) {
                return Err(ApiError::BadRequest(format!(
                    "The query parameter {:?} is not known here; use {}.",
                    echoed(&name, MAX_ECHOED),
                    known.join(", ")
                )));
            }
            if parameters
                .insert(name.to_string(), value.into_owned())
                .is_some()
            {
                return Err(ApiError::BadRequest(format!(
                    "The query parameter {name:?} is given more than once."
                )));
            }
        }
        Ok(Self { parameters })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.parameters.get(name).map(String::as_str)
    }

    /// Parses a parameter that is present, turning its error into a 400 naming it.
    pub fn parse<T, E: std::fmt::Display>(
        &self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, ApiError> {
        self.get(name)
            .map(|value| {
                parse(value).map_err(|err| {
                    ApiError::BadRequest(format!("The query parameter {name:?} {err}."))
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use test_support::TestRequest;

    use super::*;

    fn query(path: &str) -> Result<Query, ApiError> {
        Query::from_request(&TestRequest::get(path).build().0, &["limit", "email"])
    }

    #[test]
    fn parameters_are_decoded() {
        let query = query("/users?limit=5&email=a%2Bb%40example.com").unwrap();

        assert_eq!(query.get("limit"), Some("5"));
        assert_eq!(query.get("email"), Some("a+b@example.com"));
        assert_eq!(query.get("cursor"), None);
    }

    #[test]
    fn unknown_and_repeated_parameters_are_refused() {
        for path in [
            "/users?limit=1&limit=2",
            "/users?offset=10",
            "/users?LIMIT=1",
        ] {
            assert!(
                matches!(query(path), Err(ApiError::BadRequest(_))),
                "{path}"
            );
        }
    }
}
