use super::*;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

const PARIS: (f64, f64) = (48.8566, 2.3522);
/// Saint-Denis, 8.9 km north of Paris's centre.
const SAINT_DENIS: (f64, f64) = (48.9362, 2.3574);

fn facts(id: i64, operator: i64, start: &str, minutes: i64) -> Facts {
    let start = at(start);
    Facts {
        journey_id: id,
        operator_id: operator,
        operator_trip_id: format!("trip-{id}"),
        driver: "a".repeat(64),
        passenger: "b".repeat(64),
        start,
        end: start + TimeDelta::minutes(minutes),
        start_point: PARIS,
        end_point: SAINT_DENIS,
        distance: 11_000,
    }
}

fn neighbour_of(f: &Facts) -> Neighbour {
    Neighbour {
        journey_id: f.journey_id,
        operator_id: f.operator_id,
        operator_journey_id: format!("op-{}", f.journey_id),
        operator_trip_id: f.operator_trip_id.clone(),
        driver: f.driver.clone(),
        passenger: f.passenger.clone(),
        start: f.start,
        end: f.end,
    }
}

#[test]
fn a_plain_journey_passes_everything() {
    let france = France::load().unwrap();
    let j = facts(1, 1, "2026-06-10T08:00:00Z", 25);
    assert_eq!(
        check(&j, &[], &france),
        Verdict::Checked {
            fraud: vec![],
            anomalies: vec![]
        }
    );
}

#[test]
fn normalisation_refuses_foreign_null_and_endless_journeys() {
    let france = France::load().unwrap();
    let geneva = (46.2044, 6.1432);
    let lausanne = (46.5197, 6.6323);
    let cases = [
        (
            (geneva, lausanne),
            30,
            vec![NormalisationError::OutsideFrance],
        ),
        // One end in France is enough (cross-border journeys).
        ((geneva, (45.8992, 6.1294)), 30, vec![]),
        (
            ((0.0, 0.0), SAINT_DENIS),
            30,
            vec![NormalisationError::NullIsland],
        ),
        (
            (PARIS, SAINT_DENIS),
            25 * 60,
            vec![NormalisationError::TooLong],
        ),
    ];
    for ((start, end), minutes, expected) in cases {
        let mut j = facts(1, 1, "2026-06-10T08:00:00Z", minutes);
        (j.start_point, j.end_point) = (start, end);
        assert_eq!(
            normalisation_errors(&j, &france),
            expected,
            "{start:?} {end:?}"
        );
    }
}

#[test]
fn distance_duration_rules_follow_the_reference_thresholds() {
    // Paris → Saint-Denis: 8.9 km in a straight line, about 11.5 km by road.
    let line = straight_line(PARIS, SAINT_DENIS);
    assert!((8_800.0..9_000.0).contains(&line), "{line}");
    let cases: [(i64, i64, Option<&str>); 8] = [
        (11_000, 25, None),
        (250, 25, Some("distance_too_short")),
        (11_000, 0, Some("duration_too_short")),
        // Declared 4 km for an estimated 11.5 km: shorter than the shortest way.
        (4_000, 25, Some("estimated_distance_above_2.5x_declared")),
        // Declared 50 km for an estimated 11.5 km.
        (50_000, 60, Some("declared_distance_above_4x_estimated")),
        // 11.5 km at 80 km/h takes 8.6 min; 3 minutes is 2.9 times faster.
        (11_000, 3, Some("estimated_duration_above_2.5x_declared")),
        // 11.5 km at 30 km/h takes 23 min; 7 times that is 2 h 41.
        (11_000, 160, None),
        (11_000, 170, Some("declared_duration_above_7x_estimated")),
    ];
    for (distance, minutes, expected) in cases {
        let mut j = facts(1, 1, "2026-06-10T08:00:00Z", minutes);
        j.distance = distance;
        assert_eq!(
            distance_duration_anomaly(&j),
            expected,
            "{distance} m in {minutes} min"
        );
    }
}

#[test]
fn overlap_ratio_is_measured_on_the_shorter_journey() {
    let t = |m: i64| at("2026-06-10T08:00:00Z") + TimeDelta::minutes(m);
    assert_eq!(overlap_ratio((t(0), t(60)), (t(0), t(10))), 1.0);
    assert_eq!(overlap_ratio((t(0), t(10)), (t(3), t(13))), 0.7);
    assert_eq!(overlap_ratio((t(0), t(10)), (t(10), t(20))), 0.0);
    assert_eq!(overlap_ratio((t(0), t(10)), (t(5), t(5))), 1.0);
    assert_eq!(overlap_ratio((t(0), t(10)), (t(15), t(15))), 0.0);
}

