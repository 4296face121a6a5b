//! Fuzzed bodies (issue 26): any JSON in place of any field of a valid journey, and any JSON
//! at all as a journey, PATCH, cancel or CEE body, is read or refused with violations in the
//! documented `"<json path>: <message>"` shape, never a panic.

use super::{now, valid_payload};
use crate::domain::cee::{
    validate_identity_import, validate_import, validate_registration, validate_simulation,
};
use crate::domain::validate::{validate_cancel, validate_journey, validate_patch};
use proptest::prelude::*;
use serde_json::Value;

/// Any JSON value, a few levels deep.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
        "[+0-9]{0,14}".prop_map(Value::from),
        "20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]Z".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every JSON pointer of `value`, itself included.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                pointers(child, format!("{at}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// `PROPTEST_CASES` when set (`scripts/fuzz.sh`), else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn well_shaped(violations: &[String]) -> bool {
    !violations.is_empty() && violations.iter().all(|v| v.contains(": "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(2_000)))]

    #[test]
    fn any_field_of_a_journey_may_hold_any_json(which in any::<prop::sample::Index>(), value in json()) {
        let mut payload = valid_payload();
        let mut all = Vec::new();
        pointers(&payload, String::new(), &mut all);
        let at = which.get(&all).clone();
        match payload.pointer_mut(&at) {
            Some(slot) => *slot = value,
            None => payload = value,
        }
        if let Err(violations) = validate_journey(&payload, now()) {
            prop_assert!(well_shaped(&violations), "{at}: {violations:?}");
        }
    }

    #[test]
    fn any_json_is_a_body_or_its_violations(value in json()) {
        let outcomes = [
            validate_journey(&value, now()).map(|_| ()),
            validate_patch(&value, now()),
            validate_cancel(&value).map(|_| ()),
            validate_registration(&value).map(|_| ()),
            validate_simulation(&value).map(|_| ()),
            validate_import(&value).map(|_| ()),
            validate_identity_import(&value).map(|_| ()),
        ];
        for (n, outcome) in outcomes.into_iter().enumerate() {
            if let Err(violations) = outcome {
                prop_assert!(well_shaped(&violations), "validator {}: {:?}", n, violations);
            }
        }
    }
}
