//! Table-driven tests of the journey, PATCH and cancel schemas.
//!
//! Here: the fixtures, the [`Edit`] helpers and the journey's accepted cases. Each refusal
//! table starts from a valid body, applies one [`Edit`] and expects exactly one violation:
//! `constraints` for the journey, `phones`, `requests` for PATCH and cancel bodies.

use super::*;
use serde_json::json;

mod constraints;
mod fuzz;
mod phones;
mod requests;

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

const SIRET: &str = "11000101300017";

/// `n` valid incentives (indexes cycle through 0..=19).
fn incentives(n: usize) -> Value {
    (0..n)
        .map(|i| json!({"index": i % 20, "amount": 100, "siret": SIRET}))
        .collect()
}

/// `n` valid payments (indexes cycle through 0..=19).
fn payments(n: usize) -> Value {
    (0..n)
        .map(|i| json!({"index": i % 20, "siret": SIRET, "type": "titre", "amount": 50}))
        .collect()
}

/// A payload with every optional member. The driver has only `phone`, the passenger both
/// `phone` and `phone_trunc`, so that removing the driver's phone leaves it with neither.
fn maximal_payload() -> Value {
    let mut p = valid_payload();
    p["licence_plate"] = json!("AB-123-CD");
    p["operator_id"] = json!(3);
    p["incentive_counterparts"] = json!([{"anything": true}]);
    p["incentives"] = incentives(20);
    p["driver"]["identity"] = json!({
        "identity_key": "a".repeat(64),
        "operator_user_id": "driver-1",
        "phone": "06 12 34 56 78",
        "over_18": null,
        "travel_pass": {"name": "navigo", "user_id": "00-MFR-6782929"},
        "firstname": "Alice",
        "lastname": "Martin",
        "company": "ACME",
        "email": "alice.martin@example.fr",
    });
    p["passenger"] = json!({
        "identity": {
            "identity_key": "b".repeat(64),
            "operator_user_id": "passenger-1",
            "phone": "+32 470 12 34 56",
            "phone_trunc": "+32 470 12 34",
            "over_18": true,
            "travel_pass": {"name": "navigo", "user_id": "42"},
            "firstname": "Bob",
            "lastname": "Durand",
            "company": "Initech",
            "email": "bob@example.com",
        },
        "contribution": 250,
        "payments": payments(20),
        "seats": 3,
    });
    p
}

