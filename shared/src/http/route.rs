//! What a route is, declared once in its module under `routes/`: the one statement of its
//! method, path, scope and function that everything else is checked against.

use lambda_http::{Request, RequestExt};

use crate::auth::Scope;

/// One route of the API. `routes::ROUTES` lists every one; `make template` (through
/// `devtools/routes.py`, which reads the declarations) writes each route's parts of
/// `template.yaml` and `Cargo.toml`'s watch router from that list, and `tests/test_template.py`
/// holds them, the authorizer's scopes and `openapi.yaml`'s operations to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// API Gateway's route key, `<METHOD> <path>`, with `{name}` for a path parameter: the
    /// access log's `route` and the metrics' dimension too.
    pub key: &'static str,
    /// The scope a token must carry; `None` for a public route.
    pub scope: Option<Scope>,
    /// The function that serves it: `functions/<function>`, the watch router's `function`.
    pub function: &'static str,
}

impl Route {
    pub fn method(&self) -> &'static str {
        self.key
            .split_once(' ')
            .map_or(self.key, |(method, _)| method)
    }

    pub fn path(&self) -> &'static str {
        self.key.split_once(' ').map_or("", |(_, path)| path)
    }

    /// The path parameter `name` (`{name}` in the route's path) of `req`: API Gateway's and
    /// `cargo lambda watch`'s, or, where there are none (a Function URL has no routes), the
    /// segment of the request's path where the route's path has `{name}`.
    pub fn path_parameter(&self, req: &Request, name: &str) -> Option<String> {
        if let Some(value) = req
            .path_parameters_ref()
            .and_then(|parameters| parameters.first(name))
        {
            return Some(value.to_owned());
        }
        let placeholder = format!("{{{name}}}");
        let template = self.path().trim_matches('/').split('/');
        let mut segments = req.uri().path().trim_matches('/').split('/');
        let mut found = None;
        for part in template {
            let segment = segments.next()?;
            if part == placeholder {
                found = Some(segment.to_owned());
            } else if !part.starts_with('{') && part != segment {
                return None;
            }
        }
        match segments.next() {
            None => found,
            Some(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use lambda_http::http;

    use super::*;

    const ACTIVATION: Route = Route {
        key: "POST /users/{id}/activation",
        scope: Some(Scope::UsersWrite),
        function: "activate-user",
    };

    fn request(path: &str) -> Request {
        Request::from(
            http::Request::builder()
                .uri(path)
                .body(lambda_http::Body::Empty)
                .unwrap(),
        )
    }

    #[test]
    fn a_route_key_is_its_method_and_path() {
        assert_eq!(ACTIVATION.method(), "POST");
        assert_eq!(ACTIVATION.path(), "/users/{id}/activation");
    }

    #[test]
    fn without_api_gateways_parameters_a_parameter_is_read_where_the_path_declares_it() {
        let read = |path| ACTIVATION.path_parameter(&request(path), "id");

        assert_eq!(read("/users/42/activation").as_deref(), Some("42"));
        assert_eq!(read("/users/42"), None);
        assert_eq!(read("/users/42/activation/more"), None);
        assert_eq!(read("/groups/42/activation"), None);
        assert_eq!(
            ACTIVATION.path_parameter(&request("/users/42/activation"), "other"),
            None
        );
    }

    #[test]
    fn api_gateways_parameters_come_first() {
        let mut parameters = std::collections::HashMap::new();
        parameters.insert("id".to_owned(), "7".to_owned());
        let req = request("/users/42/activation").with_path_parameters(parameters);

        assert_eq!(ACTIVATION.path_parameter(&req, "id").as_deref(), Some("7"));
    }
}
