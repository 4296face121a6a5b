//! The end-to-end harness: starts auth-service and registry on free ports and the gateway on
//! its own thread, in either mode, and drives them over HTTP through the gateway.
//!
//! - [`Mode::Embedded`]: SQLite files in a fresh temp directory, in-process blacklist feed.
//! - [`Mode::Production`]: the machine's PostgreSQL (a fresh schema per service per test)
//!   and Redis (a fresh key prefix per test). `RPC_TEST_DATABASE_URL` / `RPC_TEST_REDIS_URL`
//!   override the defaults. These tests fail, never skip, when the services are absent.

use anyhow::Context;
use blacklist::{Feed, LocalFeed, RedisFeed};
use layered_settings::Secret;
use reqwest::header::HeaderMap;
use rpc_service::db::DatabaseSettings;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const ADMIN_EMAIL: &str = "admin@registry.test";
/// The registry's CEE signing key in these tests (a test-only key committed in the repo).
pub const CEE_TEST_KEY: &str = include_str!("../../registry/tests/cee-signing-key.test-only.pem");
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Embedded,
    Production,
}

/// The machine's PostgreSQL for the production mode (`RPC_TEST_DATABASE_URL` or the default).
pub fn database_url() -> String {
    std::env::var("RPC_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn redis_url() -> String {
    std::env::var("RPC_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A running stack.
pub struct Stack {
    pub mode: Mode,
    /// `http://127.0.0.1:<port>` of the (first) gateway.
    pub url: String,
    pub admin_url: String,
    /// `https://localhost:<port>` of the (first) gateway when started with `Options::tls`.
    pub https_url: Option<String>,
    /// The base64 SHA-256 of the HTTPS certificate's public key (what Chromium's
    /// `--ignore-certificate-errors-spki-list` trusts), with `Options::tls`.
    pub tls_spki: Option<String>,
    /// Every gateway replica's public URL, `gateways[0] == url`.
    pub gateways: Vec<String>,
    /// Every gateway replica's admin URL (`/metrics`, `/health`), `gateway_admins[0] == admin_url`.
    pub gateway_admins: Vec<String>,
    /// The Redis URL and key prefix of this stack's feed (production mode).
    pub redis: Option<(String, String)>,
    pub registry_addr: SocketAddr,
    pub auth_addr: SocketAddr,
    /// The assertion secrets the gateways share with auth-service and the registry (attack
    /// tests sign assertions with them).
    pub assertion_secrets: gateway::settings::AssertionSecrets,
    pub http: reqwest::Client,
    /// auth-service's signing keys: tests sign tokens it could have signed (expired ones).
    pub keys: auth_service::keyring::Keyring,
    /// The settings auth-service runs with (its listen address is the bound one).
    pub auth_settings: auth_service::Settings,
    /// Stops auth-service alone ([`Stack::restart_auth_service`]), and its task.
    auth_stop: tokio::sync::watch::Sender<bool>,
    auth_task: Option<tokio::task::JoinHandle<()>>,
    replicas: Vec<Replica>,
    /// The in-process feed every replica shares in the embedded mode.
    local_feed: Option<Arc<dyn Feed>>,
    stop: tokio::sync::watch::Sender<bool>,
    dir: PathBuf,
    schemas: Vec<String>,
}

/// How to start a [`Stack`] beyond its mode. `Options::default()` is what [`Stack::start`]
/// does.
#[derive(Clone)]
pub struct Options {
    /// The Redis of the production mode (default: `RPC_TEST_REDIS_URL` or the machine's);
    /// a test that stops Redis gives its own ([`RedisServer`]).
    pub redis_url: Option<String>,
    /// Gateway replicas sharing the feed (and Redis); at least one.
    pub gateways: usize,
    /// Adjusts every replica's settings after the harness set them.
    pub gateway_settings: Option<fn(&mut gateway::Settings)>,
    /// Adjusts auth-service's settings after the harness set them.
    pub auth_settings: Option<fn(&mut auth_service::Settings)>,
    /// The registry's clock (lifecycle tests move it); the system clock when `None`.
    pub registry_clock: Option<Arc<dyn registry::clock::Clock>>,
    /// auth-service's and the registry's databases, instead of the mode's fresh ones (the
    /// caller creates and removes them).
    pub databases: Option<(DatabaseSettings, DatabaseSettings)>,
    /// Every replica also serves HTTPS, on a certificate for localhost the first one makes
    /// (a local authority's, as the all-in-one runner does).
    pub tls: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            redis_url: None,
            gateways: 1,
            gateway_settings: None,
            auth_settings: None,
            registry_clock: None,
            databases: None,
            tls: false,
        }
    }
}

/// One gateway replica: how to start it again, and the running one.
struct Replica {
    settings: gateway::Settings,
    running: Option<gateway::Running>,
}

/// The base64 SHA-256 of the SubjectPublicKeyInfo of the first certificate in a PEM file.
pub fn spki_sha256(pem_file: &std::path::Path) -> anyhow::Result<String> {
    use base64::Engine;
    use sha2::Digest;
    use x509_cert::der::{Decode, Encode};
    let pem = std::fs::read_to_string(pem_file)?;
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD.decode(body)?;
    let cert = x509_cert::Certificate::from_der(&der)?;
    let spki = cert.tbs_certificate.subject_public_key_info.to_der()?;
    Ok(base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(spki)))
}

