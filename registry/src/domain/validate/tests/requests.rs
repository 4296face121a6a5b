//! PATCH and cancel bodies: valid bodies, then each constraint broken once.

use super::*;
use serde_json::json;

/// The smallest PATCH body accepted at [`now`].
fn minimal_patch() -> Value {
    json!({
        "operator_class": "B",
        "incentives": [],
        "start": {"datetime": "2026-11-22T11:00:00Z", "lat": 48.85, "lon": 2.35},
        "end": {"datetime": "2026-11-22T11:30:00Z", "lat": 48.9, "lon": 2.4},
        "distance": 9_000,
    })
}

/// A PATCH body with every optional member.
fn maximal_patch() -> Value {
    let mut p = minimal_patch();
    p["operator_trip_id"] = json!("trip-2");
    p["operator_id"] = json!(3);
    p["incentive_counterparts"] = json!({"legacy": [1, 2]});
    p["incentives"] = incentives(20);
    p
}

#[test]
fn patch_bodies_are_accepted() {
    assert_eq!(validate_patch(&minimal_patch(), now()), Ok(()));
    assert_eq!(validate_patch(&maximal_patch(), now()), Ok(()));
    assert_each_accepted(
        maximal_patch,
        |p| validate_patch(p, now()),
        vec![
            Set("/distance", json!(1)),
            Set("/distance", json!(1_000_000)),
            Set("/operator_id", json!(2_147_483_647)),
            Set("/operator_trip_id", json!("x".repeat(256))),
            Set("/end/datetime", json!("2026-11-22T14:05:00Z")),
            Set("/start/datetime", json!("2026-11-22T11:30:00Z")),
        ],
    );
}

#[test]
fn each_broken_patch_constraint_is_reported_at_its_path() {
    let cases = vec![
        (
            Remove("/incentives"),
            ": must have required property 'incentives'",
        ),
        (
            Remove("/operator_class"),
            ": must have required property 'operator_class'",
        ),
        (Remove("/start"), ": must have required property 'start'"),
        (Remove("/end"), ": must have required property 'end'"),
        (
            Remove("/distance"),
            ": must have required property 'distance'",
        ),
        (
            Set("/operator_journey_id", json!("j1")),
            ": must NOT have additional properties ('operator_journey_id')",
        ),
        (
            Set("/driver", json!({"revenue": 1})),
            ": must NOT have additional properties ('driver')",
        ),
        (
            Set("/passenger", json!({"contribution": 1})),
            ": must NOT have additional properties ('passenger')",
        ),
        (
            Set("/licence_plate", json!("AB-123-CD")),
            ": must NOT have additional properties ('licence_plate')",
        ),
        (
            Set("/operator_trip_id", json!("")),
            "/operator_trip_id: must NOT have fewer than 1 characters",
        ),
        (
            Set("/operator_trip_id", json!("x".repeat(257))),
            "/operator_trip_id: must NOT have more than 256 characters",
        ),
        (Set("/operator_id", json!(0)), "/operator_id: must be >= 1"),
        (
            Set("/operator_id", json!(2_147_483_648_i64)),
            "/operator_id: must be <= 2147483647",
        ),
        (
            Set("/operator_class", json!("D")),
            "/operator_class: must be equal to one of the allowed values",
        ),
        (
            Set("/incentives", json!(null)),
            "/incentives: must be array",
        ),
        (
            Set("/incentives", incentives(21)),
            "/incentives: must NOT have more than 20 items",
        ),
        (
            Set("/incentives/0/index", json!(20)),
            "/incentives/0/index: must be <= 19",
        ),
        (
            Set("/incentives/0/amount", json!(100_001)),
            "/incentives/0/amount: must be <= 100000",
        ),
        (
            Set("/incentives/0/siret", json!("1100010130001")),
            "/incentives/0/siret: must match pattern \"^[0-9]{14}$\"",
        ),
        (
            Set("/start/alt", json!(3)),
            "/start: must NOT have additional properties ('alt')",
        ),
        (
            Remove("/end/datetime"),
            "/end: must have required property 'datetime'",
        ),
        (Set("/start/lat", json!(90.5)), "/start/lat: must be <= 90"),
        (Set("/end/lon", json!(-180.5)), "/end/lon: must be >= -180"),
        (
            Set("/start/datetime", json!("2026-11-22 11:00")),
            "/start/datetime: must match format \"date-time\"",
        ),
        (Set("/distance", json!(0)), "/distance: must be >= 1"),
        (
            Set("/distance", json!(1_000_001)),
            "/distance: must be <= 1000000",
        ),
        (
            Set("/distance", json!("9000")),
            "/distance: must be integer",
        ),
        (
            Set("/start/datetime", json!("2026-11-22T11:30:01Z")),
            "/start/datetime: must not be after /end/datetime",
        ),
        (
            Set("/end/datetime", json!("2026-11-22T14:05:01Z")),
            "/end/datetime: must not be in the future",
        ),
    ];
    assert_each_refused(maximal_patch, |p| validate_patch(p, now()), cases);
}

#[test]
fn cancel_bodies_are_read() {
    let longest_code = "x".repeat(32);
    let longest_message = "é".repeat(512);
    let cases = [
        (json!({"code": ""}), "", None),
        (json!({"code": "FRAUD_1-b"}), "FRAUD_1-b", None),
        (json!({"code": longest_code}), longest_code.as_str(), None),
        (json!({"code": "dup", "message": ""}), "dup", Some("")),
        (
            json!({"code": "dup", "message": longest_message}),
            "dup",
            Some(longest_message.as_str()),
        ),
    ];
    for (body, code, message) in cases {
        let cancel = validate_cancel(&body).unwrap_or_else(|e| panic!("{body}: {e:?}"));
        assert_eq!(
            cancel,
            Cancel {
                code: code.to_owned(),
                message: message.map(str::to_owned)
            }
        );
    }
}

#[test]
fn each_broken_cancel_constraint_is_reported_at_its_path() {
    fn base() -> Value {
        json!({"code": "fraud", "message": "Detected by our team"})
    }
    let pattern = "/code: must match pattern \"^[0-9A-Za-z_-]{0,32}$\"";
    let cases = vec![
        (Remove("/code"), ": must have required property 'code'"),
        (
            Set("/reason", json!("x")),
            ": must NOT have additional properties ('reason')",
        ),
        (Set("/code", json!(1)), "/code: must be string"),
        (Set("/code", json!(null)), "/code: must be string"),
        (Set("/code", json!("x".repeat(33))), pattern),
        (Set("/code", json!("two words")), pattern),
        (Set("/code", json!("fraude_avérée")), pattern),
        (Set("/code", json!("a.b")), pattern),
        (Set("/message", json!(1)), "/message: must be string"),
        (
            Set("/message", json!("x".repeat(513))),
            "/message: must NOT have more than 512 characters",
        ),
    ];
    assert_each_refused(base, validate_cancel, cases);
}
