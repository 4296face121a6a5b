//! The two import bodies (rpc-behaviour §9.6), spelled out on the journeys' [`Checker`]: an
//! operator's history of specific operations (`POST /policies/cee/import`) and the identity
//! keys of earlier applications (`POST /policies/cee/import/identity`).
//!
//! Both are arrays of 1 to [`MAX_IMPORT_ITEMS`] items, validated whole, as the reference's
//! schema: one invalid item refuses the batch, and every violation is listed with the item's
//! index in its path (`"/3/phone_trunc: ..."`). What is stored, and which item failed, is the
//! store's business.

use super::request::{
    ApplicationKind, JourneyType, LastNameTrunc, identity_key, last_name_trunc, phone_trunc,
};
use crate::domain::journey::IdentityKey;
use crate::domain::phone::PhoneTrunc;
use crate::domain::schema::{Checker, Field, Obj};
use chrono::{DateTime, SubsecRound, Utc};
use serde_json::Value;
use uuid::Uuid;

/// Most items in one import request.
pub const MAX_IMPORT_ITEMS: usize = 1000;

/// One operation of an operator's history: who, which type, when. Stored as a specific
/// application, unique per operator, type, name and phone.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecificOperation {
    pub journey_type: JourneyType,
    pub last_name_trunc: LastNameTrunc,
    pub phone_trunc: PhoneTrunc,
    /// When the operation was committed to, to the millisecond (as every stored date).
    pub datetime: DateTime<Utc>,
}

/// One identity key to set on an earlier application of the caller.
#[derive(Debug, Clone, PartialEq)]
pub enum IdentityImport {
    /// The application with this uuid.
    Standardized {
        uuid: Uuid,
        identity_key: IdentityKey,
    },
    /// The specific application of this operation's person and type (its `datetime` is
    /// checked as a date but does not select: there is one such application at most).
    Specific {
        identity_key: IdentityKey,
        operation: SpecificOperation,
    },
}

/// Validates an import; `Err` lists every violation as `"<json path>: <message>"`.
pub fn validate_import(payload: &Value) -> Result<Vec<SpecificOperation>, Vec<String>> {
    const REQUIRED: [&str; 4] = ["journey_type", "last_name_trunc", "phone_trunc", "datetime"];
    let mut c = Checker::default();
    let items = c.array_within(Field::root(payload), 1, MAX_IMPORT_ITEMS);
    let operations: Vec<Option<SpecificOperation>> = items
        .into_iter()
        .map(|item| {
            let o = c.object(item, &REQUIRED, &[]);
            specific_operation(&mut c, &o)
        })
        .collect();
    c.finish()?;
    operations
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| vec![": must be a list of CEE operations".to_owned()])
}

/// Validates an identity import; `Err` lists every violation as `"<json path>: <message>"`.
///
/// `cee_application_type` decides an item's shape: `standardized` names the application by
/// `cee_application_uuid`, `specific` by its operation (`journey_type`, `last_name_trunc`,
/// `phone_trunc`, `datetime`); the other shape's members are refused.
pub fn validate_identity_import(payload: &Value) -> Result<Vec<IdentityImport>, Vec<String>> {
    const SPECIFIC: [&str; 6] = [
        "cee_application_type",
        "identity_key",
        "journey_type",
        "last_name_trunc",
        "phone_trunc",
        "datetime",
    ];
    const STANDARDIZED: [&str; 3] = [
        "cee_application_type",
        "cee_application_uuid",
        "identity_key",
    ];
    /// An item of unknown type may have the members of either.
    const EITHER: [&str; 5] = [
        "journey_type",
        "last_name_trunc",
        "phone_trunc",
        "datetime",
        "cee_application_uuid",
    ];
    let mut c = Checker::default();
    let items = c.array_within(Field::root(payload), 1, MAX_IMPORT_ITEMS);
    let imports: Vec<Option<IdentityImport>> = items
        .into_iter()
        .map(|item| {
            let kind = item
                .value
                .and_then(|v| v.get("cee_application_type"))
                .and_then(|v| {
                    let path = format!("{}/cee_application_type", item.path);
                    c.one_of(&Field::at(&path, v), &["standardized", "specific"])
                })
                .and_then(ApplicationKind::parse);
            let (required, optional): (&[&str], &[&str]) = match kind {
                Some(ApplicationKind::Standardized) => (&STANDARDIZED, &[]),
                Some(ApplicationKind::Specific) => (&SPECIFIC, &[]),
                None => (&["cee_application_type", "identity_key"], &EITHER),
            };
            let o = c.object(item, required, optional);
            let identity_key = identity_key(&mut c, &o);
            match kind {
                Some(ApplicationKind::Standardized) => {
                    let uuid = application_uuid(&mut c, &o);
                    Some(IdentityImport::Standardized {
                        uuid: uuid?,
                        identity_key: identity_key?,
                    })
                }
                Some(ApplicationKind::Specific) => {
                    let operation = specific_operation(&mut c, &o);
                    Some(IdentityImport::Specific {
                        identity_key: identity_key?,
                        operation: operation?,
                    })
                }
                None => None,
            }
        })
        .collect();
    c.finish()?;
    imports
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| vec![": must be a list of CEE identities".to_owned()])
}

/// The four members of an operation; each checked even when another is wrong.
fn specific_operation(c: &mut Checker, o: &Obj<'_>) -> Option<SpecificOperation> {
    let journey_type = c
        .one_of(&o.field("journey_type"), &["short", "long"])
        .and_then(JourneyType::parse);
    let last_name_trunc = last_name_trunc(c, o);
    let phone_trunc = phone_trunc(c, o);
    let datetime = c.datetime(&o.field("datetime"));
    Some(SpecificOperation {
        journey_type: journey_type?,
        last_name_trunc: last_name_trunc?,
        phone_trunc: phone_trunc?,
        datetime: datetime?.trunc_subsecs(3),
    })
}

/// A uuid in its hyphenated form (36 characters), as the reference's `format: uuid`.
fn application_uuid(c: &mut Checker, o: &Obj<'_>) -> Option<Uuid> {
    c.format(&o.field("cee_application_uuid"), 0, 36, "uuid", |s| {
        (s.len() == 36).then(|| Uuid::try_parse(s).ok()).flatten()
    })
}

#[cfg(test)]
mod tests;