#[test]
fn temporal_overlap_flags_the_later_journey_of_the_same_passenger_and_operator() {
    let first = facts(1, 1, "2026-06-10T08:00:00Z", 20);
    let mut second = facts(2, 1, "2026-06-10T08:05:00Z", 20);
    second.driver = "c".repeat(64);
    // 15 of 20 minutes overlap: 0.75.
    let found = temporal_overlap(&second, &[neighbour_of(&first)]).expect("flagged");
    assert_eq!(found["label"], "temporal_overlap_anomaly");
    assert_eq!(found["metas"]["conflicting_journey_id"], "op-1");
    assert_eq!(found["metas"]["temporal_overlap_duration_ratio"], 0.75);
    // The earlier one is not flagged for the later one.
    assert_eq!(temporal_overlap(&first, &[neighbour_of(&second)]), None);
    // Below 70 %, another passenger, another operator: nothing.
    let mut little = facts(3, 1, "2026-06-10T08:15:00Z", 20);
    little.driver = "c".repeat(64);
    assert_eq!(temporal_overlap(&little, &[neighbour_of(&first)]), None);
    let mut other_passenger = neighbour_of(&first);
    other_passenger.passenger = "d".repeat(64);
    assert_eq!(temporal_overlap(&second, &[other_passenger]), None);
    let mut other_operator = neighbour_of(&first);
    other_operator.operator_id = 2;
    assert_eq!(temporal_overlap(&second, &[other_operator]), None);
}

#[test]
fn fraud_labels_look_across_operators_only() {
    let j = facts(10, 1, "2026-06-10T08:00:00Z", 30);
    // The same couple with another operator at the same time, roles swapped.
    let mut twin = neighbour_of(&facts(11, 2, "2026-06-10T08:10:00Z", 30));
    (twin.driver, twin.passenger) = (j.passenger.clone(), j.driver.clone());
    assert_eq!(
        fraud_labels(&j, std::slice::from_ref(&twin)),
        vec![FraudLabel::InteroperatorOverlap]
    );
    // The same with the same operator is the anomaly's business, not fraud.
    twin.operator_id = 1;
    assert_eq!(fraud_labels(&j, &[twin]), vec![]);
    // 20 minutes after the end, with another operator: too close.
    let close = neighbour_of(&facts(12, 2, "2026-06-10T08:50:00Z", 30));
    assert_eq!(
        fraud_labels(&j, &[close]),
        vec![FraudLabel::InteroperatorTooCloseTrips]
    );
    // 31 minutes after: fine.
    let later = neighbour_of(&facts(13, 2, "2026-06-10T09:01:00Z", 30));
    assert_eq!(fraud_labels(&j, &[later]), vec![]);
}

#[test]
fn the_fifth_trip_of_a_day_across_operators_is_fraud() {
    // The passenger rides four times that morning, twice with operator 2, each time with
    // another driver; `j` (operator 1) at noon is the fifth.
    let mut earlier = Vec::new();
    for (n, (operator, hour)) in [(1, 6), (2, 7), (1, 8), (2, 9)].into_iter().enumerate() {
        let mut f = facts(
            n as i64 + 1,
            operator,
            &format!("2026-06-10T{hour:02}:00:00Z"),
            20,
        );
        f.driver = format!("{n}").repeat(64);
        earlier.push(neighbour_of(&f));
    }
    let j = facts(20, 1, "2026-06-10T12:00:00Z", 20);
    assert_eq!(
        fraud_labels(&j, &earlier),
        vec![FraudLabel::InteroperatorTooManyTripsByDay]
    );
    // The fourth trip itself is fine.
    let fourth = facts(4, 2, "2026-06-10T09:00:00Z", 20);
    assert_eq!(fraud_labels(&fourth, &earlier[..3]), vec![]);
    // Five trips with the same operator are the terms' business, not fraud.
    let same_operator: Vec<_> = earlier
        .iter()
        .cloned()
        .map(|mut n| {
            n.operator_id = 1;
            n
        })
        .collect();
    assert_eq!(fraud_labels(&j, &same_operator), vec![]);
    // The day is the Paris day: 23:30 UTC on the 9th is the 10th in Paris.
    let mut night = earlier.clone();
    night[0].start = at("2026-06-09T23:30:00Z");
    night[0].end = at("2026-06-09T23:50:00Z");
    assert_eq!(
        fraud_labels(&j, &night),
        vec![FraudLabel::InteroperatorTooManyTripsByDay]
    );
    night[0].start = at("2026-06-09T21:30:00Z");
    assert_eq!(fraud_labels(&j, &night), vec![]);
}
