//! `GET /health`: 200 once the database answers `SELECT 1`, 503 problem otherwise.

use anyhow::anyhow;
use lambda_http::{http::StatusCode, Body, Error, Request, Response};
use serde_json::json;

use crate::{
    db,
    http::{self, ApiError, Route},
    state::AppState,
};

/// The route this module serves.
pub const ROUTE: Route = Route {
    key: "GET /health",
    scope: None,
    function: "health",
};

pub async fn handler(state: &AppState, req: Request) -> Result<Response<Body>, Error> {
    Ok(http::handle(&req, ROUTE.key, health(state, &req)).await)
}

#[tracing::instrument(name = "Health check", skip_all)]
async fn health(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    super::admit(state, req, &ROUTE).await?;
    // Shorter than the connect timeout: a health check must answer quickly, whatever the
    // database is doing.
    let check = state.db.read(|connection| Box::pin(db::ping(connection)));
    match tokio::time::timeout(state.health_timeout, check).await {
        Ok(Ok(())) => http::json(StatusCode::OK, &json!({"status": "ok", "database": "ok"})),
        Ok(Err(err)) => Err(ApiError::Unavailable(
            anyhow::Error::new(err).context("SELECT 1 failed"),
        )),
        Err(_) => Err(ApiError::Unavailable(anyhow!(
            "SELECT 1 did not answer within {:?}",
            state.health_timeout
        ))),
    }
}
