//! auth-service: who may call the registry. Operators and their users, sign-in, application
//! tokens, the signing keys and their JWKS, the blacklist record and the audit log.
//!
//! It signs credentials; it does not check them on each request (the gateway does, with the
//! JWKS). Like the registry, it trusts only requests carrying the gateway's identity
//! assertion, except the JWKS, which is public.
//!
//! Start at [`Application::build`]; routes are in [`http`], SQL in [`store`].

pub mod bootstrap;
pub mod cli;
pub mod http;
pub mod kek;
pub mod keyring;
pub mod passwords;
pub mod publisher;
pub mod refresh;
pub mod settings;
pub mod signals;
pub mod store;
pub mod throttle;

use anyhow::Context;
use auth_token::AssertionKey;
use blacklist::Feed;
use prometheus::Registry;
use rpc_service::db::Database;
use rpc_service::http::HttpMetrics;
use rpc_service::identity::Gatekeeper;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub use settings::Settings;

static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// auth-service's store on `database`, migrated (tools and tests that read or keep what it
/// stores).
pub async fn open_store(
    database: &rpc_service::db::DatabaseSettings,
) -> anyhow::Result<store::Store> {
    Ok(store::Store::new(
        Database::connect(database, &POSTGRES, &SQLITE).await?,
    ))
}

/// A built, bound, not yet serving auth-service.
pub struct Application {
    listener: TcpListener,
    state: http::State,
    /// Checks the gateway's assertion on every request, before routing.
    gatekeeper: Arc<Gatekeeper>,
    metrics: HttpMetrics,
    registry: Registry,
    publisher: Arc<publisher::Publisher>,
    republish_every: Duration,
    compare_every: Duration,
    usage: settings::UsageSettings,
    watch: signals::Watch,
}

impl Application {
    /// Connects the database (running migrations), loads keys, creates the bootstrap admin
    /// if needed, rewrites the blacklist's fast copy in `feed` from the database, and binds
    /// the listener. A feed that does not answer is not fatal: the copy is rewritten once it
    /// does (see [`publisher`]).
    pub async fn build(settings: Settings, feed: Arc<dyn Feed>) -> anyhow::Result<Self> {
        let assertion = AssertionKey::new(settings.assertion_secret.expose().as_bytes())
            .context("assertion_secret")?;
        let db = Database::connect(&settings.database, &POSTGRES, &SQLITE).await?;
        let store = store::Store::new(db);
        let keks = kek::Keks::from_settings(&settings)?;
        let keys = keyring::Keyring::load_or_create(&store, keks).await?;
        bootstrap::ensure_admin(&store, &settings.bootstrap).await?;
        let publisher = Arc::new(publisher::Publisher::new(store.clone(), feed));
        match publisher.republish().await {
            Ok(entries) => tracing::info!(entries, "blacklist published"),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "blacklist not published yet; will retry")
            }
        }

        let registry = Registry::new();
        let metrics = HttpMetrics::register(&registry, "auth").context("metrics")?;
        let watch = signals::Watch {
            store: store.clone(),
            publisher: publisher.clone(),
            settings: settings.signals.clone(),
            metrics: signals::SignalMetrics::register(&registry).context("metrics")?,
        };
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let state =
            http::State::new(store, keys, publisher.clone(), settings.cookie_secure).await?;
        Ok(Self {
            listener,
            state,
            gatekeeper: Arc::new(Gatekeeper::new(assertion, http::AUDIENCE)),
            metrics,
            registry,
            publisher,
            republish_every: Duration::from_secs(settings.blacklist.republish_check_secs.max(1)),
            compare_every: Duration::from_secs(settings.blacklist.compare_secs.max(1)),
            usage: settings.usage.clone(),
            watch,
        })
    }

    /// The signing keys this service uses (for tests that need a token the service would
    /// sign, such as one already expired).
    pub fn keyring(&self) -> keyring::Keyring {
        self.state.keys().clone()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests.
    /// The blacklist's fast copy stays equal to the database while it serves.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(self.state.keys().clone().keep_fresh(stopped.clone()));
        tokio::spawn(
            self.publisher
                .run(self.republish_every, self.compare_every, stopped.clone()),
        );
        tokio::spawn(self.watch.run(stopped.clone()));
        tokio::spawn(usage_upkeep(
            self.state.store().clone(),
            self.usage.clone(),
            stopped,
        ));
        let shutdown = async move {
            shutdown.await;
            let _ = stop.send(true);
        };
        let routes = http::routes(self.state, self.registry, self.metrics);
        rpc_service::http::serve(routes, self.gatekeeper, self.listener, shutdown).await;
    }
}

/// Rolls usage minutes up to hours and deletes what is past retention, every
/// `usage.upkeep_secs`, until `stopped` turns true.
async fn usage_upkeep(
    store: store::Store,
    usage: settings::UsageSettings,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(usage.upkeep_secs.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        let now = chrono::Utc::now().timestamp();
        match store.usage_upkeep(now, usage.retention()).await {
            Ok(done) => tracing::debug!(?done, "usage upkeep"),
            Err(e) => tracing::warn!(error = %e, "usage upkeep failed; will retry"),
        }
    }
}
