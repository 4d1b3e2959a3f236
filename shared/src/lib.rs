//! The users API's shared library. Each Lambda function in `functions/` is a thin adapter over
//! one of the [`routes`]; everything else lives here.
//!
//! - [`config`]: typed settings, read once per execution environment.
//! - [`secrets`]: reading AWS Secrets Manager (SDK or the Lambda extension).
//! - [`db`]: the Postgres pool, credentials that follow rotation, migrations, error
//!   classification.
//! - [`domain`]: types that validate on construction.
//! - [`users`]: the queries, compile-time checked by SQLx.
//! - [`auth`]: bearer tokens (JWT) and scopes, verified with keys parsed once.
//! - [`http`]: the HTTP edge: request parsing, JSON responses and RFC 9457 problems.
//! - [`routes`]: one module per route, each exposing `handler(&AppState, Request)`.
//! - [`migrate`]: the `migrate` function, a CloudFormation custom resource.
//! - [`telemetry`]: logging set-up.

pub mod auth;
pub mod config;
pub mod db;
pub mod domain;
pub mod http;
pub mod https;
pub mod migrate;
pub mod routes;
pub mod secrets;
pub mod state;
pub mod telemetry;
pub mod users;

pub use state::AppState;
