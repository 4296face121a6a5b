//! [`super::LifecycleStore`] on SQLite: INTEGER unix milliseconds, JSON as TEXT, and
//! `BEGIN IMMEDIATE` in place of row locks (one process, one writer at a time).

mod db {
    use crate::store::StoreError;
    use crate::store::sqlite::from_millis;
    use chrono::{DateTime, Utc};
    use serde_json::Value;
    use sqlx::Row as _;

    pub type Db = sqlx::Sqlite;
    pub type Row = sqlx::sqlite::SqliteRow;

    pub fn t(at: DateTime<Utc>) -> i64 {
        at.timestamp_millis()
    }

    pub fn get_t(r: &Row, column: &str) -> Result<DateTime<Utc>, StoreError> {
        from_millis(r.try_get(column)?)
    }

    pub fn get_opt_t(r: &Row, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        r.try_get::<Option<i64>, _>(column)?
            .map(from_millis)
            .transpose()
    }

    pub fn id(uuid: uuid::Uuid) -> String {
        uuid.to_string()
    }

    pub fn get_id(r: &Row, column: &str) -> Result<uuid::Uuid, StoreError> {
        let text: String = r.try_get(column)?;
        uuid::Uuid::parse_str(&text).map_err(|_| StoreError::Corrupt(format!("{column} {text:?}")))
    }

    pub fn j(value: &Value) -> String {
        value.to_string()
    }

    fn parse(column: &str, text: &str) -> Result<Value, StoreError> {
        serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
    }

    pub fn get_j(r: &Row, column: &str) -> Result<Value, StoreError> {
        parse(column, &r.try_get::<String, _>(column)?)
    }

    pub fn get_opt_j(r: &Row, column: &str) -> Result<Option<Value>, StoreError> {
        r.try_get::<Option<String>, _>(column)?
            .map(|text| parse(column, &text))
            .transpose()
    }

    pub async fn begin(
        pool: &sqlx::SqlitePool,
    ) -> Result<sqlx::Transaction<'static, Db>, sqlx::Error> {
        pool.begin_with("BEGIN IMMEDIATE").await
    }
}

impl_lifecycle_store!(
    crate::store::SqliteStore,
    db,
    lock = "",
    skip_locked = "",
    neighbours = super::body::NEIGHBOURS_SQLITE
);

impl_export_store!(crate::store::SqliteStore, db);
