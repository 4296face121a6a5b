//! API credentials (CONTRACT §3.2) and their refresh-token families: the SQL of both.
//!
//! A credential is an access key (its id) and the argon2 hash of its secret. Each trade of an
//! API key for tokens starts a family, which records every refresh token (as its SHA-256
//! only) and the `jti` and expiry of every access token minted in it, so a family can be
//! revoked whole. Every write to a family first updates the family row: on PostgreSQL that
//! row lock, on SQLite the database write lock, orders an issue and a revocation of the same
//! family, so no access token is minted into a family after its revocation listed them.

use super::{Audit, BlacklistRow, INSERT_AUDIT, Store, StoreError};
use chrono::{DateTime, Utc};
use rpc_service::on_db;
use serde::Serialize;
use uuid::Uuid;

/// A credential as listed: never its secret.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Credential {
    #[serde(rename = "token_id")]
    pub access_key: Uuid,
    pub operator_id: i64,
    pub role: String,
    pub created_at: DateTime<Utc>,
}

/// A live credential with its secret's hash, to verify a presented secret against.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CredentialSecret {
    pub access_key: Uuid,
    pub operator_id: i64,
    pub role: String,
    pub secret_hash: String,
}

/// An access token minted in a family: what revoking the family must blacklist.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Minted {
    pub jti: String,
    pub expires_at: DateTime<Utc>,
}

/// A refresh token to store: the hex SHA-256 of the token, never the token.
#[derive(Debug, Clone)]
pub struct NewRefresh {
    pub hash: String,
    pub expires_at: DateTime<Utc>,
}

/// What the store knows of a presented refresh token.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefreshRow {
    pub family_id: Uuid,
    pub access_key: Uuid,
    pub operator_id: i64,
    pub role: String,
    pub expires_at: DateTime<Utc>,
    pub spent_at: Option<DateTime<Utc>>,
    pub family_revoked_at: Option<DateTime<Utc>>,
    pub credential_revoked_at: Option<DateTime<Utc>>,
    pub refresh_rotation: bool,
}

/// How an issue in a family went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issued {
    Done,
    /// The family was revoked meanwhile; nothing was written.
    FamilyRevoked,
    /// The refresh token to spend was spent meanwhile (a concurrent use): nothing was written.
    AlreadySpent,
}