/// A port free right now (the gateway cannot report the port it bound).
fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(test_ports::free_port())
}

impl Stack {
    pub async fn start(mode: Mode) -> anyhow::Result<Self> {
        Self::start_with(mode, Options::default()).await
    }

    /// [`Stack::start`] with the registry on `registry_clock` (its job runner then polls
    /// every 20 ms, so moving the clock takes effect at once).
    pub async fn start_at(
        mode: Mode,
        registry_clock: Option<Arc<dyn registry::clock::Clock>>,
    ) -> anyhow::Result<Self> {
        let options = Options {
            registry_clock,
            ..Options::default()
        };
        Self::start_with(mode, options).await
    }

    /// Starts a stack with `options`; returns once every gateway replica has loaded the
    /// blacklist.
    pub async fn start_with(mode: Mode, options: Options) -> anyhow::Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let redis = options.redis_url.clone().unwrap_or_else(redis_url);
        let prefix = format!("test:{id}:");
        let dir = std::env::temp_dir().join(format!("rpc-e2e-{id}"));
        std::fs::create_dir_all(&dir)?;
        let secrets = gateway::settings::AssertionSecrets {
            auth_service: Secret::new(format!("auth-service {id}")),
            registry: Secret::new(format!("registry {id}")),
        };
        let (auth_db, registry_db, feed, mut schemas) = match mode {
            Mode::Embedded => {
                let sqlite = |name: &str| format!("sqlite://{}", dir.join(name).display());
                let feed: Arc<dyn Feed> = Arc::new(LocalFeed::new());
                (
                    DatabaseSettings::new(sqlite("auth.db"), None),
                    DatabaseSettings::new(sqlite("registry.db"), None),
                    feed,
                    vec![],
                )
            }
            Mode::Production => {
                let (a, r) = (format!("t{id}_auth"), format!("t{id}_registry"));
                let feed: Arc<dyn Feed> = Arc::new(
                    RedisFeed::connect(&redis, &prefix)
                        .await
                        .context("Redis must run on this machine for the production-mode tests")?,
                );
                (
                    DatabaseSettings::new(database_url(), Some(&a)),
                    DatabaseSettings::new(database_url(), Some(&r)),
                    feed,
                    vec![a, r],
                )
            }
        };

