//! CEE handlers (CONTRACT §8): register (`POST /{v}/policies/cee`), simulate
//! (`POST /{v}/policies/cee/simulate`), find and delete (`GET`/`DELETE
//! /{v}/policies/cee/{uuid}`), and the public key that verifies tokens
//! (`GET /{v}/policies/cee/public-key`). The two imports are in [`super::cee_import`].
//!
//! Success and conflict bodies are the reference's bare objects (`{uuid, datetime, token,
//! journey_id?, status?}`, 409 `{uuid?, datetime, journey_id?, status?}`); other errors use the
//! JSON-RPC error shape. The rules live in [`crate::domain::cee`], the SQL in [`crate::store`].

use super::journeys::State;
use crate::domain::JourneyStatus;
use crate::domain::cee::{
    Campaign, CeeSigner, DateRefusal, France, RegistrationKind, StoredApplication,
    application_timestamp, first_conflict, iso_millis, long_dates, short_eligibility,
    token_message, validate_registration, validate_simulation,
};
use crate::store::{CeeStore, NewApplication, RegisterOutcome, StoreError};
use auth_token::Principal;
use chrono::{DateTime, SubsecRound, Utc};
use rpc_service::RpcError;
use serde_json::{Value, json};
use std::sync::Arc;
use uuid::Uuid;
use warp::Reply;
use warp::http::StatusCode;
use warp::reply::Response;

/// What the CEE handlers need besides the clock.
pub struct Cee {
    pub store: Arc<dyn CeeStore>,
    pub campaign: Campaign,
    pub france: France,
    pub signer: CeeSigner,
}

/// `POST /{v}/policies/cee`: 201 with a token, 400, 403, 404 (no eligible journey) or 409.
pub async fn register(state: Arc<State>, principal: Principal, body: Value) -> Response {
    let now = state.clock.now().trunc_subsecs(3);
    register_application(&state.cee, &principal, &body, now)
        .await
        .unwrap_or_else(Reply::into_response)
}

async fn register_application(
    cee: &Cee,
    principal: &Principal,
    body: &Value,
    now: DateTime<Utc>,
) -> Result<Response, RpcError> {
    let operator_id = operator_of(principal)?;
    let siret = principal
        .operator_siret
        .as_deref()
        .ok_or_else(|| RpcError::forbidden("token_without_siret"))?;
    let registration = validate_registration(body).map_err(RpcError::invalid_params)?;
    application_timestamp(registration.application_timestamp, now).map_err(refused)?;
    let (person, datetime, journey) = match &registration.kind {
        RegistrationKind::Short {
            operator_journey_id,
        } => {
            let journey = cee
                .store
                .claimable_journey(operator_id, operator_journey_id.as_str())
                .await
                .map_err(internal)?
                .ok_or_else(RpcError::not_found)?;
            if let Err(why) = short_eligibility(&journey, &cee.campaign, &cee.france, now) {
                tracing::info!(operator_id, reason = ?why, "CEE journey not eligible");
                return Err(RpcError::not_found());
            }
            let person = registration.person(journey.driver_phone_trunc.clone());
            (
                person,
                journey.end.datetime,
                Some((journey.journey_id, journey.status)),
            )
        }
        RegistrationKind::Long {
            phone_trunc,
            datetime,
        } => {
            let datetime = datetime.trunc_subsecs(3);
            long_dates(datetime, &cee.campaign, now).map_err(refused)?;
            (registration.person(phone_trunc.clone()), datetime, None)
        }
    };
    let journey_type = registration.journey_type();
    let token = cee.signer.sign(&token_message(
        siret,
        journey_type,
        &registration.driving_licence,
        datetime,
    ));
    let uuid = Uuid::new_v4();
    let application = NewApplication {
        uuid,
        operator_id,
        journey_type,
        journey_id: journey.map(|(id, _)| id),
        person: &person,
        datetime,
        application_timestamp: registration.application_timestamp,
        token: &token,
        created_at: now,
    };
    match cee.store.register(&application).await.map_err(internal)? {
        RegisterOutcome::Created => {
            tracing::info!(operator_id, %uuid, journey_type = journey_type.as_str(), "CEE application registered");
            let body = application_body(uuid, datetime, Some(&token), journey);
            Ok(reply(StatusCode::CREATED, &body))
        }
        RegisterOutcome::JourneyClaimed(existing) | RegisterOutcome::Conflict(existing) => {
            Ok(reply(
                StatusCode::CONFLICT,
                &conflict_body(&existing, operator_id, true),
            ))
        }
    }
}

