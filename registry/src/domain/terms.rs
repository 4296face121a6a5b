//! Terms-of-use (CGU) checks at creation (CONTRACT §7, rpc-behaviour §8).
//!
//! This slice has the checks that need nothing but the journey and the clock: `expired` and
//! `distance_too_short`. The ones that need other stored journeys (`too_many_trips_by_day`,
//! `too_close_trips`) come with the full terms work and will run inside the insert transaction.

use super::journey::NewJourney;
use chrono::{DateTime, TimeDelta, Utc};

/// Shorter journeys are refused, in metres.
pub const MIN_DISTANCE_METRES: i64 = 2_000;

/// A journey must be sent within this delay after it started.
pub const SEND_DEADLINE: TimeDelta = TimeDelta::hours(24);

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::validate::tests::{now, valid_payload};
    use crate::domain::validate_journey;
    use serde_json::json;

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