/// One change to a valid body.
enum Edit {
    /// Sets the member at this JSON pointer (adding it if needed).
    Set(&'static str, Value),
    /// Removes the object member at this JSON pointer.
    Remove(&'static str),
}
use Edit::{Remove, Set};

impl Edit {
    fn apply_to(self, body: &mut Value) {
        let pointer = match &self {
            Set(pointer, _) | Remove(pointer) => *pointer,
        };
        let (parent, key) = pointer.rsplit_once('/').expect("a JSON pointer");
        let parent = body.pointer_mut(parent).expect("parent exists");
        match (self, parent) {
            (Set(_, value), Value::Object(map)) => {
                map.insert(key.to_owned(), value);
            }
            (Set(_, value), Value::Array(items)) => {
                items[key.parse::<usize>().expect("an index")] = value;
            }
            (Remove(_), Value::Object(map)) => {
                map.remove(key).expect("member exists");
            }
            (_, other) => panic!("cannot edit {pointer} in {other}"),
        }
    }

    fn describe(&self) -> String {
        match self {
            Set(pointer, value) => {
                let value: String = value.to_string().chars().take(40).collect();
                format!("set {pointer} to {value}")
            }
            Remove(pointer) => format!("remove {pointer}"),
        }
    }
}

/// Applies each edit to a fresh `base()` and expects `validate` to report exactly `expected`.
fn assert_each_refused<T: std::fmt::Debug>(
    base: fn() -> Value,
    validate: impl Fn(&Value) -> Result<T, Vec<String>>,
    cases: Vec<(Edit, &str)>,
) {
    for (edit, expected) in cases {
        let name = edit.describe();
        let mut body = base();
        edit.apply_to(&mut body);
        let errors = validate(&body).expect_err(&name);
        assert_eq!(errors, vec![expected.to_owned()], "{name}");
    }
}

/// Applies each edit to a fresh `base()` and expects `validate` to accept the result.
fn assert_each_accepted<T: std::fmt::Debug>(
    base: fn() -> Value,
    validate: impl Fn(&Value) -> Result<T, Vec<String>>,
    edits: Vec<Edit>,
) {
    for edit in edits {
        let name = edit.describe();
        let mut body = base();
        edit.apply_to(&mut body);
        if let Err(errors) = validate(&body) {
            panic!("{name}: {errors:#?}");
        }
    }
}

#[test]
fn minimal_payload_is_accepted_with_defaults() {
    let journey = validate_journey(&valid_payload(), now()).expect("valid");
    assert_eq!(journey.declared_operator_id, None);
    assert_eq!(journey.operator_class, OperatorClass::C);
    assert_eq!(journey.distance, 12_000);
    assert!(journey.incentives.is_empty());
    assert_eq!(journey.licence_plate, None);
    assert_eq!(journey.passenger.seats, 1);
    assert!(journey.passenger.payments.is_empty());
    assert_eq!(journey.passenger.identity.over_18, None);
    assert_eq!(journey.passenger.identity.travel_pass, None);
    assert_eq!(journey.passenger.identity.phone, None);
    assert_eq!(
        journey
            .passenger
            .identity
            .phone_trunc
            .as_ref()
            .map(PhoneTrunc::as_str),
        Some("+336010203")
    );
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
fn maximal_payload_is_accepted() {
    let journey = validate_journey(&maximal_payload(), now()).expect("valid");
    assert_eq!(journey.declared_operator_id, Some(3));
    assert_eq!(journey.licence_plate.as_deref(), Some("AB-123-CD"));
    assert_eq!(journey.incentives.len(), 20);
    assert_eq!(
        journey.incentives[19],
        Incentive {
            index: 19,
            siret: SIRET.to_owned(),
            amount: 100
        }
    );
    let driver = &journey.driver.identity;
    assert_eq!(
        driver.phone.as_ref().map(Phone::as_str),
        Some("+33612345678")
    );
    assert_eq!(driver.phone_trunc, None);
    assert_eq!(driver.over_18, None);
    assert_eq!(
        driver.travel_pass,
        Some(TravelPass {
            name: "navigo".to_owned(),
            user_id: "00-MFR-6782929".to_owned()
        })
    );
    let passenger = &journey.passenger;
    assert_eq!(passenger.contribution, 250);
    assert_eq!(passenger.payments.len(), 20);
    assert_eq!(passenger.payments[0].kind, "titre");
    assert_eq!(passenger.seats, 3);
    assert_eq!(
        passenger.identity.phone.as_ref().map(Phone::as_str),
        Some("+32470123456")
    );
    assert_eq!(
        passenger
            .identity
            .phone_trunc
            .as_ref()
            .map(PhoneTrunc::as_str),
        Some("+324701234")
    );
    assert_eq!(passenger.identity.over_18, Some(true));
}

#[test]
fn over_18_may_be_null_true_or_false() {
    for (value, expected) in [
        (json!(null), None),
        (json!(true), Some(true)),
        (json!(false), Some(false)),
    ] {
        let mut p = maximal_payload();
        p["driver"]["identity"]["over_18"] = value;
        let journey = validate_journey(&p, now()).expect("valid");
        assert_eq!(journey.driver.identity.over_18, expected);
    }
}

#[test]
fn each_boundary_value_of_the_journey_schema_is_accepted() {
    let s256 = || json!("x".repeat(256));
    assert_each_accepted(
        maximal_payload,
        |p| validate_journey(p, now()),
        vec![
            Set("/distance", json!(1)),
            Set("/distance", json!(1_000_000)),
            Set("/distance", json!(1000.0)),
            Set("/operator_id", json!(1)),
            Set("/operator_id", json!(2_147_483_647)),
            Set("/operator_class", json!("A")),
            Set("/operator_class", json!("B")),
            Set("/operator_journey_id", json!("j")),
            Set("/operator_journey_id", s256()),
            Set("/operator_trip_id", json!("t")),
            Set("/operator_trip_id", s256()),
            Set("/licence_plate", s256()),
            Set("/incentives/0/index", json!(0)),
            Set("/incentives/0/amount", json!(0)),
            Set("/incentives/0/amount", json!(100_000)),
            Set("/passenger/payments/0/amount", json!(0)),
            Set("/passenger/payments/0/amount", json!(100_000)),
            Set("/passenger/payments/0/type", s256()),
            Set("/passenger/payments", json!([])),
            Set("/passenger/seats", json!(1)),
            Set("/passenger/seats", json!(8)),
            Set("/driver/revenue", json!(0)),
            Set("/driver/revenue", json!(1_000_000)),
            Set("/passenger/contribution", json!(0)),
            Set("/passenger/contribution", json!(1_000_000)),
            Set("/start/lat", json!(-90)),
            Set("/start/lat", json!(90)),
            Set("/start/lon", json!(-180)),
            Set("/start/lon", json!(180)),
            Set("/end/datetime", json!("2026-11-22T14:05:00Z")),
            Set("/start/datetime", json!("2026-11-22T11:40:00Z")),
            Set("/driver/identity/operator_user_id", s256()),
            Set("/driver/identity/firstname", json!("A")),
            Set("/driver/identity/lastname", s256()),
            Set("/driver/identity/email", json!("a@b.c")),
            Set(
                "/driver/identity/email",
                json!(format!("{}@b.fr", "a".repeat(251))),
            ),
            Set("/driver/identity/travel_pass/user_id", s256()),
            Set("/incentive_counterparts", json!(null)),
            Remove("/passenger/identity/phone"),
            Remove("/passenger/identity/phone_trunc"),
        ],
    );
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
    ] {
        assert!(
            errors.contains(&expected.to_string()),
            "{expected} not in {errors:#?}"
        );
    }
}

#[test]
fn a_non_object_body_is_refused() {
    for body in [json!([1, 2]), json!("journey"), json!(null)] {
        let errors = validate_journey(&body, now()).expect_err("not an object");
        assert_eq!(errors, vec![": must be object".to_string()], "{body}");
        let errors = validate_patch(&body, now()).expect_err("not an object");
        assert_eq!(errors, vec![": must be object".to_string()], "{body}");
        let errors = validate_cancel(&body).expect_err("not an object");
        assert_eq!(errors, vec![": must be object".to_string()], "{body}");
    }
}
