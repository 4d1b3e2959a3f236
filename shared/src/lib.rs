//! The users API's shared library. Each Lambda function in `functions/` is a thin adapter over
//! one of the [`routes`] (or, for `migrate`, the [`custom_resource`]; for the scheduled purge,
//! [`maintenance`]); everything else lives here. Dependencies run one way, from the top of this
//! list down: a module uses only modules below it, and [`config`] uses none.
//!
//! - [`routes`]: one module per route, each declaring its `ROUTE` and exposing
//!   `handler(&AppState, Request)`.
//! - [`custom_resource`]: the `migrate` function, a CloudFormation custom resource.
//! - [`maintenance`]: work on a schedule (expired idempotency keys purged).
//! - [`state`]: `AppState`, what a function builds once per execution environment.
//! - [`http`]: the inbound HTTP edge: request parsing, JSON responses, RFC 9457 problems.
//! - [`auth`]: bearer tokens (JWT) and scopes, verified with keys parsed once.
//! - [`users`]: what the store does, and its statements, compile-time checked by SQLx.
//! - [`db`]: the environment's connections, their retries and backoff, connection policy,
//!   credentials that follow rotation, migrations.
//! - [`secrets`]: reading AWS Secrets Manager (SDK or the Lambda extension).
//! - [`aws`]: the AWS SDK's configuration, by `aws-config`.
//! - [`outbound_http`]: the one client for outbound HTTP calls, the SDK's included.
//! - [`domain`]: types that validate on construction.
//! - [`telemetry`]: logging, the EMF metrics, the OpenTelemetry traces.
//! - [`config`]: typed settings, the only reader of the environment.
//! - [`sync`]: locks that outlive a panic.

pub mod auth;
pub mod aws;
pub mod config;
pub mod custom_resource;
pub mod db;
pub mod domain;
pub mod http;
pub mod maintenance;
pub mod outbound_http;
pub mod routes;
pub mod secrets;
pub mod state;
pub mod sync;
pub mod telemetry;
pub mod users;