        let (auth_db, registry_db) = match options.databases.clone() {
            Some(given) => {
                schemas.clear();
                given
            }
            None => (auth_db, registry_db),
        };

        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut auth = auth_service::Settings {
            listen: any_port,
            database: auth_db,
            assertion_secret: secrets.auth_service.clone(),
            key_encryption_keys: Secret::new(auth_service::kek::KekList::new([
                auth_service::kek::generate_entry("test"),
            ])),
            generated_kek_file: dir.join("never-generated-kek.txt"),
            ..Default::default()
        };
        auth.bootstrap.email = Some(ADMIN_EMAIL.into());
        auth.bootstrap.password = Some(Secret::new(ADMIN_PASSWORD.into()));
        auth.bootstrap.password_file = dir.join("bootstrap-admin.txt");
        if let Some(adjust) = options.auth_settings {
            adjust(&mut auth);
        }
        let auth_app = auth_service::Application::build(auth.clone(), feed.clone()).await?;
        auth.listen = auth_app.local_addr();

        let registry = registry::Settings {
            listen: any_port,
            database: registry_db,
            assertion_secret: secrets.registry.clone(),
            cee: registry::CeeSettings {
                private_key_pem: Secret::new(CEE_TEST_KEY.into()),
                ..Default::default()
            },
            exports: registry::ExportsSettings {
                directory: dir.join("exports"),
                ..Default::default()
            },
            ..Default::default()
        };
        let registry_app = match options.registry_clock.clone() {
            None => registry::Application::build(registry).await?,
            Some(clock) => {
                let mut registry = registry;
                registry.jobs.poll_interval_ms = 20;
                registry::Application::build_with_clock(registry, clock).await?
            }
        };

        let (stop, rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let (auth_addr, registry_addr) = (auth_app.local_addr(), registry_app.local_addr());
        let keys = auth_app.keyring();
        let (auth_stop, auth_rx) = tokio::sync::watch::channel(false);
        let auth_task =
            tokio::spawn(auth_app.run_until_stopped(stopped_either(rx.clone(), auth_rx)));
        tokio::spawn(registry_app.run_until_stopped(stopped(rx)));

        let mut replicas = Vec::new();
        for n in 0..options.gateways.max(1) {
            let mut gw = gateway::Settings {
                listen: free_port()?,
                admin_listen: free_port()?,
                auth_service: auth_addr.into(),
                registry: registry_addr.into(),
                assertion_secrets: secrets.clone(),
                ..Default::default()
            };
            // Keys retired by a rotation leave the gateway within a second.
            gw.jwks_reload_secs = 1;
            // Scenarios make more requests than the reference's limits allow; the limits
            // themselves are tested with their real values (gateway/tests/edge.rs,
            // tests/tests/rate_limits.rs).
            for class in gateway::ratelimit::RouteClass::ALL {
                gw.rate_limits.classes.insert(class, 1_000_000);
            }
            if mode == Mode::Production {
                gw.redis = Some(gateway::settings::RedisSettings {
                    url: Secret::new(redis.clone()),
                    prefix: prefix.clone(),
                });
            }
            gw.server.threads = 1;
            gw.server.grace_period_seconds = 0;
            gw.server.graceful_shutdown_timeout_seconds = 1;
            gw.server.pid_file = dir.join(format!("gateway{n}.pid")).display().to_string();
            gw.server.upgrade_sock = dir.join(format!("upgrade{n}.sock")).display().to_string();
            if options.tls {
                gw.tls.listen = Some(free_port()?);
                gw.tls.cert_file = dir.join("tls/cert.pem");
                gw.tls.key_file = dir.join("tls/key.pem");
                gw.tls.self_signed = true;
            }
            if let Some(adjust) = options.gateway_settings {
                adjust(&mut gw);
            }
            replicas.push(Replica {
                settings: gw,
                running: None,
            });
        }
        let mut stack = Self {
            mode,
            url: format!("http://{}", replicas[0].settings.listen),
            https_url: (replicas[0].settings.tls.listen)
                .map(|tls| format!("https://localhost:{}", tls.port())),
            tls_spki: None,
            admin_url: format!("http://{}", replicas[0].settings.admin_listen),
            gateways: (replicas.iter())
                .map(|r| format!("http://{}", r.settings.listen))
                .collect(),
            gateway_admins: (replicas.iter())
                .map(|r| format!("http://{}", r.settings.admin_listen))
                .collect(),
            redis: (mode == Mode::Production).then_some((redis, prefix)),
            registry_addr,
            auth_addr,
            assertion_secrets: secrets,
            http: reqwest::Client::new(),
            keys,
            auth_settings: auth,
            auth_stop,
            auth_task: Some(auth_task),
            replicas,
            local_feed: (mode == Mode::Embedded).then_some(feed),
            stop,
            dir,
            schemas,
        };
        for n in 0..stack.replicas.len() {
            stack.start_gateway(n).await?;
            stack.wait_gateway_ready(n).await?;
        }
        if options.tls {
            stack.tls_spki = Some(spki_sha256(&stack.dir.join("tls/cert.pem"))?);
        }
        Ok(stack)
    }

