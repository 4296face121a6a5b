//! The CEE imports (rpc-behaviour §9.6): an operator's history of specific operations
//! (`POST /{v}/policies/cee/import`, 201) and identity keys for earlier applications
//! (`POST /{v}/policies/cee/import/identity`, 200).
//!
//! Both answer the reference's bare `{imported, failed, failed_details}`, each failed item
//! echoed (as validated: phones normalised, dates to the millisecond) with its `error`. A
//! body that is not an array of 1 to 1000 valid items is refused whole: 400 in the JSON-RPC
//! shape listing every violation. The rules are in [`crate::domain::cee`], the SQL in
//! [`crate::store`].

use super::cee::{Cee, internal, operator_of, reply};
use super::journeys::State;
use crate::domain::cee::{
    ApplicationKind, IdentityImport, SpecificOperation, iso_millis, validate_identity_import,
    validate_import,
};
use crate::store::ImportOutcome;
use auth_token::Principal;
use chrono::{DateTime, SubsecRound, Utc};
use rpc_service::RpcError;
use serde_json::{Value, json};
use std::sync::Arc;
use warp::Reply;
use warp::http::StatusCode;
use warp::reply::Response;

/// The `error` of an operation the caller had already imported (the reference's
/// `ConflictException` message).
const CONFLICT: &str = "Conflict";

/// The `error` of an identity whose application does not exist, is another operator's, or
/// already has a key (the reference's `NotFoundException` message).
const NOT_FOUND: &str = "Not found";

/// `POST /{v}/policies/cee/import`: 201 `{imported, failed, failed_details}`, 400, 403.
pub async fn import(state: Arc<State>, principal: Principal, body: Value) -> Response {
    let now = state.clock.now().trunc_subsecs(3);
    import_history(&state.cee, &principal, &body, now)
        .await
        .unwrap_or_else(Reply::into_response)
}

async fn import_history(
    cee: &Cee,
    principal: &Principal,
    body: &Value,
    now: DateTime<Utc>,
) -> Result<Response, RpcError> {
    let operator_id = operator_of(principal)?;
    let operations = validate_import(body).map_err(RpcError::invalid_params)?;
    let outcomes = cee
        .store
        .import_specific(operator_id, &operations, now)
        .await
        .map_err(internal)?;
    let failed: Vec<Value> = operations
        .iter()
        .zip(outcomes)
        .filter(|(_, outcome)| *outcome == ImportOutcome::Conflict)
        .map(|(operation, _)| failed_item(operation_fields(operation), CONFLICT))
        .collect();
    let body = summary(operations.len(), failed);
    tracing::info!(
        operator_id,
        imported = %body["imported"],
        failed = %body["failed"],
        "CEE history imported"
    );
    Ok(reply(StatusCode::CREATED, &body))
}

/// `POST /{v}/policies/cee/import/identity`: 200 `{imported, failed, failed_details}`, 400,
/// 403.
pub async fn import_identity(state: Arc<State>, principal: Principal, body: Value) -> Response {
    import_identities(&state.cee, &principal, &body)
        .await
        .unwrap_or_else(Reply::into_response)
}

async fn import_identities(
    cee: &Cee,
    principal: &Principal,
    body: &Value,
) -> Result<Response, RpcError> {
    let operator_id = operator_of(principal)?;
    let imports = validate_identity_import(body).map_err(RpcError::invalid_params)?;
    let set = cee
        .store
        .import_identities(operator_id, &imports)
        .await
        .map_err(internal)?;
    let failed: Vec<Value> = imports
        .iter()
        .zip(set)
        .filter(|(_, set)| !set)
        .map(|(import, _)| failed_item(identity_fields(import), NOT_FOUND))
        .collect();
    let body = summary(imports.len(), failed);
    tracing::info!(
        operator_id,
        imported = %body["imported"],
        failed = %body["failed"],
        "CEE identities imported"
    );
    Ok(reply(StatusCode::OK, &body))
}

/// `{imported, failed, failed_details}` for `total` items of which `failed` failed.
fn summary(total: usize, failed: Vec<Value>) -> Value {
    json!({
        "imported": total - failed.len(),
        "failed": failed.len(),
        "failed_details": failed,
    })
}

/// An item as the caller sent it (validated), with why it failed.
fn failed_item(mut fields: Value, error: &str) -> Value {
    fields["error"] = json!(error);
    fields
}

fn operation_fields(o: &SpecificOperation) -> Value {
    json!({
        "journey_type": o.journey_type.as_str(),
        "last_name_trunc": o.last_name_trunc.as_str(),
        "phone_trunc": o.phone_trunc.as_str(),
        "datetime": iso_millis(o.datetime),
    })
}

fn identity_fields(import: &IdentityImport) -> Value {
    match import {
        IdentityImport::Standardized { uuid, identity_key } => json!({
            "cee_application_type": ApplicationKind::Standardized.as_str(),
            "cee_application_uuid": uuid,
            "identity_key": identity_key.as_str(),
        }),
        IdentityImport::Specific {
            identity_key,
            operation,
        } => {
            let mut fields = operation_fields(operation);
            fields["cee_application_type"] = json!(ApplicationKind::Specific.as_str());
            fields["identity_key"] = json!(identity_key.as_str());
            fields
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::cee::{JourneyType, LastNameTrunc};
    use crate::domain::{IdentityKey, PhoneTrunc};
    use uuid::Uuid;

    fn operation() -> SpecificOperation {
        SpecificOperation {
            journey_type: JourneyType::Long,
            last_name_trunc: LastNameTrunc::parse("TO ").unwrap(),
            phone_trunc: PhoneTrunc::parse("+336010203").unwrap(),
            datetime: DateTime::parse_from_rfc3339("2016-01-01T00:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        }
    }

    #[test]
    fn failed_items_echo_the_item_with_its_error() {
        let key = IdentityKey::parse(&"a".repeat(64)).unwrap();
        let cases = [
            (
                failed_item(operation_fields(&operation()), CONFLICT),
                json!({"journey_type": "long", "last_name_trunc": "TO ",
                       "phone_trunc": "+336010203", "datetime": "2016-01-01T00:00:00.000Z",
                       "error": "Conflict"}),
            ),
            (
                failed_item(
                    identity_fields(&IdentityImport::Standardized {
                        uuid: Uuid::nil(),
                        identity_key: key.clone(),
                    }),
                    NOT_FOUND,
                ),
                json!({"cee_application_type": "standardized",
                       "cee_application_uuid": Uuid::nil(), "identity_key": "a".repeat(64),
                       "error": "Not found"}),
            ),
            (
                failed_item(
                    identity_fields(&IdentityImport::Specific {
                        identity_key: key,
                        operation: operation(),
                    }),
                    NOT_FOUND,
                ),
                json!({"cee_application_type": "specific", "identity_key": "a".repeat(64),
                       "journey_type": "long", "last_name_trunc": "TO ",
                       "phone_trunc": "+336010203", "datetime": "2016-01-01T00:00:00.000Z",
                       "error": "Not found"}),
            ),
        ];
        for (got, expected) in cases {
            assert_eq!(got, expected);
        }
        assert_eq!(
            summary(3, vec![json!({"error": "Conflict"})]),
            json!({"imported": 2, "failed": 1, "failed_details": [{"error": "Conflict"}]})
        );
    }
}
