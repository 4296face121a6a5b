//! The only code that knows auth-service's SQL. Every query is written once, in the subset
//! PostgreSQL and SQLite share, and run on either pool through [`rpc_service::on_db`].
//! Every admin change is written in the same transaction as its audit record.
//!
//! One `impl Store` block per concern: operators, users, applications, keys and the blacklist
//! here; API credentials and their token families in `credentials.rs`.

use chrono::{DateTime, Utc};
use rpc_service::db::{Database, is_unique_violation};
use rpc_service::on_db;
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("already exists")]
    Conflict,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl StoreError {
    /// Whether the database was out of reach ([`rpc_service::db::is_unavailable`]): the
    /// client may send again (503), rather than a failure of this call (500).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Db(e) if rpc_service::db::is_unavailable(e))
    }
}

/// What lifting a blacklist entry did.
#[derive(Debug)]
pub enum Lift {
    Lifted(BlacklistRow),
    /// No such active entry.
    Absent,
    /// The entry records a revocation (its target is revoked or deactivated): kept.
    Revocation,
}

fn conflict_or(e: sqlx::Error) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Conflict
    } else {
        StoreError::Db(e)
    }
}

/// Who did what, written with the change it describes.
#[derive(Debug, Clone)]
pub struct Audit {
    pub actor: String,
    pub role: Option<String>,
    pub action: &'static str,
    pub target: String,
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Operator {
    pub id: i64,
    pub name: String,
    pub siret: String,
    pub created_at: DateTime<Utc>,
    /// Refresh tokens of its API credentials are single-use, with reuse detection.
    pub refresh_rotation: bool,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
    pub role: String,
    pub operator_id: Option<i64>,
    pub first_name: String,
    pub last_name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Application {
    pub uuid: Uuid,
    pub name: String,
    pub operator_id: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct BlacklistRow {
    pub id: Uuid,
    pub kind: String,
    pub value: String,
    #[serde(skip)]
    pub target_kind: String,
    #[serde(skip)]
    pub target_value: String,
    pub reason: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AuditRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub role: Option<String>,
    pub action: String,
    pub target: String,
    /// The action's details, as JSON text.
    pub detail: String,
}

const INSERT_AUDIT: &str =
    "INSERT INTO audit (at, actor, role, action, target, detail) VALUES ($1, $2, $3, $4, $5, $6)";

macro_rules! audit_in {
    ($tx:expr, $audit:expr) => {
        sqlx::query(INSERT_AUDIT)
            .bind(Utc::now())
            .bind(&$audit.actor)
            .bind(&$audit.role)
            .bind($audit.action)
            .bind(&$audit.target)
            .bind($audit.detail.to_string())
            .execute(&mut *$tx)
            .await
    };
}

macro_rules! insert_blacklist {
    ($tx:expr, $row:expr) => {
        sqlx::query(
            "INSERT INTO blacklist (id, kind, value, target_kind, target_value, reason, \
             created_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind($row.id)
        .bind(&$row.kind)
        .bind(&$row.value)
        .bind(&$row.target_kind)
        .bind(&$row.target_value)
        .bind(&$row.reason)
        .bind(&$row.created_by)
        .bind($row.created_at)
        .bind($row.expires_at)
        .execute(&mut *$tx)
        .await
    };
}

/// Marks one live row revoked (`$sql` takes the time as `$1`, then `$binds`) and, when it
/// was live, blacklists it with its audit record, in one transaction: a revocation must never
/// outlive a crash half done. `Ok(false)` when there was no such live row.
macro_rules! revoke_and_blacklist {
    ($db:expr, $sql:expr, [$($bind:expr),*], $entry:expr, $audit:expr) => {
        on_db!($db, |pool| {
            let mut tx = pool.begin().await?;
            let done = sqlx::query($sql)
                .bind(Utc::now())
                $(.bind($bind))*
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            insert_blacklist!(tx, $entry)?;
            audit_in!(tx, $audit)?;
            tx.commit().await?;
            Ok(true)
        })
    };
}

// Submodules come after the macros above, which they use.
mod credentials;
mod keys;
mod signals;
mod usage;
mod users;
pub use credentials::{Credential, CredentialSecret, Issued, Minted, NewRefresh, RefreshRow};
pub use keys::{KeyInfo, KeyRow, Rotation, StoredKey};
pub use signals::{Inputs, Named, Raised, SignalFilter, SignalRow};
pub use usage::{LastUsed, NetworkSeen, Retention, Upkeep, UsageBucket};

/// auth-service's data.
#[derive(Debug, Clone)]
pub struct Store {
    db: Database,
}

impl Store {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    // ---- operators ----

    pub async fn create_operator(
        &self,
        name: &str,
        siret: &str,
        audit: Audit,
    ) -> Result<Operator, StoreError> {
        on_db!(&self.db, |pool| {
            let mut tx = pool.begin().await?;
            let op: Operator = sqlx::query_as(
                "INSERT INTO operators (name, siret, created_at) VALUES ($1, $2, $3) \
                 RETURNING id, name, siret, created_at, refresh_rotation",
            )
            .bind(name)
            .bind(siret)
            .bind(Utc::now())
            .fetch_one(&mut *tx)
            .await
            .map_err(conflict_or)?;
            let audit = Audit {
                target: format!("operator:{}", op.id),
                ..audit
            };
            audit_in!(tx, audit)?;
            tx.commit().await?;
            Ok(op)
        })
    }

    pub async fn list_operators(&self) -> Result<Vec<Operator>, StoreError> {
        let sql = "SELECT id, name, siret, created_at, refresh_rotation FROM operators ORDER BY id";
        Ok(on_db!(&self.db, |pool| sqlx::query_as(sql)
            .fetch_all(pool)
            .await)?)
    }

    /// Sets the operator's options; `None` when there is no such operator.
    pub async fn update_operator(
        &self,
        id: i64,
        refresh_rotation: bool,
        audit: Audit,
    ) -> Result<Option<Operator>, StoreError> {
        on_db!(&self.db, |pool| {
            let mut tx = pool.begin().await?;
            let op: Option<Operator> = sqlx::query_as(
                "UPDATE operators SET refresh_rotation = $1 WHERE id = $2 \
                 RETURNING id, name, siret, created_at, refresh_rotation",
            )
            .bind(refresh_rotation)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            if op.is_some() {
                audit_in!(tx, audit)?;
                tx.commit().await?;
            }
            Ok(op)
        })
    }

    /// The SIRET of operator `id`, if it exists.
    pub async fn operator_siret(&self, id: i64) -> Result<Option<String>, StoreError> {
        let sql = "SELECT siret FROM operators WHERE id = $1";
        let row: Option<(String,)> = on_db!(&self.db, |pool| sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(pool)
            .await)?;
        Ok(row.map(|(siret,)| siret))
    }

    pub async fn operator_exists(&self, id: i64) -> Result<bool, StoreError> {
        let sql = "SELECT id FROM operators WHERE id = $1";
        let row: Option<(i64,)> = on_db!(&self.db, |pool| sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(pool)
            .await)?;
        Ok(row.is_some())
    }

    // ---- users ----

    pub async fn create_user(&self, user: &User, audit: Audit) -> Result<(), StoreError> {
        on_db!(&self.db, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO users (id, email, password_hash, role, operator_id, first_name, \
                 last_name, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(user.id)
            .bind(&user.email)
            .bind(&user.password_hash)
            .bind(&user.role)
            .bind(user.operator_id)
            .bind(&user.first_name)
            .bind(&user.last_name)
            .bind(user.created_at)
            .execute(&mut *tx)
            .await
            .map_err(conflict_or)?;
            audit_in!(tx, audit)?;
            tx.commit().await?;
            Ok(())
        })
    }

    pub async fn list_users(&self, operator_id: i64) -> Result<Vec<User>, StoreError> {
        let sql = "SELECT * FROM users WHERE operator_id = $1 AND disabled_at IS NULL \
                   ORDER BY created_at";
        Ok(on_db!(&self.db, |pool| sqlx::query_as(sql)
            .bind(operator_id)
            .fetch_all(pool)
            .await)?)
    }

    pub async fn find_user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let sql = "SELECT * FROM users WHERE email = $1 AND disabled_at IS NULL";
        Ok(on_db!(&self.db, |pool| sqlx::query_as(sql)
            .bind(email)
            .fetch_optional(pool)
            .await)?)
    }

    pub async fn find_user_by_id(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        let sql = "SELECT * FROM users WHERE id = $1";
        Ok(on_db!(&self.db, |pool| sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(pool)
            .await)?)
    }

    pub async fn count_users_with_role(&self, role: &str) -> Result<i64, StoreError> {
        let sql = "SELECT COUNT(*) FROM users WHERE role = $1";
        let (n,): (i64,) = on_db!(&self.db, |pool| sqlx::query_as(sql)
            .bind(role)
            .fetch_one(pool)
            .await)?;
        Ok(n)
    }

    // ---- applications ----

    pub async fn create_application(
        &self,
        app: &Application,
        created_by: Uuid,
        kid: &str,
        audit: Audit,
    ) -> Result<(), StoreError> {
        on_db!(&self.db, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO applications (uuid, name, operator_id, created_by, created_at, kid) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(app.uuid)
            .bind(&app.name)
            .bind(app.operator_id)
            .bind(created_by)
            .bind(app.created_at)
            .bind(kid)
            .execute(&mut *tx)
            .await?;
            audit_in!(tx, audit)?;
            tx.commit().await?;
            Ok(())
        })
    }

    pub async fn list_applications(
        &self,
        operator_id: i64,
    ) -> Result<Vec<Application>, StoreError> {
        let sql = "SELECT uuid, name, operator_id, created_at FROM applications \
                   WHERE operator_id = $1 AND revoked_at IS NULL ORDER BY created_at";
        Ok(on_db!(&self.db, |pool| sqlx::query_as(sql)
            .bind(operator_id)
            .fetch_all(pool)
            .await)?)
    }

    /// Marks the operator's live application revoked and blacklists it, in one transaction
    /// (a revoked token must never outlive a crash). False when there is no such application.
    pub async fn revoke_application(
        &self,
        uuid: Uuid,
        operator_id: i64,
        entry: &BlacklistRow,
        audit: Audit,
    ) -> Result<bool, StoreError> {
        revoke_and_blacklist!(
            &self.db,
            "UPDATE applications SET revoked_at = $1 \
             WHERE uuid = $2 AND operator_id = $3 AND revoked_at IS NULL",
            [uuid, operator_id],
            entry,
            audit
        )
    }

    // ---- blacklist ----

    pub async fn add_blacklist(&self, row: &BlacklistRow, audit: Audit) -> Result<(), StoreError> {
        on_db!(&self.db, |pool| {
            let mut tx = pool.begin().await?;
            insert_blacklist!(tx, row)?;
            audit_in!(tx, audit)?;
            tx.commit().await?;
            Ok(())
        })
    }

    pub async fn active_blacklist(&self) -> Result<Vec<BlacklistRow>, StoreError> {
        let sql = "SELECT id, kind, value, target_kind, target_value, reason, created_by, \
                   created_at, expires_at FROM blacklist WHERE lifted_at IS NULL \
                   ORDER BY created_at DESC";
        Ok(on_db!(&self.db, |pool| sqlx::query_as(sql)
            .fetch_all(pool)
            .await)?)
    }

    /// The expiries of every active entry naming `target_kind:target_value`.
    pub async fn active_expiries(
        &self,
        target_kind: &str,
        target_value: &str,
    ) -> Result<Vec<Option<DateTime<Utc>>>, StoreError> {
        let sql = "SELECT expires_at FROM blacklist WHERE target_kind = $1 AND target_value = $2 \
                   AND lifted_at IS NULL";
        let rows: Vec<(Option<DateTime<Utc>>,)> = on_db!(&self.db, |pool| sqlx::query_as(sql)
            .bind(target_kind)
            .bind(target_value)
            .fetch_all(pool)
            .await)?;
        Ok(rows.into_iter().map(|(at,)| at).collect())
    }

    /// Lifts an active entry. An entry whose target is itself revoked (an application or
    /// API credential revoked by its operator, a deactivated user) is a revocation's record:
    /// lifting it would bring back what was revoked, and its operator could no longer revoke
    /// it (it is gone from its lists), so it stays, and the answer says so.
    pub async fn lift_blacklist(
        &self,
        id: Uuid,
        by: &str,
        audit: Audit,
    ) -> Result<Lift, StoreError> {
        on_db!(&self.db, |pool| {
            let mut tx = pool.begin().await?;
            let target: Option<(String, String)> = sqlx::query_as(
                "SELECT target_kind, target_value FROM blacklist WHERE id = $1 AND lifted_at IS NULL",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((kind, value)) = target else {
                return Ok(Lift::Absent);
            };
            let revoked_sql = match kind.as_str() {
                "application" => Some(
                    "SELECT count(*) FROM applications WHERE uuid = $1 AND revoked_at IS NOT NULL",
                ),
                "credential" => Some(
                    "SELECT count(*) FROM credentials WHERE access_key = $1 AND revoked_at IS NOT NULL",
                ),
                "user" => {
                    Some("SELECT count(*) FROM users WHERE id = $1 AND disabled_at IS NOT NULL")
                }
                _ => None,
            };
            if let (Some(sql), Ok(target)) = (revoked_sql, Uuid::parse_str(&value)) {
                let revoked: i64 = sqlx::query_scalar(sql)
                    .bind(target)
                    .fetch_one(&mut *tx)
                    .await?;
                if revoked > 0 {
                    return Ok(Lift::Revocation);
                }
            }
            let row: Option<BlacklistRow> = sqlx::query_as(
                "UPDATE blacklist SET lifted_at = $1, lifted_by = $2 \
                 WHERE id = $3 AND lifted_at IS NULL \
                 RETURNING id, kind, value, target_kind, target_value, reason, created_by, \
                 created_at, expires_at",
            )
            .bind(Utc::now())
            .bind(by)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            match row {
                Some(row) => {
                    audit_in!(tx, audit)?;
                    tx.commit().await?;
                    Ok(Lift::Lifted(row))
                }
                None => Ok(Lift::Absent),
            }
        })
    }

    // ---- audit ----

    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditRow>, StoreError> {
        let sql = "SELECT id, at, actor, role, action, target, detail FROM audit \
                   ORDER BY id DESC LIMIT $1";
        Ok(on_db!(&self.db, |pool| sqlx::query_as(sql)
            .bind(limit)
            .fetch_all(pool)
            .await)?)
    }
}
