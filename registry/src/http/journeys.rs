//! Journey handlers: create (`POST /{v}/journeys`, `POST /journeys/push`), status
//! (`GET /{v}/journeys/{id}`), list (`GET /{v}/journeys`), update (`PATCH` and `POST
//! /{v}/journeys/{id}`) and cancel (`POST /{v}/journeys/{id}/cancel`).
//!
//! Handlers turn HTTP into domain calls and domain results into the reference's bodies; the
//! rules live in [`crate::domain`], the SQL in [`crate::store`].

use super::metrics::{Metrics, Outcome};
use crate::clock::Clock;
use crate::domain::{
    JourneyState, JourneyStatus, NewJourney, TermsLabel, UpdateRefusal, revise, validate_cancel,
    validate_journey, validate_patch,
};
use crate::store::lifecycle::JourneyIncentive;
use crate::store::{
    Cancellation, InsertOutcome, JourneyRow, JourneyStore, LifecycleStore, ListQuery,
    ListedJourney, StoreError, UpdateOutcome,
};
use auth_token::Principal;
use chrono::{DateTime, SecondsFormat, SubsecRound, TimeDelta, Utc};
use rpc_service::RpcError;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use warp::Reply;
use warp::http::StatusCode;
use warp::reply::Response;

/// What the handlers share.
pub struct State {
    /// Where journeys are kept.
    pub store: Arc<dyn JourneyStore>,
    /// Jobs, campaigns, incentives, funding calls.
    pub lifecycle: Arc<dyn LifecycleStore>,
    /// Exports: their store, files and limits.
    pub exports: Arc<crate::exports::Exports>,
    /// Request and journey counters.
    pub metrics: Metrics,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// CEE applications: their store, campaign, France and signing key.
    pub cee: super::cee::Cee,
}

impl State {
    /// Now, to the millisecond (the precision stored and answered).
    pub(super) fn now(&self) -> DateTime<Utc> {
        self.clock.now().trunc_subsecs(3)
    }
}

/// Query of the status route: registry roles name the operator.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    operator_id: Option<i64>,
}

