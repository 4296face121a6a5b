//! What may be claimed and when: short-distance eligibility of a journey, the dates of a
//! long-distance claim, and the cool-down between two applications of one person
//! (rpc-behaviour §9.3, §9.5; CONTRACT §8). Every rule takes `now` as a parameter.

use super::france::France;
use super::request::{ApplicationKind, JourneyType, Person};
use crate::domain::journey::{OperatorClass, TimeGeoPoint};
use crate::domain::phone::PhoneTrunc;
use crate::domain::status::JourneyStatus;
use chrono::{DateTime, Months, TimeDelta, Utc};
use uuid::Uuid;

/// Longest journey eligible for a short-distance claim, in metres (inclusive).
pub const MAX_SHORT_DISTANCE_METRES: i64 = 80_000;

/// A person cannot claim short distance again within this many years of a previous claim.
pub const SHORT_COOLDOWN_YEARS: u32 = 5;

/// A person cannot claim long distance again within this many years of a previous claim.
pub const LONG_COOLDOWN_YEARS: u32 = 12;

/// An imported short-distance operation blocks a claim for this many years...
pub const SPECIFIC_SHORT_COOLDOWN_YEARS: u32 = 3;

/// ...and an imported long-distance one for this many.
pub const SPECIFIC_LONG_COOLDOWN_YEARS: u32 = 10;

/// Imported short-distance operations before 2020-01-01T00:00:00+01:00 (midnight in Paris,
/// as the reference writes it) block nothing.
const SPECIFIC_SHORT_FLOOR_UNIX: i64 = 1_577_833_200;

/// Imported long-distance operations before 2015-01-01T00:00:00+01:00 block nothing.
const SPECIFIC_LONG_FLOOR_UNIX: i64 = 1_420_066_800;

/// How far in the future an `application_timestamp` may be, for clock skew.
const CLOCK_SKEW: TimeDelta = crate::domain::CLOCK_SKEW;

/// The configured campaign: which operation dates may be claimed, and how long after the
/// operation a claim may be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Campaign {
    /// First instant inside the campaign (inclusive).
    pub start: DateTime<Utc>,
    /// Last instant inside the campaign (inclusive).
    pub end: DateTime<Utc>,
    /// Time to wait after the operation (journey end, cost sharing) before claiming it.
    pub delay: TimeDelta,
}

impl Campaign {
    /// Whether `at` falls inside the campaign, both ends included.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && at <= self.end
    }

    /// Whether an operation at `at` may be claimed at `now`: exactly the delay later is enough.
    pub fn delay_passed(&self, at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        at + self.delay <= now
    }
}

/// A journey of the caller, as the short-distance rule sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJourney {
    pub journey_id: i64,
    pub operator_class: OperatorClass,
    pub distance: i64,
    pub start: TimeGeoPoint,
    pub end: TimeGeoPoint,
    pub status: JourneyStatus,
    /// The driver's phone without its last two digits: the claimant's `phone_trunc`.
    pub driver_phone_trunc: PhoneTrunc,
}

/// Why a journey cannot be claimed for short distance (all answered 404).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ineligibility {
    NotClassC,
    TooLong,
    Abroad,
    OutsideCampaign,
    TooRecent,
}

/// Whether `journey` may be claimed for short distance at `now`: class C, at most 80 km, one
/// end in France, started inside the campaign, ended at least the campaign's delay ago.
pub fn short_eligibility(
    journey: &ClaimedJourney,
    campaign: &Campaign,
    france: &France,
    now: DateTime<Utc>,
) -> Result<(), Ineligibility> {
    let in_france = |p: &TimeGeoPoint| france.contains(p.lat, p.lon);
    if journey.operator_class != OperatorClass::C {
        Err(Ineligibility::NotClassC)
    } else if journey.distance > MAX_SHORT_DISTANCE_METRES {
        Err(Ineligibility::TooLong)
    } else if !in_france(&journey.start) && !in_france(&journey.end) {
        Err(Ineligibility::Abroad)
    } else if !campaign.contains(journey.start.datetime) {
        Err(Ineligibility::OutsideCampaign)
    } else if !campaign.delay_passed(journey.end.datetime, now) {
        Err(Ineligibility::TooRecent)
    } else {
        Ok(())
    }
}

/// Why the dates of a request are refused (answered 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DateRefusal {
    /// `application_timestamp` is in the future.
    ApplicationInFuture,
    /// The operation is more recent than the campaign's delay.
    TooRecent { delay_days: i64 },
    /// The operation is outside the campaign.
    OutsideCampaign {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
}

impl DateRefusal {
    /// The violation as listed in a 400 (`"<json path>: <message>"`).
    pub fn message(&self) -> String {
        match self {
            DateRefusal::ApplicationInFuture => {
                "/application_timestamp: Date should be before 0 days from now".to_owned()
            }
            DateRefusal::TooRecent { delay_days } => {
                format!("/datetime: Date should be before {delay_days} days from now")
            }
            DateRefusal::OutsideCampaign { start, end } => format!(
                "/datetime: Date should be between {} and {}",
                super::token::iso_millis(*start),
                super::token::iso_millis(*end)
            ),
        }
    }
}