    /// Starts gateway replica `n` (again, on the same ports); returns once it listens, not
    /// once it loaded the blacklist ([`Stack::wait_gateway_ready`]).
    pub async fn start_gateway(&mut self, n: usize) -> anyhow::Result<()> {
        // In production each replica follows Redis on its own connections, made anew at each
        // start, as a restarted process does.
        let feed: Arc<dyn Feed> = match (&self.local_feed, &self.redis) {
            (Some(local), _) => local.clone(),
            (None, Some((url, prefix))) => Arc::new(RedisFeed::new(url, prefix)?),
            (None, None) => anyhow::bail!("a stack has a feed"),
        };
        let replica = &mut self.replicas[n];
        anyhow::ensure!(replica.running.is_none(), "gateway {n} already runs");
        replica.running = Some(gateway::spawn(&replica.settings, feed)?);
        // The public and the admin listeners are separate pingora services: wait for both.
        wait_until_listening(replica.settings.listen).await?;
        wait_until_listening(replica.settings.admin_listen).await
    }

    /// Stops auth-service and starts it again on the same address and database with its
    /// settings changed by `adjust` (a restart with other key-encryption keys). Gateways
    /// keep running.
    pub async fn restart_auth_service(
        &mut self,
        adjust: impl FnOnce(&mut auth_service::Settings),
    ) -> anyhow::Result<()> {
        self.stop_auth_service().await?;
        let mut settings = self.auth_settings.clone();
        adjust(&mut settings);
        let feed: Arc<dyn Feed> = match (&self.local_feed, &self.redis) {
            (Some(local), _) => local.clone(),
            (None, Some((url, prefix))) => Arc::new(RedisFeed::connect(url, prefix).await?),
            (None, None) => anyhow::bail!("a stack has a feed"),
        };
        let app = auth_service::Application::build(settings.clone(), feed).await?;
        let (auth_stop, auth_rx) = tokio::sync::watch::channel(false);
        let all = self.stop.subscribe();
        self.keys = app.keyring();
        self.auth_task = Some(tokio::spawn(
            app.run_until_stopped(stopped_either(all, auth_rx)),
        ));
        self.auth_stop = auth_stop;
        self.auth_settings = settings;
        Ok(())
    }

    /// Stops auth-service alone (until [`Stack::restart_auth_service`]); gateways keep
    /// running.
    pub async fn stop_auth_service(&mut self) -> anyhow::Result<()> {
        let _ = self.auth_stop.send(true);
        if let Some(task) = self.auth_task.take() {
            task.await.context("auth-service stopped badly")?;
        }
        Ok(())
    }

    /// auth-service's database (to read what it stores, as an attacker with a copy would).
    pub fn auth_database(&self) -> &DatabaseSettings {
        &self.auth_settings.database
    }

    /// Stops gateway replica `n` (its in-memory blacklist goes with it).
    pub async fn stop_gateway(&mut self, n: usize) {
        if let Some(running) = self.replicas[n].running.take() {
            let _ = tokio::task::spawn_blocking(move || running.stop()).await;
        }
    }

