//! Eligibility, dates and cool-downs, each at its boundary.

use super::*;
use crate::domain::cee::{ApplicationKind, DrivingLicence, LastNameTrunc};
use crate::domain::journey::IdentityKey;
use crate::domain::phone::PhoneTrunc;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn campaign() -> Campaign {
    Campaign {
        start: at("2024-01-01T00:00:00Z"),
        end: at("2027-12-31T23:59:59Z"),
        delay: TimeDelta::days(7),
    }
}

const PARIS: (f64, f64) = (48.8566, 2.3522);
const BRUSSELS: (f64, f64) = (50.8503, 4.3517);
const GENEVA: (f64, f64) = (46.2044, 6.1432);
const CAYENNE: (f64, f64) = (4.9372, -52.326);

fn point(datetime: &str, (lat, lon): (f64, f64)) -> TimeGeoPoint {
    TimeGeoPoint {
        datetime: at(datetime),
        lat,
        lon,
    }
}

fn journey() -> ClaimedJourney {
    ClaimedJourney {
        journey_id: 1,
        operator_class: OperatorClass::C,
        distance: 20_000,
        start: point("2024-03-01T08:00:00Z", PARIS),
        end: point("2024-03-01T09:00:00Z", PARIS),
        status: JourneyStatus::Pending,
        driver_phone_trunc: PhoneTrunc::parse("+336010203").unwrap(),
    }
}

#[test]
fn short_distance_eligibility_at_each_boundary() {
    let france = France::load().unwrap();
    let now = at("2024-03-08T09:00:00Z");
    type Change = fn(&mut ClaimedJourney, &mut DateTime<Utc>);
    let cases: Vec<(&str, Change, Result<(), Ineligibility>)> = vec![
        ("eligible", |_, _| {}, Ok(())),
        ("80 000 m", |j, _| j.distance = 80_000, Ok(())),
        (
            "80 001 m",
            |j, _| j.distance = 80_001,
            Err(Ineligibility::TooLong),
        ),
        (
            "class B",
            |j, _| j.operator_class = OperatorClass::B,
            Err(Ineligibility::NotClassC),
        ),
        (
            "class A",
            |j, _| j.operator_class = OperatorClass::A,
            Err(Ineligibility::NotClassC),
        ),
        (
            "both ends abroad",
            |j, _| {
                j.start = point("2024-03-01T08:00:00Z", BRUSSELS);
                j.end = point("2024-03-01T09:00:00Z", GENEVA);
            },
            Err(Ineligibility::Abroad),
        ),
        (
            "start abroad, end in France",
            |j, _| j.start = point("2024-03-01T08:00:00Z", BRUSSELS),
            Ok(()),
        ),
        (
            "start in France, end abroad",
            |j, _| j.end = point("2024-03-01T09:00:00Z", GENEVA),
            Ok(()),
        ),
        (
            "overseas department",
            |j, _| {
                j.start = point("2024-03-01T08:00:00Z", CAYENNE);
                j.end = point("2024-03-01T09:00:00Z", CAYENNE);
            },
            Ok(()),
        ),
        (
            "starts at the campaign's first instant",
            |j, _| j.start.datetime = at("2024-01-01T00:00:00Z"),
            Ok(()),
        ),
        (
            "starts a millisecond before the campaign",
            |j, _| j.start.datetime = at("2023-12-31T23:59:59.999Z"),
            Err(Ineligibility::OutsideCampaign),
        ),
        (
            "starts at the campaign's last instant",
            |j, now| {
                j.start.datetime = at("2027-12-31T23:59:59Z");
                j.end.datetime = at("2027-12-31T23:59:59Z");
                *now = at("2028-01-08T00:00:00Z");
            },
            Ok(()),
        ),
        (
            "starts a millisecond after the campaign",
            |j, now| {
                j.start.datetime = at("2027-12-31T23:59:59.001Z");
                j.end.datetime = at("2028-01-01T00:00:00Z");
                *now = at("2028-01-08T00:00:00Z");
            },
            Err(Ineligibility::OutsideCampaign),
        ),
        (
            "ended exactly 7 days ago",
            |_, now| *now = at("2024-03-08T09:00:00Z"),
            Ok(()),
        ),
        (
            "ended a millisecond less than 7 days ago",
            |_, now| *now = at("2024-03-08T08:59:59.999Z"),
            Err(Ineligibility::TooRecent),
        ),
    ];
    for (name, change, expected) in cases {
        let (mut j, mut now) = (journey(), now);
        change(&mut j, &mut now);
        assert_eq!(
            short_eligibility(&j, &campaign(), &france, now),
            expected,
            "{name}"
        );
    }
}