/// `POST /{v}/policies/cee/simulate`: 200 (empty) when the person may claim now, 409 with
/// the blocking application, 400, 403.
pub async fn simulate(state: Arc<State>, principal: Principal, body: Value) -> Response {
    let now = state.clock.now().trunc_subsecs(3);
    simulate_application(&state.cee, &principal, &body, now)
        .await
        .unwrap_or_else(Reply::into_response)
}

async fn simulate_application(
    cee: &Cee,
    principal: &Principal,
    body: &Value,
    now: DateTime<Utc>,
) -> Result<Response, RpcError> {
    let operator_id = operator_of(principal)?;
    let simulation = validate_simulation(body).map_err(RpcError::invalid_params)?;
    let stored = cee
        .store
        .applications_of(simulation.journey_type, &simulation.person)
        .await
        .map_err(internal)?;
    Ok(
        match first_conflict(&stored, simulation.journey_type, &simulation.person, now) {
            Some(existing) => reply(
                StatusCode::CONFLICT,
                &conflict_body(existing, operator_id, false),
            ),
            None => StatusCode::OK.into_response(),
        },
    )
}

/// `GET /{v}/policies/cee/{uuid}`: one of the caller's applications (another operator's is
/// not found).
pub async fn find(raw: String, state: Arc<State>, principal: Principal) -> Response {
    find_application(&state.cee, &raw, &principal)
        .await
        .unwrap_or_else(Reply::into_response)
}

async fn find_application(
    cee: &Cee,
    raw: &str,
    principal: &Principal,
) -> Result<Response, RpcError> {
    let operator_id = operator_of(principal)?;
    let uuid = parse_uuid(raw)?;
    let found = cee
        .store
        .find_application(operator_id, uuid)
        .await
        .map_err(internal)?
        .ok_or_else(RpcError::not_found)?;
    let body = application_body(
        found.uuid,
        found.datetime,
        found.token.as_deref(),
        found.journey,
    );
    Ok(reply(StatusCode::OK, &body))
}

/// `DELETE /{v}/policies/cee/{uuid}`: 204, the application kept for audit but no longer
/// blocking anyone; 404 when the caller has no such live application.
pub async fn delete(raw: String, state: Arc<State>, principal: Principal) -> Response {
    let now = state.clock.now().trunc_subsecs(3);
    delete_application(&state.cee, &raw, &principal, now)
        .await
        .unwrap_or_else(Reply::into_response)
}

async fn delete_application(
    cee: &Cee,
    raw: &str,
    principal: &Principal,
    now: DateTime<Utc>,
) -> Result<Response, RpcError> {
    let operator_id = operator_of(principal)?;
    let uuid = parse_uuid(raw)?;
    if cee
        .store
        .delete_application(operator_id, uuid, now)
        .await
        .map_err(internal)?
    {
        tracing::info!(operator_id, %uuid, "CEE application deleted");
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(RpcError::not_found())
    }
}

/// `GET /{v}/policies/cee/public-key`: the PEM that verifies tokens.
pub async fn public_key(state: Arc<State>, _principal: Principal) -> Response {
    let pem = state.cee.signer.public_key_pem().to_owned();
    warp::reply::with_header(pem, "content-type", "application/x-pem-file").into_response()
}

/// The caller's operator: CEE routes are for operators only.
pub(super) fn operator_of(principal: &Principal) -> Result<i64, RpcError> {
    principal
        .role
        .filter(|r| r.is_operator())
        .and(principal.operator_id)
        .ok_or_else(|| RpcError::forbidden("operator_required"))
}

fn parse_uuid(raw: &str) -> Result<Uuid, RpcError> {
    Uuid::parse_str(raw)
        .map_err(|_| RpcError::invalid_params(vec!["/uuid: must match format \"uuid\""]))
}

fn refused(refusal: DateRefusal) -> RpcError {
    RpcError::invalid_params(vec![refusal.message()])
}

