//! Database pools. PostgreSQL is production (each service in its own schema, so several
//! services and parallel tests share one database); SQLite under `./data/` is the embedded
//! default. Migrations are the service's own and run at start.

use anyhow::Context;
use layered_settings::Secret;
use serde::Deserialize;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Executor, PgPool, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

/// Where a service keeps its data.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://user@host:port/db` or `sqlite://path/to/file.db`.
    pub url: Secret<String>,
    /// PostgreSQL schema holding this service's tables (created if missing and the role may;
    /// in production, made beforehand and owned by the service's role).
    #[serde(default)]
    pub schema: Option<String>,
    /// Pool size.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

fn default_max_connections() -> u32 {
    10
}

impl DatabaseSettings {
    pub fn new(url: impl Into<String>, schema: Option<&str>) -> Self {
        Self {
            url: Secret::new(url.into()),
            schema: schema.map(str::to_owned),
            max_connections: default_max_connections(),
        }
    }
}

/// An open pool of one of the two supported databases.
#[derive(Debug, Clone)]
pub enum Database {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Database {
    /// Opens the pool and applies `postgres` or `sqlite` migrations, whichever matches the URL.
    pub async fn connect(
        settings: &DatabaseSettings,
        postgres: &Migrator,
        sqlite: &Migrator,
    ) -> anyhow::Result<Self> {
        let url = settings.url.expose();
        if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = connect_postgres(settings).await?;
            postgres
                .run(&pool)
                .await
                .context("PostgreSQL migrations failed")?;
            Ok(Database::Postgres(pool))
        } else if url.starts_with("sqlite:") {
            let pool = connect_sqlite(settings).await?;
            sqlite
                .run(&pool)
                .await
                .context("SQLite migrations failed")?;
            Ok(Database::Sqlite(pool))
        } else {
            anyhow::bail!("database.url must start with postgres:// or sqlite://")
        }
    }

    /// A cheap round trip, for `/health`.
    pub async fn ping(&self) -> bool {
        let probe = async {
            match self {
                Database::Postgres(p) => p.execute("SELECT 1").await.map(drop),
                Database::Sqlite(p) => p.execute("SELECT 1").await.map(drop),
            }
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(2), probe).await,
            Ok(Ok(()))
        )
    }
}

async fn connect_postgres(settings: &DatabaseSettings) -> anyhow::Result<PgPool> {
    let mut options = PgConnectOptions::from_str(settings.url.expose())
        .context("database.url is not a valid PostgreSQL URL")?;
    if let Some(schema) = &settings.schema {
        anyhow::ensure!(
            !schema.is_empty()
                && schema
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "database.schema must be letters, digits and underscores"
        );
        let mut conn = options
            .connect()
            .await
            .context("cannot connect to PostgreSQL")?;
        // Replicas starting together would race to create the schema (the loser's `CREATE
        // SCHEMA IF NOT EXISTS` fails on pg_namespace's unique index): one at a time. The
        // lock goes with the connection.
        sqlx::query("SELECT pg_advisory_lock(hashtextextended($1, 0))")
            .bind(format!("rpc-service schema {schema}"))
            .execute(&mut conn)
            .await
            .context("cannot lock the schema's creation")?;
        ensure_schema(&mut conn, schema).await?;
        conn.close().await.ok();
        options = options.options([("search_path", schema.as_str())]);
    }
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .context("cannot connect to PostgreSQL")
}

/// Makes sure `schema` exists and this role may create its tables there. In production each
/// service connects as its own role owning its schema, made beforehand
/// (`config/compose/postgres-roles.sql`): such a role may not create schemas, and
/// PostgreSQL checks that right even for `CREATE SCHEMA IF NOT EXISTS` on an existing one,
/// so the schema is only created when missing (tests and a superuser's setups).
async fn ensure_schema(conn: &mut sqlx::PgConnection, schema: &str) -> anyhow::Result<()> {
    let (exists, may_create): (bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1), \
                COALESCE((SELECT has_schema_privilege(oid, 'CREATE') \
                          FROM pg_namespace WHERE nspname = $1), FALSE)",
    )
    .bind(schema)
    .fetch_one(&mut *conn)
    .await
    .context("cannot look up the schema")?;
    if !exists {
        let create = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
        return conn
            .execute(sqlx::AssertSqlSafe(create))
            .await
            .map(drop)
            .with_context(|| {
                format!(
                    "database.schema {schema:?} does not exist and this role cannot create it \
                     (create it owned by the service's role: docs/operations.md)"
                )
            });
    }
    anyhow::ensure!(
        may_create,
        "this role may not create tables in database.schema {schema:?}: make the service's \
         role its owner (docs/operations.md, \"Database roles\")"
    );
    Ok(())
}

async fn connect_sqlite(settings: &DatabaseSettings) -> anyhow::Result<SqlitePool> {
    let url = settings.url.expose();
    let options = SqliteConnectOptions::from_str(url)
        .context("database.url is not a valid SQLite URL")?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: a 201 means the row survives a power cut, not only a crash.
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true);
    if let Some(parent) = options.get_filename().parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    SqlitePoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .with_context(|| format!("cannot open SQLite database {url}"))
}

/// Runs the same code on whichever pool `db` holds. The two arms are type-checked separately,
/// so one SQL text (written in the common subset, `$1` placeholders) serves both databases.
#[macro_export]
macro_rules! on_db {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::db::Database::Postgres($pool) => $body,
            $crate::db::Database::Sqlite($pool) => $body,
        }
    };
}

/// Whether `e` says the database is out of reach (down, restarting, refusing connections, no
/// connection free within the pool's acquire timeout) rather than that it refused this call.
/// Such a failure is answered 503 `database_unavailable` ([`crate::RpcError`]), never 500.
///
/// A statement whose connection broke may have been committed or not: the caller cannot
/// know, and a retry of a create meets the first one's row if it was (a 409 for journeys).
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // Class 08: connection exception; 57P01-57P03: the server is shutting down,
            // crashed, or is not accepting connections yet (recovery); 53300: too many
            // connections.
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// Whether `e` is a unique-constraint violation.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::is_unavailable;

    #[test]
    fn only_an_unreachable_database_is_unavailable() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(is_unavailable(&sqlx::Error::Io(refused)));
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(is_unavailable(&sqlx::Error::PoolClosed));
        assert!(!is_unavailable(&sqlx::Error::RowNotFound));
        assert!(!is_unavailable(&sqlx::Error::Protocol("unexpected".into())));
    }
}