    /// Waits (up to 10 s) until replica `n`'s `/health` is 200: it has loaded the blacklist.
    pub async fn wait_gateway_ready(&self, n: usize) -> anyhow::Result<()> {
        let health = format!("{}/health", self.gateway_admins[n]);
        let ready = self
            .eventually(Duration::from_secs(10), || async {
                let response = self.http.get(&health).send().await;
                response.is_ok_and(|r| r.status() == 200)
            })
            .await;
        anyhow::ensure!(ready, "gateway {n} did not load the blacklist");
        Ok(())
    }

    /// A request through gateway replica `n`.
    pub fn request_to(
        &self,
        n: usize,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.gateways[n]))
    }

    /// Replica `n`'s `/health` body.
    pub async fn gateway_health(&self, n: usize) -> anyhow::Result<Value> {
        let url = format!("{}/health", self.gateway_admins[n]);
        Ok(self.http.get(url).send().await?.json().await?)
    }

    /// Replica `n`'s `/metrics` text.
    pub async fn gateway_metrics(&self, n: usize) -> anyhow::Result<String> {
        let url = format!("{}/metrics", self.gateway_admins[n]);
        Ok(self.http.get(url).send().await?.text().await?)
    }

    /// Stops everything and removes what the test created.
    pub async fn stop(mut self) {
        for n in 0..self.replicas.len() {
            self.stop_gateway(n).await;
        }
        let _ = self.stop.send(true);
        if !self.schemas.is_empty()
            && let Ok(pool) = sqlx::PgPool::connect(&database_url()).await
        {
            for schema in &self.schemas {
                let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// The registry's PostgreSQL URL and schema (production mode), for tests that break its
    /// database on purpose.
    pub fn registry_database(&self) -> Option<(String, String)> {
        let schema = self.schemas.get(1)?;
        Some((database_url(), schema.clone()))
    }

    /// A request through the gateway.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.url))
    }

    /// Signs in with the header triple through the first gateway ([`Via::sign_in`]).
    pub async fn sign_in(&self, email: &str, password: &str) -> anyhow::Result<HeaderMap> {
        self.via().sign_in(email, password).await
    }

    /// [`Via::operator_with_admin`] through the first gateway.
    pub async fn operator_with_admin(&self, admin: &HeaderMap) -> anyhow::Result<(i64, HeaderMap)> {
        self.via().operator_with_admin(admin).await
    }

    /// [`Via::application_token`] through the first gateway.
    pub async fn application_token(&self, op_admin: &HeaderMap) -> anyhow::Result<String> {
        self.via().application_token(op_admin).await
    }

    /// The first gateway, to call the helpers of [`Via`] on.
    pub fn via(&self) -> Via<'_> {
        Via {
            http: &self.http,
            url: &self.url,
        }
    }

    /// [`eventually`], for effects that propagate (Redis).
    pub async fn eventually<F, Fut>(&self, within: Duration, check: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        eventually(within, check).await
    }
}

/// Polls `check` every 20 ms until it holds or `within` passes; whether it held.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A gateway to call, by its base URL (`http://127.0.0.1:<port>`): the scenario helpers for
/// stacks the harness did not start itself (replicas run as processes).
#[derive(Clone, Copy)]
pub struct Via<'a> {
    pub http: &'a reqwest::Client,
    pub url: &'a str,
}

