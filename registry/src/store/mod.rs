//! Persistence: the only code that knows SQL.
//!
//! [`JourneyStore`] is what the HTTP layer sees; [`PgStore`] (production) and [`SqliteStore`]
//! (embedded default) implement it over the schemas in `registry/migrations/`. Pick one with
//! [`for_database`]. The SQL text is shared ([`sql`]); the two differ in how they bind
//! timestamps and JSON and in how a write transaction excludes its competitors.
//!
//! CEE applications are behind [`CeeStore`], implemented by the same two stores (`cee/`), and
//! so is the lifecycle after acquisition (jobs, checks, campaigns, funding calls) behind
//! [`LifecycleStore`] (`lifecycle/`).
//!
//! [`observed`] wraps a [`JourneyStore`] to time and count its calls (database metrics).
//!
//! Writes that apply the terms of use (create, update) count the neighbours of the journey
//! and write it in one transaction, serialised per person, so that two journeys sent at once
//! cannot both slip under a limit.

mod batch;
mod cee;
pub mod lifecycle;
mod observed;
mod postgres;
mod sqlite;

pub use batch::BatchMetrics;
pub use cee::{CeeStore, ImportOutcome, NewApplication, RegisterOutcome};
pub use lifecycle::LifecycleStore;
pub use lifecycle::exports::ExportStore;
pub use observed::{DbMetrics, observed};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::domain::{
    AcquisitionStatus, CheckStatus, IdentityKey, JourneyState, JourneyStatus, NewJourney,
    StoredJourney, TermsLabel, UpdateRefusal,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rpc_service::db::Database;
use serde_json::Value;
use serde_json::value::RawValue;
use std::sync::Arc;
use uuid::Uuid;

/// Why a store call failed. Never shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed the call.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored value this code cannot read back.
    #[error("stored row is unreadable: {0}")]
    Corrupt(String),
    /// The COMMIT of a batch of journeys failed: none of them is stored.
    #[error("batch commit failed: {0}")]
    BatchCommit(String),
    /// The batch writer holding the journey stopped before answering.
    #[error("the batch writer stopped before answering")]
    BatchLost,
    /// The database is out of reach ([`rpc_service::db::is_unavailable`]) for a journey of a
    /// batch (the writer answers every journey it holds with it).
    #[error("database unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// Whether the database was out of reach: the client may send again (503), rather than
    /// a failure of this call (500).
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(e) => rpc_service::db::is_unavailable(e),
            StoreError::Unavailable(_) => true,
            StoreError::Corrupt(_) | StoreError::BatchCommit(_) | StoreError::BatchLost => false,
        }
    }
}

/// One journey to insert.
#[derive(Debug, Clone)]
pub struct JourneyRow<'a> {
    /// Internal id.
    pub uuid: Uuid,
    /// The operator the caller belongs to.
    pub operator_id: i64,
    /// The validated journey.
    pub journey: &'a NewJourney,
    /// The body as received, kept for audits and re-processing: serialised once, by the
    /// caller, and bound as it is (the batch queue copies these bytes, not a JSON tree).
    pub payload: &'a RawValue,
    /// Receipt time, millisecond precision: the `now` of the terms checks.
    pub created_at: DateTime<Utc>,
}

/// What an insert did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Committed; `journey_id` is the new sequential id. The journey is stored with status
    /// `terms_violation_error` when `terms_violation_labels` is not empty.
    Created {
        journey_id: i64,
        terms_violation_labels: Vec<TermsLabel>,
    },
    /// The operator already sent this `operator_journey_id`; nothing was written.
    AlreadyRegistered { created_at: DateTime<Utc> },
}

/// Turns a stored journey into its updated version, or refuses; called inside the update
/// transaction with the row locked.
pub type Revise<'a> =
    &'a (dyn Fn(&StoredJourney) -> Result<(NewJourney, Value), UpdateRefusal> + Send + Sync);

/// What an update did.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateOutcome {
    /// No such journey for this operator.
    NotFound,
    /// The revision was refused; nothing was written.
    Refused(UpdateRefusal),
    /// Committed with status `updated`, processing reset to pending; or with status
    /// `terms_violation_error` when `terms_violation_labels` is not empty.
    Updated {
        terms_violation_labels: Vec<TermsLabel>,
    },
}

