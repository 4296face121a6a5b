//! Table-driven tests of the journey schema: one case per constraint.

use super::*;
use serde_json::json;

/// The fixed clock of these tests.
pub(crate) fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-22T14:00:00Z")
        .expect("valid date")
        .with_timezone(&Utc)
}

fn identity(key_digit: char) -> Value {
    json!({
        "identity_key": key_digit.to_string().repeat(64),
        "operator_user_id": "user-1",
        "phone_trunc": "+336010203",
    })
}

/// The smallest payload that is accepted at [`now`].
pub(crate) fn valid_payload() -> Value {
    json!({
        "operator_journey_id": "b8b0fd5e-0d5b-4a7b-9c59-0e3e3a0a4c11",
        "operator_trip_id": "trip-1",
        "operator_class": "C",
        "incentives": [],
        "start": {"datetime": "2026-11-22T11:00:00Z", "lat": 48.85, "lon": 2.35},
        "end": {"datetime": "2026-11-22T12:40:00+01:00", "lat": 48.9, "lon": 2.4},
        "distance": 12_000,
        "driver": {"identity": identity('a'), "revenue": 300},
        "passenger": {"identity": identity('b'), "contribution": 300},
    })
}

#[test]
fn minimal_payload_is_accepted_with_defaults() {
    let journey = validate_journey(&valid_payload(), now()).expect("valid");
    assert_eq!(journey.operator_class, OperatorClass::C);
    assert_eq!(journey.distance, 12_000);
    assert_eq!(journey.passenger.seats, 1);
    assert_eq!(journey.passenger.identity.over_18, None);
    assert_eq!(
        journey.end.datetime.to_rfc3339(),
        "2026-11-22T11:40:00+00:00"
    );
    assert_eq!(
        journey.driver.identity.identity_key.as_str(),
        "a".repeat(64)
    );
}

#[test]
fn full_payload_is_accepted() {
    let mut p = valid_payload();
    p["incentives"] = json!([{"index": 0, "amount": 100, "siret": "11000101300017"}]);
    p["licence_plate"] = json!("AB-123-CD");
    p["operator_id"] = json!(3);
    p["incentive_counterparts"] = json!([{"anything": true}]);
    p["passenger"]["payments"] =
        json!([{"index": 0, "siret": "11000101300017", "type": "titre", "amount": 50}]);
    p["passenger"]["seats"] = json!(3);
    p["passenger"]["identity"]["phone"] = json!("+33601020304");
    p["passenger"]["identity"]["over_18"] = json!(true);
    p["passenger"]["identity"]["travel_pass"] = json!({"name": "navigo", "user_id": "42"});
    p["driver"]["identity"]["email"] = json!("a@b.fr");
    let journey = validate_journey(&p, now()).expect("valid");
    assert_eq!(journey.declared_operator_id, Some(3));
    assert_eq!(journey.incentives.len(), 1);
    assert_eq!(journey.passenger.payments[0].kind, "titre");
    assert_eq!(journey.passenger.seats, 3);
}

