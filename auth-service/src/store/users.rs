//! Registry staff accounts and user deactivation.

use super::{Audit, BlacklistRow, INSERT_AUDIT, Store, StoreError, User};
use chrono::Utc;
use rpc_service::on_db;
use uuid::Uuid;

impl Store {
    /// Active registry staff (users of no operator).
    pub async fn list_staff(&self) -> Result<Vec<User>, StoreError> {
        let sql = "SELECT * FROM users WHERE operator_id IS NULL AND disabled_at IS NULL \
                   ORDER BY created_at";
        Ok(on_db!(&self.db, |pool| sqlx::query_as(sql)
            .fetch_all(pool)
            .await)?)
    }

    /// Deactivates an active user (of `operator_id` when given) and blacklists it, in one
    /// transaction with its audit record. False when there is no such active user.
    pub async fn deactivate_user(
        &self,
        id: Uuid,
        operator_id: Option<i64>,
        entry: &BlacklistRow,
        audit: Audit,
    ) -> Result<bool, StoreError> {
        on_db!(&self.db, |pool| {
            let mut tx = pool.begin().await?;
            let done = sqlx::query(
                "UPDATE users SET disabled_at = $1 WHERE id = $2 AND disabled_at IS NULL \
                 AND ($3 IS NULL OR operator_id = $3)",
            )
            .bind(Utc::now())
            .bind(id)
            .bind(operator_id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            insert_blacklist!(tx, entry)?;
            audit_in!(tx, audit)?;
            tx.commit().await?;
            Ok(true)
        })
    }
}
