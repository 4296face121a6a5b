//! Updating a stored journey (`PATCH` / `POST /{v}/journeys/{id}`, CONTRACT §7).
//!
//! An update is allowed within [`UPDATE_WINDOW`] of the stored start and never on a canceled
//! journey. The patch body replaces the patchable fields of the stored payload and the result
//! is validated again as a whole journey, so an update can never store what a creation would
//! have refused. The caller then re-runs the terms checks and resets processing to pending.

use super::journey::NewJourney;
use super::status::AcquisitionStatus;
use super::validate::validate_journey;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

/// How long after its start a journey may be updated.
pub const UPDATE_WINDOW: TimeDelta = TimeDelta::hours(24);

/// A stored journey, as the update rule needs it.
#[derive(Debug, Clone)]
pub struct StoredJourney {
    /// The current payload.
    pub payload: Value,
    /// The current start.
    pub start: DateTime<Utc>,
    /// `None` when the stored value is not one this version knows.
    pub acquisition: Option<AcquisitionStatus>,
}

/// Why an update is refused.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateRefusal {
    /// Canceled journeys stay canceled.
    Canceled,
    /// More than [`UPDATE_WINDOW`] after the stored start.
    WindowClosed,
    /// The patched journey breaks the schema, as `"<json path>: <message>"`.
    Invalid(Vec<String>),
    /// The patch declares an `operator_id` that is not the caller's.
    OperatorMismatch,
}

/// The journey `stored` becomes with `patch` (already checked by
/// [`super::validate_patch`]) applied at `now` by `operator_id`: the validated journey and
/// the payload to store.
pub fn revise(
    stored: &StoredJourney,
    patch: &Value,
    operator_id: i64,
    now: DateTime<Utc>,
) -> Result<(NewJourney, Value), UpdateRefusal> {
    if stored.acquisition == Some(AcquisitionStatus::Canceled) {
        return Err(UpdateRefusal::Canceled);
    }
    if now - stored.start > UPDATE_WINDOW {
        return Err(UpdateRefusal::WindowClosed);
    }
    let mut payload = stored.payload.clone();
    if let (Value::Object(current), Value::Object(changes)) = (&mut payload, patch) {
        for (field, value) in changes {
            current.insert(field.clone(), value.clone());
        }
    }
    let journey = validate_journey(&payload, now).map_err(UpdateRefusal::Invalid)?;
    if journey
        .declared_operator_id
        .is_some_and(|declared| declared != operator_id)
    {
        return Err(UpdateRefusal::OperatorMismatch);
    }
    Ok((journey, payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::validate::tests::{now, valid_payload};
    use serde_json::json;

    fn stored(start_hours_ago: i64, acquisition: AcquisitionStatus) -> StoredJourney {
        StoredJourney {
            payload: valid_payload(),
            start: now() - TimeDelta::hours(start_hours_ago),
            acquisition: Some(acquisition),
        }
    }

    fn patch() -> Value {
        json!({
            "operator_trip_id": "trip-2",
            "operator_class": "B",
            "incentives": [],
            "start": {"datetime": "2026-11-22T10:00:00Z", "lat": 45.0, "lon": 4.0},
            "end": {"datetime": "2026-11-22T11:00:00Z", "lat": 45.1, "lon": 4.1},
            "distance": 8_000,
        })
    }

    #[test]
    fn a_patch_replaces_the_patchable_fields_and_keeps_the_people() {
        let (journey, payload) =
            revise(&stored(3, AcquisitionStatus::Received), &patch(), 7, now()).expect("allowed");
        assert_eq!(journey.operator_trip_id, "trip-2");
        assert_eq!(journey.distance, 8_000);
        assert_eq!(journey.start.lat, 45.0);
        assert_eq!(payload["driver"], valid_payload()["driver"]);
        assert_eq!(
            payload["operator_journey_id"],
            valid_payload()["operator_journey_id"]
        );
    }

    #[test]
    fn updates_are_refused_after_the_window_on_canceled_journeys_and_when_invalid() {
        let open = stored(24, AcquisitionStatus::TermsViolationError);
        assert!(
            revise(&open, &patch(), 7, now()).is_ok(),
            "24 h exactly is allowed"
        );

        let late = StoredJourney {
            start: now() - UPDATE_WINDOW - TimeDelta::milliseconds(1),
            ..open.clone()
        };
        assert_eq!(
            revise(&late, &patch(), 7, now()).unwrap_err(),
            UpdateRefusal::WindowClosed
        );
        assert_eq!(
            revise(&stored(1, AcquisitionStatus::Canceled), &patch(), 7, now()).unwrap_err(),
            UpdateRefusal::Canceled
        );

        let mut inverted = patch();
        inverted["end"]["datetime"] = json!("2026-11-22T09:00:00Z");
        assert!(matches!(
            revise(&open, &inverted, 7, now()),
            Err(UpdateRefusal::Invalid(errors)) if errors.iter().any(|e| e.starts_with("/start/datetime"))
        ));

        let mut foreign = patch();
        foreign["operator_id"] = json!(8);
        assert_eq!(
            revise(&open, &foreign, 7, now()).unwrap_err(),
            UpdateRefusal::OperatorMismatch
        );
    }
}
