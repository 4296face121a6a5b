//! Phones and truncated phones: accepted forms with their E.164 result, refused forms.

use super::*;
use serde_json::json;

#[test]
fn phones_are_normalised_to_e164_with_french_national_numbers() {
    let accepted = [
        ("0612345678", "+33612345678"),
        ("06 12 34 56 78", "+33612345678"),
        ("06.12.34.56.78", "+33612345678"),
        ("06-12-34-56-78", "+33612345678"),
        ("06/12/34/56/78", "+33612345678"),
        ("(06) 12 34 56 78", "+33612345678"),
        ("+33612345678", "+33612345678"),
        ("+33 6 12 34 56 78", "+33612345678"),
        ("+33(0)612345678", "+33612345678"),
        ("+33 (0)6 12 34 56 78", "+33612345678"),
        ("0033612345678", "+33612345678"),
        ("0033 6 12 34 56 78", "+33612345678"),
        ("01 23 45 67 89", "+33123456789"),
        ("07 81 23 45 67", "+33781234567"),
        ("+32 470 12 34 56", "+32470123456"),
        ("0032470123456", "+32470123456"),
        ("+590690101010", "+590690101010"),
        ("+262 692 12 34 56", "+262692123456"),
        ("+596696123456", "+596696123456"),
        ("+44 20 7946 0958", "+442079460958"),
        // Ranges that full metadata calls unassigned today: the reference accepts them.
        ("0690101010", "+33690101010"),
        ("04 05 90 86 12", "+33405908612"),
        ("+39 02 1234 5678", "+390212345678"),
        // An extension is dropped, as the reference drops it.
        ("0612345678x12", "+33612345678"),
    ];
    for (input, e164) in accepted {
        let mut p = valid_payload();
        p["driver"]["identity"]["phone"] = json!(input);
        let journey = validate_journey(&p, now()).unwrap_or_else(|e| panic!("{input}: {e:?}"));
        let phone = journey.driver.identity.phone.expect("phone");
        assert_eq!(phone.as_str(), e164, "{input}");
    }
}

#[test]
fn invalid_phones_are_refused() {
    let refused = [
        "06,12,34,56,78",
        "0000000000",
        "06 12 34 5 ",
        "061234567890",
        "+33 6 12 34 56 789",
        "+3361234567",
        "0600101010 1",
        "tel:+33612345678",
        "06 12 34 56 7a",
        "+999 1234567",
    ];
    for input in refused {
        let mut p = valid_payload();
        p["driver"]["identity"]["phone"] = json!(input);
        let errors = validate_journey(&p, now()).expect_err(input);
        assert_eq!(
            errors,
            vec!["/driver/identity/phone: must match format \"phone\"".to_owned()],
            "{input}"
        );
    }
}

#[test]
fn truncated_phones_are_normalised_to_e164_without_their_last_two_digits() {
    let accepted = [
        ("+336010203", "+336010203"),
        ("06123456", "+336123456"),
        ("06 12 34 56", "+336123456"),
        ("06.12.34.56", "+336123456"),
        ("0612 3456", "+336123456"),
        ("+33(0)6123456", "+336123456"),
        ("+33 (0)6 -  12.34.56", "+336123456"),
        ("0033 6 12 34 56", "+336123456"),
        ("+32 470 12 34", "+324701234"),
        ("+5906901010", "+5906901010"),
        ("+336908182", "+336908182"),
        ("+334059086", "+334059086"),
    ];
    for (input, e164) in accepted {
        let mut p = valid_payload();
        p["passenger"]["identity"]["phone_trunc"] = json!(input);
        let journey = validate_journey(&p, now()).unwrap_or_else(|e| panic!("{input}: {e:?}"));
        let trunc = journey.passenger.identity.phone_trunc.expect("phone_trunc");
        assert_eq!(trunc.as_str(), e164, "{input}");
    }
}

#[test]
fn invalid_truncated_phones_are_refused() {
    let refused = [
        "+33612345678",
        "0612345678",
        "00000000",
        "06,12,34,56",
        "+3361234",
        "06 12 34 5a",
    ];
    for input in refused {
        let mut p = valid_payload();
        p["passenger"]["identity"]["phone_trunc"] = json!(input);
        let errors = validate_journey(&p, now()).expect_err(input);
        assert_eq!(
            errors,
            vec!["/passenger/identity/phone_trunc: must match format \"phonetrunc\"".to_owned()],
            "{input}"
        );
    }
}

#[test]
fn a_person_without_any_phone_is_refused_after_the_schema() {
    // Neither on the driver: the reference's sentence, the driver first.
    let mut p = valid_payload();
    for person in ["driver", "passenger"] {
        let identity = p[person]["identity"].as_object_mut().unwrap();
        identity.remove("phone");
        identity.remove("phone_trunc");
    }
    let journey = validate_journey(&p, now()).expect("the schema holds");
    assert_eq!(
        journey.without_phone(),
        Some("driver.identity should have a phone or phone_trunc")
    );
    // Then the passenger.
    p["driver"]["identity"]["phone_trunc"] = json!("06123456");
    let journey = validate_journey(&p, now()).expect("the schema holds");
    assert_eq!(
        journey.without_phone(),
        Some("passenger.identity should have a phone or phone_trunc")
    );
    // Schema violations come first: they are listed, the missing phone is not.
    p["distance"] = json!(0);
    assert_eq!(
        validate_journey(&p, now()).expect_err("distance"),
        vec!["/distance: must be >= 1".to_owned()]
    );
    // With one number each, nothing is missing.
    p["distance"] = json!(1000);
    p["passenger"]["identity"]["phone"] = json!("0612345678");
    assert_eq!(
        validate_journey(&p, now()).expect("valid").without_phone(),
        None
    );
}
