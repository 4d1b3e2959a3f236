//! One module per route. Each declares its [`Route`] (`ROUTE`: method, path, scope, function)
//! and exposes `handler(&AppState, Request)`, the function a Lambda binary passes to
//! `lambda_http::run`; it always answers with a response, never `Err`.

pub mod create_user;
pub mod delete_user;
pub mod get_user;
pub mod health;
pub mod list_users;
pub mod update_user;

use lambda_http::Request;

use crate::{
    auth::Principal,
    http::{self, ApiError, Route},
    state::AppState,
    users,
};

/// Every route, in the order a path's methods are listed in `Allow`.
pub const ROUTES: [Route; 6] = [
    list_users::ROUTE,
    create_user::ROUTE,
    get_user::ROUTE,
    update_user::ROUTE,
    delete_user::ROUTE,
    health::ROUTE,
];

/// Lets `req` through to `route`, or answers as the route says: any other method is 405 with
/// the methods of the route's path in `Allow` (API Gateway sends every other method of a path
/// to one of its functions, `ANY` in template.yaml; a Function URL sends every method), and a
/// scoped route needs a token with its scope. The verified caller, if the route has a scope.
pub async fn admit(
    state: &AppState,
    req: &Request,
    route: &Route,
) -> Result<Option<Principal>, ApiError> {
    if req.method().as_str() != route.method() {
        return Err(ApiError::MethodNotAllowed {
            allow: allow(route.path()),
        });
    }
    match route.scope {
        Some(scope) => Ok(Some(state.auth.authorize(req, scope).await?)),
        None => Ok(None),
    }
}

/// What a change's `If-Match` asks of the user, as the store checks it.
fn precondition(if_match: &Option<http::IfMatch>) -> users::Precondition<'_> {
    match if_match {
        None => users::Precondition::None,
        Some(http::IfMatch::Any) => users::Precondition::Exists,
        Some(http::IfMatch::Versions(versions)) => users::Precondition::OneOf(versions),
    }
}

/// The methods of `path`, as `Allow` lists them.
fn allow(path: &str) -> String {
    let methods: Vec<_> = ROUTES
        .iter()
        .filter(|route| route.path() == path)
        .map(Route::method)
        .collect();
    methods.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_path_allows_the_methods_of_its_routes() {
        assert_eq!(allow("/users"), "GET, POST");
        assert_eq!(allow("/users/{id}"), "GET, PATCH, DELETE");
        assert_eq!(allow("/health"), "GET");
    }

    #[test]
    fn no_two_routes_share_a_key_and_each_function_serves_one_route() {
        let mut keys: Vec<_> = ROUTES.iter().map(|route| route.key).collect();
        let mut functions: Vec<_> = ROUTES.iter().map(|route| route.function).collect();
        keys.sort_unstable();
        keys.dedup();
        functions.sort_unstable();
        functions.dedup();
        assert_eq!((keys.len(), functions.len()), (ROUTES.len(), ROUTES.len()));
    }
}