macro_rules! insert_refresh {
    ($tx:expr, $family:expr, $refresh:expr, $now:expr) => {
        sqlx::query(
            "INSERT INTO refresh_tokens (hash, family_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&$refresh.hash)
        .bind($family)
        .bind($now)
        .bind($refresh.expires_at)
        .execute(&mut *$tx)
        .await
    };
}

macro_rules! insert_access {
    ($tx:expr, $family:expr, $access:expr) => {
        sqlx::query(
            "INSERT INTO family_access_tokens (jti, family_id, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(&$access.jti)
        .bind($family)
        .bind($access.expires_at)
        .execute(&mut *$tx)
        .await
    };
}

const LIVE_ENTRIES: &str = "SELECT expires_at FROM blacklist WHERE lifted_at IS NULL \
     AND ((target_kind = 'credential' AND target_value = $1) \
     OR (target_kind = 'operator' AND target_value = $2))";

impl Store {
    pub async fn create_credential(
        &self,
        credential: &Credential,
        secret_hash: &str,
        created_by: &str,
        audit: Audit,
    ) -> Result<(), StoreError> {
        on_db!(&self.db, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO credentials (access_key, secret_hash, operator_id, role, \
                 created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(credential.access_key)
            .bind(secret_hash)
            .bind(credential.operator_id)
            .bind(&credential.role)
            .bind(created_by)
            .bind(credential.created_at)
            .execute(&mut *tx)
            .await?;
            audit_in!(tx, audit)?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Live credentials, of one operator or of all.
    pub async fn list_credentials(
        &self,
        operator_id: Option<i64>,
    ) -> Result<Vec<Credential>, StoreError> {
        let all = "SELECT access_key, operator_id, role, created_at FROM credentials \
                   WHERE revoked_at IS NULL ORDER BY created_at";
        let one = "SELECT access_key, operator_id, role, created_at FROM credentials \
                   WHERE revoked_at IS NULL AND operator_id = $1 ORDER BY created_at";
        Ok(on_db!(&self.db, |pool| match operator_id {
            Some(id) => sqlx::query_as(one).bind(id).fetch_all(pool).await,
            None => sqlx::query_as(all).fetch_all(pool).await,
        })?)
    }

    /// The live credential of `access_key`, with its secret's hash.
    pub async fn live_credential(
        &self,
        access_key: Uuid,
    ) -> Result<Option<CredentialSecret>, StoreError> {
        let sql = "SELECT access_key, operator_id, role, secret_hash FROM credentials \
                   WHERE access_key = $1 AND revoked_at IS NULL";
        Ok(on_db!(&self.db, |pool| sqlx::query_as(sql)
            .bind(access_key)
            .fetch_optional(pool)
            .await)?)
    }

    /// Whether security staff blacklisted the credential or its operator (an entry in force
    /// at `now`). Revoking by its operator is seen in `revoked_at`.
    pub async fn credential_blacklisted(
        &self,
        access_key: Uuid,
        operator_id: i64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let rows: Vec<(Option<DateTime<Utc>>,)> =
            on_db!(&self.db, |pool| sqlx::query_as(LIVE_ENTRIES)
                .bind(access_key.to_string())
                .bind(operator_id.to_string())
                .fetch_all(pool)
                .await)?;
        Ok(rows
            .iter()
            .any(|(expires,)| expires.is_none_or(|t| t > now)))
    }

    /// Marks the operator's live credential revoked and blacklists it, in one transaction.
    /// False when there is no such live credential of that operator.
    pub async fn revoke_credential(
        &self,
        access_key: Uuid,
        operator_id: i64,
        entry: &BlacklistRow,
        audit: Audit,
    ) -> Result<bool, StoreError> {
        revoke_and_blacklist!(
            &self.db,
            "UPDATE credentials SET revoked_at = $1 \
             WHERE access_key = $2 AND operator_id = $3 AND revoked_at IS NULL",
            [access_key, operator_id],
            entry,
            audit
        )
    }

    /// Starts a family of `access_key` with its first refresh and access tokens.
    pub async fn start_family(
        &self,
        family_id: Uuid,
        access_key: Uuid,
        refresh: &NewRefresh,
        access: &Minted,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        on_db!(&self.db, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO token_families (id, access_key, created_at, last_used_at) \
                 VALUES ($1, $2, $3, $3)",
            )
            .bind(family_id)
            .bind(access_key)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            insert_refresh!(tx, family_id, refresh, now)?;
            insert_access!(tx, family_id, access)?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// The refresh token whose hex SHA-256 is `hash`, with its family's and credential's state.
    pub async fn refresh_token(&self, hash: &str) -> Result<Option<RefreshRow>, StoreError> {
        let sql = "SELECT r.family_id, f.access_key, c.operator_id, c.role, r.expires_at, \
                   r.spent_at, f.revoked_at AS family_revoked_at, \
                   c.revoked_at AS credential_revoked_at, o.refresh_rotation \
                   FROM refresh_tokens r \
                   JOIN token_families f ON f.id = r.family_id \
                   JOIN credentials c ON c.access_key = f.access_key \
                   JOIN operators o ON o.id = c.operator_id \
                   WHERE r.hash = $1";
        Ok(on_db!(&self.db, |pool| sqlx::query_as(sql)
            .bind(hash)
            .fetch_optional(pool)
            .await)?)
    }

    /// Records `access` in a live family; with `spend`, first spends that refresh token, and
    /// with `next`, stores the family's next refresh token. All or nothing.
    pub async fn issue_in_family(
        &self,
        family_id: Uuid,
        spend: Option<&str>,
        next: Option<&NewRefresh>,
        access: &Minted,
    ) -> Result<Issued, StoreError> {
        let now = Utc::now();
        on_db!(&self.db, |pool| {
            let mut tx = pool.begin().await?;
            let live = sqlx::query(
                "UPDATE token_families SET last_used_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(family_id)
            .execute(&mut *tx)
            .await?;
            if live.rows_affected() == 0 {
                return Ok(Issued::FamilyRevoked);
            }
            if let Some(hash) = spend {
                let spent = sqlx::query(
                    "UPDATE refresh_tokens SET spent_at = $1 \
                     WHERE hash = $2 AND family_id = $3 AND spent_at IS NULL",
                )
                .bind(now)
                .bind(hash)
                .bind(family_id)
                .execute(&mut *tx)
                .await?;
                if spent.rows_affected() == 0 {
                    return Ok(Issued::AlreadySpent);
                }
            }
            if let Some(next) = next {
                insert_refresh!(tx, family_id, next, now)?;
            }
            insert_access!(tx, family_id, access)?;
            tx.commit().await?;
            Ok(Issued::Done)
        })
    }

    /// Revokes a family: marks it revoked (its refresh tokens die with it) and blacklists, by
    /// `jti` until it would expire, every access token minted in it still alive at `now`.
    /// Returns what was blacklisted, for the feed; empty when the family was already revoked.
    pub async fn revoke_family(
        &self,
        family_id: Uuid,
        now: DateTime<Utc>,
        reason: &str,
        audit: Audit,
    ) -> Result<Vec<Minted>, StoreError> {
        on_db!(&self.db, |pool| {
            let mut tx = pool.begin().await?;
            let done = sqlx::query(
                "UPDATE token_families SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(family_id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Ok(Vec::new());
            }
            let minted: Vec<Minted> = sqlx::query_as(
                "SELECT jti, expires_at FROM family_access_tokens WHERE family_id = $1",
            )
            .bind(family_id)
            .fetch_all(&mut *tx)
            .await?;
            let alive: Vec<Minted> = minted.into_iter().filter(|m| m.expires_at > now).collect();
            for token in &alive {
                let row = BlacklistRow {
                    id: Uuid::new_v4(),
                    kind: "jti".into(),
                    value: token.jti.clone(),
                    target_kind: "jti".into(),
                    target_value: token.jti.clone(),
                    reason: reason.to_owned(),
                    created_by: audit.actor.clone(),
                    created_at: now,
                    expires_at: Some(token.expires_at),
                };
                insert_blacklist!(tx, row)?;
            }
            audit_in!(tx, audit)?;
            tx.commit().await?;
            Ok(alive)
        })
    }
}