/// `POST /{v}/journeys`: validate, apply the terms, store, answer 201 / 400 / 409 / 422.
pub async fn create(state: Arc<State>, principal: Principal, body: Value) -> Response {
    let now = state.now();
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
    state
        .metrics
        .journey_received(outcome, operator_of(&principal));
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
    if let Some(refusal) = journey.without_phone() {
        return Err(RpcError::invalid_request(refusal));
    }
    if journey
        .declared_operator_id
        .is_some_and(|id| id != operator_id)
    {
        return Err(RpcError::forbidden("operator_id_mismatch"));
    }
    // A JSON tree always serialises.
    let payload = serde_json::value::to_raw_value(body).map_err(|_| RpcError::internal())?;
    let row = JourneyRow {
        // Time-ordered, so the unique index on it grows at its right edge instead of taking
        // a random page per insert; that matters once the index outgrows memory (no change
        // measured at 1 M journeys).
        uuid: uuid::Uuid::now_v7(),
        operator_id,
        journey: &journey,
        payload: &payload,
        created_at: now,
    };
    match state.store.insert(&row).await.map_err(internal)? {
        InsertOutcome::AlreadyRegistered { created_at } => Err(RpcError::conflict(format!(
            "Carpool already registered at {}",
            iso(created_at)
        ))),
        InsertOutcome::Created {
            terms_violation_labels,
            ..
        } if !terms_violation_labels.is_empty() => Err(terms_violation(&terms_violation_labels)),
        InsertOutcome::Created { journey_id, .. } => {
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
    let incentives = state
        .lifecycle
        .incentives_of(journey.journey_id)
        .await
        .map_err(internal)?;
    Ok(warp::reply::json(&status_body(&journey, &incentives)).into_response())
}

/// The reference's status object. `fraud_error_labels` are `{"label"}` objects as the
/// published v3.3 spec says; `incentives` (an addition) lists what the registry's campaigns
/// pay for the journey once its status is final.
fn status_body(journey: &JourneyState, incentives: &[JourneyIncentive]) -> Value {
    let fraud: Vec<Value> = journey
        .fraud_error_labels
        .iter()
        .map(|label| json!({ "label": label }))
        .collect();
    let incentives: Vec<Value> = incentives
        .iter()
        .map(|i| {
            json!({"campaign_id": i.campaign_id, "campaign_name": i.campaign_name, "amount": i.amount})
        })
        .collect();
    json!({
        "operator_journey_id": journey.operator_journey_id,
        "status": journey.status().as_str(),
        "created_at": iso(journey.created_at),
        "journey_id": journey.journey_id.to_string(),
        "fraud_error_labels": fraud,
        "anomaly_error_details": journey.anomaly_error_details,
        "terms_violation_details": journey.terms_violation_labels,
        "incentives": incentives,
    })
}

/// Longest page of a listing.
pub const LIST_LIMIT_MAX: i64 = 1_000;

/// Page size when the caller does not say.
const LIST_LIMIT_DEFAULT: i64 = 50;

/// Default period of a listing: the last 7 days.
const LIST_DEFAULT_PERIOD: TimeDelta = TimeDelta::days(7);

/// How far back a listing may start.
const LIST_HORIZON: TimeDelta = TimeDelta::days(90);

/// `GET /{v}/journeys?status=&start=&end=&limit=&offset=`: the caller's journeys with that
/// status, newest start first (registry roles: every operator's, or `operator_id`'s).
pub async fn list(
    state: Arc<State>,
    principal: Principal,
    query: Vec<(String, String)>,
) -> Response {
    let now = state.now();
    list_journeys(&state, &principal, &query, now)
        .await
        .unwrap_or_else(Reply::into_response)
}

async fn list_journeys(
    state: &State,
    principal: &Principal,
    params: &[(String, String)],
    now: DateTime<Utc>,
) -> Result<Response, RpcError> {
    let asked = parse_list_query(params, now).map_err(RpcError::invalid_params)?;
    let operator_id = match principal.role {
        Some(role) if role.is_operator() => {
            let own = principal
                .operator_id
                .ok_or_else(|| RpcError::forbidden("operator_required"))?;
            if asked.operator_id.is_some_and(|id| id != own) {
                return Err(RpcError::not_found());
            }
            Some(own)
        }
        Some(_) => asked.operator_id,
        None => return Err(RpcError::forbidden("role_required")),
    };
    let query = ListQuery {
        operator_id,
        ..asked
    };
    let journeys = state.store.list(&query).await.map_err(internal)?;
    let body: Vec<Value> = journeys.iter().map(listed_body).collect();
    Ok(warp::reply::json(&body).into_response())
}

fn listed_body(j: &ListedJourney) -> Value {
    json!({
        "operator_journey_id": j.operator_journey_id,
        "journey_id": j.journey_id.to_string(),
        "operator_id": j.operator_id,
        "status": j.status.as_str(),
        "start": iso(j.start),
        "created_at": iso(j.created_at),
    })
}

/// The listing asked for in `params` at `now`, or every problem with it.
fn parse_list_query(
    params: &[(String, String)],
    now: DateTime<Utc>,
) -> Result<ListQuery, Vec<String>> {
    let mut errors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (name, _) in params {
        if !["status", "start", "end", "limit", "offset", "operator_id"].contains(&name.as_str()) {
            errors.push(format!(": must NOT have additional properties ('{name}')"));
        } else if !seen.insert(name.as_str()) {
            errors.push(format!("/{name}: must not be repeated"));
        }
    }
    let param = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let status = match param("status") {
        None => {
            errors.push(": must have required property 'status'".to_owned());
            None
        }
        Some(s) => JourneyStatus::parse(s).or_else(|| {
            errors.push("/status: must be equal to one of the allowed values".to_owned());
            None
        }),
    };
    let mut time = |name: &str| {
        param(name).and_then(|s| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| errors.push(format!("/{name}: must match format \"date-time\"")))
                .ok()
        })
    };
    let end = time("end").unwrap_or(now);
    let start = time("start").unwrap_or(end - LIST_DEFAULT_PERIOD);
    let mut integer = |name: &str, default: i64, max: i64| {
        param(name).map_or(default, |s| match s.parse::<i64>() {
            Ok(n) if (0..=max).contains(&n) => n,
            _ => {
                errors.push(format!("/{name}: must be an integer from 0 to {max}"));
                default
            }
        })
    };
    let limit = integer("limit", LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX);
    let offset = integer("offset", 0, i64::MAX);
    let operator_id = param("operator_id").and_then(|s| {
        s.parse::<i64>().ok().filter(|id| *id >= 1).or_else(|| {
            errors.push("/operator_id: must be a positive integer".to_owned());
            None
        })
    });
    let horizon = now - LIST_HORIZON;
    if start < horizon {
        errors.push(format!("/start: must be after {}", iso(horizon)));
    }
    if start >= end {
        errors.push("/start: must be before /end".to_owned());
    }
    match status {
        Some(status) if errors.is_empty() => Ok(ListQuery {
            operator_id,
            status,
            start,
            end,
            limit,
            offset,
        }),
        _ => Err(errors),
    }
}