#[test]
fn long_distance_dates_at_each_boundary() {
    let now = at("2024-03-08T09:00:00Z");
    let too_recent = Err(DateRefusal::TooRecent { delay_days: 7 });
    let outside = Err(DateRefusal::OutsideCampaign {
        start: campaign().start,
        end: campaign().end,
    });
    let cases = [
        ("2024-03-01T09:00:00Z", now, Ok(())),
        ("2024-03-01T09:00:00.001Z", now, too_recent.clone()),
        ("2024-01-01T00:00:00Z", now, Ok(())),
        ("2023-12-31T23:59:59.999Z", now, outside.clone()),
        ("2027-12-31T23:59:59Z", at("2028-02-01T00:00:00Z"), Ok(())),
        (
            "2027-12-31T23:59:59.001Z",
            at("2028-02-01T00:00:00Z"),
            outside,
        ),
        ("2024-03-09T00:00:00Z", now, too_recent),
    ];
    for (datetime, now, expected) in cases {
        assert_eq!(
            long_dates(at(datetime), &campaign(), now),
            expected,
            "{datetime}"
        );
    }
    assert_eq!(
        DateRefusal::TooRecent { delay_days: 7 }.message(),
        "/datetime: Date should be before 7 days from now"
    );
}

#[test]
fn application_timestamps_may_not_be_in_the_future() {
    let now = at("2024-03-08T09:00:00Z");
    assert_eq!(application_timestamp(now, now), Ok(()));
    assert_eq!(
        application_timestamp(now + TimeDelta::minutes(5), now),
        Ok(())
    );
    assert_eq!(
        application_timestamp(now + TimeDelta::minutes(6), now),
        Err(DateRefusal::ApplicationInFuture)
    );
}

fn person(key: char, licence: &str, name: &str, phone: &str) -> Person {
    Person {
        identity_key: Some(IdentityKey::parse(&key.to_string().repeat(64)).unwrap()),
        driving_licence: Some(DrivingLicence::parse(licence).unwrap()),
        last_name_trunc: LastNameTrunc::parse(name).unwrap(),
        phone_trunc: PhoneTrunc::parse(phone).unwrap(),
    }
}

fn stored(journey_type: JourneyType, datetime: &str, person: Person) -> StoredApplication {
    StoredApplication {
        uuid: Uuid::nil(),
        operator_id: 1,
        kind: ApplicationKind::Standardized,
        journey_type,
        person,
        datetime: at(datetime),
        journey: None,
        token: Some(String::new()),
        deleted: false,
    }
}

/// An imported operation of `name` and `phone`, with no key (or `key`) and no licence.
fn imported(
    journey_type: JourneyType,
    datetime: &str,
    key: Option<char>,
    (name, phone): (&str, &str),
) -> StoredApplication {
    StoredApplication {
        kind: ApplicationKind::Specific,
        token: None,
        ..stored(
            journey_type,
            datetime,
            Person {
                identity_key: key.and_then(|k| IdentityKey::parse(&k.to_string().repeat(64))),
                driving_licence: None,
                last_name_trunc: LastNameTrunc::parse(name).unwrap(),
                phone_trunc: PhoneTrunc::parse(phone).unwrap(),
            },
        )
    }
}