#[test]
fn each_broken_constraint_is_reported_at_its_path() {
    type Edit = fn(&mut Value);
    let cases: &[(&str, Edit, &str)] = &[
        (
            "required",
            |p| drop(p.as_object_mut().map(|o| o.remove("distance"))),
            ": must have required property 'distance'",
        ),
        (
            "unknown top-level field",
            |p| p["colour"] = json!("red"),
            ": must NOT have additional properties ('colour')",
        ),
        (
            "unknown nested field",
            |p| p["driver"]["identity"]["nickname"] = json!("Al"),
            "/driver/identity: must NOT have additional properties ('nickname')",
        ),
        (
            "not an object",
            |p| p["start"] = json!("here"),
            "/start: must be object",
        ),
        (
            "enum",
            |p| p["operator_class"] = json!("D"),
            "/operator_class: must be equal to one of the allowed values",
        ),
        (
            "distance too small",
            |p| p["distance"] = json!(0),
            "/distance: must be >= 1",
        ),
        (
            "distance too large",
            |p| p["distance"] = json!(1_000_001),
            "/distance: must be <= 1000000",
        ),
        (
            "distance not integer",
            |p| p["distance"] = json!(12.5),
            "/distance: must be integer",
        ),
        (
            "distance as string",
            |p| p["distance"] = json!("12"),
            "/distance: must be integer",
        ),
        (
            "revenue negative",
            |p| p["driver"]["revenue"] = json!(-1),
            "/driver/revenue: must be >= 0",
        ),
        (
            "contribution too large",
            |p| p["passenger"]["contribution"] = json!(1_000_001),
            "/passenger/contribution: must be <= 1000000",
        ),
        (
            "seats",
            |p| p["passenger"]["seats"] = json!(9),
            "/passenger/seats: must be <= 8",
        ),
        (
            "incentive index",
            |p| p["incentives"] = json!([{"index": 20, "amount": 1, "siret": "11000101300017"}]),
            "/incentives/0/index: must be <= 19",
        ),
        (
            "incentive amount",
            |p| {
                p["incentives"] =
                    json!([{"index": 0, "amount": 100_001, "siret": "11000101300017"}])
            },
            "/incentives/0/amount: must be <= 100000",
        ),
        (
            "siret",
            |p| p["incentives"] = json!([{"index": 0, "amount": 1, "siret": "1100"}]),
            "/incentives/0/siret: must match pattern \"^[0-9]{14}$\"",
        ),
        (
            "latitude",
            |p| p["start"]["lat"] = json!(90.5),
            "/start/lat: must be <= 90",
        ),
        (
            "longitude",
            |p| p["end"]["lon"] = json!(-180.5),
            "/end/lon: must be >= -180",
        ),
        (
            "identity key case",
            |p| p["driver"]["identity"]["identity_key"] = json!("A".repeat(64)),
            "/driver/identity/identity_key: must match pattern \"^[a-f0-9]{64}$\"",
        ),
        (
            "empty journey id",
            |p| p["operator_journey_id"] = json!(""),
            "/operator_journey_id: must NOT have fewer than 1 characters",
        ),
        (
            "long trip id",
            |p| p["operator_trip_id"] = json!("x".repeat(257)),
            "/operator_trip_id: must NOT have more than 256 characters",
        ),
        (
            "datetime without offset",
            |p| p["start"]["datetime"] = json!("2026-11-22T12:00:00"),
            "/start/datetime: must match format \"date-time\"",
        ),
        (
            "no phone",
            |p| {
                drop(
                    p["passenger"]["identity"]
                        .as_object_mut()
                        .map(|o| o.remove("phone_trunc")),
                )
            },
            "/passenger/identity: must have required property 'phone' or 'phone_trunc'",
        ),
        (
            "start after end",
            |p| p["start"]["datetime"] = json!("2026-11-22T13:00:00Z"),
            "/start/datetime: must not be after /end/datetime",
        ),
        (
            "end in the future",
            |p| p["end"]["datetime"] = json!("2026-11-22T14:05:01Z"),
            "/end/datetime: must not be in the future",
        ),
        (
            "travel pass name",
            |p| p["driver"]["identity"]["travel_pass"] = json!({"name": "oyster", "user_id": "1"}),
            "/driver/identity/travel_pass/name: must be equal to one of the allowed values",
        ),
    ];
    for (name, edit, expected) in cases {
        let mut payload = valid_payload();
        edit(&mut payload);
        let errors = validate_journey(&payload, now()).expect_err(name);
        assert_eq!(errors, vec![expected.to_string()], "{name}");
    }
}

#[test]
fn end_within_clock_skew_is_accepted() {
    let mut p = valid_payload();
    p["end"]["datetime"] = json!("2026-11-22T14:05:00Z");
    assert!(validate_journey(&p, now()).is_ok());
}

#[test]
fn every_violation_is_listed_at_once() {
    let payload = json!({
        "operator_journey_id": "j1",
        "operator_class": "Z",
        "distance": -3,
        "driver": {"identity": {"identity_key": "x"}, "revenue": 1, "tip": 2},
        "extra": null,
    });
    let errors = validate_journey(&payload, now()).expect_err("invalid");
    for expected in [
        ": must have required property 'operator_trip_id'",
        ": must have required property 'passenger'",
        ": must NOT have additional properties ('extra')",
        "/operator_class: must be equal to one of the allowed values",
        "/distance: must be >= 1",
        "/driver: must NOT have additional properties ('tip')",
        "/driver/identity: must have required property 'operator_user_id'",
        "/driver/identity/identity_key: must match pattern \"^[a-f0-9]{64}$\"",
        "/driver/identity: must have required property 'phone' or 'phone_trunc'",
    ] {
        assert!(
            errors.contains(&expected.to_string()),
            "{expected} not in {errors:#?}"
        );
    }
}

#[test]
fn a_non_object_body_is_refused() {
    let errors = validate_journey(&json!([1, 2]), now()).expect_err("array");
    assert_eq!(errors, vec![": must be object".to_string()]);
}
