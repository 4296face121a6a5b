//! Export routes (docs/lifecycle.md, "Exports"):
//! - `GET /{v}/exports/journeys?start=&end=[&operator_id=]`: the CSV, streamed as the cursor
//!   yields it;
//! - `POST /{v}/exports`: the reference's asynchronous export, answered 201 at once; a job
//!   builds the zip ([`crate::exports`]);
//! - `GET /{v}/exports/{uuid}` (its status) and `GET /{v}/exports/{uuid}/download` (the zip,
//!   404 until it is built and after it expired).
//!
//! Operator roles see their own operator's journeys and exports (another's is a 404);
//! registry roles see every operator's.

use super::journeys::{State, internal, iso};
use super::lifecycle::{Params, scope};
use crate::domain::lifecycle::export::{ExportStatus, ExportTarget, validate_export_request};
use crate::exports::stream;
use crate::store::lifecycle::exports::{ExportFilter, ExportRecord, NewExport};
use auth_token::Principal;
use chrono::TimeDelta;
use rpc_service::RpcError;
use serde_json::{Value, json};
use std::sync::Arc;
use uuid::Uuid;
use warp::Reply;
use warp::http::StatusCode;
use warp::reply::Response;

/// Longest period one synchronous export covers.
pub const EXPORT_MAX_PERIOD: TimeDelta = TimeDelta::days(366);

/// The `Retry-After` of a synchronous export refused because enough are streaming.
const STREAMS_BUSY_RETRY_SECS: u64 = 10;

/// `GET /{v}/exports/journeys?start=&end=[&operator_id=]`: `text/csv`, one line per journey
/// starting in `[start, end)`, canceled journeys excluded, streamed from the database cursor.
pub async fn journeys_csv(
    state: Arc<State>,
    principal: Principal,
    params: Vec<(String, String)>,
) -> Response {
    let result = async {
        let asked = Params::read(&params, &["start", "end", "operator_id"])?;
        let mut errors = Vec::new();
        let start = asked.time("start", &mut errors);
        let end = asked.time("end", &mut errors);
        let operator = asked.operator_id(&mut errors);
        if let (Some(s), Some(e)) = (start, end) {
            if s >= e {
                errors.push("/start: must be before /end".to_owned());
            } else if e - s > EXPORT_MAX_PERIOD {
                errors.push("/end: the period must not exceed 366 days".to_owned());
            }
        }
        let (Some(start), Some(end)) = (start, end) else {
            return Err(RpcError::invalid_params(errors));
        };
        if !errors.is_empty() {
            return Err(RpcError::invalid_params(errors));
        }
        let operator_id = scope(&principal, operator)?;
        let slot = state.exports.stream_slot().ok_or_else(|| {
            RpcError::too_many_requests("exports_busy").retry_after(STREAMS_BUSY_RETRY_SECS)
        })?;
        let filter = ExportFilter {
            operator_ids: operator_id.into_iter().collect(),
            start,
            end,
        };
        let body = stream::csv_body(state.exports.store.clone(), filter, slot)
            .await
            .map_err(|_| RpcError::internal())?;
        Ok::<_, RpcError>(
            warp::reply::with_header(
                warp::reply::stream(body),
                "content-type",
                "text/csv; charset=utf-8",
            )
            .into_response(),
        )
    };
    result.await.unwrap_or_else(|e: RpcError| e.into_response())
}

/// `POST /{v}/exports`: 201 `{uuid, target, status, start_at, end_at}`, the export recorded
/// with the job that builds it; 400 listing every problem of the body.
pub async fn create(state: Arc<State>, principal: Principal, body: Value) -> Response {
    let result = async {
        let role = principal
            .role
            .ok_or_else(|| RpcError::forbidden("role_required"))?;
        let own = if role.is_operator() {
            Some(
                principal
                    .operator_id
                    .ok_or_else(|| RpcError::forbidden("operator_required"))?,
            )
        } else {
            None
        };
        let now = state.now();
        let request =
            validate_export_request(&body, now, own.is_none()).map_err(RpcError::invalid_params)?;
        // As the reference does, an operator's export is its own operator's, whatever it named.
        let operator_ids = match own {
            Some(own) => vec![own],
            None => {
                let mut ids = request.operator_ids.unwrap_or_default();
                ids.sort_unstable();
                ids.dedup();
                ids
            }
        };
        let mut recipients = request.recipients;
        recipients.dedup();
        let export = NewExport {
            uuid: Uuid::new_v4(),
            target: if own.is_some() {
                ExportTarget::Operator
            } else {
                ExportTarget::Opendata
            },
            owner_operator_id: own,
            created_by: principal.id.clone(),
            tz: request.tz.name().to_owned(),
            filter: ExportFilter {
                operator_ids,
                start: request.start,
                end: request.end,
            },
            recipients,
        };
        state
            .exports
            .store
            .create_export(&export, now)
            .await
            .map_err(internal)?;
        tracing::info!(export = %export.uuid, operator_id = ?own, "export asked for");
        let body = json!({
            "uuid": export.uuid,
            "target": export.target.as_str(),
            "status": ExportStatus::Pending.as_str(),
            "start_at": iso(export.filter.start),
            "end_at": iso(export.filter.end),
        });
        Ok::<_, RpcError>(
            warp::reply::with_status(warp::reply::json(&body), StatusCode::CREATED).into_response(),
        )
    };
    result.await.unwrap_or_else(|e: RpcError| e.into_response())
}

