//! The `migrate` function's CloudFormation custom resource: applies `migrations/` (embedded in
//! the binary) when CloudFormation creates or updates the stack.
//!
//! It always answers CloudFormation's pre-signed response URL, SUCCESS or FAILED with the
//! reason, before the Lambda deadline: an unanswered custom resource holds a deploy for an hour.
//! That is why, unlike the API functions, it reads its configuration and the database secret
//! per invocation, inside the handler: a failure there must become a FAILED answer, not an init
//! error that CloudFormation never hears of. Deleting the stack changes nothing in the
//! database. Concurrent deploys are safe: SQLx holds an advisory lock while it migrates.

use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use http_body_util::Full;
use hyper::{body::Bytes, header, Method, Request};
use lambda_runtime::{Error, LambdaEvent};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{
    config::Settings,
    db::{
        app_role::{self, Login},
        Database, MIGRATOR,
    },
    outbound_http::OutboundHttp,
    secrets::{SecretsClient, Stage},
};

/// Kept for the answer to CloudFormation, out of the Lambda timeout.
const RESPONSE_MARGIN: Duration = Duration::from_secs(10);
/// The function's timeout in template.yaml, for a runtime that gives no usable deadline.
const ASSUMED_TIMEOUT: Duration = Duration::from_secs(300);
/// CloudFormation rejects responses over 4 KiB; a reason this long is plenty.
const MAX_REASON_LEN: usize = 1024;
/// The one physical id of this resource: stable, so an update never asks to delete the "old"
/// resource.
const PHYSICAL_RESOURCE_ID: &str = "database-migrations";

/// A CloudFormation custom resource request, as far as this function needs it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CustomResourceRequest {
    pub request_type: RequestType,
    #[serde(rename = "ResponseURL")]
    pub response_url: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    pub physical_resource_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RequestType {
    Create,
    Update,
    Delete,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct CustomResourceResponse<'a> {
    status: &'static str,
    reason: String,
    physical_resource_id: &'a str,
    stack_id: &'a str,
    request_id: &'a str,
    logical_resource_id: &'a str,
    data: Value,
}

/// `http` answers the response URL; build it once with [`crate::outbound_http::client`].
pub async fn handler(http: &OutboundHttp, event: LambdaEvent<Value>) -> Result<(), Error> {
    let request: CustomResourceRequest = serde_json::from_value(event.payload)
        .context("The event is not a CloudFormation custom resource request")?;
    // A deadline already past is no deadline (`cargo lambda watch` sends a duration where
    // Lambda sends a timestamp): then assume the template's timeout.
    let remaining = event
        .context
        .deadline()
        .duration_since(SystemTime::now())
        .unwrap_or(ASSUMED_TIMEOUT);
    let budget = remaining.saturating_sub(RESPONSE_MARGIN);
    tracing::info!(
        request_type = ?request.request_type,
        stack_id = request.stack_id,
        ?budget,
        "custom resource request"
    );

    let outcome = match request.request_type {
        // Never destructive: the schema and its data outlive the stack.
        RequestType::Delete => Ok(json!({})),
        RequestType::Create | RequestType::Update => {
            // Boxed: the SDK, SQLx and hyper futures nested in one state machine exceed the
            // compiler's layout depth limit otherwise.
            match tokio::time::timeout(budget, Box::pin(apply_migrations())).await {
                Ok(result) => result,
                Err(_) => Err(anyhow::anyhow!(
                    "Migrations did not finish within {budget:?} (the {remaining:?} left of the \
                     function's timeout, less {RESPONSE_MARGIN:?} kept to answer CloudFormation); \
                     raise the function's timeout"
                )),
            }
        }
    };
    let (status, reason, data) = match outcome {
        Ok(data) => ("SUCCESS", "Migrations applied".to_owned(), data),
        Err(err) => {
            let reason = format!("{err:#}");
            tracing::error!(error = reason, "migrations failed");
            ("FAILED", truncate(reason, MAX_REASON_LEN), json!({}))
        }
    };
    let response = CustomResourceResponse {
        status,
        reason,
        physical_resource_id: request
            .physical_resource_id
            .as_deref()
            .unwrap_or(PHYSICAL_RESOURCE_ID),
        stack_id: &request.stack_id,
        request_id: &request.request_id,
        logical_resource_id: &request.logical_resource_id,
        data,
    };
    send_response(http, &request.response_url, &response).await?;
    tracing::info!(status, "answered CloudFormation");
    Ok(())
}

