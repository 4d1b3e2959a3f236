//! A sample request for each route of the API, by its route key (`shared/src/routes`): the
//! one table the tests that call every route take their requests from. A route without a
//! sample fails `shared/tests/api/sessions.rs`, which calls every declared route.

use serde_json::json;

use crate::events::TestRequest;

/// What a sample may refer to: its number in a series (each create gets its own email and
/// idempotency key), a user that exists to read and change, and another to delete.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub n: usize,
    pub user: i64,
    pub doomed: i64,
}

/// A request for `route`, given `sample`'s users, and the status it answers with. Panics for a
/// route this table does not know: a route declared without a sample fails the tests that call
/// every route.
pub fn request(route: &str, sample: Sample) -> (TestRequest, u16) {
    let Sample { n, user, doomed } = sample;
    match route {
        "GET /users" if n.is_multiple_of(2) => (TestRequest::get("/users?limit=10"), 200),
        "GET /users" => (
            TestRequest::get(format!("/users?email=sample{n}%40example.com")),
            200,
        ),
        "POST /users" => (
            TestRequest::post("/users")
                .header("idempotency-key", &format!("sample-{n}"))
                .json(&json!({"email": format!("new{n}@example.com"), "name": "New"})),
            201,
        ),
        "GET /users/{id}" => (TestRequest::get(format!("/users/{user}")), 200),
        "PATCH /users/{id}" => (
            TestRequest::patch(format!("/users/{user}")).json(&json!({"name": format!("R{n}")})),
            200,
        ),
        "DELETE /users/{id}" => (TestRequest::delete(format!("/users/{doomed}")), 204),
        "GET /health" => (TestRequest::get("/health"), 200),
        _ => panic!("no sample request for {route}: add one to test-support/src/samples.rs"),
    }
}
