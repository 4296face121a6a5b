//! CEE applications in the database: [`CeeStore`], implemented by [`super::PgStore`] and
//! [`super::SqliteStore`] over one SQL text ([`sql`]).
//!
//! A registration reads the person's earlier applications, decides with
//! [`crate::domain::cee::first_conflict`] and inserts in one transaction, serialised per
//! person: PostgreSQL takes advisory locks on each of the person's keys and on the claimed
//! journey, in sorted order; SQLite takes its write lock with `BEGIN IMMEDIATE`. A partial
//! unique index on the claimed journey backs the journey rule. Deleting only marks the row.

mod postgres;
mod sqlite;

use super::{StoreError, check};
use crate::domain::cee::{
    ApplicationKind, ClaimedJourney, DrivingLicence, JourneyType, LastNameTrunc, Person,
    StoredApplication,
};
use crate::domain::{AcquisitionStatus, IdentityKey, JourneyStatus, OperatorClass, PhoneTrunc};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// One application to insert, already signed.
#[derive(Debug, Clone)]
pub struct NewApplication<'a> {
    pub uuid: Uuid,
    pub operator_id: i64,
    pub journey_type: JourneyType,
    /// Short distance: the journey claimed.
    pub journey_id: Option<i64>,
    pub person: &'a Person,
    /// The operation: journey end (short) or cost sharing (long).
    pub datetime: DateTime<Utc>,
    pub application_timestamp: DateTime<Utc>,
    pub token: &'a str,
    pub created_at: DateTime<Utc>,
}

/// What a registration did.
#[derive(Debug, Clone, PartialEq)]
pub enum RegisterOutcome {
    /// Committed.
    Created,
    /// The journey is already claimed by this live application; nothing was written.
    JourneyClaimed(StoredApplication),
    /// The person is within the cool-down of this application; nothing was written.
    Conflict(StoredApplication),
}