/// A cancellation, as sent by the operator.
#[derive(Debug, Clone)]
pub struct Cancellation<'a> {
    pub code: &'a str,
    pub message: Option<&'a str>,
    /// The body as received, kept in the journey's revisions.
    pub body: &'a Value,
    pub at: DateTime<Utc>,
}

/// A listing request (`GET /{v}/journeys`), already validated.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// `None`: every operator (registry roles only).
    pub operator_id: Option<i64>,
    pub status: JourneyStatus,
    /// Journeys starting in `[start, end)`.
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub limit: i64,
    pub offset: i64,
}

/// One line of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedJourney {
    pub operator_id: i64,
    pub operator_journey_id: String,
    pub journey_id: i64,
    pub status: JourneyStatus,
    pub start: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// Journeys, keyed by `(operator_id, operator_journey_id)`.
#[async_trait]
pub trait JourneyStore: Send + Sync + 'static {
    /// Applies the terms of use and inserts `row` in one transaction; returns only after
    /// COMMIT. Concurrent inserts of the same key create exactly one row.
    async fn insert(&self, row: &JourneyRow<'_>) -> Result<InsertOutcome, StoreError>;

    /// The processing state of one of `operator_id`'s journeys.
    async fn find(
        &self,
        operator_id: i64,
        operator_journey_id: &str,
    ) -> Result<Option<JourneyState>, StoreError>;

    /// Journeys matching `query`, newest start first.
    async fn list(&self, query: &ListQuery) -> Result<Vec<ListedJourney>, StoreError>;

    /// Locks one of `operator_id`'s journeys, revises it with `revise`, re-applies the terms
    /// of use at `now` and stores the result, keeping the previous payload as a revision.
    async fn update(
        &self,
        operator_id: i64,
        operator_journey_id: &str,
        now: DateTime<Utc>,
        revise: Revise<'_>,
    ) -> Result<UpdateOutcome, StoreError>;

    /// Cancels one of `operator_id`'s journeys (again, if it already was: the first
    /// cancellation time is kept). `false` when there is no such journey.
    async fn cancel(
        &self,
        operator_id: i64,
        operator_journey_id: &str,
        cancellation: &Cancellation<'_>,
    ) -> Result<bool, StoreError>;
}

/// The store over whichever database `db` is; on PostgreSQL, inserts are grouped as
/// `ingest` says and observed in `batch_metrics`.
pub fn for_database(
    db: &Database,
    ingest: &crate::IngestSettings,
    batch_metrics: BatchMetrics,
) -> Arc<dyn JourneyStore> {
    match db {
        Database::Postgres(pool) => Arc::new(PgStore::batched(
            pool.clone(),
            ingest.batch_max as usize,
            ingest.batch_writers as usize,
            batch_metrics,
        )),
        Database::Sqlite(pool) => Arc::new(SqliteStore::new(pool.clone())),
    }
}

/// The CEE applications over whichever database `db` is.
pub fn cee_for_database(db: &Database) -> Arc<dyn CeeStore> {
    match db {
        Database::Postgres(pool) => Arc::new(PgStore::new(pool.clone())),
        Database::Sqlite(pool) => Arc::new(SqliteStore::new(pool.clone())),
    }
}

/// Jobs, checks, campaigns, incentives and funding calls over whichever database `db` is.
pub fn lifecycle_for_database(db: &Database) -> Arc<dyn LifecycleStore> {
    match db {
        Database::Postgres(pool) => Arc::new(PgStore::new(pool.clone())),
        Database::Sqlite(pool) => Arc::new(SqliteStore::new(pool.clone())),
    }
}

/// The export store over whichever database `db` is.
pub fn exports_for_database(db: &Database) -> Arc<dyn ExportStore> {
    match db {
        Database::Postgres(pool) => Arc::new(PgStore::new(pool.clone())),
        Database::Sqlite(pool) => Arc::new(SqliteStore::new(pool.clone())),
    }
}

/// SQL shared by both stores: `$n` placeholders, which SQLite also reads by number.
mod sql {
    use crate::domain::{AcquisitionStatus, JourneyStatus};
    use sqlx::AssertSqlSafe;
    use std::sync::LazyLock;

