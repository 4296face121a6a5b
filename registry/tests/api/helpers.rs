//! `spawn_app` and a `TestApp` with one helper per endpoint.

use auth_token::{ASSERTION_HEADER, Assertion, AssertionKey, CredentialKind, Principal, Role};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use layered_settings::Secret;
use registry::clock::{Clock, ManualClock, SystemClock};
use registry::jobs::Runner;
use registry::{
    Application, CeeSettings, ExportsSettings, IngestSettings, JobsSettings, MailSettings, Settings,
};
use reqwest::{Method, RequestBuilder, Response};
use rpc_service::db::DatabaseSettings;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::oneshot;
use uuid::Uuid;

const SECRET: &str = "registry-tests-assertion-secret-0123456789";
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// A 2048-bit RSA key for tests only: it signs CEE tokens in these tests and nowhere else.
pub const CEE_TEST_KEY: &str = include_str!("../cee-signing-key.test-only.pem");

/// Which database the registry under test uses.
#[derive(Debug, Clone, Copy)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

/// A running registry.
pub struct TestApp {
    pub address: String,
    /// The lifecycle job runner, which only runs when a test says so.
    pub runner: Runner,
    settings: Settings,
    clock: Arc<dyn Clock>,
    client: reqwest::Client,
    key: Arc<AssertionKey>,
    stop: Option<oneshot::Sender<()>>,
    sqlite_file: Option<PathBuf>,
    /// PostgreSQL URL and schema to drop when the test ends.
    pg_schema: Option<(String, String)>,
    /// The exports directory to remove when the test ends (`None` for replicas).
    exports_dir: Option<PathBuf>,
}

/// Starts the registry on a fresh database and waits until it listens.
pub async fn spawn_app(kind: StoreKind) -> TestApp {
    spawn_app_with_clock(kind, Arc::new(SystemClock), IngestSettings::default()).await
}

/// [`spawn_app`] grouping inserts as `ingest` says (PostgreSQL; SQLite ignores it).
pub async fn spawn_app_grouping(kind: StoreKind, ingest: IngestSettings) -> TestApp {
    spawn_app_with_clock(kind, Arc::new(SystemClock), ingest).await
}

/// [`spawn_app`] on a clock the test controls, set to `at`.
pub async fn spawn_app_at(kind: StoreKind, at: DateTime<Utc>) -> (TestApp, ManualClock) {
    let clock = ManualClock::at(at);
    (
        spawn_app_with_clock(kind, Arc::new(clock.clone()), IngestSettings::default()).await,
        clock,
    )
}

/// [`spawn_app_at`] grouping inserts as `ingest` says.
pub async fn spawn_app_at_grouping(
    kind: StoreKind,
    at: DateTime<Utc>,
    ingest: IngestSettings,
) -> (TestApp, ManualClock) {
    let clock = ManualClock::at(at);
    (
        spawn_app_with_clock(kind, Arc::new(clock.clone()), ingest).await,
        clock,
    )
}

/// [`spawn_app_at`] mailing export recipients through `mail`.
pub async fn spawn_app_at_mailing(
    kind: StoreKind,
    at: DateTime<Utc>,
    mail: MailSettings,
) -> (TestApp, ManualClock) {
    let clock = ManualClock::at(at);
    (
        spawn_app_configured(
            kind,
            Arc::new(clock.clone()),
            IngestSettings::default(),
            mail,
        )
        .await,
        clock,
    )
}

async fn spawn_app_with_clock(
    kind: StoreKind,
    clock: Arc<dyn Clock>,
    ingest: IngestSettings,
) -> TestApp {
    spawn_app_configured(kind, clock, ingest, MailSettings::default()).await
}

async fn spawn_app_configured(
    kind: StoreKind,
    clock: Arc<dyn Clock>,
    ingest: IngestSettings,
    mail: MailSettings,
) -> TestApp {
    let mut pg_schema = None;
    let (database, sqlite_file) = match kind {
        StoreKind::Sqlite => {
            let file =
                std::env::temp_dir().join(format!("registry-{}.db", Uuid::new_v4().simple()));
            let url = format!("sqlite://{}", file.display());
            (DatabaseSettings::new(url, None), Some(file))
        }
        StoreKind::Postgres => {
            let url = std::env::var("REGISTRY_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
            let schema = format!("t_{}", Uuid::new_v4().simple());
            pg_schema = Some((url.clone(), schema.clone()));
            (DatabaseSettings::new(url, Some(&schema)), None)
        }
    };
    let settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        database,
        assertion_secret: Secret::new(SECRET.to_owned()),
        cee: CeeSettings {
            private_key_pem: Secret::new(CEE_TEST_KEY.to_owned()),
            ..CeeSettings::default()
        },
        // Tests run the jobs by hand, after moving their clock.
        jobs: JobsSettings {
            poll_interval_ms: 0,
            ..JobsSettings::default()
        },
        ingest,
        exports: ExportsSettings {
            directory: std::env::temp_dir()
                .join(format!("registry-exports-{}", Uuid::new_v4().simple())),
            public_url: "https://api.example.test".to_owned(),
            mail,
            ..ExportsSettings::default()
        },
        ..Settings::default()
    };
    let exports_dir = Some(settings.exports.directory.clone());
    let mut app = start(settings, clock, sqlite_file, pg_schema).await;
    app.exports_dir = exports_dir;
    app
}

