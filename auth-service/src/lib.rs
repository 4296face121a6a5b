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
pub mod keyring;
pub mod passwords;
pub mod refresh;
pub mod settings;
pub mod store;
pub mod throttle;

use anyhow::Context;
use auth_token::AssertionKey;
use blacklist::{Entry, Feed, Kind};
use prometheus::Registry;
use rpc_service::db::Database;
use rpc_service::http::HttpMetrics;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

pub use settings::Settings;

static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// A built, bound, not yet serving auth-service.
pub struct Application {
    listener: TcpListener,
    state: http::State,
    metrics: HttpMetrics,
    registry: Registry,
}

impl Application {
    /// Connects the database (running migrations), loads keys, creates the bootstrap admin
    /// if needed, republishes the blacklist to `feed`, and binds the listener.
    pub async fn build(settings: Settings, feed: Arc<dyn Feed>) -> anyhow::Result<Self> {
        let assertion = AssertionKey::new(settings.assertion_secret.expose().as_bytes())
            .context("assertion_secret")?;
        let db = Database::connect(&settings.database, &POSTGRES, &SQLITE).await?;
        let store = store::Store::new(db);
        let keys = keyring::Keyring::load_or_create(&store).await?;
        bootstrap::ensure_admin(&store, &settings.bootstrap).await?;
        republish_blacklist(&store, feed.as_ref()).await?;

        let registry = Registry::new();
        let metrics = HttpMetrics::register(&registry, "auth").context("metrics")?;
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let state = http::State::new(
            store,
            keys,
            feed,
            Arc::new(assertion),
            settings.cookie_secure,
        )
        .await?;
        Ok(Self {
            listener,
            state,
            metrics,
            registry,
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
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        tokio::spawn(self.state.keys().clone().keep_fresh());
        let routes = http::routes(self.state, self.registry, self.metrics);
        rpc_service::http::serve(routes, self.listener, shutdown).await;
    }
}

/// Rewrites the feed's fast copy from the database, the system of record: after a Redis
/// flush or restart, the blacklist comes back with the next auth-service start.
async fn republish_blacklist(store: &store::Store, feed: &dyn Feed) -> anyhow::Result<()> {
    let mut by_target: std::collections::HashMap<String, Vec<Entry>> = Default::default();
    for row in store.active_blacklist().await? {
        let Ok(kind) = row.target_kind.parse::<Kind>() else {
            continue;
        };
        let entry = Entry {
            kind,
            value: row.target_value,
            expires_at: row.expires_at.map(|t| t.timestamp()),
        };
        by_target.entry(entry.key()).or_default().push(entry);
    }
    // Several entries may name one target; the strongest holds.
    let entries: Vec<Entry> = by_target
        .into_values()
        .filter_map(Entry::strongest)
        .collect();
    feed.reset(&entries)
        .await
        .context("cannot publish the blacklist to the feed")?;
    Ok(())
}
