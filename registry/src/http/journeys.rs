//! Journey handlers: create (`POST /{v}/journeys`, `POST /journeys/push`) and status
//! (`GET /{v}/journeys/{operator_journey_id}`).
//!
//! Handlers turn HTTP into domain calls and domain results into the reference's bodies; the
//! rules live in [`crate::domain`], the SQL in [`crate::store`].

use super::metrics::{Metrics, Outcome};
use crate::domain::{
    AcquisitionStatus, JourneyState, NewJourney, TermsLabel, standalone_violations,
    validate_journey,
};
use crate::store::{InsertOutcome, JourneyRow, JourneyStore, StoreError};
use auth_token::Principal;
use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use rpc_service::RpcError;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use warp::Reply;
use warp::http::StatusCode;
use warp::reply::Response;

/// What the journey handlers share.
pub struct State {
    /// Where journeys are kept.
    pub store: Arc<dyn JourneyStore>,
    /// Request and journey counters.
    pub metrics: Metrics,
}

/// Query of the status route: registry roles name the operator.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    operator_id: Option<i64>,
}

/// `POST /{v}/journeys`: validate, apply the terms, store, answer 201 / 400 / 409 / 422.
pub async fn create(state: Arc<State>, principal: Principal, body: Value) -> Response {
    let now = Utc::now().trunc_subsecs(3);
    let result = create_journey(&state, &principal, &body, now).await;
    let outcome = match &result {
        Ok(_) => Outcome::Created,
        Err(e) => match e.status {
            StatusCode::BAD_REQUEST | StatusCode::FORBIDDEN => Outcome::Invalid,
            StatusCode::CONFLICT => Outcome::Conflict,
            StatusCode::UNPROCESSABLE_ENTITY => Outcome::TermsViolation,
            _ => Outcome::Error,
        },
    };
    state.metrics.journey_received(outcome);
    result.unwrap_or_else(Reply::into_response)
}

async fn create_journey(
    state: &State,
    principal: &Principal,
    body: &Value,
    now: DateTime<Utc>,
) -> Result<Response, RpcError> {
    let operator_id =
        operator_of(principal).ok_or_else(|| RpcError::forbidden("operator_required"))?;
    let journey = validate_journey(body, now).map_err(RpcError::invalid_params)?;
    if journey
        .declared_operator_id
        .is_some_and(|id| id != operator_id)
    {
        return Err(RpcError::forbidden("operator_id_mismatch"));
    }
    let labels = standalone_violations(&journey, now);
    let acquisition_status = if labels.is_empty() {
        AcquisitionStatus::Received
    } else {
        AcquisitionStatus::TermsViolationError
    };
    let row = JourneyRow {
        uuid: uuid::Uuid::new_v4(),
        operator_id,
        journey: &journey,
        payload: body,
        created_at: now,
        acquisition_status,
        terms_violation_labels: &labels,
    };
    match state.store.insert(&row).await.map_err(internal)? {
        InsertOutcome::AlreadyRegistered { created_at } => Err(RpcError::conflict(format!(
            "Carpool already registered at {}",
            iso(created_at)
        ))),
        InsertOutcome::Created { .. } if !labels.is_empty() => Err(RpcError::unprocessable(
            json!({"terms_violation_labels": label_strings(&labels)}),
        )),
        InsertOutcome::Created { journey_id } => {
            tracing::info!(operator_id, journey_id, "journey created");
            Ok(created(&journey, now))
        }
    }
}

fn created(journey: &NewJourney, created_at: DateTime<Utc>) -> Response {
    let body = json!({
        "jsonrpc": "2.0",
        "id": 1,
        "result": {
            "meta": null,
            "data": {
                "operator_journey_id": journey.operator_journey_id.as_str(),
                "created_at": iso(created_at),
            },
        },
    });
    warp::reply::with_status(warp::reply::json(&body), StatusCode::CREATED).into_response()
}

/// `GET /{v}/journeys/{operator_journey_id}`: the status object of one journey.
pub async fn status(
    operator_journey_id: String,
    state: Arc<State>,
    principal: Principal,
    query: StatusQuery,
) -> Response {
    journey_status(&state, &operator_journey_id, &principal, &query)
        .await
        .unwrap_or_else(Reply::into_response)
}

async fn journey_status(
    state: &State,
    operator_journey_id: &str,
    principal: &Principal,
    query: &StatusQuery,
) -> Result<Response, RpcError> {
    let operator_id = scope(principal, query)?;
    let found = state
        .store
        .find(operator_id, operator_journey_id)
        .await
        .map_err(internal)?;
    let journey = found.ok_or_else(RpcError::not_found)?;
    Ok(warp::reply::json(&status_body(&journey)).into_response())
}

fn status_body(journey: &JourneyState) -> Value {
    json!({
        "operator_journey_id": journey.operator_journey_id,
        "status": journey.status().as_str(),
        "created_at": iso(journey.created_at),
        "journey_id": journey.journey_id.to_string(),
        "fraud_error_labels": journey.fraud_error_labels,
        "anomaly_error_details": journey.anomaly_error_details,
        "terms_violation_details": journey.terms_violation_labels,
    })
}

/// The operator whose journeys the caller may read: its own for operator roles, the
/// `operator_id` query parameter for registry roles. Another operator's journey is a 404.
fn scope(principal: &Principal, query: &StatusQuery) -> Result<i64, RpcError> {
    match principal.role {
        Some(role) if role.is_operator() => {
            let own = principal
                .operator_id
                .ok_or_else(|| RpcError::forbidden("operator_required"))?;
            match query.operator_id {
                Some(asked) if asked != own => Err(RpcError::not_found()),
                _ => Ok(own),
            }
        }
        Some(_) => query.operator_id.ok_or_else(|| {
            RpcError::invalid_params(vec!["query: must have required property 'operator_id'"])
        }),
        None => Err(RpcError::forbidden("role_required")),
    }
}

/// The caller's operator, when it acts with an operator role.
fn operator_of(principal: &Principal) -> Option<i64> {
    principal
        .role
        .filter(|r| r.is_operator())
        .and(principal.operator_id)
}

fn label_strings(labels: &[TermsLabel]) -> Vec<&'static str> {
    labels.iter().map(|l| l.as_str()).collect()
}

/// ISO 8601 UTC with milliseconds: `2026-11-22T14:00:00.123Z`.
fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn internal(e: StoreError) -> RpcError {
    tracing::error!(error = %e, "journey store failed");
    RpcError::internal()
}