async fn start(
    settings: Settings,
    clock: Arc<dyn Clock>,
    sqlite_file: Option<PathBuf>,
    pg_schema: Option<(String, String)>,
) -> TestApp {
    let app = Application::build_with_clock(settings.clone(), clock.clone())
        .await
        .expect("registry builds");
    let runner = app.runner();
    let address = format!("http://{}", app.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestApp {
        address,
        runner,
        settings,
        clock,
        client: reqwest::Client::new(),
        key: Arc::new(AssertionKey::new(SECRET.as_bytes()).unwrap()),
        stop: Some(stop),
        sqlite_file,
        pg_schema,
        exports_dir: None,
    }
}

impl TestApp {
    /// The PostgreSQL schema of this registry's tables (`None` on SQLite and for replicas).
    pub fn pg_schema(&self) -> Option<&str> {
        self.pg_schema.as_ref().map(|(_, schema)| schema.as_str())
    }

    /// The names of the files in the exports directory, sorted.
    pub fn export_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.settings.exports.directory)
            .expect("the exports directory exists")
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Runs `statement` on this registry's database, behind its back (to break a row).
    pub async fn execute_sql(&self, statement: &str) {
        use sqlx::Connection;
        if let Some(file) = &self.sqlite_file {
            let mut db = sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display()))
                .await
                .expect("SQLite reachable");
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned()))
                .execute(&mut db)
                .await
                .expect("statement runs");
        } else {
            let schema = self.pg_schema().expect("a database of its own");
            let mut db = postgres_connection().await;
            let sql = format!("SET search_path TO \"{schema}\"; {statement}");
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut db)
                .await
                .expect("statement runs");
        }
    }

    /// Another registry process on the same database and clock (a replica); the database
    /// stays until `self` is dropped.
    pub async fn replica(&self) -> TestApp {
        start(self.settings.clone(), self.clock.clone(), None, None).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some((url, schema)) = self.pg_schema.take() {
            // Drop cannot await: drop the schema on a runtime of its own.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    if let Ok(pool) = sqlx::PgPool::connect(&url).await {
                        let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
                        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
                    }
                });
            })
            .join();
        }
        if let Some(dir) = &self.exports_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(file) = &self.sqlite_file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
        }
    }
}

