//! The CEE request bodies (rpc-behaviour §9.1-9.4), spelled out on the journeys' [`Checker`]:
//! a registration is short distance (it names one of the caller's journeys) or long distance
//! (it carries its own `datetime` and `phone_trunc`); a simulation names a person only.

use crate::domain::journey::{IdentityKey, OperatorJourneyId};
use crate::domain::phone::PhoneTrunc;
use crate::domain::schema::{Checker, Field, Obj};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::fmt;

const IDENTITY_KEY_PATTERN: &str = "^[a-f0-9]{64}$";
const LAST_NAME_TRUNC_PATTERN: &str = "^[A-Z ]{3}$";

/// Short distance (a journey in the registry) or long distance (declared by the operator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JourneyType {
    Short,
    Long,
}

impl JourneyType {
    /// The wire and storage spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            JourneyType::Short => "short",
            JourneyType::Long => "long",
        }
    }

    /// The type named `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "short" => Some(JourneyType::Short),
            "long" => Some(JourneyType::Long),
            _ => None,
        }
    }
}

/// How an application came to the registry: registered through the API (a standardized
/// operation, with its journey or cost-sharing date, licence and token) or imported from the
/// operator's history (a specific operation: a person, a type and a date).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApplicationKind {
    Standardized,
    Specific,
}

impl ApplicationKind {
    /// The wire (`cee_application_type`) and storage spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ApplicationKind::Standardized => "standardized",
            ApplicationKind::Specific => "specific",
        }
    }

    /// The kind named `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "standardized" => Some(ApplicationKind::Standardized),
            "specific" => Some(ApplicationKind::Specific),
            _ => None,
        }
    }
}

/// The first three letters of the last name, capitals, padded with spaces (`"TO "`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LastNameTrunc(String);

impl LastNameTrunc {
    /// Accepts exactly `^[A-Z ]{3}$`.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase() || b == b' '))
            .then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A driving licence number in one of the reference's four forms.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DrivingLicence(String);

impl DrivingLicence {
    /// Accepts a French licence since 1975 (`^[0-9]{12}$`), an older one
    /// (`^[A-Z0-9]{1,15}[0-9]{4}$` or `^[A-Z0-9]{1,15}$`), or a foreign one prefixed `99-`
    /// (`^99-.*$`, 4 to 64 characters).
    pub fn parse(s: &str) -> Option<Self> {
        let french = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        };
        let older_with_year = |s: &str| {
            (5..=19).contains(&s.len())
                && s.len() - 4 <= 15
                && french(s)
                && s.bytes().skip(s.len() - 4).all(|b| b.is_ascii_digit())
        };
        let older = |s: &str| (1..=15).contains(&s.len()) && french(s);
        let foreign = |s: &str| {
            (4..=64).contains(&s.chars().count())
                && s.starts_with("99-")
                && !s.contains(['\n', '\r', '\u{2028}', '\u{2029}'])
        };
        (older(s) || older_with_year(s) || foreign(s)).then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DrivingLicence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DrivingLicence(<redacted>)")
    }
}

/// Who an application is for, by the three keys the cool-downs compare. A simulation may
/// omit the identity key and the licence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub identity_key: Option<IdentityKey>,
    pub driving_licence: Option<DrivingLicence>,
    pub last_name_trunc: LastNameTrunc,
    pub phone_trunc: PhoneTrunc,
}

/// What a registration claims.
#[derive(Debug, Clone, PartialEq)]
pub enum RegistrationKind {
    /// One of the caller's journeys; the person's `phone_trunc` is its driver's.
    Short {
        operator_journey_id: OperatorJourneyId,
    },
    /// A long-distance journey whose costs were shared at `datetime`.
    Long {
        phone_trunc: PhoneTrunc,
        datetime: DateTime<Utc>,
    },
}

/// A valid `POST /policies/cee` body.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    pub identity_key: IdentityKey,
    pub driving_licence: DrivingLicence,
    pub last_name_trunc: LastNameTrunc,
    /// When the person signed their commitment.
    pub application_timestamp: DateTime<Utc>,
    pub kind: RegistrationKind,
}

impl Registration {
    pub fn journey_type(&self) -> JourneyType {
        match self.kind {
            RegistrationKind::Short { .. } => JourneyType::Short,
            RegistrationKind::Long { .. } => JourneyType::Long,
        }
    }

    /// The person applying, with `phone_trunc` (the driver's for short distance).
    pub fn person(&self, phone_trunc: PhoneTrunc) -> Person {
        Person {
            identity_key: Some(self.identity_key.clone()),
            driving_licence: Some(self.driving_licence.clone()),
            last_name_trunc: self.last_name_trunc.clone(),
            phone_trunc,
        }
    }
}

/// A valid `POST /policies/cee/simulate` body.
#[derive(Debug, Clone, PartialEq)]
pub struct Simulation {
    pub journey_type: JourneyType,
    pub person: Person,
}

