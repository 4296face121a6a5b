//! Service tests: the real registry on 127.0.0.1:0, driven over HTTP with signed gateway
//! assertions, each scenario on SQLite and on PostgreSQL.
//!
//! PostgreSQL comes from `REGISTRY_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); every test gets its own schema.

mod helpers;
mod journeys;