#[tracing::instrument(name = "Apply migrations")]
async fn apply_migrations() -> anyhow::Result<Value> {
    let settings = Settings::from_env().context("Invalid configuration")?;
    let reads_secrets =
        settings.database.source.is_secret() || settings.app_role_secret_id.is_some();
    let secrets = match reads_secrets {
        true => Some(SecretsClient::new(settings.secrets_extension.as_ref()).await),
        false => None,
    };
    let database = Database::connect(settings.database, secrets.as_ref())
        .await
        .context("Failed to set up the database")?;
    MIGRATOR
        .run(database.pool())
        .await
        .context("Failed to apply the migrations")?;
    let version = MIGRATOR.iter().map(|m| m.version).max().unwrap_or_default();
    let mut data = json!({ "SchemaVersion": version.to_string() });
    if let (Some(secret_id), Some(secrets)) = (&settings.app_role_secret_id, &secrets) {
        let login = application_login(secrets, secret_id).await?;
        let mut connection = database.acquire().await.context("Failed to connect")?;
        app_role::ensure_login(&mut connection, &login)
            .await
            .context("Failed to set up the application's login role")?;
        if settings.app_role_rds_iam {
            let granted = app_role::grant_rds_iam(&mut connection, &login)
                .await
                .context("Failed to grant rds_iam to the application's login role")?;
            tracing::info!(granted, "rds_iam for the application's login role");
        }
        data["ApplicationRole"] = json!(login.username);
    }
    database.pool().close().await;
    tracing::info!(version, "schema is current");
    Ok(data)
}

/// The login in the application role's secret (`DB_APP_SECRET_ID`).
async fn application_login(secrets: &SecretsClient, secret_id: &str) -> anyhow::Result<Login> {
    let secret = secrets
        .get(secret_id, Stage::Current)
        .await
        .context("Failed to read the application role's secret (DB_APP_SECRET_ID)")?;
    Login::from_secret(&secret.value)
        .with_context(|| format!("The application role's secret {secret_id:?} is malformed"))
}

/// PUTs the answer, retrying a few times: S3 pre-signed URLs occasionally fail transiently.
async fn send_response(
    http: &OutboundHttp,
    url: &str,
    response: &CustomResourceResponse<'_>,
) -> anyhow::Result<()> {
    let body = serde_json::to_vec(response).context("Failed to serialize the response")?;
    let mut last_error = None;
    for attempt in 0..3u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
        }
        // The pre-signed URL is signed without a content type: send an empty one.
        let request = Request::builder()
            .method(Method::PUT)
            .uri(url)
            .header(header::CONTENT_TYPE, "")
            .header(header::CONTENT_LENGTH, body.len())
            .body(Full::new(Bytes::from(body.clone())))
            .context("The response URL is not a valid URL")?;
        match tokio::time::timeout(Duration::from_secs(5), http.request(request)).await {
            Ok(Ok(answer)) if answer.status().is_success() => return Ok(()),
            Ok(Ok(answer)) => {
                last_error = Some(anyhow::anyhow!(
                    "the response URL answered {}",
                    answer.status()
                ))
            }
            Ok(Err(err)) => last_error = Some(anyhow::Error::new(err)),
            Err(_) => last_error = Some(anyhow::anyhow!("the response URL did not answer in 5 s")),
        }
    }
    Err(last_error
        .unwrap_or_else(|| anyhow::anyhow!("no attempt made"))
        .context("Failed to send the response to CloudFormation"))
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}