/// Validates a registration; `Err` lists every violation as `"<json path>: <message>"`.
pub fn validate_registration(payload: &Value) -> Result<Registration, Vec<String>> {
    const COMMON: [&str; 5] = [
        "journey_type",
        "identity_key",
        "driving_license",
        "last_name_trunc",
        "application_timestamp",
    ];
    let mut c = Checker::default();
    let journey_type = match payload.get("journey_type") {
        Some(v) => c.one_of(&Field::at("/journey_type", v), &["short", "long"]),
        None => None,
    }
    .and_then(JourneyType::parse);
    let (required, optional): (Vec<&str>, &[&str]) = match journey_type {
        Some(JourneyType::Short) => ([&COMMON[..], &["operator_journey_id"]].concat(), &[]),
        Some(JourneyType::Long) => ([&COMMON[..], &["phone_trunc", "datetime"]].concat(), &[]),
        None => (
            COMMON.to_vec(),
            &["operator_journey_id", "phone_trunc", "datetime"],
        ),
    };
    let root = c.object(Field::root(payload), &required, optional);
    let identity_key = identity_key(&mut c, &root);
    let driving_licence = driving_licence(&mut c, &root);
    let last_name_trunc = last_name_trunc(&mut c, &root);
    let application_timestamp = c.datetime(&root.field("application_timestamp"));
    let operator_journey_id = c
        .string(
            &root.field("operator_journey_id"),
            1,
            OperatorJourneyId::MAX_CHARS,
        )
        .and_then(|s| OperatorJourneyId::parse(&s));
    let phone_trunc = phone_trunc(&mut c, &root);
    let datetime = c.datetime(&root.field("datetime"));
    c.finish()?;
    let kind = match journey_type {
        Some(JourneyType::Short) => {
            operator_journey_id.map(|operator_journey_id| RegistrationKind::Short {
                operator_journey_id,
            })
        }
        Some(JourneyType::Long) => {
            phone_trunc
                .zip(datetime)
                .map(|(phone_trunc, datetime)| RegistrationKind::Long {
                    phone_trunc,
                    datetime,
                })
        }
        None => None,
    };
    (|| {
        Some(Registration {
            identity_key: identity_key?,
            driving_licence: driving_licence?,
            last_name_trunc: last_name_trunc?,
            application_timestamp: application_timestamp?,
            kind: kind?,
        })
    })()
    .ok_or_else(|| vec![": must be a CEE application".to_owned()])
}

/// Validates a simulation; `Err` lists every violation as `"<json path>: <message>"`.
pub fn validate_simulation(payload: &Value) -> Result<Simulation, Vec<String>> {
    let mut c = Checker::default();
    let root = c.object(
        Field::root(payload),
        &["last_name_trunc", "phone_trunc", "journey_type"],
        &["driving_license", "identity_key"],
    );
    let journey_type = c
        .one_of(&root.field("journey_type"), &["short", "long"])
        .and_then(JourneyType::parse);
    let last_name_trunc = last_name_trunc(&mut c, &root);
    let phone_trunc = phone_trunc(&mut c, &root);
    let identity_key = identity_key(&mut c, &root);
    let driving_licence = driving_licence(&mut c, &root);
    c.finish()?;
    (|| {
        Some(Simulation {
            journey_type: journey_type?,
            person: Person {
                identity_key,
                driving_licence,
                last_name_trunc: last_name_trunc?,
                phone_trunc: phone_trunc?,
            },
        })
    })()
    .ok_or_else(|| vec![": must be a CEE simulation".to_owned()])
}

pub(super) fn identity_key(c: &mut Checker, root: &Obj<'_>) -> Option<IdentityKey> {
    c.pattern(
        &root.field("identity_key"),
        IDENTITY_KEY_PATTERN,
        IdentityKey::is_valid,
    )
    .and_then(|s| IdentityKey::parse(&s))
}

fn driving_licence(c: &mut Checker, root: &Obj<'_>) -> Option<DrivingLicence> {
    c.format(
        &root.field("driving_license"),
        1,
        64,
        "driving_license",
        DrivingLicence::parse,
    )
}

pub(super) fn last_name_trunc(c: &mut Checker, root: &Obj<'_>) -> Option<LastNameTrunc> {
    c.pattern(
        &root.field("last_name_trunc"),
        LAST_NAME_TRUNC_PATTERN,
        |s| LastNameTrunc::parse(s).is_some(),
    )
    .and_then(|s| LastNameTrunc::parse(&s))
}

pub(super) fn phone_trunc(c: &mut Checker, root: &Obj<'_>) -> Option<PhoneTrunc> {
    c.format(
        &root.field("phone_trunc"),
        8,
        20,
        "phonetrunc",
        PhoneTrunc::parse,
    )
}

#[cfg(test)]
mod tests;
