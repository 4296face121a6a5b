//! Terms-of-use (CGU) checks at creation and update (CONTRACT §7, rpc-behaviour §8).
//!
//! `expired` and `distance_too_short` need only the journey and the clock
//! ([`standalone_violations`]). `too_many_trips_by_day` and `too_close_trips` need the
//! operator's other stored journeys: the store counts them over the [`TermsWindows`] of the
//! new journey, inside the transaction that writes it, and [`violations`] decides.
//!
//! Where the reference's code and the contract differ we follow the contract: canceled and
//! refused journeys do not count, and the daily limit is per person. A journey that joins a
//! trip already counted that day (another passenger of the same `operator_trip_id`) is not a
//! new trip, so it does not count against the limit.

use super::journey::NewJourney;
use super::validate::CLOCK_SKEW;
use chrono::{DateTime, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Europe::Paris;

/// Shorter journeys are refused, in metres.
pub const MIN_DISTANCE_METRES: i64 = 2_000;

/// A journey must be sent within this delay after it started.
pub const SEND_DEADLINE: TimeDelta = TimeDelta::hours(24);

/// Distinct trips a person may already have on a Europe/Paris calendar day; one more is refused.
pub const MAX_TRIPS_PER_DAY: i64 = 4;

/// Two trips of the same couple must be at least this far apart.
pub const CLOSE_TRIPS_GAP: TimeDelta = TimeDelta::minutes(30);

/// The longest a journey that counts toward the terms can last. A journey is only written
/// with a counting status after passing [`violations`] at the `now` it was validated at
/// (creation or update): it started at most [`SEND_DEADLINE`] before `now` (else `expired`)
/// and ends at most [`CLOCK_SKEW`] after it (else refused as in the future). So a counting
/// journey that ends after a given moment started at most this long before it, which bounds
/// the couple count's index scans from below ([`TermsWindows::scan_start`]); without a
/// bound they read a person's whole history.
pub fn max_counting_duration() -> TimeDelta {
    SEND_DEADLINE + CLOCK_SKEW
}

/// Why a journey breaks the terms of use. The order of the variants is the order of labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TermsLabel {
    Expired,
    DistanceTooShort,
    TooManyTripsByDay,
    TooCloseTrips,
}

impl TermsLabel {
    /// The wire and storage spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TermsLabel::Expired => "expired",
            TermsLabel::DistanceTooShort => "distance_too_short",
            TermsLabel::TooManyTripsByDay => "too_many_trips_by_day",
            TermsLabel::TooCloseTrips => "too_close_trips",
        }
    }

    /// The outcome of a 422 in the gateway's usage records (`gateway::usage::outcome`).
    pub fn outcome(self) -> &'static str {
        match self {
            TermsLabel::Expired => "422:expired",
            TermsLabel::DistanceTooShort => "422:distance_too_short",
            TermsLabel::TooManyTripsByDay => "422:too_many_trips_by_day",
            TermsLabel::TooCloseTrips => "422:too_close_trips",
        }
    }
}

/// The violations found without looking at other journeys, for a journey received at `now`.
pub fn standalone_violations(journey: &NewJourney, now: DateTime<Utc>) -> Vec<TermsLabel> {
    let mut labels = Vec::new();
    if now - journey.start.datetime > SEND_DEADLINE {
        labels.push(TermsLabel::Expired);
    }
    if journey.distance < MIN_DISTANCE_METRES {
        labels.push(TermsLabel::DistanceTooShort);
    }
    labels
}

/// The periods over which the store counts a journey's neighbours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TermsWindows {
    /// The Europe/Paris calendar day of the start, as `[day_start, day_end)` in UTC.
    pub day_start: DateTime<Utc>,
    pub day_end: DateTime<Utc>,
    /// Another trip of the same couple is too close when it starts before `close_end` and
    /// ends after `close_start`: less than [`CLOSE_TRIPS_GAP`] between the two.
    pub close_start: DateTime<Utc>,
    pub close_end: DateTime<Utc>,
    /// Every trip of a person as driver that either of their counts involves starts in
    /// `[scan_start, scan_end)`: the Paris day, and the closeness window, whose counting
    /// trips start no earlier than `close_start` - [`max_counting_duration`]. One index scan
    /// of this span serves the person's trips that day and the couple's close trips.
    pub scan_start: DateTime<Utc>,
    pub scan_end: DateTime<Utc>,
}