impl Via<'_> {
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.url))
    }

    /// Signs in with the header triple; returns the three headers to send back.
    pub async fn sign_in(&self, email: &str, password: &str) -> anyhow::Result<HeaderMap> {
        let response = self
            .request(reqwest::Method::POST, "/api/v1/auth/sign_in")
            .json(&json!({"email": email, "password": password}))
            .send()
            .await?;
        anyhow::ensure!(response.status() == 200, "sign-in: {}", response.status());
        let mut triple = HeaderMap::new();
        for name in ["access-token", "client", "uid"] {
            let value = response
                .headers()
                .get(name)
                .with_context(|| format!("sign-in response lacks {name}"))?;
            triple.insert(name, value.clone());
        }
        Ok(triple)
    }

    /// Creates an operator with a first admin and signs that admin in.
    pub async fn operator_with_admin(&self, admin: &HeaderMap) -> anyhow::Result<(i64, HeaderMap)> {
        let siret = format!("{:014}", rand_u64() % 100_000_000_000_000);
        let op: Value = self
            .request(reqwest::Method::POST, "/admin/operators")
            .headers(admin.clone())
            .json(&json!({"name": "Covoit Express", "siret": siret}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let id = op["id"].as_i64().context("operator id")?;
        let email = format!("admin-{}@operator.test", uuid::Uuid::new_v4().simple());
        self.request(
            reqwest::Method::POST,
            &format!("/admin/operators/{id}/users"),
        )
        .headers(admin.clone())
        .json(
            &json!({"email": email, "password": ADMIN_PASSWORD, "role": "operator.admin",
                          "first_name": "Ada", "last_name": "Lovelace"}),
        )
        .send()
        .await?
        .error_for_status()?;
        Ok((id, self.sign_in(&email, ADMIN_PASSWORD).await?))
    }

    /// A new application token of the operator whose admin is signed in as `op_admin`.
    pub async fn application_token(&self, op_admin: &HeaderMap) -> anyhow::Result<String> {
        Ok(self.application(op_admin, "backend").await?.0)
    }

    /// A new application named `name` of `op_admin`'s operator: its token and its uuid.
    pub async fn application(
        &self,
        op_admin: &HeaderMap,
        name: &str,
    ) -> anyhow::Result<(String, String)> {
        let created: Value = self
            .request(reqwest::Method::POST, "/applications")
            .headers(op_admin.clone())
            .json(&json!({"name": name}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let token = created["token"].as_str().context("token")?;
        let uuid = created["application"]["uuid"].as_str().context("uuid")?;
        Ok((token.to_owned(), uuid.to_owned()))
    }
}

/// `method path` as `by` (with a JSON body, if any): the status and the JSON answer (`Null`
/// when there is none).
pub async fn call(
    stack: &Stack,
    method: reqwest::Method,
    path: &str,
    by: &HeaderMap,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = stack.request(method, path).headers(by.clone());
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The value of the series `series` (a name, with its labels if it has any) in a
/// `/metrics` text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Resolves once either receiver turns true.
async fn stopped_either(
    mut all: tokio::sync::watch::Receiver<bool>,
    mut one: tokio::sync::watch::Receiver<bool>,
) {
    tokio::select! {
        _ = all.wait_for(|s| *s) => {}
        _ = one.wait_for(|s| *s) => {}
    }
}

fn rand_u64() -> u64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8]))
}

async fn wait_until_listening(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("gateway did not listen on {addr}")
}

