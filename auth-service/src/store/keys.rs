//! Signing keys: which are published, which signs, and rotation.
//!
//! A key is published (verifies) until its `retired_at`, or indefinitely while it is kept for
//! applications and a live application's token was signed with it. The newest key with no
//! planned retirement signs.

use super::{Audit, INSERT_AUDIT, Store, StoreError};
use chrono::{DateTime, Utc};
use rpc_service::on_db;
use serde::Serialize;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyRow {
    pub kid: String,
    pub private_der: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
    /// Published past `retired_at`: a live application's token was signed with it.
    pub kept: bool,
}

/// A key as staff see it (never the private half).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct KeyInfo {
    pub kid: String,
    pub created_at: DateTime<Utc>,
    /// When it stops verifying (planned or past); none for the signing key.
    pub retired_at: Option<DateTime<Utc>>,
    pub keep_for_applications: bool,
    /// Live applications whose token this key signed.
    pub live_applications: i64,
}

/// What a rotation changed.
#[derive(Debug, Clone, Serialize)]
pub struct Rotation {
    pub kid: String,
    pub retiring: Vec<KeyInfo>,
}

const PUBLISHED: &str = "SELECT * FROM (SELECT kid, private_der, created_at, retired_at, \
      (keep_for_applications AND EXISTS (SELECT 1 FROM applications a \
         WHERE a.kid = k.kid AND a.revoked_at IS NULL)) AS kept \
    FROM signing_keys k) keys \
    WHERE retired_at IS NULL OR retired_at > $1 OR kept \
    ORDER BY created_at DESC";

const INFO: &str = "SELECT kid, created_at, retired_at, keep_for_applications, \
    (SELECT COUNT(*) FROM applications a WHERE a.kid = k.kid AND a.revoked_at IS NULL) \
      AS live_applications \
    FROM signing_keys k";

/// A rotation's retirements: keys with none planned get one (and the rotation's choice
/// about applications, bound third); keys planned later are brought forward.
const RETIRE: [(&str, bool); 2] = [
    (
        "UPDATE signing_keys SET retired_at = $1, keep_for_applications = $3 \
         WHERE retired_at IS NULL AND kid <> $2",
        true,
    ),
    (
        "UPDATE signing_keys SET retired_at = $1 WHERE retired_at > $1 AND kid <> $2",
        false,
    ),
];

const INSERT: &str = "INSERT INTO signing_keys (kid, private_der, created_at) VALUES ($1, $2, $3)";

impl Store {
    /// Every key that verifies at `now`, newest first.
    pub async fn published_keys(&self, now: DateTime<Utc>) -> Result<Vec<KeyRow>, StoreError> {
        Ok(on_db!(&self.db, |pool| sqlx::query_as(PUBLISHED)
            .bind(now)
            .fetch_all(pool)
            .await)?)
    }

    pub async fn insert_key(&self, kid: &str, der: &[u8]) -> Result<(), StoreError> {
        on_db!(&self.db, |pool| sqlx::query(INSERT)
            .bind(kid)
            .bind(der)
            .bind(Utc::now())
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Every key ever made, newest first.
    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>, StoreError> {
        let sql = format!("{INFO} ORDER BY created_at DESC");
        Ok(on_db!(&self.db, |pool| sqlx::query_as(
            sqlx::AssertSqlSafe(sql.clone())
        )
        .fetch_all(pool)
        .await)?)
    }

    /// Makes `kid` the signing key and plans the retirement of every other unretired key at
    /// `retire_at`, in one transaction with its audit record.
    pub async fn rotate_keys(
        &self,
        kid: &str,
        der: &[u8],
        retire_at: DateTime<Utc>,
        keep_for_applications: bool,
        audit: Audit,
    ) -> Result<Rotation, StoreError> {
        let retiring_sql = format!("{INFO} WHERE retired_at = $1 AND kid <> $2");
        let retiring = on_db!(&self.db, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(INSERT)
                .bind(kid)
                .bind(der)
                .bind(Utc::now())
                .execute(&mut *tx)
                .await?;
            for (sql, binds_keep) in RETIRE {
                let mut update = sqlx::query(sql).bind(retire_at).bind(kid);
                if binds_keep {
                    update = update.bind(keep_for_applications);
                }
                update.execute(&mut *tx).await?;
            }
            if !keep_for_applications {
                sqlx::query("UPDATE signing_keys SET keep_for_applications = $1 WHERE kid <> $2")
                    .bind(false)
                    .bind(kid)
                    .execute(&mut *tx)
                    .await?;
            }
            let retiring: Vec<KeyInfo> = sqlx::query_as(sqlx::AssertSqlSafe(retiring_sql.clone()))
                .bind(retire_at)
                .bind(kid)
                .fetch_all(&mut *tx)
                .await?;
            audit_in!(tx, audit)?;
            tx.commit().await?;
            Ok::<_, StoreError>(retiring)
        })?;
        Ok(Rotation {
            kid: kid.to_owned(),
            retiring,
        })
    }
}