impl TermsWindows {
    /// The windows of `journey`.
    pub fn of(journey: &NewJourney) -> Self {
        let (start, end) = (journey.start.datetime, journey.end.datetime);
        let day = paris_day(start);
        let (day_start, day_end) = day;
        let (scan_start, scan_end) = neighbour_starts(day, start, end, max_counting_duration());
        Self {
            day_start,
            day_end,
            close_start: start - CLOSE_TRIPS_GAP,
            close_end: end + CLOSE_TRIPS_GAP,
            scan_start,
            scan_end,
        }
    }
}

/// Where the starts of a journey's neighbours lie, as a half-open UTC interval: the trips
/// of its Paris day (`day`, [`paris_day`] of `start`), and those within [`CLOSE_TRIPS_GAP`]
/// of it, given that none of them lasts longer than `longest`.
pub fn neighbour_starts(
    (day_start, day_end): (DateTime<Utc>, DateTime<Utc>),
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    longest: TimeDelta,
) -> (DateTime<Utc>, DateTime<Utc>) {
    (
        day_start.min(start - CLOSE_TRIPS_GAP - longest),
        day_end.max(end + CLOSE_TRIPS_GAP),
    )
}

/// The Europe/Paris calendar day holding `at`, as a half-open UTC interval. It lasts 23 or
/// 25 hours on the days the clocks change.
pub fn paris_day(at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let date = at.with_timezone(&Paris).date_naive();
    let midnight = |d: chrono::NaiveDate| {
        // Paris changes its clocks at 02:00 or 03:00, never at midnight, so local midnight
        // always exists exactly once.
        Paris
            .from_local_datetime(&d.and_time(NaiveTime::MIN))
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .expect("local midnight exists in Europe/Paris")
    };
    let next = date.succ_opt().expect("a date before the end of time");
    (midnight(date), midnight(next))
}

/// What the operator's other counting journeys say about a new one, as counted by the store
/// over its [`TermsWindows`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Neighbours {
    /// Distinct other trips of the driver (in either role) that Paris day.
    pub driver_trips_that_day: i64,
    /// Distinct other trips of the passenger (in either role) that Paris day.
    pub passenger_trips_that_day: i64,
    /// Distinct other trips of the same couple (either way round) too close in time.
    pub close_trips: i64,
}