#[test]
fn cool_downs_at_each_boundary_and_for_each_person_key() {
    let alice = person('a', "051227308989", "DUP", "+336010203");
    let stranger = person('b', "111111111111", "MAR", "+336999999");
    let same_key = Person {
        identity_key: alice.identity_key.clone(),
        ..stranger.clone()
    };
    let same_licence = Person {
        driving_licence: alice.driving_licence.clone(),
        ..stranger.clone()
    };
    let same_name_and_phone = Person {
        last_name_trunc: alice.last_name_trunc.clone(),
        phone_trunc: alice.phone_trunc.clone(),
        ..stranger.clone()
    };
    let same_name_only = Person {
        last_name_trunc: alice.last_name_trunc.clone(),
        ..stranger.clone()
    };
    let anonymous_simulation = Person {
        identity_key: None,
        driving_licence: None,
        ..alice.clone()
    };
    use JourneyType::{Long, Short};
    let cases = [
        (
            "short, exactly 5 years",
            Short,
            "2019-03-01T09:00:00Z",
            &alice,
            "2024-03-01T09:00:00Z",
            true,
        ),
        (
            "short, 5 years and a millisecond",
            Short,
            "2019-03-01T08:59:59.999Z",
            &alice,
            "2024-03-01T09:00:00Z",
            false,
        ),
        (
            "long, exactly 12 years",
            Long,
            "2012-03-01T09:00:00Z",
            &alice,
            "2024-03-01T09:00:00Z",
            true,
        ),
        (
            "long, 12 years and a millisecond",
            Long,
            "2012-03-01T08:59:59.999Z",
            &alice,
            "2024-03-01T09:00:00Z",
            false,
        ),
        (
            "long, 6 years (short would not block)",
            Long,
            "2018-03-01T09:00:00Z",
            &alice,
            "2024-03-01T09:00:00Z",
            true,
        ),
        (
            "a later application blocks too",
            Short,
            "2025-03-01T09:00:00Z",
            &alice,
            "2024-03-01T09:00:00Z",
            true,
        ),
        (
            "same identity key",
            Short,
            "2024-01-01T00:00:00Z",
            &same_key,
            "2024-03-01T09:00:00Z",
            true,
        ),
        (
            "same driving licence",
            Short,
            "2024-01-01T00:00:00Z",
            &same_licence,
            "2024-03-01T09:00:00Z",
            true,
        ),
        (
            "same name and phone, though the earlier application has a key (CONTRACT §8)",
            Short,
            "2024-01-01T00:00:00Z",
            &same_name_and_phone,
            "2024-03-01T09:00:00Z",
            true,
        ),
        (
            "same name, other phone",
            Short,
            "2024-01-01T00:00:00Z",
            &same_name_only,
            "2024-03-01T09:00:00Z",
            false,
        ),
        (
            "another person",
            Short,
            "2024-01-01T00:00:00Z",
            &stranger,
            "2024-03-01T09:00:00Z",
            false,
        ),
        (
            "simulation by name and phone finds a keyed application (CONTRACT §8)",
            Short,
            "2024-01-01T00:00:00Z",
            &anonymous_simulation,
            "2024-03-01T09:00:00Z",
            true,
        ),
    ];
    for (name, journey_type, existing, who, reference, blocks) in cases {
        let existing = [stored(journey_type, existing, alice.clone())];
        let found = first_conflict(&existing, journey_type, who, at(reference));
        assert_eq!(found.is_some(), blocks, "{name}");
    }
}

