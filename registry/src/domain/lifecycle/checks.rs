//! What the registry decides about a journey between 24 h and 48 h (docs/lifecycle.md):
//! normalisation, anomalies (same operator) and fraud (across operators).
//!
//! [`check`] takes the journey's [`Facts`] and its [`Neighbour`]s: the other stored journeys
//! that still count (not canceled, not refused for the terms) of either of its two people
//! around its time, of every operator. The store fetches them; nothing here reads a database.

use crate::domain::cee::France;
use crate::domain::terms::{CLOSE_TRIPS_GAP, MAX_TRIPS_PER_DAY, paris_day};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

/// A journey longer than this is not plausible: normalisation refuses it.
pub const MAX_DURATION: TimeDelta = TimeDelta::hours(24);

/// Two journeys of one passenger with one operator overlapping at least this much (of the
/// shorter one) are a `temporal_overlap_anomaly`.
pub const OVERLAP_RATIO: f64 = 0.7;

/// Shorter declared distances are a `distance_duration_anomaly`, in metres.
pub const MIN_PLAUSIBLE_DISTANCE: i64 = 300;

/// Shorter durations are a `distance_duration_anomaly`.
pub const MIN_PLAUSIBLE_DURATION: TimeDelta = TimeDelta::minutes(1);

/// Road distance estimated from the straight line between start and end: the usual detour
/// ratio of French roads (road / straight line ≈ 1.3). Stands in for OSRM's shortest path.
pub const DETOUR_FACTOR: f64 = 1.3;

/// Speed for the "too fast" rule's estimated duration: 80 km/h, in m/s.
pub const FAST_SPEED: f64 = 80_000.0 / 3_600.0;

/// Speed for the "too slow" rule's estimated duration: 30 km/h (town traffic), in m/s.
pub const SLOW_SPEED: f64 = 30_000.0 / 3_600.0;

/// The "too slow" estimate never goes under this, so short trips in traffic pass.
pub const SLOW_FLOOR: TimeDelta = TimeDelta::minutes(10);

/// The journey being checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub journey_id: i64,
    pub operator_id: i64,
    pub operator_trip_id: String,
    pub driver: String,
    pub passenger: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// `(lat, lon)` degrees.
    pub start_point: (f64, f64),
    pub end_point: (f64, f64),
    /// Declared, metres.
    pub distance: i64,
}

/// Another counting journey of one of its people, any operator.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbour {
    pub journey_id: i64,
    pub operator_id: i64,
    pub operator_journey_id: String,
    pub operator_trip_id: String,
    pub driver: String,
    pub passenger: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// A fraud found across operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FraudLabel {
    InteroperatorOverlap,
    InteroperatorTooManyTripsByDay,
    InteroperatorTooCloseTrips,
}

impl FraudLabel {
    /// The reference's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FraudLabel::InteroperatorOverlap => "interoperator_overlap",
            FraudLabel::InteroperatorTooManyTripsByDay => "interoperator_too_many_trips_by_day",
            FraudLabel::InteroperatorTooCloseTrips => "interoperator_too_close_trips",
        }
    }
}

/// Why normalisation refused a journey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormalisationError {
    /// Neither the start nor the end is in France.
    OutsideFrance,
    /// A point at exactly (0, 0): a missing position sent as zeros.
    NullIsland,
    /// Longer than [`MAX_DURATION`].
    TooLong,
}

impl NormalisationError {
    pub fn as_str(self) -> &'static str {
        match self {
            NormalisationError::OutsideFrance => "outside_france",
            NormalisationError::NullIsland => "null_coordinates",
            NormalisationError::TooLong => "duration_too_long",
        }
    }
}

/// The outcome of the checks.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Not normalised: status `normalization_error`; anomaly and fraud are not looked at.
    NotNormalised(Vec<NormalisationError>),
    /// Normalised; empty lists mean passed.
    Checked {
        fraud: Vec<FraudLabel>,
        /// `{"label", "metas"}` objects, as the status route shows them.
        anomalies: Vec<Value>,
    },
}

/// Every check on `journey` against its `neighbours`.
pub fn check(journey: &Facts, neighbours: &[Neighbour], france: &France) -> Verdict {
    let errors = normalisation_errors(journey, france);
    if !errors.is_empty() {
        return Verdict::NotNormalised(errors);
    }
    let mut anomalies = Vec::new();
    if let Some(reason) = distance_duration_anomaly(journey) {
        anomalies.push(json!({"label": "distance_duration_anomaly", "metas": {"rule": reason}}));
    }
    if let Some(overlap) = temporal_overlap(journey, neighbours) {
        anomalies.push(overlap);
    }
    Verdict::Checked {
        fraud: fraud_labels(journey, neighbours),
        anomalies,
    }
}

/// Geography, coordinates and time.
pub fn normalisation_errors(j: &Facts, france: &France) -> Vec<NormalisationError> {
    let mut errors = Vec::new();
    let in_france = |(lat, lon): (f64, f64)| france.contains(lat, lon);
    if !in_france(j.start_point) && !in_france(j.end_point) {
        errors.push(NormalisationError::OutsideFrance);
    }
    if [j.start_point, j.end_point].contains(&(0.0, 0.0)) {
        errors.push(NormalisationError::NullIsland);
    }
    if j.end - j.start > MAX_DURATION {
        errors.push(NormalisationError::TooLong);
    }
    errors
}

/// Great-circle distance in metres between two `(lat, lon)` points.
pub fn straight_line(a: (f64, f64), b: (f64, f64)) -> f64 {
    const EARTH_RADIUS: f64 = 6_371_000.0;
    let (lat1, lat2) = (a.0.to_radians(), b.0.to_radians());
    let (dlat, dlon) = ((b.0 - a.0).to_radians(), (b.1 - a.1).to_radians());
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS * h.sqrt().asin()
}

