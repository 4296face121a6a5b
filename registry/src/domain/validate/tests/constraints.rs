//! Each constraint of the journey schema broken once, with the exact violation reported.

use super::*;
use serde_json::json;

#[test]
fn each_broken_constraint_is_reported_at_its_path() {
    let s257 = || json!("x".repeat(257));
    let journey_cases = vec![
        // required members
        (
            Remove("/operator_journey_id"),
            ": must have required property 'operator_journey_id'",
        ),
        (
            Remove("/operator_trip_id"),
            ": must have required property 'operator_trip_id'",
        ),
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
        (Remove("/driver"), ": must have required property 'driver'"),
        (
            Remove("/passenger"),
            ": must have required property 'passenger'",
        ),
        (
            Remove("/start/datetime"),
            "/start: must have required property 'datetime'",
        ),
        (
            Remove("/start/lat"),
            "/start: must have required property 'lat'",
        ),
        (
            Remove("/end/lon"),
            "/end: must have required property 'lon'",
        ),
        (
            Remove("/incentives/0/index"),
            "/incentives/0: must have required property 'index'",
        ),
        (
            Remove("/incentives/0/amount"),
            "/incentives/0: must have required property 'amount'",
        ),
        (
            Remove("/incentives/0/siret"),
            "/incentives/0: must have required property 'siret'",
        ),
        (
            Remove("/driver/identity"),
            "/driver: must have required property 'identity'",
        ),
        (
            Remove("/driver/revenue"),
            "/driver: must have required property 'revenue'",
        ),
        (
            Remove("/passenger/identity"),
            "/passenger: must have required property 'identity'",
        ),
        (
            Remove("/passenger/contribution"),
            "/passenger: must have required property 'contribution'",
        ),
        (
            Remove("/passenger/payments/0/index"),
            "/passenger/payments/0: must have required property 'index'",
        ),
        (
            Remove("/passenger/payments/0/siret"),
            "/passenger/payments/0: must have required property 'siret'",
        ),
        (
            Remove("/passenger/payments/0/type"),
            "/passenger/payments/0: must have required property 'type'",
        ),
        (
            Remove("/passenger/payments/0/amount"),
            "/passenger/payments/0: must have required property 'amount'",
        ),
        (
            Remove("/driver/identity/identity_key"),
            "/driver/identity: must have required property 'identity_key'",
        ),
        (
            Remove("/passenger/identity/operator_user_id"),
            "/passenger/identity: must have required property 'operator_user_id'",
        ),
        (
            Remove("/driver/identity/travel_pass/name"),
            "/driver/identity/travel_pass: must have required property 'name'",
        ),
        (
            Remove("/driver/identity/travel_pass/user_id"),
            "/driver/identity/travel_pass: must have required property 'user_id'",
        ),
        // additional properties
        (
            Set("/colour", json!("red")),
            ": must NOT have additional properties ('colour')",
        ),
        (
            Set("/start/alt", json!(30)),
            "/start: must NOT have additional properties ('alt')",
        ),
        (
            Set("/incentives/0/policy", json!("x")),
            "/incentives/0: must NOT have additional properties ('policy')",
        ),
        (
            Set("/driver/tip", json!(2)),
            "/driver: must NOT have additional properties ('tip')",
        ),
        (
            Set("/passenger/duration", json!(60)),
            "/passenger: must NOT have additional properties ('duration')",
        ),
        (
            Set("/passenger/payments/0/currency", json!("EUR")),
            "/passenger/payments/0: must NOT have additional properties ('currency')",
        ),
        (
            Set("/driver/identity/driving_license", json!("123")),
            "/driver/identity: must NOT have additional properties ('driving_license')",
        ),
        (
            Set(
                "/passenger/identity/application_timestamp",
                json!("2026-11-22T11:00:00Z"),
            ),
            "/passenger/identity: must NOT have additional properties ('application_timestamp')",
        ),
        (
            Set("/driver/identity/travel_pass/expiry", json!("2027")),
            "/driver/identity/travel_pass: must NOT have additional properties ('expiry')",
        ),
        // types
        (
            Set("/operator_journey_id", json!(42)),
            "/operator_journey_id: must be string",
        ),
        (
            Set("/operator_trip_id", json!(null)),
            "/operator_trip_id: must be string",
        ),
        (
            Set("/operator_class", json!(1)),
            "/operator_class: must be equal to one of the allowed values",
        ),
        (Set("/incentives", json!({})), "/incentives: must be array"),
        (
            Set("/incentives/0", json!("x")),
            "/incentives/0: must be object",
        ),
        (
            Set("/incentives/0/index", json!("0")),
            "/incentives/0/index: must be integer",
        ),
        (
            Set("/incentives/0/amount", json!(1.5)),
            "/incentives/0/amount: must be integer",
        ),
        (
            Set("/incentives/0/siret", json!(11000101300017_i64)),
            "/incentives/0/siret: must be string",
        ),
        (Set("/start", json!("here")), "/start: must be object"),
        (
            Set("/start/datetime", json!(1_700_000_000)),
            "/start/datetime: must be string",
        ),
        (
            Set("/start/lat", json!("48.85")),
            "/start/lat: must be number",
        ),
        (Set("/end/lon", json!(null)), "/end/lon: must be number"),
        (Set("/distance", json!(12.5)), "/distance: must be integer"),
        (Set("/distance", json!("12")), "/distance: must be integer"),
        (Set("/driver", json!([])), "/driver: must be object"),
        (
            Set("/driver/identity", json!("x")),
            "/driver/identity: must be object",
        ),
        (
            Set("/driver/revenue", json!(1.5)),
            "/driver/revenue: must be integer",
        ),
        (
            Set("/passenger/contribution", json!("3")),
            "/passenger/contribution: must be integer",
        ),
        (
            Set("/passenger/payments", json!({})),
            "/passenger/payments: must be array",
        ),
        (
            Set("/passenger/payments/0/type", json!(1)),
            "/passenger/payments/0/type: must be string",
        ),
        (
            Set("/passenger/seats", json!(2.5)),
            "/passenger/seats: must be integer",
        ),
        (
            Set("/passenger/seats", json!(null)),
            "/passenger/seats: must be integer",
        ),
        (
            Set("/licence_plate", json!(1)),
            "/licence_plate: must be string",
        ),
        (
            Set("/operator_id", json!("3")),
            "/operator_id: must be integer",
        ),
        (
            Set("/driver/identity/identity_key", json!(1)),
            "/driver/identity/identity_key: must be string",
        ),
        (
            Set("/driver/identity/operator_user_id", json!(1)),
            "/driver/identity/operator_user_id: must be string",
        ),
        (
            Set("/driver/identity/phone", json!(612_345_678)),
            "/driver/identity/phone: must be string",
        ),
        (
            Set("/passenger/identity/phone_trunc", json!(null)),
            "/passenger/identity/phone_trunc: must be string",
        ),
        (
            Set("/driver/identity/over_18", json!("yes")),
            "/driver/identity/over_18: must be boolean",
        ),
        (
            Set("/driver/identity/travel_pass", json!("navigo")),
            "/driver/identity/travel_pass: must be object",
        ),
        (
            Set("/driver/identity/firstname", json!(1)),
            "/driver/identity/firstname: must be string",
        ),
        (
            Set("/driver/identity/email", json!(true)),
            "/driver/identity/email: must be string",
        ),
        // bounds
        (Set("/distance", json!(0)), "/distance: must be >= 1"),
        (
            Set("/distance", json!(1_000_001)),
            "/distance: must be <= 1000000",
        ),
        (Set("/operator_id", json!(0)), "/operator_id: must be >= 1"),
        (
            Set("/operator_id", json!(2_147_483_648_i64)),
            "/operator_id: must be <= 2147483647",
        ),
        (
            Set("/driver/revenue", json!(-1)),
            "/driver/revenue: must be >= 0",
        ),
        (
            Set("/driver/revenue", json!(1_000_001)),
            "/driver/revenue: must be <= 1000000",
        ),
        (
            Set("/passenger/contribution", json!(-1)),
            "/passenger/contribution: must be >= 0",
        ),
        (
            Set("/passenger/contribution", json!(1_000_001)),
            "/passenger/contribution: must be <= 1000000",
        ),
        (
            Set("/passenger/seats", json!(0)),
            "/passenger/seats: must be >= 1",
        ),
        (
            Set("/passenger/seats", json!(9)),
            "/passenger/seats: must be <= 8",
        ),
        (
            Set("/incentives/0/index", json!(-1)),
            "/incentives/0/index: must be >= 0",
        ),
        (
            Set("/incentives/0/index", json!(20)),
            "/incentives/0/index: must be <= 19",
        ),
        (
            Set("/incentives/0/amount", json!(-1)),
            "/incentives/0/amount: must be >= 0",
        ),
        (
            Set("/incentives/0/amount", json!(100_001)),
            "/incentives/0/amount: must be <= 100000",
        ),
        (
            Set("/passenger/payments/0/index", json!(20)),
            "/passenger/payments/0/index: must be <= 19",
        ),
        (
            Set("/passenger/payments/0/amount", json!(-1)),
            "/passenger/payments/0/amount: must be >= 0",
        ),
        (
            Set("/passenger/payments/0/amount", json!(100_001)),
            "/passenger/payments/0/amount: must be <= 100000",
        ),
        (
            Set("/start/lat", json!(-90.5)),
            "/start/lat: must be >= -90",
        ),
        (Set("/start/lat", json!(90.5)), "/start/lat: must be <= 90"),
        (Set("/end/lon", json!(-180.5)), "/end/lon: must be >= -180"),
        (Set("/end/lon", json!(180.5)), "/end/lon: must be <= 180"),
        (
            Set("/incentives", incentives(21)),
            "/incentives: must NOT have more than 20 items",
        ),
        (
            Set("/passenger/payments", payments(21)),
            "/passenger/payments: must NOT have more than 20 items",
        ),
        // string lengths
        (
            Set("/operator_journey_id", json!("")),
            "/operator_journey_id: must NOT have fewer than 1 characters",
        ),
        (
            Set("/operator_journey_id", s257()),
            "/operator_journey_id: must NOT have more than 256 characters",
        ),
        (
            Set("/operator_trip_id", json!("")),
            "/operator_trip_id: must NOT have fewer than 1 characters",
        ),
        (
            Set("/operator_trip_id", s257()),
            "/operator_trip_id: must NOT have more than 256 characters",
        ),
        (
            Set("/licence_plate", json!("")),
            "/licence_plate: must NOT have fewer than 1 characters",
        ),
        (
            Set("/licence_plate", s257()),
            "/licence_plate: must NOT have more than 256 characters",
        ),
        (
            Set("/passenger/payments/0/type", json!("")),
            "/passenger/payments/0/type: must NOT have fewer than 1 characters",
        ),
        (
            Set("/passenger/payments/0/type", s257()),
            "/passenger/payments/0/type: must NOT have more than 256 characters",
        ),
        (
            Set("/driver/identity/operator_user_id", json!("")),
            "/driver/identity/operator_user_id: must NOT have fewer than 1 characters",
        ),
        (
            Set("/driver/identity/operator_user_id", s257()),
            "/driver/identity/operator_user_id: must NOT have more than 256 characters",
        ),
        (
            Set("/driver/identity/firstname", json!("")),
            "/driver/identity/firstname: must NOT have fewer than 1 characters",
        ),
        (
            Set("/driver/identity/lastname", s257()),
            "/driver/identity/lastname: must NOT have more than 256 characters",
        ),
        (
            Set("/passenger/identity/company", s257()),
            "/passenger/identity/company: must NOT have more than 256 characters",
        ),
        (
            Set("/driver/identity/travel_pass/user_id", json!("")),
            "/driver/identity/travel_pass/user_id: must NOT have fewer than 1 characters",
        ),
        (
            Set("/driver/identity/travel_pass/user_id", s257()),
            "/driver/identity/travel_pass/user_id: must NOT have more than 256 characters",
        ),
        (
            Set("/driver/identity/email", json!("a@b")),
            "/driver/identity/email: must NOT have fewer than 5 characters",
        ),
        (
            Set(
                "/driver/identity/email",
                json!(format!("{}@b.fr", "a".repeat(252))),
            ),
            "/driver/identity/email: must NOT have more than 256 characters",
        ),
        (
            Set(
                "/start/datetime",
                json!(format!("2026-11-22T11:00:00.{}Z", "0".repeat(45))),
            ),
            "/start/datetime: must NOT have more than 64 characters",
        ),
        // patterns, formats and enums
        (
            Set("/operator_class", json!("D")),
            "/operator_class: must be equal to one of the allowed values",
        ),
        (
            Set("/operator_class", json!("a")),
            "/operator_class: must be equal to one of the allowed values",
        ),
        (
            Set("/incentives/0/siret", json!("1100010130001")),
            "/incentives/0/siret: must match pattern \"^[0-9]{14}$\"",
        ),
        (
            Set("/incentives/0/siret", json!("110001013000170")),
            "/incentives/0/siret: must match pattern \"^[0-9]{14}$\"",
        ),
        (
            Set("/passenger/payments/0/siret", json!("1100010130001A")),
            "/passenger/payments/0/siret: must match pattern \"^[0-9]{14}$\"",
        ),
        (
            Set("/driver/identity/identity_key", json!("A".repeat(64))),
            "/driver/identity/identity_key: must match pattern \"^[a-f0-9]{64}$\"",
        ),
        (
            Set("/driver/identity/identity_key", json!("a".repeat(63))),
            "/driver/identity/identity_key: must match pattern \"^[a-f0-9]{64}$\"",
        ),
        (
            Set("/passenger/identity/identity_key", json!("b".repeat(65))),
            "/passenger/identity/identity_key: must match pattern \"^[a-f0-9]{64}$\"",
        ),
        (
            Set("/passenger/identity/identity_key", json!("g".repeat(64))),
            "/passenger/identity/identity_key: must match pattern \"^[a-f0-9]{64}$\"",
        ),
        (
            Set("/driver/identity/travel_pass/name", json!("oyster")),
            "/driver/identity/travel_pass/name: must be equal to one of the allowed values",
        ),
        (
            Set("/driver/identity/email", json!("not-an-email")),
            "/driver/identity/email: must match format \"email\"",
        ),
        (
            Set("/driver/identity/email", json!("a b@example.fr")),
            "/driver/identity/email: must match format \"email\"",
        ),
        (
            Set("/passenger/identity/email", json!("bob@localhost")),
            "/passenger/identity/email: must match format \"email\"",
        ),
        (
            Set("/start/datetime", json!("2026-11-22T12:00:00")),
            "/start/datetime: must match format \"date-time\"",
        ),
        (
            Set("/end/datetime", json!("yesterday")),
            "/end/datetime: must match format \"date-time\"",
        ),
        (
            Set("/driver/identity/phone", json!("06,12,34,56,78")),
            "/driver/identity/phone: must match format \"phone\"",
        ),
        (
            Set("/driver/identity/phone", json!("0000000000")),
            "/driver/identity/phone: must match format \"phone\"",
        ),
        (
            Set("/driver/identity/phone", json!("061234567")),
            "/driver/identity/phone: must NOT have fewer than 10 characters",
        ),
        (
            Set("/driver/identity/phone", json!("+33 (0) 6 12 34 56 78")),
            "/driver/identity/phone: must NOT have more than 20 characters",
        ),
        (
            Set("/passenger/identity/phone_trunc", json!("+33612345678")),
            "/passenger/identity/phone_trunc: must match format \"phonetrunc\"",
        ),
        (
            Set("/passenger/identity/phone_trunc", json!("0612345")),
            "/passenger/identity/phone_trunc: must NOT have fewer than 8 characters",
        ),
        (
            Set(
                "/passenger/identity/phone_trunc",
                json!("+33 (0)6 -   12.34.56"),
            ),
            "/passenger/identity/phone_trunc: must NOT have more than 20 characters",
        ),
        // chronology
        (
            Set("/start/datetime", json!("2026-11-22T11:40:01Z")),
            "/start/datetime: must not be after /end/datetime",
        ),
        (
            Set("/end/datetime", json!("2026-11-22T14:05:01Z")),
            "/end/datetime: must not be in the future",
        ),
    ];
    assert_each_refused(
        maximal_payload,
        |p| validate_journey(p, now()),
        journey_cases,
    );
}