    /// `'canceled', 'expired', ...`: acquisition statuses that do not count toward the terms.
    fn not_counting() -> String {
        AcquisitionStatus::not_counting_toward_terms()
            .map(|a| format!("'{}'", a.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A journey's insert, `$15` its payload (JSON text) written as `$payload` says.
    macro_rules! insert {
        ($payload:literal) => {
            concat!(
                "INSERT INTO journeys (uuid, operator_id, operator_journey_id, \
                 operator_trip_id, operator_class, start_datetime, start_lat, start_lon, \
                 end_datetime, end_lat, end_lon, distance, driver_identity_key, \
                 passenger_identity_key, payload, created_at, acquisition_status, \
                 terms_violation_labels, driver_phone, driver_phone_trunc, passenger_phone, \
                 passenger_phone_trunc) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, ",
                $payload,
                ", $16, $17, $18, $19, $20, $21, $22) \
                 ON CONFLICT (operator_id, operator_journey_id) DO NOTHING \
                 RETURNING journey_id"
            )
        };
    }

    /// SQLite: the payload column is TEXT.
    pub const INSERT: &str = insert!("$15");

    /// PostgreSQL: the payload column is `json`, and `$15` is bound as text (a `jsonb`
    /// parameter would be parsed into jsonb and printed back).
    const INSERT_PG: &str = insert!("CAST($15 AS json)");

    pub const EXISTING: &str =
        "SELECT created_at FROM journeys WHERE operator_id = $1 AND operator_journey_id = $2";

    pub const FIND: &str = "SELECT operator_journey_id, journey_id, created_at, \
        acquisition_status, fraud_status, anomaly_status, terms_violation_labels, \
        fraud_error_labels, anomaly_error_details \
        FROM journeys WHERE operator_id = $1 AND operator_journey_id = $2";

    macro_rules! stored {
        () => {
            "SELECT journey_id, payload, start_datetime, acquisition_status \
             FROM journeys WHERE operator_id = $1 AND operator_journey_id = $2"
        };
    }

    /// The row an update starts from.
    pub const STORED: &str = stored!();

    /// The same, locking the row until the end of the transaction (PostgreSQL).
    pub const STORED_FOR_UPDATE: &str = concat!(stored!(), " FOR UPDATE");

    /// How a query picks a person's journeys by identity key: `person(column, key)` is the
    /// condition that `column` holds `key`, written so that the database's person index
    /// serves it.
    type Person = fn(&str, &str) -> String;

    /// PostgreSQL's person indexes hold the key's first 64 bits (`identity_prefix`, migration
    /// 0007): the index finds the prefix, the row's whole key settles it.
    fn person_pg(column: &str, key: &str) -> String {
        format!("identity_prefix({column}) = identity_prefix({key}) AND {column} = {key}")
    }

    /// SQLite's person indexes hold the whole key.
    fn person_sqlite(column: &str, key: &str) -> String {
        format!("{column} = {key}")
    }

    /// Where the neighbour counts find their inputs: placeholders or literals.
    struct Inputs<'a> {
        person: Person,
        operator: &'a str,
        own_id: &'a str,
        trip: &'a str,
        driver: &'a str,
        passenger: &'a str,
        day: (&'a str, &'a str),
        close: (&'a str, &'a str),
        /// `(scan_start, scan_end)` of [`crate::domain::TermsWindows`].
        scan: (&'a str, &'a str),
    }

    /// A query of one row giving [`crate::domain::Neighbours`] as `driver_trips`,
    /// `passenger_trips` and `close_trips`: the driver's and the passenger's other counting
    /// trips that Paris day, and the couple's trips too close.
    ///
    /// Four index scans feed the three counts: each person as driver over the span of the
    /// day and the closeness window (the couple's trips have the other as passenger), each
    /// person as passenger over the day. Each is a plain index scan of one person index,
    /// under a `UNION ALL` rather than one scan with an `OR`, which PostgreSQL would run as
    /// a bitmap OR of two; and sharing the driver scans between the day and the couple saves
    /// two of the six scans separate counts take. A journey found twice (someone carpooling
    /// with themselves) is one trip for `count(DISTINCT ...)` all the same.
    fn neighbour_counts(i: &Inputs<'_>) -> String {
        // `+operator_id`, not `operator_id`: the operator's index must not be a way to the
        // neighbours. With the statistics of an empty table (a registry's first day, before
        // autoanalyze) every index looked as cheap, and PostgreSQL counted each journey's
        // neighbours through every journey its operator sent that day: quadratic in the
        // day's volume. An expression matches no index, so the person indexes are the only
        // ones these scans can use, whatever the statistics (a test holds the plans).
        let counting = format!(
            "+operator_id = {} AND journey_id <> {} AND operator_trip_id <> {} \
             AND acquisition_status NOT IN ({})",
            i.operator,
            i.own_id,
            i.trip,
            not_counting()
        );
        let (day_start, day_end) = i.day;
        let that_day = format!("start_datetime >= {day_start} AND start_datetime < {day_end}");
        let (close_start, close_end) = i.close;
        let (scan_start, scan_end) = i.scan;
        // `who` 0 is the driver, 1 the passenger.
        let scans = |who: u8, person: &str, other: &str| {
            let as_driver = (i.person)("driver_identity_key", person);
            let as_passenger = (i.person)("passenger_identity_key", person);
            format!(
                "SELECT {who} AS who, operator_trip_id AS trip, {that_day} AS in_day, \
                 (passenger_identity_key = {other} AND start_datetime < {close_end} \
                 AND end_datetime > {close_start}) AS too_close \
                 FROM journeys WHERE {counting} AND {as_driver} \
                 AND start_datetime >= {scan_start} AND start_datetime < {scan_end} \
                 UNION ALL \
                 SELECT {who}, operator_trip_id, TRUE, FALSE \
                 FROM journeys WHERE {counting} AND {as_passenger} \
                 AND {that_day}"
            )
        };
        format!(
            "SELECT count(DISTINCT CASE WHEN who = 0 AND in_day THEN trip END) AS driver_trips, \
             count(DISTINCT CASE WHEN who = 1 AND in_day THEN trip END) AS passenger_trips, \
             count(DISTINCT CASE WHEN too_close THEN trip END) AS close_trips \
             FROM ({} UNION ALL {}) AS n",
            scans(0, i.driver, i.passenger),
            scans(1, i.passenger, i.driver),
        )
    }

    /// The neighbour counts of a journey: `$1` operator, `$2` the journey's own id (0 when
    /// new), `$3` its trip, `$4`/`$5` driver/passenger keys, `$6`..`$7` its Paris day,
    /// `$8`..`$9` its closeness window, `$10`..`$11` the span of a person's scan as driver.
    fn neighbours(person: Person) -> String {
        neighbour_counts(&Inputs {
            person,
            operator: "$1",
            own_id: "$2",
            trip: "$3",
            driver: "$4",
            passenger: "$5",
            day: ("$6", "$7"),
            close: ("$8", "$9"),
            scan: ("$10", "$11"),
        })
    }

    /// [`neighbours`] on PostgreSQL.
    pub static NEIGHBOURS_PG: LazyLock<String> = LazyLock::new(|| neighbours(person_pg));

    /// [`neighbours`] on SQLite.
    pub static NEIGHBOURS_SQLITE: LazyLock<String> = LazyLock::new(|| neighbours(person_sqlite));

    /// PostgreSQL: [`INSERT_PG`] and, in the same statement and snapshot, the new journey's
    /// neighbour counts (`$23`..`$24` its Paris day, `$25`..`$26` its closeness window,
    /// `$28`..`$29` the span of a person's scan as driver) and its checks job (due at `$27`).
    /// No row when the journey is a duplicate. The new row is not among its own neighbours:
    /// a statement does not see what it writes.
    pub static INSERT_COUNTING: LazyLock<String> = LazyLock::new(|| {
        let inputs = Inputs {
            person: person_pg,
            operator: "$2",
            own_id: "0",
            trip: "$4",
            driver: "$13",
            passenger: "$14",
            day: ("$23", "$24"),
            close: ("$25", "$26"),
            scan: ("$28", "$29"),
        };
        format!(
            "WITH inserted AS ({INSERT_PG}), checks AS ({ENQUEUE_NEW}) \
             SELECT journey_id, c.driver_trips, c.passenger_trips, c.close_trips \
             FROM inserted CROSS JOIN LATERAL ({}) AS c",
            neighbour_counts(&inputs)
        )
    });

    /// PostgreSQL: [`INSERT_COUNTING`] for several journeys in one statement, each parameter
    /// an array with one element per journey: `$1` uuid, `$2` operator, `$3` operator journey
    /// id, `$4` trip, `$5` class, `$6`..`$11` start and end, `$12` distance, `$13`/`$14`
    /// driver/passenger keys, `$15` payload (JSON text), `$16` receipt time, `$17`..`$20` phones,
    /// `$21`..`$22` the Paris day, `$23`..`$24` the closeness window, `$25` the checks' time,
    /// `$26`..`$27` the span of a person's scan as driver.
    /// One row per journey inserted (none for a duplicate): operator, operator journey id,
    /// new id and the three neighbour counts. The journeys must not depend on each other (no
    /// shared person, no shared key): a statement does not see what it writes.
    pub static INSERT_COUNTING_MANY: LazyLock<String> = LazyLock::new(|| {
        let inputs = Inputs {
            person: person_pg,
            operator: "i.operator_id",
            own_id: "0",
            trip: "i.operator_trip_id",
            driver: "i.driver_identity_key",
            passenger: "i.passenger_identity_key",
            day: ("i.day_start", "i.day_end"),
            close: ("i.close_start", "i.close_end"),
            scan: ("i.scan_start", "i.scan_end"),
        };
        format!(
            "WITH input AS (SELECT * FROM unnest($1::uuid[], $2::int8[], $3::text[], \
             $4::text[], $5::text[], $6::timestamptz[], $7::float8[], $8::float8[], \
             $9::timestamptz[], $10::float8[], $11::float8[], $12::int8[], $13::text[], \
             $14::text[], $15::text[], $16::timestamptz[], $17::text[], $18::text[], \
             $19::text[], $20::text[], $21::timestamptz[], $22::timestamptz[], \
             $23::timestamptz[], $24::timestamptz[], $25::timestamptz[], \
             $26::timestamptz[], $27::timestamptz[]) \
             AS i(uuid, operator_id, operator_journey_id, operator_trip_id, operator_class, \
             start_datetime, start_lat, start_lon, end_datetime, end_lat, end_lon, distance, \
             driver_identity_key, passenger_identity_key, payload, created_at, driver_phone, \
             driver_phone_trunc, passenger_phone, passenger_phone_trunc, day_start, day_end, \
             close_start, close_end, checks_at, scan_start, scan_end)), \
             inserted AS (INSERT INTO journeys (uuid, operator_id, operator_journey_id, \
             operator_trip_id, operator_class, start_datetime, start_lat, start_lon, \
             end_datetime, end_lat, end_lon, distance, driver_identity_key, \
             passenger_identity_key, payload, created_at, acquisition_status, \
             terms_violation_labels, driver_phone, driver_phone_trunc, passenger_phone, \
             passenger_phone_trunc) \
             SELECT uuid, operator_id, operator_journey_id, operator_trip_id, operator_class, \
             start_datetime, start_lat, start_lon, end_datetime, end_lat, end_lon, distance, \
             driver_identity_key, passenger_identity_key, CAST(payload AS json), created_at, '{received}', \
             '[]', driver_phone, driver_phone_trunc, passenger_phone, passenger_phone_trunc \
             FROM input ON CONFLICT (operator_id, operator_journey_id) DO NOTHING \
             RETURNING journey_id, operator_id, operator_journey_id), \
             checks AS (INSERT INTO jobs (kind, subject, run_at, created_at) \
             SELECT 'journey_checks', CAST(n.journey_id AS TEXT), i.checks_at, i.created_at \
             FROM inserted n JOIN input i \
             ON i.operator_id = n.operator_id AND i.operator_journey_id = n.operator_journey_id) \
             SELECT n.operator_id, n.operator_journey_id, n.journey_id, c.driver_trips, \
             c.passenger_trips, c.close_trips \
             FROM inserted n JOIN input i \
             ON i.operator_id = n.operator_id AND i.operator_journey_id = n.operator_journey_id \
             CROSS JOIN LATERAL ({counts}) AS c",
            received = AcquisitionStatus::Received.as_str(),
            counts = neighbour_counts(&inputs),
        )
    });

    /// PostgreSQL, inside [`INSERT_COUNTING`]: the new journey's checks, due at `$27`.
    const ENQUEUE_NEW: &str = "INSERT INTO jobs (kind, subject, run_at, created_at) \
        SELECT 'journey_checks', CAST(journey_id AS TEXT), $27, $16 FROM inserted";

    /// A journey's checks (`$1` its id as text) due at `$2`, `$3` now; an update moves them
    /// and starts them over.
    pub const ENQUEUE_CHECKS: &str = "INSERT INTO jobs (kind, subject, run_at, created_at) \
        VALUES ('journey_checks', $1, $2, $3) ON CONFLICT (kind, subject) DO UPDATE SET \
        run_at = excluded.run_at, attempts = 0, locked_by = NULL, locked_until = NULL, \
        last_error = NULL, done_at = NULL";

    /// An updated journey's final pass goes: its checks schedule it again.
    pub const DROP_FINAL: &str =
        "DELETE FROM jobs WHERE kind = 'journey_final' AND subject = $1 AND done_at IS NULL";

    /// Marks a journey just inserted as breaking the terms: `$1` id, `$2` labels.
    pub const TERMS_VIOLATION: &str = "UPDATE journeys SET \
        acquisition_status = 'terms_violation_error', terms_violation_labels = $2 \
        WHERE journey_id = $1";

    /// Writes a revised journey: `$1` id, `$2`..`$10` its new fields, `$11` payload, `$12`
    /// acquisition status, `$13` labels, `$14` time. Processing starts again.
    pub const UPDATE: &str = "UPDATE journeys SET operator_trip_id = $2, operator_class = $3, \
        start_datetime = $4, start_lat = $5, start_lon = $6, end_datetime = $7, end_lat = $8, \
        end_lon = $9, distance = $10, payload = $11, acquisition_status = $12, \
        terms_violation_labels = $13, fraud_status = 'pending', anomaly_status = 'pending', \
        fraud_error_labels = '[]', anomaly_error_details = '[]', updated_at = $14 \
        WHERE journey_id = $1";

    pub const REVISION: &str = "INSERT INTO journey_revisions (journey_id, kind, revised_at, body) VALUES ($1, $2, $3, $4)";

    /// `$1` operator, `$2` operator journey id, `$3` code, `$4` message, `$5` time.
    pub const CANCEL: &str = "UPDATE journeys SET acquisition_status = 'canceled', \
        cancel_code = $3, cancel_message = $4, canceled_at = COALESCE(canceled_at, $5), \
        updated_at = $5 \
        WHERE operator_id = $1 AND operator_journey_id = $2 RETURNING journey_id";

    /// The listing of `status`, with (`$1`) or without an operator filter; `None` when no
    /// stored journey can have that status. Then `start`, `end`, `limit`, `offset` follow.
    pub fn list(status: JourneyStatus, by_operator: bool) -> Option<AssertSqlSafe<String>> {
        let parts = status.stored_parts();
        if parts.is_empty() {
            return None;
        }
        let values = parts
            .iter()
            .map(|(a, f, n)| format!("('{}', '{}', '{}')", a.as_str(), f.as_str(), n.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let (operator, first) = if by_operator {
            ("operator_id = $1 AND ", 2)
        } else {
            ("", 1)
        };
        // Audited: the only text spliced in is the spelling of our own status enums.
        Some(AssertSqlSafe(format!(
            "SELECT operator_id, operator_journey_id, journey_id, start_datetime, created_at, \
             acquisition_status, fraud_status, anomaly_status FROM journeys \
             WHERE {operator}start_datetime >= ${} AND start_datetime < ${} \
             AND (acquisition_status, fraud_status, anomaly_status) IN (VALUES {values}) \
             ORDER BY start_datetime DESC, journey_id DESC LIMIT ${} OFFSET ${}",
            first,
            first + 1,
            first + 2,
            first + 3,
        )))
    }
}

/// The labels as stored: a JSON array of strings.
fn labels_json(labels: &[TermsLabel]) -> Value {
    Value::from(labels.iter().map(|l| l.as_str()).collect::<Vec<_>>())
}

/// The acquisition status a journey is written with after its terms checks.
fn acquisition_after_terms(labels: &[TermsLabel], clean: AcquisitionStatus) -> AcquisitionStatus {
    if labels.is_empty() {
        clean
    } else {
        AcquisitionStatus::TermsViolationError
    }
}

/// The advisory lock serialising terms checks for one person: the first 64 bits of the
/// identity key (itself a SHA-256 in hex).
fn person_lock(key: &IdentityKey) -> i64 {
    let prefix = key.as_str().get(..16).unwrap_or_default();
    u64::from_str_radix(prefix, 16).unwrap_or_default() as i64
}

/// The locks of a journey's two people, in a fixed order so that two transactions never
/// wait on each other crosswise.
fn person_locks(journey: &NewJourney) -> [i64; 2] {
    let mut locks = [
        person_lock(&journey.driver.identity.identity_key),
        person_lock(&journey.passenger.identity.identity_key),
    ];
    locks.sort_unstable();
    locks
}

/// The stored status columns and JSON arrays, read back into a [`JourneyState`].
struct StateColumns {
    operator_journey_id: String,
    journey_id: i64,
    created_at: DateTime<Utc>,
    acquisition_status: String,
    fraud_status: String,
    anomaly_status: String,
    terms_violation_labels: Value,
    fraud_error_labels: Value,
    anomaly_error_details: Value,
}

impl StateColumns {
    fn into_state(self) -> Result<JourneyState, StoreError> {
        Ok(JourneyState {
            acquisition: AcquisitionStatus::parse(&self.acquisition_status),
            fraud: check(&self.fraud_status)?,
            anomaly: check(&self.anomaly_status)?,
            terms_violation_labels: strings(self.terms_violation_labels)?,
            fraud_error_labels: strings(self.fraud_error_labels)?,
            anomaly_error_details: array(self.anomaly_error_details)?,
            operator_journey_id: self.operator_journey_id,
            journey_id: self.journey_id,
            created_at: self.created_at,
        })
    }
}

/// The columns of one listed journey.
struct ListedColumns {
    operator_id: i64,
    operator_journey_id: String,
    journey_id: i64,
    start: DateTime<Utc>,
    created_at: DateTime<Utc>,
    acquisition_status: String,
    fraud_status: String,
    anomaly_status: String,
}

impl ListedColumns {
    fn into_listed(self) -> Result<ListedJourney, StoreError> {
        Ok(ListedJourney {
            status: JourneyStatus::compute(
                AcquisitionStatus::parse(&self.acquisition_status),
                check(&self.fraud_status)?,
                check(&self.anomaly_status)?,
            ),
            operator_id: self.operator_id,
            operator_journey_id: self.operator_journey_id,
            journey_id: self.journey_id,
            start: self.start,
            created_at: self.created_at,
        })
    }
}

fn check(s: &str) -> Result<CheckStatus, StoreError> {
    CheckStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("check status {s:?}")))
}

fn array(value: Value) -> Result<Vec<Value>, StoreError> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(StoreError::Corrupt(format!(
            "expected a JSON array, got {other}"
        ))),
    }
}