/// The reference's five `distance_duration_anomaly` rules, with the straight line times
/// [`DETOUR_FACTOR`] in place of OSRM's road estimate. The first rule broken, if any.
pub fn distance_duration_anomaly(j: &Facts) -> Option<&'static str> {
    let declared = j.distance as f64;
    let duration = (j.end - j.start).num_milliseconds() as f64 / 1000.0;
    let road = straight_line(j.start_point, j.end_point) * DETOUR_FACTOR;
    let fast = road / FAST_SPEED;
    let slow = (road / SLOW_SPEED).max(SLOW_FLOOR.num_seconds() as f64);
    if j.distance < MIN_PLAUSIBLE_DISTANCE {
        Some("distance_too_short")
    } else if j.end - j.start < MIN_PLAUSIBLE_DURATION {
        Some("duration_too_short")
    } else if road > 2.5 * declared {
        Some("estimated_distance_above_2.5x_declared")
    } else if declared > 4.0 * road {
        Some("declared_distance_above_4x_estimated")
    } else if fast > 2.5 * duration {
        Some("estimated_duration_above_2.5x_declared")
    } else if duration > 7.0 * slow {
        Some("declared_duration_above_7x_estimated")
    } else {
        None
    }
}

/// The share of the shorter of two intervals that the other covers, 0..=1. An instant
/// (zero duration) is covered entirely when it lies within the other interval.
pub fn overlap_ratio(a: (DateTime<Utc>, DateTime<Utc>), b: (DateTime<Utc>, DateTime<Utc>)) -> f64 {
    let overlap = (a.1.min(b.1) - a.0.max(b.0)).num_milliseconds();
    let shorter = (a.1 - a.0).min(b.1 - b.0).num_milliseconds();
    if shorter <= 0 {
        let inside = a.0.max(b.0) <= a.1.min(b.1);
        return if inside { 1.0 } else { 0.0 };
    }
    (overlap.max(0) as f64 / shorter as f64).min(1.0)
}

/// `temporal_overlap_anomaly`: an earlier-received journey of the same operator and the
/// same passenger overlapping at least [`OVERLAP_RATIO`]. Only the later journey of the pair
/// is flagged: the conflicting one keeps its status, as the reference documents.
pub fn temporal_overlap(j: &Facts, neighbours: &[Neighbour]) -> Option<Value> {
    neighbours
        .iter()
        .filter(|n| {
            n.operator_id == j.operator_id
                && n.passenger == j.passenger
                && n.journey_id < j.journey_id
        })
        .map(|n| (n, overlap_ratio((j.start, j.end), (n.start, n.end))))
        .filter(|(_, ratio)| *ratio >= OVERLAP_RATIO)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(n, ratio)| {
            json!({
                "label": "temporal_overlap_anomaly",
                "metas": {
                    "conflicting_journey_id": n.operator_journey_id,
                    "temporal_overlap_duration_ratio": (ratio * 100.0).round() / 100.0,
                },
            })
        })
}

fn same_couple(j: &Facts, n: &Neighbour) -> bool {
    (n.driver == j.driver && n.passenger == j.passenger)
        || (n.driver == j.passenger && n.passenger == j.driver)
}

/// The fraud labels of `j`, in label order.
pub fn fraud_labels(j: &Facts, neighbours: &[Neighbour]) -> Vec<FraudLabel> {
    let others = || neighbours.iter().filter(|n| n.operator_id != j.operator_id);
    let mut labels = Vec::new();
    let overlaps = |n: &Neighbour| n.start < j.end && n.end > j.start;
    if others().any(|n| same_couple(j, n) && overlaps(n)) {
        labels.push(FraudLabel::InteroperatorOverlap);
    }
    if too_many_trips_that_day(j, neighbours) {
        labels.push(FraudLabel::InteroperatorTooManyTripsByDay);
    }
    let close = |n: &Neighbour| {
        !overlaps(n) && n.start < j.end + CLOSE_TRIPS_GAP && n.end > j.start - CLOSE_TRIPS_GAP
    };
    if others().any(|n| same_couple(j, n) && n.operator_trip_id != j.operator_trip_id && close(n)) {
        labels.push(FraudLabel::InteroperatorTooCloseTrips);
    }
    labels
}

/// Whether one of `j`'s people already had [`MAX_TRIPS_PER_DAY`] distinct trips, across
/// operators, before `j` that Paris day (ordered by start, then operator and trip), at least
/// one of them with another operator. The fifth trip and later ones are flagged.
fn too_many_trips_that_day(j: &Facts, neighbours: &[Neighbour]) -> bool {
    let (day_start, day_end) = paris_day(j.start);
    let me = (j.start, j.operator_id, j.operator_trip_id.as_str());
    [&j.driver, &j.passenger].into_iter().any(|person| {
        let mut before: Vec<(i64, &str)> = neighbours
            .iter()
            .filter(|n| &n.driver == person || &n.passenger == person)
            .filter(|n| n.start >= day_start && n.start < day_end)
            .filter(|n| (n.start, n.operator_id, n.operator_trip_id.as_str()) < me)
            .filter(|n| (n.operator_id, n.operator_trip_id.as_str()) != (me.1, me.2))
            .map(|n| (n.operator_id, n.operator_trip_id.as_str()))
            .collect();
        before.sort_unstable();
        before.dedup();
        before.len() as i64 >= MAX_TRIPS_PER_DAY
            && before.iter().any(|(op, _)| *op != j.operator_id)
    })
}

#[cfg(test)]
mod tests;
