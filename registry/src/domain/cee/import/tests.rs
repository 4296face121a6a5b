//! The import bodies, case by case: every violation with its item's path, the whole batch
//! refused for one bad item.

use super::*;
use serde_json::json;

fn operation() -> Value {
    json!({"journey_type": "long", "last_name_trunc": "TO ",
           "phone_trunc": "06 01 02 03", "datetime": "2016-01-01T01:00:00.123456+01:00"})
}

fn standardized() -> Value {
    json!({"cee_application_type": "standardized",
           "cee_application_uuid": "0b7c1f2e-3d4a-4b5c-8d6e-7f8091a2b3c4",
           "identity_key": "a".repeat(64)})
}

fn specific() -> Value {
    let mut item = operation();
    item["cee_application_type"] = json!("specific");
    item["identity_key"] = json!("b".repeat(64));
    item
}

#[test]
fn valid_imports_are_read_normalised() {
    let operations = validate_import(&json!([operation(), operation()])).expect("valid");
    assert_eq!(operations.len(), 2);
    let o = &operations[0];
    assert_eq!(o.journey_type, JourneyType::Long);
    assert_eq!(o.last_name_trunc.as_str(), "TO ");
    assert_eq!(o.phone_trunc.as_str(), "+336010203");
    assert_eq!(
        o.datetime.to_rfc3339(),
        "2016-01-01T00:00:00.123+00:00",
        "UTC, to the millisecond"
    );
}

/// `(body, expected violations)`.
fn assert_refused(validate: fn(&Value) -> Vec<String>, cases: Vec<(Value, Vec<&str>)>) {
    for (body, expected) in cases {
        assert_eq!(validate(&body), expected, "{body}");
    }
}

#[test]
fn invalid_imports_are_refused_whole_with_every_violation() {
    let mut bad_phone = operation();
    bad_phone["phone_trunc"] = json!("00000000");
    let mut several = operation();
    several["journey_type"] = json!("bip");
    several["last_name_trunc"] = json!("abcd");
    several["datetime"] = json!("yesterday");
    let mut extra = operation();
    extra["driving_license"] = json!("051227308989");
    let mut missing = operation();
    missing.as_object_mut().unwrap().remove("datetime");
    let too_many = Value::Array(vec![operation(); MAX_IMPORT_ITEMS + 1]);
    assert_refused(
        |body| validate_import(body).unwrap_err(),
        vec![
            (json!([]), vec![": must NOT have fewer than 1 items"]),
            (too_many, vec![": must NOT have more than 1000 items"]),
            (operation(), vec![": must be array"]),
            (json!("[]"), vec![": must be array"]),
            (json!(null), vec![": must be array"]),
            (
                json!([operation(), operation(), operation(), bad_phone]),
                vec!["/3/phone_trunc: must match format \"phonetrunc\""],
            ),
            (
                json!([several]),
                vec![
                    "/0/journey_type: must be equal to one of the allowed values",
                    "/0/last_name_trunc: must match pattern \"^[A-Z ]{3}$\"",
                    "/0/datetime: must match format \"date-time\"",
                ],
            ),
            (
                json!([extra, missing, 12]),
                vec![
                    "/0: must NOT have additional properties ('driving_license')",
                    "/1: must have required property 'datetime'",
                    "/2: must be object",
                ],
            ),
        ],
    );
}

#[test]
fn valid_identity_imports_take_either_shape() {
    let imports = validate_identity_import(&json!([standardized(), specific()])).expect("valid");
    let [standardized, specific] = imports.as_slice() else {
        panic!("two items: {imports:?}");
    };
    let IdentityImport::Standardized { uuid, identity_key } = standardized else {
        panic!("standardized first");
    };
    assert_eq!(uuid.to_string(), "0b7c1f2e-3d4a-4b5c-8d6e-7f8091a2b3c4");
    assert_eq!(identity_key.as_str(), "a".repeat(64));
    let IdentityImport::Specific {
        identity_key,
        operation,
    } = specific
    else {
        panic!("specific second");
    };
    assert_eq!(identity_key.as_str(), "b".repeat(64));
    assert_eq!(operation.phone_trunc.as_str(), "+336010203");
}

#[test]
fn invalid_identity_imports_are_refused_whole_with_every_violation() {
    let mut mixed = standardized();
    mixed["phone_trunc"] = json!("+336010203");
    let mut specific_with_uuid = specific();
    specific_with_uuid["cee_application_uuid"] = standardized()["cee_application_uuid"].clone();
    let mut incomplete = specific();
    incomplete.as_object_mut().unwrap().remove("journey_type");
    let mut bad_uuid = standardized();
    bad_uuid["cee_application_uuid"] = json!("0b7c1f2e3d4a4b5c8d6e7f8091a2b3c4");
    let mut bad_key = standardized();
    bad_key["identity_key"] = json!("bip");
    let mut unknown_type = specific();
    unknown_type["cee_application_type"] = json!("bip");
    let mut no_type = standardized();
    no_type
        .as_object_mut()
        .unwrap()
        .remove("cee_application_type");
    assert_refused(
        |body| validate_identity_import(body).unwrap_err(),
        vec![
            (json!([]), vec![": must NOT have fewer than 1 items"]),
            (json!({}), vec![": must be array"]),
            (
                json!([specific(), mixed, specific_with_uuid, incomplete]),
                vec![
                    "/1: must NOT have additional properties ('phone_trunc')",
                    "/2: must NOT have additional properties ('cee_application_uuid')",
                    "/3: must have required property 'journey_type'",
                ],
            ),
            (
                json!([bad_uuid, bad_key]),
                vec![
                    "/0/cee_application_uuid: must match format \"uuid\"",
                    "/1/identity_key: must match pattern \"^[a-f0-9]{64}$\"",
                ],
            ),
            (
                json!([unknown_type, no_type]),
                vec![
                    "/0/cee_application_type: must be equal to one of the allowed values",
                    "/1: must have required property 'cee_application_type'",
                ],
            ),
        ],
    );
}