/// The commitment must have been signed by now (give or take the clock skew).
pub fn application_timestamp(at: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), DateRefusal> {
    if at > now + CLOCK_SKEW {
        Err(DateRefusal::ApplicationInFuture)
    } else {
        Ok(())
    }
}

/// The cost-sharing date of a long-distance claim made at `now`: at least the campaign's
/// delay ago, inside the campaign.
pub fn long_dates(
    datetime: DateTime<Utc>,
    campaign: &Campaign,
    now: DateTime<Utc>,
) -> Result<(), DateRefusal> {
    if !campaign.delay_passed(datetime, now) {
        Err(DateRefusal::TooRecent {
            delay_days: campaign.delay.num_days(),
        })
    } else if !campaign.contains(datetime) {
        Err(DateRefusal::OutsideCampaign {
            start: campaign.start,
            end: campaign.end,
        })
    } else {
        Ok(())
    }
}

/// An application as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredApplication {
    pub uuid: Uuid,
    pub operator_id: i64,
    pub kind: ApplicationKind,
    pub journey_type: JourneyType,
    /// A specific application has no driving licence, and no identity key until one is
    /// imported.
    pub person: Person,
    /// The operation: journey end (short) or cost sharing (long), or the imported date.
    pub datetime: DateTime<Utc>,
    /// Short distance: the journey claimed and its public status.
    pub journey: Option<(i64, JourneyStatus)>,
    /// What a registration answered; a specific application has none.
    pub token: Option<String>,
    /// Deleted by its operator: kept for audit, blocks nobody.
    pub deleted: bool,
}

/// The earliest operation date of an application of `kind` that still blocks a new claim of
/// `journey_type` whose operation is at `reference`. A registered application blocks from 5
/// years before it (short distance) or 12 (long); an imported one from 3 years (short) or 10
/// (long), and never from before 2020 (short) or 2015 (long), Paris time.
pub fn cooldown_start(
    kind: ApplicationKind,
    journey_type: JourneyType,
    reference: DateTime<Utc>,
) -> DateTime<Utc> {
    let (years, floor) = match (kind, journey_type) {
        (ApplicationKind::Standardized, JourneyType::Short) => (SHORT_COOLDOWN_YEARS, None),
        (ApplicationKind::Standardized, JourneyType::Long) => (LONG_COOLDOWN_YEARS, None),
        (ApplicationKind::Specific, JourneyType::Short) => (
            SPECIFIC_SHORT_COOLDOWN_YEARS,
            Some(SPECIFIC_SHORT_FLOOR_UNIX),
        ),
        (ApplicationKind::Specific, JourneyType::Long) => {
            (SPECIFIC_LONG_COOLDOWN_YEARS, Some(SPECIFIC_LONG_FLOOR_UNIX))
        }
    };
    let back = reference
        .checked_sub_months(Months::new(12 * years))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    match floor.and_then(|secs| DateTime::from_timestamp(secs, 0)) {
        Some(floor) => back.max(floor),
        None => back,
    }
}

/// Whether `existing` is the application of the person `new` describes: same identity key,
/// or same driving licence, or same last name and phone (both truncated). CONTRACT §8 keeps
/// name and phone a match whatever the keys: the reference uses it only against keyless
/// (imported) history, which this also covers, so everything it blocks is blocked here.
fn same_person(existing: &Person, new: &Person) -> bool {
    let both = |x: Option<&str>, y: Option<&str>| x.is_some() && x == y;
    both(
        existing.identity_key.as_ref().map(|k| k.as_str()),
        new.identity_key.as_ref().map(|k| k.as_str()),
    ) || both(
        existing.driving_licence.as_ref().map(|l| l.as_str()),
        new.driving_licence.as_ref().map(|l| l.as_str()),
    ) || (existing.last_name_trunc == new.last_name_trunc
        && existing.phone_trunc == new.phone_trunc)
}

/// The stored application that stops `person` from claiming `journey_type` for an operation
/// at `reference`: not deleted, same type, same person, operation on or after the
/// [`cooldown_start`] of its kind (later ones block too). The most recent when several do.
pub fn first_conflict<'a>(
    stored: &'a [StoredApplication],
    journey_type: JourneyType,
    person: &Person,
    reference: DateTime<Utc>,
) -> Option<&'a StoredApplication> {
    stored
        .iter()
        .filter(|a| !a.deleted && a.journey_type == journey_type)
        .filter(|a| a.datetime >= cooldown_start(a.kind, journey_type, reference))
        .filter(|a| same_person(&a.person, person))
        .max_by_key(|a| a.datetime)
}

#[cfg(test)]
mod tests;
