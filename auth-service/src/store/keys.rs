//! Signing keys: which are published, which signs, and rotation.
//!
//! A key is published (verifies) until its `retired_at`, or indefinitely while it is kept for
//! applications and a live application's token was signed with it. The newest key with no
//! planned retirement signs.
//!
//! Private halves are stored sealed ([`crate::kek`]); this module stores and returns the
//! sealed bytes and never sees a clear key, except the clear rows of a database made before
//! sealing, which [`Store::reseal_key`] replaces at start.

use super::{Audit, INSERT_AUDIT, Store, StoreError};
use crate::kek::Sealed;
use chrono::{DateTime, Utc};
use rpc_service::on_db;
use serde::Serialize;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyRow {
    pub kid: String,
    /// The clear PKCS#8 DER of a row written before keys were sealed (until start seals it).
    pub private_der: Option<Vec<u8>>,
    /// The sealed PKCS#8 DER, and the name of the key-encryption key that sealed it.
    pub sealed_key: Option<Vec<u8>>,
    pub kek: Option<String>,
    pub created_at: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
    /// Published past `retired_at`: a live application's token was signed with it.
    pub kept: bool,
}

/// A stored private half: sealed, or clear in a database made before sealing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredKey {
    Sealed(Sealed),
    Clear(Vec<u8>),
}

impl KeyRow {
    /// Its private half as stored (the table's CHECK makes a row exactly one of the two).
    pub fn stored(&self) -> Option<StoredKey> {
        match (&self.sealed_key, &self.kek, &self.private_der) {
            (Some(bytes), Some(kek), _) => Some(StoredKey::Sealed(Sealed {
                kek: kek.clone(),
                bytes: bytes.clone(),
            })),
            (_, _, Some(der)) => Some(StoredKey::Clear(der.clone())),
            _ => None,
        }
    }
}

/// A key as staff see it (never the private half).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Rotation {
    pub kid: String,
    pub retiring: Vec<KeyInfo>,
}

const PUBLISHED: &str = "SELECT * FROM (SELECT kid, private_der, sealed_key, kek, created_at, retired_at, \
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

const INSERT: &str =
    "INSERT INTO signing_keys (kid, sealed_key, kek, created_at) VALUES ($1, $2, $3, $4)";

/// Every key, retired or not (`kept` is not computed: re-sealing does not need it).
const ALL: &str = "SELECT kid, private_der, sealed_key, kek, created_at, retired_at, \
    FALSE AS kept FROM signing_keys ORDER BY created_at";

const RESEAL: &str =
    "UPDATE signing_keys SET sealed_key = $1, kek = $2, private_der = NULL WHERE kid = $3";

impl Store {
    /// Every key that verifies at `now`, newest first.
    pub async fn published_keys(&self, now: DateTime<Utc>) -> Result<Vec<KeyRow>, StoreError> {
        Ok(on_db!(&self.db, |pool| sqlx::query_as(PUBLISHED)
            .bind(now)
            .fetch_all(pool)
            .await)?)
    }

    pub async fn insert_key(&self, kid: &str, sealed: &Sealed) -> Result<(), StoreError> {
        on_db!(&self.db, |pool| sqlx::query(INSERT)
            .bind(kid)
            .bind(&sealed.bytes)
            .bind(&sealed.kek)
            .bind(Utc::now())
            .execute(pool)
            .await
            .map(drop))?;
        Ok(())
    }

    /// Every stored key, retired or not, oldest first.
    pub async fn all_keys(&self) -> Result<Vec<KeyRow>, StoreError> {
        Ok(on_db!(&self.db, |pool| sqlx::query_as(ALL)
            .fetch_all(pool)
            .await)?)
    }

    /// Replaces key `kid`'s stored private half (sealed under another KEK, or clear) with
    /// `sealed`.
    pub async fn reseal_key(&self, kid: &str, sealed: &Sealed) -> Result<(), StoreError> {
        on_db!(&self.db, |pool| sqlx::query(RESEAL)
            .bind(&sealed.bytes)
            .bind(&sealed.kek)
            .bind(kid)
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
        sealed: &Sealed,
        retire_at: DateTime<Utc>,
        keep_for_applications: bool,
        audit: Audit,
    ) -> Result<Rotation, StoreError> {
        let retiring_sql = format!("{INFO} WHERE retired_at = $1 AND kid <> $2");
        let retiring = on_db!(&self.db, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(INSERT)
                .bind(kid)
                .bind(&sealed.bytes)
                .bind(&sealed.kek)
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
