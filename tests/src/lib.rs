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

fn database_url() -> String {
    std::env::var("RPC_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn redis_url() -> String {
    std::env::var("RPC_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A running stack.
pub struct Stack {
    pub mode: Mode,
    /// `http://127.0.0.1:<port>` of the gateway.
    pub url: String,
    pub admin_url: String,
    pub registry_addr: SocketAddr,
    pub auth_addr: SocketAddr,
    pub http: reqwest::Client,
    /// auth-service's signing keys: tests sign tokens it could have signed (expired ones).
    pub keys: auth_service::keyring::Keyring,
    gateway: Option<gateway::Running>,
    stop: tokio::sync::watch::Sender<bool>,
    dir: PathBuf,
    schemas: Vec<String>,
}

/// A port free right now (the gateway cannot report the port it bound).
fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

impl Stack {
    pub async fn start(mode: Mode) -> anyhow::Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("rpc-e2e-{id}"));
        std::fs::create_dir_all(&dir)?;
        let secret = Secret::new(format!("{id}{id}"));
        let (auth_db, registry_db, feed, schemas) = match mode {
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
                    RedisFeed::connect(&redis_url(), &format!("test:{id}:"))
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

        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut auth = auth_service::Settings {
            listen: any_port,
            database: auth_db,
            assertion_secret: secret.clone(),
            ..Default::default()
        };
        auth.bootstrap.email = Some(ADMIN_EMAIL.into());
        auth.bootstrap.password = Some(Secret::new(ADMIN_PASSWORD.into()));
        auth.bootstrap.password_file = dir.join("bootstrap-admin.txt");
        let auth_app = auth_service::Application::build(auth, feed.clone()).await?;

        let registry = registry::Settings {
            listen: any_port,
            database: registry_db,
            assertion_secret: secret.clone(),
            cee: registry::CeeSettings {
                private_key_pem: Secret::new(CEE_TEST_KEY.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let registry_app = registry::Application::build(registry).await?;

        let mut gw = gateway::Settings {
            listen: free_port()?,
            admin_listen: free_port()?,
            auth_service: auth_app.local_addr(),
            registry: registry_app.local_addr(),
            assertion_secret: secret,
            ..Default::default()
        };
        // Keys retired by a rotation leave the gateway within a second.
        gw.jwks_reload_secs = 1;
        gw.server.threads = 1;
        gw.server.grace_period_seconds = 0;
        gw.server.graceful_shutdown_timeout_seconds = 1;
        gw.server.pid_file = dir.join("gateway.pid").display().to_string();
        gw.server.upgrade_sock = dir.join("upgrade.sock").display().to_string();

        let (stop, rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let (auth_addr, registry_addr) = (auth_app.local_addr(), registry_app.local_addr());
        let keys = auth_app.keyring();
        tokio::spawn(auth_app.run_until_stopped(stopped(rx.clone())));
        tokio::spawn(registry_app.run_until_stopped(stopped(rx)));
        let gateway = gateway::spawn(&gw, feed)?;
        wait_until_listening(gw.listen).await?;
        Ok(Self {
            mode,
            url: format!("http://{}", gw.listen),
            admin_url: format!("http://{}", gw.admin_listen),
            registry_addr,
            auth_addr,
            http: reqwest::Client::new(),
            keys,
            gateway: Some(gateway),
            stop,
            dir,
            schemas,
        })
    }

    /// Stops everything and removes what the test created.
    pub async fn stop(mut self) {
        if let Some(gateway) = self.gateway.take() {
            let _ = tokio::task::spawn_blocking(move || gateway.stop()).await;
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

    /// A request through the gateway.
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
        let created: Value = self
            .request(reqwest::Method::POST, "/applications")
            .headers(op_admin.clone())
            .json(&json!({"name": "backend"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(created["token"].as_str().context("token")?.to_owned())
    }

    /// Polls `check` until it holds or `within` passes; for effects that propagate (Redis).
    pub async fn eventually<F, Fut>(&self, within: Duration, mut check: F) -> bool
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

    /// A new API credential (`{"access_key","secret_key","api_key"}`) created by `by`, of
    /// `operator_id` when given.
    pub async fn credential(
        &self,
        by: &HeaderMap,
        operator_id: Option<i64>,
    ) -> anyhow::Result<Value> {
        let body = match operator_id {
            Some(id) => json!({"operator_id": id}),
            None => json!({}),
        };
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