/// Every terms violation of `journey` received at `now`, in label order.
pub fn violations(
    journey: &NewJourney,
    now: DateTime<Utc>,
    neighbours: &Neighbours,
) -> Vec<TermsLabel> {
    let mut labels = standalone_violations(journey, now);
    let busiest = neighbours
        .driver_trips_that_day
        .max(neighbours.passenger_trips_that_day);
    if busiest >= MAX_TRIPS_PER_DAY {
        labels.push(TermsLabel::TooManyTripsByDay);
    }
    if neighbours.close_trips > 0 {
        labels.push(TermsLabel::TooCloseTrips);
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::validate::tests::{now, valid_payload};
    use crate::domain::validate_journey;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("valid date")
            .with_timezone(&Utc)
    }

    #[test]
    fn paris_days_follow_local_midnight_and_daylight_saving() {
        let cases = [
            // Winter: UTC+1. The reference's own fixture.
            (
                "2024-01-01T12:00:00Z",
                "2023-12-31T23:00:00Z",
                "2024-01-01T23:00:00Z",
            ),
            // 23:30 UTC on 1 Jan is already 2 Jan in Paris.
            (
                "2024-01-01T23:30:00Z",
                "2024-01-01T23:00:00Z",
                "2024-01-02T23:00:00Z",
            ),
            // Summer: UTC+2.
            (
                "2024-07-14T21:59:59Z",
                "2024-07-13T22:00:00Z",
                "2024-07-14T22:00:00Z",
            ),
            // Clocks go forward on 31 March 2024: a 23-hour day.
            (
                "2024-03-31T12:00:00Z",
                "2024-03-30T23:00:00Z",
                "2024-03-31T22:00:00Z",
            ),
            // Clocks go back on 27 October 2024: a 25-hour day.
            (
                "2024-10-27T12:00:00Z",
                "2024-10-26T22:00:00Z",
                "2024-10-27T23:00:00Z",
            ),
        ];
        for (instant, start, end) in cases {
            assert_eq!(paris_day(at(instant)), (at(start), at(end)), "{instant}");
        }
    }

    #[test]
    fn neighbours_decide_the_daily_and_closeness_labels() {
        let journey = validate_journey(&valid_payload(), now()).expect("valid");
        let cases = [
            (Neighbours::default(), vec![]),
            (
                Neighbours {
                    driver_trips_that_day: 3,
                    passenger_trips_that_day: 3,
                    close_trips: 0,
                },
                vec![],
            ),
            (
                Neighbours {
                    driver_trips_that_day: 4,
                    ..Neighbours::default()
                },
                vec![TermsLabel::TooManyTripsByDay],
            ),
            (
                Neighbours {
                    passenger_trips_that_day: 4,
                    ..Neighbours::default()
                },
                vec![TermsLabel::TooManyTripsByDay],
            ),
            (
                Neighbours {
                    close_trips: 1,
                    ..Neighbours::default()
                },
                vec![TermsLabel::TooCloseTrips],
            ),
            (
                Neighbours {
                    driver_trips_that_day: 7,
                    passenger_trips_that_day: 0,
                    close_trips: 2,
                },
                vec![TermsLabel::TooManyTripsByDay, TermsLabel::TooCloseTrips],
            ),
        ];
        for (neighbours, expected) in cases {
            assert_eq!(
                violations(&journey, now(), &neighbours),
                expected,
                "{neighbours:?}"
            );
        }
    }

    #[test]
    fn windows_span_the_paris_day_and_thirty_minutes_around_the_journey() {
        let journey = validate_journey(&valid_payload(), now()).expect("valid");
        let w = TermsWindows::of(&journey);
        assert_eq!(w.day_start, at("2026-11-21T23:00:00Z"));
        assert_eq!(w.day_end, at("2026-11-22T23:00:00Z"));
        assert_eq!(w.close_start, at("2026-11-22T10:30:00Z"));
        assert_eq!(w.close_end, at("2026-11-22T12:10:00Z"));
        assert_eq!(w.scan_start, at("2026-11-21T10:25:00Z"));
        assert_eq!(w.scan_end, at("2026-11-22T23:00:00Z"));

        // Ending late in the evening, its closeness window runs into the next Paris day.
        let mut late = journey;
        (late.start.datetime, late.end.datetime) =
            (at("2026-11-22T22:00:00Z"), at("2026-11-22T22:40:00Z"));
        let w = TermsWindows::of(&late);
        assert_eq!(
            (w.day_start, w.day_end),
            (at("2026-11-21T23:00:00Z"), at("2026-11-22T23:00:00Z"))
        );
        assert_eq!(w.scan_start, at("2026-11-21T21:25:00Z"));
        assert_eq!(w.scan_end, at("2026-11-22T23:10:00Z"));
    }

    /// The couple count's lower bound is only exact if no journey that passes the terms can
    /// last longer than [`max_counting_duration`]: the longest one accepted lasts exactly
    /// that, and one millisecond more is refused (expired or in the future).
    #[test]
    fn no_journey_passing_the_terms_lasts_longer_than_the_bound() {
        let journey_between = |start: DateTime<Utc>, end: DateTime<Utc>| {
            let mut payload = valid_payload();
            payload["start"]["datetime"] = json!(start.to_rfc3339());
            payload["end"]["datetime"] = json!(end.to_rfc3339());
            validate_journey(&payload, now())
                .ok()
                .filter(|j| standalone_violations(j, now()).is_empty())
        };
        let (earliest, latest) = (now() - SEND_DEADLINE, now() + CLOCK_SKEW);
        let longest = journey_between(earliest, latest).expect("the longest accepted journey");
        assert_eq!(
            longest.end.datetime - longest.start.datetime,
            max_counting_duration()
        );
        let ms = TimeDelta::milliseconds(1);
        assert!(journey_between(earliest - ms, latest).is_none());
        assert!(journey_between(earliest, latest + ms).is_none());
    }

    #[test]
    fn standalone_terms_label_short_and_late_journeys() {
        let start = |hours_ago: i64| (now() - TimeDelta::hours(hours_ago)).to_rfc3339();
        let cases = [
            (2_000, start(1), vec![]),
            (1_999, start(1), vec![TermsLabel::DistanceTooShort]),
            (5_000, start(24), vec![]),
            (5_000, start(25), vec![TermsLabel::Expired]),
            (
                10,
                start(48),
                vec![TermsLabel::Expired, TermsLabel::DistanceTooShort],
            ),
        ];
        for (distance, start, expected) in cases {
            let mut payload = valid_payload();
            payload["distance"] = json!(distance);
            payload["start"]["datetime"] = json!(start);
            payload["end"]["datetime"] = json!(start);
            let journey = validate_journey(&payload, now()).expect("valid");
            assert_eq!(
                standalone_violations(&journey, now()),
                expected,
                "{distance} {start}"
            );
        }
    }
}
