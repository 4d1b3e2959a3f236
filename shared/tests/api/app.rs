//! The application as a function builds it at init, over the test's own database, with its
//! routes called in-process.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

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
        Self::new_with(pool, &[]).await
    }

    /// [`TestApp::new`], with these variables too.
    pub async fn new_with(pool: &PgPool, extra: &[(&str, &str)]) -> Self {
        let database = pool
            .connect_options()
            .get_database()
            .expect("the test pool names its database")
            .to_owned();
        let admin_url = std::env::var("DATABASE_URL").expect("DATABASE_URL: run `make test`");
        let (server, _) = admin_url
            .rsplit_once('/')
            .expect("DATABASE_URL ends with a database name");
        let url = format!("{server}/{database}");
        let mut env = vec![
            ("DATABASE_URL", url.as_str()),
            ("HEALTH_TIMEOUT_MS", "2000"),
        ];
        env.extend_from_slice(extra);
        Self::with_env(&env).await
    }

    /// State whose database refuses every connection: a listener on loopback that closes
    /// each one it accepts, counting them. The backoff after a failed connect lasts
    /// `backoff_ms`.
    pub async fn with_refusing_database(backoff_ms: &str) -> (Self, RefusingDatabase) {
        let database = RefusingDatabase::start().await;
        let url = format!(
            "postgres://nobody:secret@127.0.0.1:{}/nowhere",
            database.port
        );
        let app = Self::with_env(&[
            ("DATABASE_URL", &url),
            ("DB_BACKOFF_MIN_MS", backoff_ms),
            ("DB_BACKOFF_MAX_MS", backoff_ms),
        ])
        .await;
        (app, database)
    }

    /// The state built from exactly these variables, plus `JWT_KEY` and `JWT_AUDIENCE`.
    pub async fn with_env(env: &[(&str, &str)]) -> Self {
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

    /// Calls the handler of the route `key` (`routes::ROUTES`).
    pub async fn route(&self, key: &str, request: TestRequest) -> Reply {
        use routes::{create_user, delete_user, get_user, health, list_users, update_user};
        match key {
            _ if key == create_user::ROUTE.key => self.create_user(request).await,
            _ if key == get_user::ROUTE.key => self.get_user(request).await,
            _ if key == list_users::ROUTE.key => self.list_users(request).await,
            _ if key == update_user::ROUTE.key => self.update_user(request).await,
            _ if key == delete_user::ROUTE.key => self.delete_user(request).await,
            _ if key == health::ROUTE.key => self.health(request).await,
            _ => panic!("TestApp::route does not call {key} yet: add its handler"),
        }
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

/// A "database" that accepts connections and closes them at once, as a server that is going
/// away does, counting the attempts.
pub struct RefusingDatabase {
    pub port: u16,
    attempts: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl RefusingDatabase {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let attempts = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&attempts);
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                drop(socket);
            }
        });
        Self {
            port,
            attempts,
            task,
        }
    }

    /// Connections attempted so far.
    pub fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }
}

impl Drop for RefusingDatabase {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The rows `table` holds in the test's database.
pub async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .unwrap()
}
