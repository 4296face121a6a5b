//! Service tests: the real registry on 127.0.0.1:0, driven over HTTP with signed gateway
//! assertions, each scenario on SQLite and on PostgreSQL.
//!
//! PostgreSQL comes from `REGISTRY_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); every test gets its own schema.

/// Declares each scenario once per store: `<file>::sqlite::<name>` and
/// `<file>::postgres::<name>`.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name(super::StoreKind::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() { super::$name(super::StoreKind::Postgres).await })*
        }
    };
}

mod cee;
mod cee_import;
mod exports;
mod grouped_inserts;
mod helpers;
mod jobs;
mod journeys;
mod lifecycle;
mod lifecycle_money;
mod smtp_sink;
mod terms;
