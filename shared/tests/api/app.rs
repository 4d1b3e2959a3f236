//! The application as a function builds it at init, over the test's own database, with its
//! routes called in-process.

use std::future::Future;

use lambda_http::{Body, Error, Request, Response};
use serde_json::{json, Value};
use shared::{
    config::Settings,
    routes,
    state::{Access, AppState},
};
use sqlx::PgPool;
use test_support::{tokens, Reply, TestRequest};

pub struct TestApp {
    pub state: AppState,
}

impl TestApp {
    /// The state `AppState::init_or_exit` builds, with `DATABASE_URL` naming the database of
    /// `pool` (a fresh one per `#[sqlx::test]`) and `JWT_KEY` the test key.
    pub async fn new(pool: &PgPool) -> Self {
        let database = pool
            .connect_options()
            .get_database()
            .expect("the test pool names its database")
            .to_owned();
        let admin_url = std::env::var("DATABASE_URL").expect("DATABASE_URL: run `make test`");
        let (server, _) = admin_url
            .rsplit_once('/')
            .expect("DATABASE_URL ends with a database name");
        Self::with_env(&[
            ("DATABASE_URL", &format!("{server}/{database}")),
            ("HEALTH_TIMEOUT_MS", "2000"),
        ])
        .await
    }

    /// State whose database is a closed port on loopback: nothing answers there.
    pub async fn with_unreachable_database() -> Self {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let url = format!("postgres://nobody:secret@127.0.0.1:{port}/nowhere");
        Self::with_env(&[
            ("DATABASE_URL", &url),
            ("DB_ACQUIRE_TIMEOUT_MS", "300"),
            ("HEALTH_TIMEOUT_MS", "300"),
        ])
        .await
    }

    /// The state built from exactly these variables, plus `JWT_KEY` and `JWT_AUDIENCE`.
    async fn with_env(env: &[(&str, &str)]) -> Self {
        let settings = Settings::from_lookup(|name| match name {
            "JWT_KEY" => Some(tokens::TEST_KEY.to_owned()),
            "JWT_AUDIENCE" => Some(tokens::TEST_AUDIENCE.to_owned()),
            _ => env
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned()),
        })
        .expect("valid settings");
        let state = AppState::build(settings, Access::Authenticated)
            .await
            .expect("the state builds");
        Self { state }
    }

    pub async fn create_user(&self, request: TestRequest) -> Reply {
        self.call(routes::create_user::handler, request).await
    }

    pub async fn get_user(&self, request: TestRequest) -> Reply {
        self.call(routes::get_user::handler, request).await
    }

    pub async fn list_users(&self, request: TestRequest) -> Reply {
        self.call(routes::list_users::handler, request).await
    }

    pub async fn update_user(&self, request: TestRequest) -> Reply {
        self.call(routes::update_user::handler, request).await
    }

    pub async fn delete_user(&self, request: TestRequest) -> Reply {
        self.call(routes::delete_user::handler, request).await
    }

    pub async fn health(&self, request: TestRequest) -> Reply {
        self.call(routes::health::handler, request).await
    }

    /// Calls `handler` as the function's `main` does, with `request` forged into an event.
    async fn call<'a, F>(
        &'a self,
        handler: impl FnOnce(&'a AppState, Request) -> F,
        request: TestRequest,
    ) -> Reply
    where
        F: Future<Output = Result<Response<Body>, Error>>,
    {
        let (req, id) = request.build();
        let response = handler(&self.state, req).await;
        Reply::from_handler(
            response.expect("handlers never return Err"),
            request.path(),
            id,
        )
    }

    /// Creates a user through the API and returns its JSON.
    pub async fn given_a_user(&self, email: &str, name: &str) -> Value {
        let response = self
            .create_user(TestRequest::post("/users").json(&json!({"email": email, "name": name})))
            .await;
        assert_eq!(response.status, 201, "{}", response.body);
        response.body
    }
}
