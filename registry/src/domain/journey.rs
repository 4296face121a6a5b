//! A journey as accepted from an operator: the types [`super::validate_journey`] produces, and
//! the [`Cancel`] request of [`super::validate_cancel`].
//!
//! Values here are already checked against the payload schema; phones are normalised to E.164.

use super::phone::{Phone, PhoneTrunc};
use chrono::{DateTime, Utc};
use std::fmt;

/// The operator's own id for one driver–passenger couple journey (1..=256 characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OperatorJourneyId(String);

impl OperatorJourneyId {
    /// Longest id accepted, in characters.
    pub const MAX_CHARS: usize = 256;

    /// Accepts any string of 1..=256 characters (CONTRACT §7).
    pub fn parse(s: &str) -> Option<Self> {
        let len = s.chars().count();
        (1..=Self::MAX_CHARS)
            .contains(&len)
            .then(|| Self(s.to_owned()))
    }

    /// The id as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OperatorJourneyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The proof class of a journey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorClass {
    A,
    B,
    C,
}

impl OperatorClass {
    /// The wire and storage spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorClass::A => "A",
            OperatorClass::B => "B",
            OperatorClass::C => "C",
        }
    }

    /// The class named `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "A" => Some(OperatorClass::A),
            "B" => Some(OperatorClass::B),
            "C" => Some(OperatorClass::C),
            _ => None,
        }
    }
}

/// 64 lowercase hexadecimal characters: the SHA-256 of phone and last name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdentityKey(String);

impl IdentityKey {
    /// Accepts exactly `^[a-f0-9]{64}$`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::is_valid(s).then(|| Self(s.to_owned()))
    }

    /// Whether `s` is 64 lowercase hex characters.
    pub fn is_valid(s: &str) -> bool {
        s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }

    /// The key as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `s` is a SIRET: exactly 14 digits.
pub fn is_siret(s: &str) -> bool {
    s.len() == 14 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Where and when the passenger started or ended the journey.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeGeoPoint {
    pub datetime: DateTime<Utc>,
    /// Degrees, −90..=90.
    pub lat: f64,
    /// Degrees, −180..=180.
    pub lon: f64,
}

/// One incentive paid for the journey.
#[derive(Debug, Clone, PartialEq)]
pub struct Incentive {
    /// Order of application, 0..=19.
    pub index: i64,
    /// The funder's SIRET.
    pub siret: String,
    /// Euro cents, 0..=100 000.
    pub amount: i64,
}

/// One payment method used by the passenger.
#[derive(Debug, Clone, PartialEq)]
pub struct Payment {
    /// Order of application, 0..=19.
    pub index: i64,
    /// The payer's SIRET.
    pub siret: String,
    /// Name of the payment title.
    pub kind: String,
    /// Euro cents, 0..=100 000.
    pub amount: i64,
}

/// A public-transport pass.
#[derive(Debug, Clone, PartialEq)]
pub struct TravelPass {
    /// Only `navigo` is supported.
    pub name: String,
    pub user_id: String,
}

/// Who drove or rode. A stored identity has at least one of `phone` and `phone_trunc`
/// ([`NewJourney::without_phone`] is checked before anything is stored).
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub identity_key: IdentityKey,
    pub operator_user_id: String,
    /// Full number.
    pub phone: Option<Phone>,
    /// Number without its last two digits.
    pub phone_trunc: Option<PhoneTrunc>,
    /// `None` when the operator did not say.
    pub over_18: Option<bool>,
    pub travel_pass: Option<TravelPass>,
}

/// The driver's side of the journey.
#[derive(Debug, Clone, PartialEq)]
pub struct Driver {
    pub identity: Identity,
    /// Euro cents actually received, 0..=1 000 000.
    pub revenue: i64,
}

/// The passenger's side of the journey.
#[derive(Debug, Clone, PartialEq)]
pub struct Passenger {
    pub identity: Identity,
    /// Euro cents actually paid, 0..=1 000 000.
    pub contribution: i64,
    pub payments: Vec<Payment>,
    /// Seats booked, 1..=8 (default 1).
    pub seats: i64,
}

/// A journey that passed schema and chronology validation.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJourney {
    /// `operator_id` as declared in the payload, if it was.
    pub declared_operator_id: Option<i64>,
    pub operator_journey_id: OperatorJourneyId,
    /// Groups the journeys of one driver with several passengers.
    pub operator_trip_id: String,
    pub operator_class: OperatorClass,
    pub incentives: Vec<Incentive>,
    pub licence_plate: Option<String>,
    pub start: TimeGeoPoint,
    pub end: TimeGeoPoint,
    /// Metres, 1..=1 000 000.
    pub distance: i64,
    pub driver: Driver,
    pub passenger: Passenger,
}

impl NewJourney {
    /// The reference's refusal when the driver, then the passenger, has neither `phone` nor
    /// `phone_trunc`: checked once the schema holds, answered 400 `Invalid Request` with this
    /// sentence as `data` (rpc-behaviour §5.1, step 7).
    pub fn without_phone(&self) -> Option<&'static str> {
        let lacks = |i: &Identity| i.phone.is_none() && i.phone_trunc.is_none();
        if lacks(&self.driver.identity) {
            Some("driver.identity should have a phone or phone_trunc")
        } else if lacks(&self.passenger.identity) {
            Some("passenger.identity should have a phone or phone_trunc")
        } else {
            None
        }
    }
}

/// Why an operator cancels a journey it sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancel {
    /// The operator's own reason code: up to 32 of `[0-9A-Za-z_-]`, possibly empty.
    pub code: String,
    /// Free text, up to 512 characters.
    pub message: Option<String>,
}