#[test]
fn imported_operations_block_within_their_own_cool_downs_and_floors() {
    use JourneyType::{Long, Short};
    let dup = ("DUP", "+336010203");
    let applicant = person('a', "051227308989", "DUP", "+336010203");
    let anonymous = Person {
        identity_key: None,
        driving_licence: None,
        ..applicant.clone()
    };
    let other_phone = person('a', "051227308989", "DUP", "+336999999");
    let other_key = person('b', "111111111111", "DUP", "+336010203");
    // (case, type, imported at, its key, who applies, applying for, blocks)
    let cases = [
        // Short: 3 years back, never before 2020-01-01T00:00+01:00.
        (
            "short, exactly 3 years",
            Short,
            "2021-03-01T09:00:00Z",
            None,
            &applicant,
            "2024-03-01T09:00:00Z",
            true,
        ),
        (
            "short, 3 years and a millisecond",
            Short,
            "2021-03-01T08:59:59.999Z",
            None,
            &applicant,
            "2024-03-01T09:00:00Z",
            false,
        ),
        (
            "short, 4 years (a registration would block)",
            Short,
            "2020-03-01T09:00:00Z",
            None,
            &applicant,
            "2024-03-01T09:00:00Z",
            false,
        ),
        (
            "short, at the 2020 floor",
            Short,
            "2019-12-31T23:00:00Z",
            None,
            &anonymous,
            "2022-06-01T00:00:00Z",
            true,
        ),
        (
            "short, a millisecond before the 2020 floor",
            Short,
            "2019-12-31T22:59:59.999Z",
            None,
            &anonymous,
            "2022-06-01T00:00:00Z",
            false,
        ),
        // Long: 10 years back, never before 2015-01-01T00:00+01:00.
        (
            "long, exactly 10 years",
            Long,
            "2016-03-01T09:00:00Z",
            None,
            &applicant,
            "2026-03-01T09:00:00Z",
            true,
        ),
        (
            "long, 10 years and a millisecond",
            Long,
            "2016-03-01T08:59:59.999Z",
            None,
            &applicant,
            "2026-03-01T09:00:00Z",
            false,
        ),
        (
            "long, 2016 (the reference's case)",
            Long,
            "2016-01-01T00:00:00Z",
            None,
            &applicant,
            "2024-03-01T09:00:00Z",
            true,
        ),
        (
            "long, 2014 (the reference's case)",
            Long,
            "2014-01-01T00:00:00Z",
            None,
            &applicant,
            "2024-03-01T09:00:00Z",
            false,
        ),
        (
            "long, at the 2015 floor",
            Long,
            "2014-12-31T23:00:00Z",
            None,
            &applicant,
            "2024-03-01T09:00:00Z",
            true,
        ),
        (
            "long, a millisecond before the 2015 floor",
            Long,
            "2014-12-31T22:59:59.999Z",
            None,
            &applicant,
            "2024-03-01T09:00:00Z",
            false,
        ),
        (
            "a later operation blocks too",
            Long,
            "2025-01-01T00:00:00Z",
            None,
            &applicant,
            "2024-03-01T09:00:00Z",
            true,
        ),
        // Who: name and phone only while the operation has no key.
        (
            "same name, other phone",
            Short,
            "2023-01-01T00:00:00Z",
            None,
            &other_phone,
            "2024-03-01T09:00:00Z",
            false,
        ),
        (
            "keyless: name and phone match any key",
            Short,
            "2023-01-01T00:00:00Z",
            None,
            &other_key,
            "2024-03-01T09:00:00Z",
            true,
        ),
        (
            "keyed: the same key",
            Short,
            "2023-01-01T00:00:00Z",
            Some('a'),
            &applicant,
            "2024-03-01T09:00:00Z",
            true,
        ),
        (
            "keyed: another key, same name and phone (CONTRACT §8)",
            Short,
            "2023-01-01T00:00:00Z",
            Some('a'),
            &other_key,
            "2024-03-01T09:00:00Z",
            true,
        ),
        (
            "keyed: simulation by name and phone (CONTRACT §8)",
            Short,
            "2023-01-01T00:00:00Z",
            Some('a'),
            &anonymous,
            "2024-03-01T09:00:00Z",
            true,
        ),
    ];
    for (name, journey_type, when, key, who, reference, blocks) in cases {
        let existing = [imported(journey_type, when, key, dup)];
        let found = first_conflict(&existing, journey_type, who, at(reference));
        assert_eq!(found.is_some(), blocks, "{name}");
    }
    // The other type does not block, and neither does a deleted operation.
    let long = [imported(Long, "2023-01-01T00:00:00Z", None, dup)];
    assert!(first_conflict(&long, Short, &applicant, at("2024-03-01T09:00:00Z")).is_none());
    let mut deleted = imported(Short, "2023-01-01T00:00:00Z", None, dup);
    deleted.deleted = true;
    assert!(first_conflict(&[deleted], Short, &applicant, at("2024-03-01T09:00:00Z")).is_none());
}

