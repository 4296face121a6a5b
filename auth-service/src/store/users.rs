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
        revoke_and_blacklist!(
            &self.db,
            "UPDATE users SET disabled_at = $1 WHERE id = $2 AND disabled_at IS NULL \
             AND ($3 IS NULL OR operator_id = $3)",
            [id, operator_id],
            entry,
            audit
        )
    }
}
