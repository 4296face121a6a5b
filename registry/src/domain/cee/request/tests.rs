//! Formats and request shapes, case by case.

use super::*;
use serde_json::json;

#[test]
fn driving_licences_take_the_reference_forms() {
    let cases = [
        ("051227308989", true, "12 digits, since 1975"),
        ("822146819", true, "older, letters and digits"),
        ("123456A", true, "older, 1 to 15 characters"),
        ("A", true, "one character"),
        ("ABCDEFGHIJKLMNO", true, "15 characters"),
        (
            "ABCDEFGHIJKLMNOP",
            false,
            "16 characters without a 4-digit year",
        ),
        ("ABCDEFGHIJKLMNO1234", true, "15 characters then 4 digits"),
        ("ABCDEFGHIJKLMNOP1234", false, "20 characters"),
        ("99-X23836", true, "foreign"),
        ("99-", false, "foreign prefix alone"),
        ("99-a", true, "foreign, anything after the prefix"),
        (
            &format!("99-{}", "x".repeat(61)),
            true,
            "foreign, 64 characters",
        ),
        (
            &format!("99-{}", "x".repeat(62)),
            false,
            "foreign, 65 characters",
        ),
        ("99-a\nb", false, "foreign with a newline"),
        ("abc123", false, "lowercase"),
        ("12 34", false, "space"),
        ("", false, "empty"),
        ("bip", false, "the reference's invalid example"),
    ];
    for (s, ok, why) in cases {
        assert_eq!(DrivingLicence::parse(s).is_some(), ok, "{why}: {s:?}");
    }
}

#[test]
fn last_names_are_three_capitals_or_spaces() {
    for (s, ok) in [
        ("DUP", true),
        ("D H", true),
        ("TO ", true),
        ("   ", true),
        ("abc", false),
        ("abcd", false),
        ("DU", false),
        ("DUPO", false),
        ("DÉS", false),
        ("D-H", false),
    ] {
        assert_eq!(LastNameTrunc::parse(s).is_some(), ok, "{s:?}");
    }
}

fn short() -> Value {
    json!({
        "journey_type": "short",
        "identity_key": "a".repeat(64),
        "driving_license": "051227308989",
        "last_name_trunc": "DUP",
        "operator_journey_id": "journey-1",
        "application_timestamp": "2024-03-01T10:00:00Z",
    })
}

fn long() -> Value {
    json!({
        "journey_type": "long",
        "identity_key": "a".repeat(64),
        "driving_license": "99-X23836",
        "last_name_trunc": "TO ",
        "phone_trunc": "+336010203",
        "datetime": "2024-03-01T10:00:00+01:00",
        "application_timestamp": "2024-03-01T10:00:00Z",
    })
}

#[test]
fn valid_registrations_are_read() {
    let r = validate_registration(&short()).expect("valid short");
    assert_eq!(r.journey_type(), JourneyType::Short);
    assert_eq!(
        r.kind,
        RegistrationKind::Short {
            operator_journey_id: OperatorJourneyId::parse("journey-1").unwrap()
        }
    );
    let r = validate_registration(&long()).expect("valid long");
    let RegistrationKind::Long {
        phone_trunc,
        datetime,
    } = r.kind
    else {
        panic!("long expected");
    };
    assert_eq!(phone_trunc.as_str(), "+336010203");
    assert_eq!(datetime.to_rfc3339(), "2024-03-01T09:00:00+00:00");
}

#[test]
fn national_phone_truncs_are_normalised() {
    let mut body = long();
    body["phone_trunc"] = json!("06 01 02 03");
    let r = validate_registration(&body).expect("valid");
    let RegistrationKind::Long { phone_trunc, .. } = r.kind else {
        panic!("long expected");
    };
    assert_eq!(phone_trunc.as_str(), "+336010203");
}

/// `(change, expected violations)`: each applied to a valid body.
fn assert_violations(base: Value, cases: Vec<(Value, Vec<&str>)>) {
    for (change, expected) in cases {
        let mut body = base.clone();
        for (k, v) in change.as_object().expect("object") {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        let errors = validate_registration(&body).expect_err("invalid");
        assert_eq!(errors, expected, "{change}");
    }
}

#[test]
fn invalid_short_registrations_list_every_violation() {
    assert_violations(
        short(),
        vec![
            (
                json!({"last_name_trunc": "abcd"}),
                vec!["/last_name_trunc: must match pattern \"^[A-Z ]{3}$\""],
            ),
            (
                json!({"journey_type": "bip"}),
                vec!["/journey_type: must be equal to one of the allowed values"],
            ),
            (
                json!({"driving_license": "bip"}),
                vec!["/driving_license: must match format \"driving_license\""],
            ),
            (
                json!({"operator_journey_id": 12}),
                vec!["/operator_journey_id: must be string"],
            ),
            (
                json!({"identity_key": "bip"}),
                vec!["/identity_key: must match pattern \"^[a-f0-9]{64}$\""],
            ),
            (
                json!({"phone_trunc": "+336010203"}),
                vec![": must NOT have additional properties ('phone_trunc')"],
            ),
            (
                json!({"operator_journey_id": null, "application_timestamp": "yesterday"}),
                vec![
                    ": must have required property 'operator_journey_id'",
                    "/application_timestamp: must match format \"date-time\"",
                ],
            ),
            (
                json!({"journey_type": null}),
                vec![": must have required property 'journey_type'"],
            ),
        ],
    );
}

#[test]
fn invalid_long_registrations_list_every_violation() {
    assert_violations(
        long(),
        vec![
            (
                json!({"phone_trunc": null, "datetime": null}),
                vec![
                    ": must have required property 'phone_trunc'",
                    ": must have required property 'datetime'",
                ],
            ),
            (
                json!({"phone_trunc": "+33601"}),
                vec!["/phone_trunc: must NOT have fewer than 8 characters"],
            ),
            (
                json!({"phone_trunc": "00000000"}),
                vec!["/phone_trunc: must match format \"phonetrunc\""],
            ),
            (
                json!({"operator_journey_id": "j"}),
                vec![": must NOT have additional properties ('operator_journey_id')"],
            ),
            (
                json!({"identity_key": "A".repeat(64)}),
                vec!["/identity_key: must match pattern \"^[a-f0-9]{64}$\""],
            ),
        ],
    );
}

#[test]
fn a_registration_must_be_an_object() {
    assert_eq!(
        validate_registration(&json!([1])).unwrap_err(),
        vec![": must be object"]
    );
}

#[test]
fn simulations_need_name_phone_and_type_only() {
    let body = json!({"journey_type": "long", "last_name_trunc": "DUP",
                      "phone_trunc": "+336010203"});
    let s = validate_simulation(&body).expect("valid");
    assert_eq!(s.journey_type, JourneyType::Long);
    assert_eq!(s.person.identity_key, None);
    assert_eq!(s.person.driving_licence, None);

    let mut full = body.clone();
    full["identity_key"] = json!("b".repeat(64));
    full["driving_license"] = json!("051227308989");
    let s = validate_simulation(&full).expect("valid");
    assert!(s.person.identity_key.is_some() && s.person.driving_licence.is_some());

    let errors = validate_simulation(&json!({"journey_type": "bip", "operator_journey_id": "x"}))
        .unwrap_err();
    assert_eq!(
        errors,
        vec![
            ": must have required property 'last_name_trunc'",
            ": must have required property 'phone_trunc'",
            ": must NOT have additional properties ('operator_journey_id')",
            "/journey_type: must be equal to one of the allowed values",
        ]
    );
}
