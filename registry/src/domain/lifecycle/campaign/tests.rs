use super::*;

fn body() -> Value {
    json!({
        "name": "Covoiturez en Île-de-France",
        "start": "2026-06-01T00:00:00+02:00",
        "end": "2026-12-31T23:59:59+01:00",
        "operator_classes": ["B", "C"],
        "amount_per_km": 10,
        "min_distance": 5_000,
        "max_distance": 30_000,
    })
}

fn trip(distance: i64) -> Trip {
    Trip {
        operator_class: OperatorClass::C,
        start: DateTime::parse_from_rfc3339("2026-06-10T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc),
        distance,
        start_point: (48.8566, 2.3522),
        end_point: (48.9362, 2.3574),
    }
}

#[test]
fn a_valid_campaign_is_read_with_its_defaults() {
    let c = validate_campaign(&body()).expect("valid");
    assert_eq!(c.operator_classes, vec![OperatorClass::B, OperatorClass::C]);
    assert_eq!(c.start.to_rfc3339(), "2026-05-31T22:00:00+00:00");
    assert!(c.area.is_none() && c.budget.is_none() && c.max_per_person_per_day.is_none());
}

#[test]
fn every_problem_of_a_campaign_is_reported() {
    let mut bad = body();
    bad["operator_classes"] = json!(["D"]);
    bad["amount_per_km"] = json!(-1);
    bad["start"] = json!("yesterday");
    bad["area"] = json!({"type": "Point", "coordinates": [2.0, 48.0]});
    bad["colour"] = json!("blue");
    bad.as_object_mut().unwrap().remove("name");
    let errors = validate_campaign(&bad).unwrap_err();
    for expected in [
        ": must NOT have additional properties ('colour')",
        ": must have required property 'name'",
        "/start: must match format \"date-time\"",
        "/operator_classes: must be a non-empty array of \"A\", \"B\" or \"C\"",
        "/amount_per_km: must be a non-negative integer in range",
        "/area: must be a GeoJSON Polygon or MultiPolygon geometry",
    ] {
        assert!(
            errors.contains(&expected.to_owned()),
            "{expected} in {errors:?}"
        );
    }
    let mut inverted = body();
    inverted["min_distance"] = json!(40_000);
    inverted["end"] = json!("2026-01-01T00:00:00Z");
    assert_eq!(
        validate_campaign(&inverted).unwrap_err(),
        vec![
            "/start: must be before /end".to_owned(),
            "/min_distance: must not exceed /max_distance".to_owned()
        ]
    );
    assert!(validate_campaign(&json!([1])).is_err());
}

#[test]
fn amount_per_km_up_to_the_maximum_distance() {
    let c = validate_campaign(&body()).unwrap();
    let none = Spent::default();
    assert_eq!(c.incentive(&trip(4_999), &none), 0, "under the minimum");
    assert_eq!(c.incentive(&trip(5_000), &none), 50);
    assert_eq!(c.incentive(&trip(12_345), &none), 123, "rounded down");
    assert_eq!(c.incentive(&trip(80_000), &none), 300, "capped at 30 km");
    let mut class_a = trip(12_000);
    class_a.operator_class = OperatorClass::A;
    assert_eq!(c.incentive(&class_a, &none), 0);
    let mut before = trip(12_000);
    before.start = c.start - chrono::TimeDelta::seconds(1);
    assert_eq!(c.incentive(&before, &none), 0);
}

#[test]
fn caps_and_budget_limit_what_is_paid() {
    let mut b = body();
    b["max_per_person_per_day"] = json!(150);
    b["max_per_person_per_month"] = json!(1_000);
    b["budget"] = json!(10_000);
    let c = validate_campaign(&b).unwrap();
    let t = trip(12_000);
    let spent = |day, month, campaign| Spent {
        person_day: day,
        person_month: month,
        campaign,
    };
    assert_eq!(c.incentive(&t, &spent(0, 0, 0)), 120);
    assert_eq!(c.incentive(&t, &spent(100, 100, 100)), 50, "day cap");
    assert_eq!(c.incentive(&t, &spent(0, 950, 950)), 50, "month cap");
    assert_eq!(c.incentive(&t, &spent(0, 0, 9_990)), 10, "budget");
    assert_eq!(
        c.incentive(&t, &spent(200, 0, 0)),
        0,
        "over the cap already"
    );
}

#[test]
fn an_area_needs_the_start_or_the_end_inside() {
    let mut b = body();
    // A box around Saint-Denis only.
    b["area"] = json!({"type": "Polygon", "coordinates": [[[2.3, 48.9], [2.4, 48.9], [2.4, 49.0], [2.3, 49.0], [2.3, 48.9]]]});
    let c = validate_campaign(&b).unwrap();
    assert_eq!(c.incentive(&trip(12_000), &Spent::default()), 120);
    let mut elsewhere = trip(12_000);
    elsewhere.end_point = (45.764, 4.8357);
    assert_eq!(c.incentive(&elsewhere, &Spent::default()), 0);
    let mut reversed = trip(12_000);
    (reversed.start_point, reversed.end_point) = (reversed.end_point, (45.764, 4.8357));
    assert_eq!(c.incentive(&reversed, &Spent::default()), 120);
}