/// `GET /{v}/exports/{uuid}`: the export's status and, once built, its size and expiry.
pub async fn status(state: Arc<State>, principal: Principal, uuid: String) -> Response {
    let result = async {
        let export = visible_export(&state, &principal, &uuid).await?;
        Ok::<_, RpcError>(warp::reply::json(&status_body(&export)).into_response())
    };
    result.await.unwrap_or_else(|e: RpcError| e.into_response())
}

/// `GET /{v}/exports/{uuid}/download`: the zip, streamed from its file; 404 until the export
/// is built, after it expired, or when it failed.
pub async fn download(state: Arc<State>, principal: Principal, uuid: String) -> Response {
    let result = async {
        let export = visible_export(&state, &principal, &uuid).await?;
        let path = state
            .exports
            .download_path(&export, state.now())
            .ok_or_else(RpcError::not_found)?;
        let opened = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(path)?;
            let length = file.metadata()?.len();
            Ok::<_, std::io::Error>((file, length))
        })
        .await
        .map_err(|_| RpcError::internal())?;
        let (file, length) = match opened {
            Ok(opened) => opened,
            // Deleted by an expiry running right now.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RpcError::not_found());
            }
            Err(e) => {
                tracing::error!(export = %export.uuid, error = %e, "cannot open an export file");
                return Err(RpcError::internal());
            }
        };
        let body = stream::file_body(file)
            .await
            .map_err(|_| RpcError::internal())?;
        let mut response = warp::reply::stream(body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            "content-type",
            "application/zip".parse().expect("a valid header"),
        );
        headers.insert(warp::http::header::CONTENT_LENGTH, length.into());
        if let Ok(disposition) =
            format!("attachment; filename=\"export-{}.zip\"", export.uuid).parse()
        {
            headers.insert(warp::http::header::CONTENT_DISPOSITION, disposition);
        }
        Ok::<_, RpcError>(response)
    };
    result.await.unwrap_or_else(|e: RpcError| e.into_response())
}

/// The export `uuid` if the caller may see it: registry roles every one, operator roles
/// their own operator's (another's, like an unknown one, is a 404).
async fn visible_export(
    state: &State,
    principal: &Principal,
    uuid: &str,
) -> Result<ExportRecord, RpcError> {
    let role = principal
        .role
        .ok_or_else(|| RpcError::forbidden("role_required"))?;
    let uuid = Uuid::parse_str(uuid).map_err(|_| RpcError::not_found())?;
    let export = state
        .exports
        .store
        .find_export(uuid)
        .await
        .map_err(internal)?
        .ok_or_else(RpcError::not_found)?;
    if role.is_operator() {
        let own = principal
            .operator_id
            .ok_or_else(|| RpcError::forbidden("operator_required"))?;
        if export.owner_operator_id != Some(own) {
            return Err(RpcError::not_found());
        }
    }
    Ok(export)
}

/// `{uuid, target, status, start_at, end_at, operator_id, created_at}`, with `completed_at`
/// once built or failed, `rows` and `expires_at` for a success, and for a failure `error`,
/// the kind of failure (its cause is in the logs, not here).
fn status_body(export: &ExportRecord) -> Value {
    let mut body = json!({
        "uuid": export.uuid,
        "target": export.target.as_str(),
        "status": export.status.as_str(),
        "start_at": iso(export.filter.start),
        "end_at": iso(export.filter.end),
        "operator_id": export.filter.operator_ids,
        "created_at": iso(export.created_at),
    });
    if let Some(at) = export.completed_at {
        body["completed_at"] = json!(iso(at));
    }
    if matches!(export.status, ExportStatus::Success | ExportStatus::Expired) {
        body["rows"] = json!(export.row_count);
        body["expires_at"] = json!(export.expires_at.map(iso));
    }
    if let Some(error) = &export.error {
        body["error"] = json!(error);
    }
    body
}
