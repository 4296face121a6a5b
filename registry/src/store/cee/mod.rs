//! CEE applications in the database: [`CeeStore`], implemented by [`super::PgStore`] and
//! [`super::SqliteStore`] over one SQL text ([`sql`]).
//!
//! A registration reads the person's earlier applications, decides with
//! [`crate::domain::cee::first_conflict`] and inserts in one transaction, serialised per
//! person: PostgreSQL takes advisory locks on each of the person's keys and on the claimed
//! journey, in sorted order; SQLite takes its write lock with `BEGIN IMMEDIATE`. A partial
//! unique index on the claimed journey backs the journey rule. Deleting only marks the row.
//!
//! Imports write a whole request in one transaction, item by item, each item's outcome
//! reported: a specific application that is already there (partial unique index on operator,
//! type, name and phone) is skipped (`ON CONFLICT DO NOTHING`), an identity for an
//! application that is not there (or already has one) updates nothing. They take the same
//! per-person locks as registrations (the name and phone an imported operation adds, the key
//! an identity adds), so a concurrent registration either sees their rows or commits first.

mod postgres;
mod sqlite;

use super::{StoreError, check};
use crate::domain::cee::{
    ApplicationKind, ClaimedJourney, DrivingLicence, IdentityImport, JourneyType, LastNameTrunc,
    Person, SpecificOperation, StoredApplication,
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

/// What became of one imported operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportOutcome {
    /// Stored (committed with the rest of its request).
    Imported,
    /// The caller already has this live specific application; nothing was written.
    Conflict,
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

    /// Stores each of `operations` as a specific application of `operator_id` (no cool-down
    /// check: it is history), in one transaction; one outcome per operation, in order. Of two
    /// equal operations, the first is imported and the second is a conflict.
    async fn import_specific(
        &self,
        operator_id: i64,
        operations: &[SpecificOperation],
        created_at: DateTime<Utc>,
    ) -> Result<Vec<ImportOutcome>, StoreError>;

    /// Sets each identity key on the live application of `operator_id` it names, when that
    /// application has none yet, in one transaction; per item, whether one was set.
    async fn import_identities(
        &self,
        operator_id: i64,
        imports: &[IdentityImport],
    ) -> Result<Vec<bool>, StoreError>;
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

    /// An imported operation, skipped when the operator has it already (the partial unique
    /// index `cee_applications_specific_key`): `$1` uuid, `$2` operator, `$3` type, `$4` last
    /// name, `$5` phone, `$6` datetime, `$7` application timestamp (the same), `$8` now.
    pub const IMPORT: &str = "INSERT INTO cee_applications (uuid, operator_id, kind, \
        journey_type, last_name_trunc, phone_trunc, datetime, application_timestamp, created_at) \
        VALUES ($1, $2, 'specific', $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING";

    /// `$1` identity key, `$2` operator, `$3` uuid.
    pub const IDENTIFY_BY_UUID: &str = "UPDATE cee_applications SET identity_key = $1 \
        WHERE uuid = $3 AND operator_id = $2 AND identity_key IS NULL AND deleted_at IS NULL";

    /// `$1` identity key, `$2` operator, `$3` type, `$4` last name, `$5` phone.
    pub const IDENTIFY_SPECIFIC: &str = "UPDATE cee_applications SET identity_key = $1 \
        WHERE operator_id = $2 AND kind = 'specific' AND journey_type = $3 \
        AND last_name_trunc = $4 AND phone_trunc = $5 \
        AND identity_key IS NULL AND deleted_at IS NULL";

    /// `$1` uuid, `$2` operator, `$3` time.
    pub const DELETE: &str = "UPDATE cee_applications SET deleted_at = $3 \
        WHERE uuid = $1 AND operator_id = $2 AND deleted_at IS NULL";
}

/// One advisory lock id per person key: the first 64 bits of its SHA-256.
fn lock(what: &str) -> i64 {
    let digest = Sha256::digest(format!("cee/{what}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

fn name_phone_lock(last_name_trunc: &LastNameTrunc, phone_trunc: &PhoneTrunc) -> i64 {
    lock(&format!(
        "name-phone/{}/{}",
        last_name_trunc.as_str(),
        phone_trunc.as_str()
    ))
}

fn identity_lock(key: &IdentityKey) -> i64 {
    lock(&format!("identity/{}", key.as_str()))
}

/// Sorted and without repeats, so that two transactions never wait on each other crosswise.
fn sorted(mut locks: Vec<i64>) -> Vec<i64> {
    locks.sort_unstable();
    locks.dedup();
    locks
}

/// The advisory locks serialising registrations of `person` (and of `journey_id`): one per
/// key.
fn registration_locks(person: &Person, journey_id: Option<i64>) -> Vec<i64> {
    let mut locks = vec![name_phone_lock(
        &person.last_name_trunc,
        &person.phone_trunc,
    )];
    if let Some(key) = &person.identity_key {
        locks.push(identity_lock(key));
    }
    if let Some(licence) = &person.driving_licence {
        locks.push(lock(&format!("licence/{}", licence.as_str())));
    }
    if let Some(id) = journey_id {
        locks.push(lock(&format!("journey/{id}")));
    }
    sorted(locks)
}

/// The locks of an import: the name and phone of each operation, the keys by which an
/// imported operation can block a registration.
fn import_locks(operations: &[SpecificOperation]) -> Vec<i64> {
    sorted(
        operations
            .iter()
            .map(|o| name_phone_lock(&o.last_name_trunc, &o.phone_trunc))
            .collect(),
    )
}

/// The locks of an identity import: each key given, by which the application will block.
fn identity_import_locks(imports: &[IdentityImport]) -> Vec<i64> {
    sorted(
        imports
            .iter()
            .map(|i| match i {
                IdentityImport::Standardized { identity_key, .. }
                | IdentityImport::Specific { identity_key, .. } => identity_lock(identity_key),
            })
            .collect(),
    )
}

/// `BEGIN` and the registration's locks, in one round trip (PostgreSQL).
fn begin_locked(locks: &[i64]) -> String {
    if locks.is_empty() {
        return "BEGIN".to_owned();
    }
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

    fn operation(name: &str, phone: &str) -> SpecificOperation {
        SpecificOperation {
            journey_type: JourneyType::Long,
            last_name_trunc: LastNameTrunc::parse(name).unwrap(),
            phone_trunc: PhoneTrunc::parse(phone).unwrap(),
            datetime: DateTime::from_timestamp(1_600_000_000, 0).unwrap(),
        }
    }

    #[test]
    fn imports_take_the_locks_registrations_of_the_same_person_take() {
        let alice = person(Some(&"a".repeat(64)), Some("051227308989"));
        let registration = registration_locks(&alice, None);
        // Two operations of one person (short and long) and one of another: two locks.
        let mut short = operation("DUP", "+336010203");
        short.journey_type = JourneyType::Short;
        let locks = import_locks(&[
            operation("DUP", "+336010203"),
            short,
            operation("MAR", "+336999999"),
        ]);
        assert_eq!(locks.len(), 2);
        assert!(locks.windows(2).all(|w| w[0] < w[1]));
        assert!(locks.iter().any(|l| registration.contains(l)));

        let key = IdentityKey::parse(&"a".repeat(64)).unwrap();
        let identities = identity_import_locks(&[
            IdentityImport::Standardized {
                uuid: Uuid::nil(),
                identity_key: key.clone(),
            },
            IdentityImport::Specific {
                identity_key: key,
                operation: operation("MAR", "+336999999"),
            },
        ]);
        assert_eq!(identities.len(), 1);
        assert!(registration.contains(&identities[0]));
    }
}