/// CEE applications and the journeys they claim.
#[async_trait]
pub trait CeeStore: Send + Sync + 'static {
    /// One of `operator_id`'s journeys, as the short-distance rule sees it.
    async fn claimable_journey(
        &self,
        operator_id: i64,
        operator_journey_id: &str,
    ) -> Result<Option<ClaimedJourney>, StoreError>;

    /// Inserts `application` unless its journey is claimed or its person is within a
    /// cool-down; returns only after COMMIT. Of concurrent registrations of one person, one
    /// wins.
    async fn register(
        &self,
        application: &NewApplication<'_>,
    ) -> Result<RegisterOutcome, StoreError>;

    /// Every stored application of `journey_type` (deleted ones too) that shares a key with
    /// `person`; the caller applies the cool-down.
    async fn applications_of(
        &self,
        journey_type: JourneyType,
        person: &Person,
    ) -> Result<Vec<StoredApplication>, StoreError>;

    /// One of `operator_id`'s live applications.
    async fn find_application(
        &self,
        operator_id: i64,
        uuid: Uuid,
    ) -> Result<Option<StoredApplication>, StoreError>;

    /// Marks one of `operator_id`'s live applications deleted at `at`; `false` when there is
    /// none.
    async fn delete_application(
        &self,
        operator_id: i64,
        uuid: Uuid,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

/// SQL shared by both stores.
mod sql {
    macro_rules! application {
        ($where:literal) => {
            concat!(
                "SELECT a.uuid, a.operator_id, a.kind, a.journey_type, a.journey_id, \
                 a.identity_key, a.driving_license, a.last_name_trunc, a.phone_trunc, \
                 a.datetime, a.token, a.deleted_at, \
                 j.acquisition_status, j.fraud_status, j.anomaly_status \
                 FROM cee_applications a LEFT JOIN journeys j ON j.journey_id = a.journey_id \
                 WHERE ",
                $where
            )
        };
    }

    /// `$1` operator, `$2` operator journey id.
    pub const JOURNEY: &str = "SELECT journey_id, operator_class, distance, start_datetime, \
        start_lat, start_lon, end_datetime, end_lat, end_lon, driver_phone, driver_phone_trunc, \
        acquisition_status, fraud_status, anomaly_status \
        FROM journeys WHERE operator_id = $1 AND operator_journey_id = $2";

    /// `$1` type, `$2` identity key, `$3` licence, `$4` last name, `$5` phone (keys may be
    /// NULL: they then match nothing).
    pub const SAME_PERSON: &str = application!(
        "a.journey_type = $1 AND (a.identity_key = $2 OR a.driving_license = $3 \
         OR (a.last_name_trunc = $4 AND a.phone_trunc = $5))"
    );

    /// `$1` journey id.
    pub const CLAIMING: &str = application!("a.journey_id = $1 AND a.deleted_at IS NULL");

    /// `$1` uuid, `$2` operator.
    pub const FIND: &str =
        application!("a.uuid = $1 AND a.operator_id = $2 AND a.deleted_at IS NULL");

    /// A registration.
    pub const INSERT: &str = "INSERT INTO cee_applications (uuid, operator_id, kind, \
        journey_type, journey_id, identity_key, driving_license, last_name_trunc, phone_trunc, \
        datetime, application_timestamp, token, created_at) \
        VALUES ($1, $2, 'standardized', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

    /// `$1` uuid, `$2` operator, `$3` time.
    pub const DELETE: &str = "UPDATE cee_applications SET deleted_at = $3 \
        WHERE uuid = $1 AND operator_id = $2 AND deleted_at IS NULL";
}

/// The advisory locks serialising registrations of `person` (and of `journey_id`): one per
/// key, from its SHA-256, sorted so that two transactions never wait on each other crosswise.
fn registration_locks(person: &Person, journey_id: Option<i64>) -> Vec<i64> {
    let lock = |what: &str| {
        let digest = Sha256::digest(format!("cee/{what}").as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        i64::from_be_bytes(first)
    };
    let mut locks = vec![lock(&format!(
        "name-phone/{}/{}",
        person.last_name_trunc.as_str(),
        person.phone_trunc.as_str()
    ))];
    if let Some(key) = &person.identity_key {
        locks.push(lock(&format!("identity/{}", key.as_str())));
    }
    if let Some(licence) = &person.driving_licence {
        locks.push(lock(&format!("licence/{}", licence.as_str())));
    }
    if let Some(id) = journey_id {
        locks.push(lock(&format!("journey/{id}")));
    }
    locks.sort_unstable();
    locks.dedup();
    locks
}

/// `BEGIN` and the registration's locks, in one round trip (PostgreSQL).
fn begin_locked(locks: &[i64]) -> String {
    let calls = locks
        .iter()
        .map(|l| format!("pg_advisory_xact_lock({l})"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("BEGIN; SELECT {calls}")
}

/// One application row as read, before conversion.
struct ApplicationColumns {
    uuid: Uuid,
    operator_id: i64,
    kind: String,
    journey_type: String,
    journey_id: Option<i64>,
    identity_key: Option<String>,
    driving_license: Option<String>,
    last_name_trunc: String,
    phone_trunc: String,
    datetime: DateTime<Utc>,
    token: Option<String>,
    deleted: bool,
    /// The claimed journey's (acquisition, fraud, anomaly) statuses.
    statuses: Option<(String, String, String)>,
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("cee application: {what}"))
}

impl ApplicationColumns {
    fn into_application(self) -> Result<StoredApplication, StoreError> {
        let kind = ApplicationKind::parse(&self.kind).ok_or_else(|| corrupt("kind"))?;
        // The table's CHECK holds these; a registered application lacking one is corrupt.
        let registered = kind == ApplicationKind::Standardized;
        if registered
            && (self.identity_key.is_none()
                || self.driving_license.is_none()
                || self.token.is_none())
        {
            return Err(corrupt(
                "registered application without key, licence or token",
            ));
        }
        let person = Person {
            identity_key: self
                .identity_key
                .map(|k| IdentityKey::parse(&k).ok_or_else(|| corrupt("identity_key")))
                .transpose()?,
            driving_licence: self
                .driving_license
                .map(|l| DrivingLicence::parse(&l).ok_or_else(|| corrupt("driving_license")))
                .transpose()?,
            last_name_trunc: LastNameTrunc::parse(&self.last_name_trunc)
                .ok_or_else(|| corrupt("last_name_trunc"))?,
            phone_trunc: PhoneTrunc::parse(&self.phone_trunc)
                .ok_or_else(|| corrupt("phone_trunc"))?,
        };
        let journey = match (self.journey_id, self.statuses) {
            (Some(id), Some((a, f, n))) => Some((id, status(&a, &f, &n)?)),
            (Some(_), None) => return Err(corrupt("claimed journey missing")),
            (None, _) => None,
        };
        Ok(StoredApplication {
            uuid: self.uuid,
            operator_id: self.operator_id,
            kind,
            journey_type: JourneyType::parse(&self.journey_type)
                .ok_or_else(|| corrupt("journey_type"))?,
            person,
            datetime: self.datetime,
            journey,
            token: self.token,
            deleted: self.deleted,
        })
    }
}

fn status(acquisition: &str, fraud: &str, anomaly: &str) -> Result<JourneyStatus, StoreError> {
    Ok(JourneyStatus::compute(
        AcquisitionStatus::parse(acquisition),
        check(fraud)?,
        check(anomaly)?,
    ))
}

/// One journey row as read, before conversion.
struct JourneyColumns {
    journey_id: i64,
    operator_class: String,
    distance: i64,
    start: crate::domain::TimeGeoPoint,
    end: crate::domain::TimeGeoPoint,
    driver_phone: Option<String>,
    driver_phone_trunc: Option<String>,
    statuses: (String, String, String),
}

impl JourneyColumns {
    fn into_journey(self) -> Result<ClaimedJourney, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("journey: {what}"));
        // Stored phones are E.164 already: the truncated form drops the last two digits.
        let driver_phone_trunc = self
            .driver_phone_trunc
            .or_else(|| {
                self.driver_phone
                    .as_deref()
                    .and_then(|p| p.get(..p.len().saturating_sub(2)))
                    .map(str::to_owned)
            })
            .and_then(|p| PhoneTrunc::parse(&p))
            .ok_or_else(|| corrupt("driver phone"))?;
        let (a, f, n) = &self.statuses;
        Ok(ClaimedJourney {
            journey_id: self.journey_id,
            operator_class: OperatorClass::parse(&self.operator_class)
                .ok_or_else(|| corrupt("operator_class"))?,
            distance: self.distance,
            start: self.start,
            end: self.end,
            status: status(a, f, n)?,
            driver_phone_trunc,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(key: Option<&str>, licence: Option<&str>) -> Person {
        Person {
            identity_key: key.and_then(IdentityKey::parse),
            driving_licence: licence.and_then(DrivingLicence::parse),
            last_name_trunc: LastNameTrunc::parse("DUP").unwrap(),
            phone_trunc: PhoneTrunc::parse("+336010203").unwrap(),
        }
    }

    #[test]
    fn registration_locks_cover_every_key_once_in_order() {
        let full = person(Some(&"a".repeat(64)), Some("051227308989"));
        let locks = registration_locks(&full, Some(7));
        assert_eq!(locks.len(), 4);
        assert!(locks.windows(2).all(|w| w[0] < w[1]));
        // A simulation-like person without key nor licence shares the name-phone lock.
        let partial = registration_locks(&person(None, None), None);
        assert_eq!(partial.len(), 1);
        assert!(locks.contains(&partial[0]));
        assert!(begin_locked(&locks).starts_with("BEGIN; SELECT pg_advisory_xact_lock("));
    }
}
