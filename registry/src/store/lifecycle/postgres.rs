//! [`super::LifecycleStore`] on PostgreSQL: `timestamptz`, `jsonb`, row locks; runners claim
//! with `FOR UPDATE SKIP LOCKED`, so replicas never take the same job.

mod db {
    use crate::store::StoreError;
    use chrono::{DateTime, Utc};
    use serde_json::Value;
    use sqlx::Row as _;

    pub type Db = sqlx::Postgres;
    pub type Row = sqlx::postgres::PgRow;

    pub fn t(at: DateTime<Utc>) -> DateTime<Utc> {
        at
    }

    pub fn get_t(r: &Row, column: &str) -> Result<DateTime<Utc>, StoreError> {
        Ok(r.try_get(column)?)
    }

    pub fn get_opt_t(r: &Row, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(r.try_get(column)?)
    }

    pub fn id(uuid: uuid::Uuid) -> uuid::Uuid {
        uuid
    }

    pub fn get_id(r: &Row, column: &str) -> Result<uuid::Uuid, StoreError> {
        Ok(r.try_get(column)?)
    }

    pub fn j(value: &Value) -> Value {
        value.clone()
    }

    pub fn get_j(r: &Row, column: &str) -> Result<Value, StoreError> {
        Ok(r.try_get(column)?)
    }

    pub fn get_opt_j(r: &Row, column: &str) -> Result<Option<Value>, StoreError> {
        Ok(r.try_get(column)?)
    }

    pub async fn begin(pool: &sqlx::PgPool) -> Result<sqlx::Transaction<'static, Db>, sqlx::Error> {
        pool.begin().await
    }
}

impl_lifecycle_store!(
    crate::store::PgStore,
    db,
    lock = " FOR UPDATE",
    skip_locked = " FOR UPDATE SKIP LOCKED",
    neighbours = super::body::NEIGHBOURS_PG
);

impl_export_store!(crate::store::PgStore, db);