/// A valid v3 journey for `operator_journey_id`, started an hour ago.
pub fn journey(operator_journey_id: &str) -> Value {
    let now = chrono::Utc::now();
    let start =
        (now - chrono::Duration::minutes(60)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let end =
        (now - chrono::Duration::minutes(30)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let identity = |key: char, phone: &str| {
        json!({"identity_key": key.to_string().repeat(64), "operator_user_id": format!("user-{key}"),
               "phone": phone, "over_18": true})
    };
    json!({
        "operator_journey_id": operator_journey_id,
        "operator_trip_id": "trip-1",
        "operator_class": "C",
        "incentives": [],
        "start": {"datetime": start, "lat": 48.8566, "lon": 2.3522},
        "end": {"datetime": end, "lat": 48.9, "lon": 2.4},
        "distance": 12_000,
        "driver": {"identity": identity('a', "+33601020304"), "revenue": 300},
        "passenger": {"identity": identity('b', "+33601020305"), "contribution": 300, "seats": 1}
    })
}

impl Stack {
    /// Creates a user of `role` in `operator_id` (as `admin`) and signs it in.
    pub async fn user_with_role(
        &self,
        admin: &HeaderMap,
        operator_id: i64,
        role: &str,
    ) -> anyhow::Result<HeaderMap> {
        let email = format!("user-{}@operator.test", uuid::Uuid::new_v4().simple());
        self.request(
            reqwest::Method::POST,
            &format!("/admin/operators/{operator_id}/users"),
        )
        .headers(admin.clone())
        .json(
            &json!({"email": email, "password": ADMIN_PASSWORD, "role": role,
                      "first_name": "Grace", "last_name": "Hopper"}),
        )
        .send()
        .await?
        .error_for_status()?;
        self.sign_in(&email, ADMIN_PASSWORD).await
    }

    /// A new API credential (`{"access_key","secret_key","api_key"}`) of `operator_id`,
    /// created by `by` (who names the operator, as the reference requires of everyone).
    pub async fn credential(&self, by: &HeaderMap, operator_id: i64) -> anyhow::Result<Value> {
        let body = json!({"operator_id": operator_id});
        Ok(self
            .request(reqwest::Method::POST, "/v3/auth/credentials")
            .headers(by.clone())
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// Trades an API key for a token pair; returns the answer's `data`.
    pub async fn token_pair(&self, api_key: &str) -> anyhow::Result<Value> {
        let answer: Value = self
            .request(reqwest::Method::POST, "/api/v1/auth/token/")
            .json(&json!({"apiKey": api_key}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(answer["data"].clone())
    }
}

/// A browser without a cookie jar: the cookies it holds are sent by hand, so a test sees
/// exactly what goes out.
#[derive(Debug, Clone, Default)]
pub struct Browser {
    pub sessid: String,
    pub sessauth: Option<String>,
    pub csrf: Option<String>,
}

impl Browser {
    /// The `Cookie` header this browser sends.
    pub fn cookie(&self) -> String {
        match &self.sessauth {
            Some(token) => format!("sessid={}; sessauth={token}", self.sessid),
            None => format!("sessid={}", self.sessid),
        }
    }
}

/// The `Set-Cookie` line of `response` for cookie `name`, if it sets one.
pub fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|line| line.split_once('=').is_some_and(|(n, _)| n.trim() == name))
        .map(str::to_owned)
}

/// The value a `Set-Cookie` line sets.
pub fn cookie_value(set_cookie_line: &str) -> String {
    let pair = set_cookie_line.split(';').next().unwrap_or_default();
    pair.split_once('=')
        .map_or_else(String::new, |(_, v)| v.trim().to_owned())
}

impl Stack {
    /// A browser that has been handed its `sessid` by a first request.
    pub async fn browser(&self) -> anyhow::Result<Browser> {
        let response = self.request(reqwest::Method::GET, "/health").send().await?;
        let line = set_cookie(&response, "sessid").context("a first request gets a sessid")?;
        Ok(Browser {
            sessid: cookie_value(&line),
            ..Browser::default()
        })
    }

    /// Signs `browser` in with `POST /profile/signin`; keeps the `sessauth` cookie and the
    /// CSRF token and returns the response body.
    pub async fn browser_sign_in(
        &self,
        browser: &mut Browser,
        login: &str,
        password: &str,
    ) -> anyhow::Result<Value> {
        let response = self
            .request(reqwest::Method::POST, "/profile/signin")
            .header("cookie", browser.cookie())
            .json(&json!({"login": login, "password": password}))
            .send()
            .await?;
        anyhow::ensure!(response.status() == 200, "signin: {}", response.status());
        let line = set_cookie(&response, "sessauth").context("signin sets sessauth")?;
        browser.sessauth = Some(cookie_value(&line));
        let body: Value = response.json().await?;
        browser.csrf = body["csrf_token"].as_str().map(str::to_owned);
        Ok(body)
    }
}

/// A private `redis-server` for tests that stop and restart Redis (never the machine's
/// shared one). It keeps nothing on disk, so it comes back empty, as this machine's does.
/// Killed when dropped, also on a panic.
pub struct RedisServer {
    port: u16,
    child: Option<std::process::Child>,
}

impl RedisServer {
    /// Starts one on a free port; returns once it accepts connections.
    pub async fn start() -> anyhow::Result<Self> {
        let port = free_port()?.port();
        let mut server = Self { port, child: None };
        server.resume().await?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL: an outage, not a shutdown) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub async fn resume(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "redis-server already runs");
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("redis-server must be installed for the Redis failure tests")?;
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(client) = redis::Client::open(self.url())
                && let Ok(mut conn) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<()>(&mut conn)
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::bail!("redis-server did not start on {addr}")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A private PostgreSQL server for tests that crash and restart the database (never the
/// machine's shared one): its own data directory (`initdb` in a temp dir), its own port.
/// As root (the tests' CI) it runs as the `postgres` OS user, which PostgreSQL requires.
/// Its processes are killed and its directory removed when dropped, also on a panic.
pub struct PgServer {
    port: u16,
    dir: PathBuf,
    /// The uid and gid it runs as when the tests run as root.
    owner: Option<(u32, u32)>,
    child: Option<std::process::Child>,
}

/// Where Debian puts PostgreSQL's server binaries (`RPC_TEST_PG_BIN` overrides).
fn pg_bin(tool: &str) -> PathBuf {
    let dir = std::env::var("RPC_TEST_PG_BIN").unwrap_or_else(|_| {
        let versions = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten();
        let newest = (versions.flatten())
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .max()
            .unwrap_or(15);
        format!("/usr/lib/postgresql/{newest}/bin")
    });
    PathBuf::from(dir).join(tool)
}

/// The uid and gid of OS user `name` (`id -u`, `id -g`).
fn os_user(name: &str) -> anyhow::Result<(u32, u32)> {
    let id = |flag: &str| -> anyhow::Result<u32> {
        let out = std::process::Command::new("id")
            .args([flag, name])
            .output()?;
        anyhow::ensure!(out.status.success(), "no OS user {name}");
        Ok(String::from_utf8(out.stdout)?.trim().parse()?)
    };
    Ok((id("-u")?, id("-g")?))
}

impl PgServer {
    /// Makes a data directory and starts the server on a free port; returns once it accepts
    /// connections. The superuser is `postgres`, trusted on loopback.
    pub async fn start() -> anyhow::Result<Self> {
        use std::os::unix::process::CommandExt;
        let port = free_port()?.port();
        let dir = std::env::temp_dir().join(format!("rpc-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let owner = if current_uid()? == 0 {
            let owner = os_user("postgres")
                .context("PostgreSQL refuses to run as root: the postgres OS user is needed")?;
            std::os::unix::fs::chown(&dir, Some(owner.0), Some(owner.1))?;
            Some(owner)
        } else {
            None
        };
        let mut server = Self {
            port,
            dir,
            owner,
            child: None,
        };
        let mut initdb = std::process::Command::new(pg_bin("initdb"));
        initdb
            .arg("-D")
            .arg(server.data())
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if let Some((uid, gid)) = owner {
            initdb.uid(uid).gid(gid);
        }
        let out = initdb
            .output()
            .context("initdb must be installed (scripts/prereqs.sh services)")?;
        anyhow::ensure!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        server.resume().await?;
        Ok(server)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Kills the postmaster and every backend at once (SIGKILL to its process group: a
    /// crash, not a shutdown) and waits until the postmaster is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let group = format!("-{}", child.id());
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &group])
                .stderr(std::process::Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same data directory and port (crash recovery replays the
    /// WAL); returns once it accepts connections.
    pub async fn resume(&mut self) -> anyhow::Result<()> {
        use std::os::unix::process::CommandExt;
        anyhow::ensure!(self.child.is_none(), "postgres already runs");
        let mut command = std::process::Command::new(pg_bin("postgres"));
        command
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "max_connections=100"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            // Its own process group, so a kill reaches the backends too.
            .process_group(0);
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        self.child = Some(command.spawn().context("cannot start postgres")?);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(pool) = sqlx::PgPool::connect(&self.url()).await {
                let ok = sqlx::query("SELECT 1").execute(&pool).await.is_ok();
                pool.close().await;
                if ok {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("postgres did not start on port {}", self.port)
    }
}

/// This process's uid (`id -u`).
fn current_uid() -> anyhow::Result<u32> {
    let out = std::process::Command::new("id").arg("-u").output()?;
    Ok(String::from_utf8(out.stdout)?.trim().parse()?)
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