fn strings(value: Value) -> Result<Vec<String>, StoreError> {
    array(value)?
        .into_iter()
        .map(|v| match v {
            Value::String(s) => Ok(s),
            other => Err(StoreError::Corrupt(format!(
                "expected a string, got {other}"
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn person_locks_come_from_the_key_prefix_in_a_fixed_order() {
        let key = |s: &str| IdentityKey::parse(&s.repeat(64)).expect("valid key");
        assert_eq!(person_lock(&key("0")), 0);
        assert_eq!(person_lock(&key("f")), -1);
        assert_eq!(person_lock(&key("1")), 0x1111_1111_1111_1111);
    }

    #[test]
    fn listings_filter_on_the_stored_parts_of_a_status() {
        let sql = sql::list(JourneyStatus::Ok, true)
            .expect("ok is listable")
            .0;
        assert!(sql.contains("operator_id = $1 AND start_datetime >= $2"));
        assert!(sql.contains("IN (VALUES ('processed', 'passed', 'passed'))"));
        assert!(sql.ends_with("LIMIT $4 OFFSET $5"));
        let any = sql::list(JourneyStatus::Canceled, false)
            .expect("listable")
            .0;
        assert!(any.contains("WHERE start_datetime >= $1"));
        assert!(sql::list(JourneyStatus::ValidationError, true).is_none());
    }
}