#[test]
fn a_registration_and_an_imported_operation_each_block_by_their_own_rule() {
    let alice = person('a', "051227308989", "DUP", "+336010203");
    let reference = at("2024-03-01T09:00:00Z");
    // Four years back: a registration still blocks, an imported operation no longer does.
    let registered = stored(JourneyType::Short, "2020-03-01T09:00:00Z", alice.clone());
    let history = imported(
        JourneyType::Short,
        "2020-03-01T09:00:00Z",
        None,
        ("DUP", "+336010203"),
    );
    let both = [history.clone(), registered.clone()];
    let found = first_conflict(&both, JourneyType::Short, &alice, reference);
    assert_eq!(found.map(|a| a.kind), Some(ApplicationKind::Standardized));
    assert!(first_conflict(&[history], JourneyType::Short, &alice, reference).is_none());
}

#[test]
fn other_types_and_deleted_applications_do_not_block_and_the_latest_is_reported() {
    let alice = person('a', "051227308989", "DUP", "+336010203");
    let reference = at("2024-03-01T09:00:00Z");
    let long = [stored(
        JourneyType::Long,
        "2024-01-01T00:00:00Z",
        alice.clone(),
    )];
    assert!(first_conflict(&long, JourneyType::Short, &alice, reference).is_none());

    let mut deleted = stored(JourneyType::Short, "2024-01-01T00:00:00Z", alice.clone());
    deleted.deleted = true;
    assert!(first_conflict(&[deleted], JourneyType::Short, &alice, reference).is_none());

    let older = stored(JourneyType::Short, "2022-01-01T00:00:00Z", alice.clone());
    let newer = stored(JourneyType::Short, "2023-01-01T00:00:00Z", alice.clone());
    let both = [older, newer];
    let found = first_conflict(&both, JourneyType::Short, &alice, reference);
    assert_eq!(found.map(|a| a.datetime), Some(at("2023-01-01T00:00:00Z")));
}

#[test]
fn cool_down_start_is_calendar_years_back_and_floored_for_imports() {
    use ApplicationKind::{Specific, Standardized};
    use JourneyType::{Long, Short};
    let cases = [
        (
            Standardized,
            Short,
            "2024-02-29T12:00:00Z",
            "2019-02-28T12:00:00Z",
        ),
        (
            Standardized,
            Long,
            "2024-02-29T12:00:00Z",
            "2012-02-29T12:00:00Z",
        ),
        (
            Specific,
            Short,
            "2024-02-29T12:00:00Z",
            "2021-02-28T12:00:00Z",
        ),
        (
            Specific,
            Long,
            "2028-02-29T12:00:00Z",
            "2018-02-28T12:00:00Z",
        ),
        (
            Specific,
            Short,
            "2022-06-01T00:00:00Z",
            "2020-01-01T00:00:00+01:00",
        ),
        (
            Specific,
            Long,
            "2024-06-01T00:00:00Z",
            "2015-01-01T00:00:00+01:00",
        ),
        (
            Standardized,
            Short,
            "2022-06-01T00:00:00Z",
            "2017-06-01T00:00:00Z",
        ),
    ];
    for (kind, journey_type, reference, start) in cases {
        assert_eq!(
            cooldown_start(kind, journey_type, at(reference)),
            at(start),
            "{kind:?} {journey_type:?} {reference}"
        );
    }
}