/// A failed store call: 503 `database_unavailable` when the database is out of reach, else
/// 500. Logs the cause once.
pub(super) fn internal(e: StoreError) -> RpcError {
    if e.is_unavailable() {
        tracing::warn!(error = %e, "CEE store: database unavailable");
        return RpcError::database_unavailable();
    }
    tracing::error!(error = %e, "CEE store failed");
    RpcError::internal()
}

pub(super) fn reply(status: StatusCode, body: &Value) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

/// An application as answered by register and find. An imported (specific) application has
/// no token: find answers its uuid and date only.
fn application_body(
    uuid: Uuid,
    datetime: DateTime<Utc>,
    token: Option<&str>,
    journey: Option<(i64, JourneyStatus)>,
) -> Value {
    let mut body = json!({"uuid": uuid, "datetime": iso_millis(datetime)});
    if let Some(token) = token {
        body["token"] = json!(token);
    }
    if let Some((journey_id, status)) = journey {
        body["journey_id"] = json!(journey_id);
        body["status"] = json!(status.as_str());
    }
    body
}

/// What a 409 reveals of the blocking application: only its date to another operator; its
/// uuid to its own operator, with the claimed journey and its status when `detailed`.
fn conflict_body(existing: &StoredApplication, caller: i64, detailed: bool) -> Value {
    let mut body = json!({"datetime": iso_millis(existing.datetime)});
    if existing.operator_id != caller {
        return body;
    }
    body["uuid"] = json!(existing.uuid);
    if detailed && let Some((journey_id, status)) = existing.journey {
        body["journey_id"] = json!(journey_id);
        body["status"] = json!(status.as_str());
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PhoneTrunc;
    use crate::domain::cee::{ApplicationKind, JourneyType, LastNameTrunc, Person};

    fn existing(operator_id: i64, journey: Option<(i64, JourneyStatus)>) -> StoredApplication {
        StoredApplication {
            uuid: Uuid::nil(),
            operator_id,
            kind: ApplicationKind::Standardized,
            journey_type: JourneyType::Short,
            person: Person {
                identity_key: None,
                driving_licence: None,
                last_name_trunc: LastNameTrunc::parse("DUP").unwrap(),
                phone_trunc: PhoneTrunc::parse("+336010203").unwrap(),
            },
            datetime: DateTime::parse_from_rfc3339("2024-03-15T00:15:00Z")
                .unwrap()
                .with_timezone(&Utc),
            journey,
            token: Some("secret-ish".into()),
            deleted: false,
        }
    }

    #[test]
    fn conflicts_reveal_details_only_to_the_same_operator() {
        let nil = Uuid::nil().to_string();
        let short = existing(1, Some((42, JourneyStatus::Pending)));
        let cases = [
            (
                1,
                true,
                json!({"uuid": nil, "datetime": "2024-03-15T00:15:00.000Z",
                       "journey_id": 42, "status": "pending"}),
            ),
            (
                1,
                false,
                json!({"uuid": nil, "datetime": "2024-03-15T00:15:00.000Z"}),
            ),
            (2, true, json!({"datetime": "2024-03-15T00:15:00.000Z"})),
            (2, false, json!({"datetime": "2024-03-15T00:15:00.000Z"})),
        ];
        for (caller, detailed, expected) in cases {
            assert_eq!(conflict_body(&short, caller, detailed), expected);
        }
        let long = existing(1, None);
        assert_eq!(
            conflict_body(&long, 1, true),
            json!({"uuid": nil, "datetime": "2024-03-15T00:15:00.000Z"})
        );
    }

    #[test]
    fn applications_carry_the_journey_only_for_short_distance() {
        let at = existing(1, None).datetime;
        assert_eq!(
            application_body(Uuid::nil(), at, Some("t"), Some((7, JourneyStatus::Ok))),
            json!({"uuid": Uuid::nil(), "datetime": "2024-03-15T00:15:00.000Z", "token": "t",
                   "journey_id": 7, "status": "ok"})
        );
        assert_eq!(
            application_body(Uuid::nil(), at, Some("t"), None),
            json!({"uuid": Uuid::nil(), "datetime": "2024-03-15T00:15:00.000Z", "token": "t"})
        );
        assert_eq!(
            application_body(Uuid::nil(), at, None, None),
            json!({"uuid": Uuid::nil(), "datetime": "2024-03-15T00:15:00.000Z"}),
            "an imported application"
        );
    }
}
