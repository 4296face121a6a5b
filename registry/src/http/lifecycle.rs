//! Lifecycle routes: incentive campaigns (`GET`/`POST /admin/campaigns`, registry admins) and
//! funding calls (`GET /{v}/funding-calls?month=`); exports are in [`super::exports`]. The rules are in [`crate::domain::lifecycle`], the SQL in
//! [`crate::store::lifecycle`]; the job runner that fills them is [`crate::jobs`].

use super::journeys::{State, internal, iso};
use crate::domain::lifecycle::Month;
use crate::domain::lifecycle::campaign::validate_campaign;
use crate::store::lifecycle::FundingCall;
use auth_token::{Principal, Role};
use chrono::{DateTime, SubsecRound, Utc};
use rpc_service::RpcError;
use serde_json::{Value, json};
use std::sync::Arc;
use warp::Reply;
use warp::http::StatusCode;
use warp::reply::Response;

/// `POST /admin/campaigns`: 201 with the stored campaign, 400 listing every problem.
pub async fn create_campaign(state: Arc<State>, principal: Principal, body: Value) -> Response {
    let result = async {
        registry_admin(&principal)?;
        let campaign = validate_campaign(&body).map_err(RpcError::invalid_params)?;
        let now = state.clock.now().trunc_subsecs(3);
        let stored = state
            .lifecycle
            .create_campaign(&campaign, now)
            .await
            .map_err(internal)?;
        tracing::info!(campaign_id = stored.id, "campaign created");
        Ok::<_, RpcError>(
            warp::reply::with_status(warp::reply::json(&stored.to_json()), StatusCode::CREATED)
                .into_response(),
        )
    };
    result.await.unwrap_or_else(|e: RpcError| e.into_response())
}

/// `GET /admin/campaigns`: every campaign, oldest first.
pub async fn list_campaigns(state: Arc<State>, principal: Principal) -> Response {
    let result = async {
        registry_admin(&principal)?;
        let campaigns = state.lifecycle.campaigns().await.map_err(internal)?;
        let body: Vec<Value> = campaigns.iter().map(|c| c.to_json()).collect();
        Ok::<_, RpcError>(warp::reply::json(&body).into_response())
    };
    result.await.unwrap_or_else(|e: RpcError| e.into_response())
}

/// The gateway lets only registry admins through; the registry checks again.
fn registry_admin(principal: &Principal) -> Result<(), RpcError> {
    if principal.role == Some(Role::RegistryAdmin) {
        Ok(())
    } else {
        Err(RpcError::forbidden("insufficient_permissions"))
    }
}

/// `GET /{v}/funding-calls?month=YYYY-MM[&operator_id=]`: the call issued on the 6th of the
/// following month, per operator and campaign with its journeys; 404 before it is issued.
pub async fn funding_calls(
    state: Arc<State>,
    principal: Principal,
    params: Vec<(String, String)>,
) -> Response {
    let result = async {
        let asked = Params::read(&params, &["month", "operator_id"])?;
        let mut errors = Vec::new();
        let month = match asked.get("month") {
            None => {
                errors.push(": must have required property 'month'".to_owned());
                None
            }
            Some(m) => Month::parse(m).or_else(|| {
                errors.push("/month: must match format \"YYYY-MM\"".to_owned());
                None
            }),
        };
        let operator = asked.operator_id(&mut errors);
        let Some(month) = month.filter(|_| errors.is_empty()) else {
            return Err(RpcError::invalid_params(errors));
        };
        let operator_id = scope(&principal, operator)?;
        let call = state
            .lifecycle
            .funding_call(month, operator_id)
            .await
            .map_err(internal)?
            .ok_or_else(RpcError::not_found)?;
        Ok::<_, RpcError>(warp::reply::json(&funding_call_body(&call)).into_response())
    };
    result.await.unwrap_or_else(|e: RpcError| e.into_response())
}

/// `{"month","issued_at","calls":[{"operator_id","campaign_id","campaign_name","amount",
/// "journeys":[{"journey_id","operator_journey_id","amount"}]}]}`.
fn funding_call_body(call: &FundingCall) -> Value {
    let mut calls: Vec<Value> = Vec::new();
    let mut current: Option<(i64, i64)> = None;
    for line in &call.lines {
        let key = (line.operator_id, line.campaign_id);
        if current != Some(key) {
            current = Some(key);
            calls.push(json!({
                "operator_id": line.operator_id,
                "campaign_id": line.campaign_id,
                "campaign_name": line.campaign_name,
                "amount": 0,
                "journeys": [],
            }));
        }
        if let Some(entry) = calls.last_mut() {
            entry["amount"] = json!(entry["amount"].as_i64().unwrap_or(0) + line.amount);
            if let Some(journeys) = entry["journeys"].as_array_mut() {
                journeys.push(json!({
                    "journey_id": line.journey_id.to_string(),
                    "operator_journey_id": line.operator_journey_id,
                    "amount": line.amount,
                }));
            }
        }
    }
    json!({
        "month": call.month,
        "issued_at": iso(call.issued_at),
        "calls": calls,
    })
}

/// Whose data the caller reads: its own operator's for operator roles (asking for another
/// one is a 404), `operator_id`'s or everyone's for registry roles.
pub(super) fn scope(principal: &Principal, asked: Option<i64>) -> Result<Option<i64>, RpcError> {
    match principal.role {
        Some(role) if role.is_operator() => {
            let own = principal
                .operator_id
                .ok_or_else(|| RpcError::forbidden("operator_required"))?;
            if asked.is_some_and(|id| id != own) {
                return Err(RpcError::not_found());
            }
            Ok(Some(own))
        }
        Some(_) => Ok(asked),
        None => Err(RpcError::forbidden("role_required")),
    }
}

/// Query parameters, each allowed at most once.
pub(super) struct Params<'a>(&'a [(String, String)]);

impl<'a> Params<'a> {
    pub(super) fn read(params: &'a [(String, String)], allowed: &[&str]) -> Result<Self, RpcError> {
        let mut errors = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (name, _) in params {
            if !allowed.contains(&name.as_str()) {
                errors.push(format!(": must NOT have additional properties ('{name}')"));
            } else if !seen.insert(name.as_str()) {
                errors.push(format!("/{name}: must not be repeated"));
            }
        }
        if errors.is_empty() {
            Ok(Self(params))
        } else {
            Err(RpcError::invalid_params(errors))
        }
    }

    fn get(&self, name: &str) -> Option<&'a str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn time(&self, name: &str, errors: &mut Vec<String>) -> Option<DateTime<Utc>> {
        match self.get(name) {
            None => {
                errors.push(format!(": must have required property '{name}'"));
                None
            }
            Some(s) => DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| errors.push(format!("/{name}: must match format \"date-time\"")))
                .ok(),
        }
    }

    pub(super) fn operator_id(&self, errors: &mut Vec<String>) -> Option<i64> {
        self.get("operator_id").and_then(|s| {
            s.parse::<i64>().ok().filter(|id| *id >= 1).or_else(|| {
                errors.push("/operator_id: must be a positive integer".to_owned());
                None
            })
        })
    }
}