/// A connection of its own to the tests' PostgreSQL database (advisory locks are
/// database-wide, whatever the schema).
pub async fn postgres_connection() -> sqlx::PgConnection {
    use sqlx::Connection;
    let url = std::env::var("REGISTRY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
    sqlx::PgConnection::connect(&url)
        .await
        .expect("PostgreSQL reachable")
}

/// An operator's application token, as the gateway asserts it.
pub fn operator(operator_id: i64) -> Principal {
    Principal {
        kind: Some(CredentialKind::Application),
        id: format!("app-{operator_id}"),
        operator_id: Some(operator_id),
        operator_siret: Some(siret_of(operator_id)),
        role: Some(Role::OperatorApplication),
        token_id: Some(Uuid::new_v4().to_string()),
        client: None,
        token_exp: None,
        ..Principal::anonymous()
    }
}

/// The SIRET the test operators have: `operator_id` on 14 digits.
pub fn siret_of(operator_id: i64) -> String {
    format!("{operator_id:014}")
}

/// A registry staff member.
pub fn registry_user() -> Principal {
    Principal {
        kind: Some(CredentialKind::Agent),
        id: "42".into(),
        operator_id: None,
        role: Some(Role::RegistryUser),
        token_id: Some(Uuid::new_v4().to_string()),
        client: Some("device".into()),
        token_exp: None,
        ..Principal::anonymous()
    }
}

/// A registry admin (campaigns).
pub fn registry_admin() -> Principal {
    Principal {
        role: Some(Role::RegistryAdmin),
        ..registry_user()
    }
}

/// A valid journey that started an hour ago.
pub fn journey(operator_journey_id: &str) -> Value {
    let at = |minutes_ago: i64| {
        (Utc::now() - TimeDelta::minutes(minutes_ago)).to_rfc3339_opts(SecondsFormat::Secs, true)
    };
    let identity = |digit: &str| {
        json!({
            "identity_key": digit.repeat(64),
            "operator_user_id": format!("user-{digit}"),
            "phone_trunc": "+336010203",
        })
    };
    json!({
        "operator_journey_id": operator_journey_id,
        "operator_trip_id": "trip-1",
        "operator_class": "C",
        "incentives": [{"index": 0, "amount": 100, "siret": "11000101300017"}],
        "start": {"datetime": at(60), "lat": 48.85, "lon": 2.35},
        "end": {"datetime": at(20), "lat": 48.9, "lon": 2.4},
        "distance": 12_000,
        "driver": {"identity": identity("a"), "revenue": 300},
        "passenger": {"identity": identity("b"), "contribution": 300, "seats": 1},
    })
}

/// A valid journey of `trip` between `driver` and `passenger` (each a hex digit repeated
/// into an identity key), from `start` to `end`.
pub fn journey_between(
    operator_journey_id: &str,
    trip: &str,
    (driver, passenger): (char, char),
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Value {
    let mut payload = journey(operator_journey_id);
    payload["operator_trip_id"] = json!(trip);
    payload["driver"]["identity"]["identity_key"] = json!(driver.to_string().repeat(64));
    payload["passenger"]["identity"]["identity_key"] = json!(passenger.to_string().repeat(64));
    payload["start"]["datetime"] = json!(start.to_rfc3339_opts(SecondsFormat::Millis, true));
    payload["end"]["datetime"] = json!(end.to_rfc3339_opts(SecondsFormat::Millis, true));
    payload
}

/// The instant written `s` (RFC 3339).
pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("valid date")
        .with_timezone(&Utc)
}

impl TestApp {
    /// A request carrying the gateway's assertion for `principal` (none when `None`), made
    /// when it is sent, for the request as built (method, path, query string, body).
    pub fn request(&self, method: Method, path: &str, principal: Option<&Principal>) -> Signed {
        Signed {
            client: self.client.clone(),
            builder: self
                .client
                .request(method, format!("{}{path}", self.address)),
            signer: principal.map(|p| (p.clone(), self.key.clone())),
        }
    }

    /// `POST {path}` with `body` as `principal`.
    pub async fn post_journey_at(
        &self,
        path: &str,
        principal: &Principal,
        body: &Value,
    ) -> Response {
        self.request(Method::POST, path, Some(principal))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// `POST /v3/journeys` with `body` as `principal`.
    pub async fn post_journey(&self, principal: &Principal, body: &Value) -> Response {
        self.post_journey_at("/v3/journeys", principal, body).await
    }

    /// `GET /v3/journeys/{id}{query}` as `principal`.
    pub async fn journey_status(&self, principal: &Principal, id: &str, query: &str) -> Response {
        self.request(
            Method::GET,
            &format!("/v3/journeys/{id}{query}"),
            Some(principal),
        )
        .send()
        .await
        .expect("request sent")
    }

    /// `{method} {path}` as `principal`, with `body` as JSON when given.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        principal: &Principal,
        body: Option<&Value>,
    ) -> Response {
        let request = self.request(method, path, Some(principal));
        let request = match body {
            Some(body) => request.json(body),
            None => request,
        };
        request.send().await.expect("request sent")
    }

    /// The public status of journey `id` of `principal`'s operator.
    pub async fn status_of(&self, principal: &Principal, id: &str) -> String {
        let (code, body) = status_and_json(self.journey_status(principal, id, "").await).await;
        assert_eq!(code, 200, "{body}");
        body["status"].as_str().expect("status").to_owned()
    }

    /// `GET {path}` without assertion (health, metrics).
    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path, None)
            .send()
            .await
            .expect("request sent")
    }

    /// The value of one exported series (`name{labels}` as `/metrics` prints it).
    pub async fn metric(&self, series: &str) -> u64 {
        let metrics = self.get("/metrics").await.text().await.expect("text");
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or_else(|| panic!("{series} in {metrics}")) as u64
    }
}

/// Status and JSON body of `response`.
pub async fn status_and_json(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.json().await.expect("JSON body");
    (status, body)
}

/// A request to the registry, signed as the gateway would sign it when built.
pub struct Signed {
    client: reqwest::Client,
    builder: RequestBuilder,
    signer: Option<(Principal, Arc<AssertionKey>)>,
}

impl Signed {
    pub fn json<T: serde::Serialize + ?Sized>(self, body: &T) -> Self {
        Self {
            builder: self.builder.json(body),
            ..self
        }
    }

    pub fn header(self, name: &str, value: &str) -> Self {
        Self {
            builder: self.builder.header(name, value),
            ..self
        }
    }

    pub fn body(self, body: impl Into<reqwest::Body>) -> Self {
        Self {
            builder: self.builder.body(body),
            ..self
        }
    }

    /// The request, with the assertion of this very request.
    pub fn build(self) -> reqwest::Result<reqwest::Request> {
        let mut request = self.builder.build()?;
        if let Some((principal, key)) = self.signer {
            let body = request
                .body()
                .and_then(|b| b.as_bytes())
                .unwrap_or_default();
            let digest = auth_token::body_digest(body);
            let url = request.url();
            let bound = auth_token::Request {
                method: request.method().as_str(),
                path: url.path(),
                query: url.query().unwrap_or(""),
                body: digest.as_deref(),
            };
            let rid = Uuid::new_v4().to_string();
            let assertion =
                Assertion::new(principal, "registry", &bound, &rid, Utc::now().timestamp());
            let token = key.sign(&assertion).parse().expect("a header value");
            request.headers_mut().insert(ASSERTION_HEADER, token);
        }
        Ok(request)
    }

    pub async fn send(self) -> reqwest::Result<Response> {
        let client = self.client.clone();
        client.execute(self.build()?).await
    }
}