/// `PATCH` or `POST /{v}/journeys/{id}`: re-validate, re-apply the terms, reset processing.
/// 200 with an empty body, as the reference.
pub async fn update(
    operator_journey_id: String,
    state: Arc<State>,
    principal: Principal,
    body: Value,
) -> Response {
    let now = state.now();
    update_journey(&state, &principal, &operator_journey_id, &body, now)
        .await
        .unwrap_or_else(Reply::into_response)
}

async fn update_journey(
    state: &State,
    principal: &Principal,
    operator_journey_id: &str,
    body: &Value,
    now: DateTime<Utc>,
) -> Result<Response, RpcError> {
    let operator_id =
        operator_of(principal).ok_or_else(|| RpcError::forbidden("operator_required"))?;
    validate_patch(body, now).map_err(RpcError::invalid_params)?;
    let revise = |stored: &_| revise(stored, body, operator_id, now);
    let outcome = state
        .store
        .update(operator_id, operator_journey_id, now, &revise)
        .await
        .map_err(internal)?;
    match outcome {
        UpdateOutcome::NotFound => Err(RpcError::not_found()),
        UpdateOutcome::Refused(UpdateRefusal::Invalid(errors)) => {
            Err(RpcError::invalid_params(errors))
        }
        UpdateOutcome::Refused(UpdateRefusal::OperatorMismatch) => {
            Err(RpcError::forbidden("operator_id_mismatch"))
        }
        UpdateOutcome::Refused(UpdateRefusal::Canceled) => {
            Err(RpcError::conflict("A canceled journey cannot be updated"))
        }
        UpdateOutcome::Refused(UpdateRefusal::WindowClosed) => Err(RpcError::conflict(
            "A journey can only be updated within 24 hours of its start",
        )),
        UpdateOutcome::Updated {
            terms_violation_labels,
        } if !terms_violation_labels.is_empty() => Err(terms_violation(&terms_violation_labels)),
        UpdateOutcome::Updated { .. } => {
            tracing::info!(operator_id, "journey updated");
            Ok(StatusCode::OK.into_response())
        }
    }
}

/// `POST /{v}/journeys/{id}/cancel {"code","message"?}`: 200 `{"jsonrpc":"2.0","id":1}`.
pub async fn cancel(
    operator_journey_id: String,
    state: Arc<State>,
    principal: Principal,
    body: Value,
) -> Response {
    let now = state.now();
    cancel_journey(&state, &principal, &operator_journey_id, &body, now)
        .await
        .unwrap_or_else(Reply::into_response)
}

async fn cancel_journey(
    state: &State,
    principal: &Principal,
    operator_journey_id: &str,
    body: &Value,
    now: DateTime<Utc>,
) -> Result<Response, RpcError> {
    let operator_id =
        operator_of(principal).ok_or_else(|| RpcError::forbidden("operator_required"))?;
    let cancel = validate_cancel(body).map_err(RpcError::invalid_params)?;
    let cancellation = Cancellation {
        code: &cancel.code,
        message: cancel.message.as_deref(),
        body,
        at: now,
    };
    let found = state
        .store
        .cancel(operator_id, operator_journey_id, &cancellation)
        .await
        .map_err(internal)?;
    if !found {
        return Err(RpcError::not_found());
    }
    tracing::info!(operator_id, "journey canceled");
    Ok(warp::reply::json(&json!({"jsonrpc": "2.0", "id": 1})).into_response())
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

/// 422 with the labels, as the reference answers a journey stored in breach of the terms;
/// the first label is the outcome the gateway's usage records keep.
fn terms_violation(labels: &[TermsLabel]) -> RpcError {
    let outcome = labels.first().map(|l| l.outcome());
    let labels: Vec<&str> = labels.iter().map(|l| l.as_str()).collect();
    let error = RpcError::unprocessable(json!({ "terms_violation_labels": labels }));
    match outcome {
        Some(outcome) => error.outcome(outcome),
        None => error,
    }
}

/// ISO 8601 UTC with milliseconds: `2026-11-22T14:00:00.123Z`.
pub(super) fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A failed store call: 503 `database_unavailable` when the database is out of reach, else
/// 500. Logs the cause once.
pub(super) fn internal(e: StoreError) -> RpcError {
    if e.is_unavailable() {
        tracing::warn!(error = %e, "journey store: database unavailable");
        return RpcError::database_unavailable();
    }
    tracing::error!(error = %e, "journey store failed");
    RpcError::internal()
}
