//! One PostgreSQL role per service (issue 26, finding 3): a compromised registry must not
//! reach auth-service's keys, users or credentials. The roles are made by the very file
//! compose.yaml gives PostgreSQL (`config/compose/postgres-roles.sql`, run with psql), in a
//! database of this test's own (the file changes database-wide rights), with role names of
//! this run's own (roles are cluster-wide); everything is dropped at the end.

use reqwest::Method;
use rpc_service::db::DatabaseSettings;
use std::process::Command;
use tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Mode, Options, Stack, database_url, journey};

const ROLES_SQL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../config/compose/postgres-roles.sql"
);

/// `database_url()` with another user and database.
fn url_as(user: &str, database: &str) -> String {
    let mut url = reqwest::Url::parse(&database_url()).unwrap();
    url.set_username(user).unwrap();
    url.set_password(None).unwrap();
    url.set_path(database);
    url.to_string()
}

/// What this run creates.
struct Names {
    database: String,
    auth_role: String,
    registry_role: String,
}

async fn superuser(sql: String) -> Result<(), sqlx::Error> {
    let pool = sqlx::PgPool::connect(&database_url()).await?;
    let done = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
    pool.close().await;
    done.map(drop)
}

/// Runs `sql` as `role` in this run's database; `Err` holds the SQLSTATE.
async fn as_role(names: &Names, role: &str, sql: &str) -> Result<(), String> {
    let pool = sqlx::PgPool::connect(&url_as(role, &names.database))
        .await
        .unwrap();
    let done = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&pool)
        .await;
    pool.close().await;
    done.map(drop).map_err(|e| match e {
        sqlx::Error::Database(db) => db.code().unwrap_or_default().into_owned(),
        other => panic!("{sql}: {other}"),
    })
}

/// 42501: insufficient_privilege ("permission denied for schema auth", ...).
const PERMISSION_DENIED: &str = "42501";

async fn roles_and_checks(names: &Names) {
    let status = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
        .arg("-v")
        .arg(format!("auth_role={}", names.auth_role))
        .arg("-v")
        .arg(format!("registry_role={}", names.registry_role))
        .arg("-f")
        .arg(ROLES_SQL)
        .arg(url_as("postgres", &names.database))
        .env("RPC_AUTH_DB_PASSWORD", "auth password, unused under trust")
        .env(
            "RPC_REGISTRY_DB_PASSWORD",
            "registry password, unused under trust",
        )
        .status()
        .expect("psql runs (scripts/prereqs.sh services installs PostgreSQL)");
    assert!(status.success(), "postgres-roles.sql failed");

    // Both services migrate and run as their own role, on the schemas of their defaults.
    let settings = |role: &str, schema: &str| {
        DatabaseSettings::new(url_as(role, &names.database), Some(schema))
    };
    let options = Options {
        databases: Some((
            settings(&names.auth_role, "auth"),
            settings(&names.registry_role, "registry"),
        )),
        ..Options::default()
    };
    let stack = Stack::start_with(Mode::Production, options).await.unwrap();
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let (_, op_admin) = stack.operator_with_admin(&admin).await.unwrap();
    let token = stack.application_token(&op_admin).await.unwrap();
    let pushed = stack
        .request(Method::POST, "/v3/journeys")
        .bearer_auth(&token)
        .json(&journey("roles-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        pushed.status(),
        201,
        "the registry writes in its own schema"
    );
    stack.stop().await;

    let registry = &names.registry_role;
    assert_eq!(
        as_role(names, registry, "SELECT count(*) FROM registry.journeys").await,
        Ok(())
    );
    // The attack: the registry's role reads or changes auth-service's tables.
    for sql in [
        "SELECT * FROM auth.signing_keys",
        "SELECT email, password_hash FROM auth.users",
        "SELECT * FROM auth.credentials",
        "UPDATE auth.signing_keys SET retired_at = NULL",
        "INSERT INTO auth.users (id, email, password_hash, role, first_name, last_name, \
         created_at) VALUES (gen_random_uuid(), 'x@example.test', 'x', 'registry.admin', \
         'x', 'x', now())",
        "DELETE FROM auth.audit",
        "ALTER TABLE auth.users ADD COLUMN x TEXT",
        // Nor makes room of its own elsewhere, nor becomes auth-service.
        "CREATE SCHEMA elsewhere",
        "CREATE TABLE public.elsewhere (x INT)",
        "CREATE TEMPORARY TABLE elsewhere (x INT)",
        &format!("SET ROLE \"{}\"", names.auth_role),
    ] {
        assert_eq!(
            as_role(names, registry, sql).await,
            Err(PERMISSION_DENIED.to_owned()),
            "the registry's role: {sql}"
        );
    }
    // And the other way round.
    assert_eq!(
        as_role(names, &names.auth_role, "SELECT * FROM registry.journeys").await,
        Err(PERMISSION_DENIED.to_owned())
    );
}

/// The registry's role cannot read or write auth-service's tables; each service works on
/// its own schema with its own role.
#[tokio::test]
async fn database_roles_keep_the_registry_out_of_auth_tables() {
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let names = |id: &str| Names {
        database: format!("t{id}_roles"),
        auth_role: format!("t{id}_auth"),
        registry_role: format!("t{id}_registry"),
    };
    let run = names(&id);
    superuser(format!("CREATE DATABASE \"{}\"", run.database))
        .await
        .expect("the machine's PostgreSQL (scripts/prereqs.sh services)");
    let outcome = tokio::spawn(async move { roles_and_checks(&run).await }).await;
    // Whatever happened, nothing of this run stays in the cluster.
    let run = names(&id);
    let database = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", run.database);
    let dropped = [
        superuser(database).await,
        superuser(format!("DROP ROLE IF EXISTS \"{}\"", run.auth_role)).await,
        superuser(format!("DROP ROLE IF EXISTS \"{}\"", run.registry_role)).await,
    ];
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
    for done in dropped {
        done.expect("dropped this run's database and roles");
    }
}
