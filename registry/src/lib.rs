//! The carpool proof registry: operators send journeys, read their status, and (later) cancel,
//! patch, list and claim CEE. A warp service behind the gateway; it trusts only the gateway's
//! signed identity assertion.
//!
//! Layout (each boundary is a rule):
//! - [`domain`]: validated journey types, terms of use, status model. No SQL, no HTTP.
//! - [`store`]: the only SQL, behind the [`store::JourneyStore`] trait (PostgreSQL or SQLite).
//! - [`http`]: the only warp code: routes, handlers, metrics.
//! - [`jobs`] runs the lifecycle's durable jobs; [`exports`] writes, mails and expires export
//!   files.
//!
//! Start at [`Application::build`]; `main.rs` only loads [`Settings`] and runs it.

mod cee_key;
pub mod clock;
pub mod domain;
pub mod exports;
pub mod http;
pub mod jobs;
mod settings;
pub mod store;

pub use settings::{
    CeeSettings, ExportsSettings, IngestSettings, JobsSettings, MailSettings, MailTls, Settings,
};

use anyhow::Context;
use auth_token::AssertionKey;
use rpc_service::db::Database;
use rpc_service::http::{observed, operational, serve};
use rpc_service::identity::Gatekeeper;
use sqlx::migrate::Migrator;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Creates or updates the registry's tables (the migrations), as [`Application::build`] does
/// first: `registry migrate`, a deployment's step before a rollout.
pub async fn migrate(database: &rpc_service::db::DatabaseSettings) -> anyhow::Result<()> {
    Database::connect(database, &POSTGRES_MIGRATIONS, &SQLITE_MIGRATIONS)
        .await
        .context("cannot open the registry database")?;
    Ok(())
}

/// A registry ready to serve: database migrated, port bound.
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    routes: BoxedFilter<(Response,)>,
    gatekeeper: Arc<Gatekeeper>,
    metrics: http::Metrics,
    runner: jobs::Runner,
    poll_interval: Option<std::time::Duration>,
}

impl Application {
    /// Checks the assertion secret, connects the database and runs its migrations, and binds
    /// `settings.listen` (port 0 allowed).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Arc::new(clock::SystemClock)).await
    }

    /// [`Application::build`], reading the time from `clock`.
    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn clock::Clock>,
    ) -> anyhow::Result<Self> {
        let secret = settings.assertion_secret.expose();
        anyhow::ensure!(
            !secret.is_empty(),
            "assertion_secret is not set: give the registry the gateway's \
             assertion_secrets.registry (REGISTRY__ASSERTION_SECRET)"
        );
        let key = AssertionKey::new(secret.as_bytes())
            .context("assertion_secret must be at least 32 bytes")?;
        let db = Database::connect(&settings.database, &POSTGRES_MIGRATIONS, &SQLITE_MIGRATIONS)
            .await
            .context("cannot open the registry database")?;
        let registry = prometheus::Registry::new();
        let metrics = http::Metrics::register(&registry).context("cannot register metrics")?;
        let cee = cee_state(&settings.cee, &db)?;
        let lifecycle = store::lifecycle_for_database(&db);
        let exports = Arc::new(exports::Exports::new(
            store::exports_for_database(&db),
            &settings.exports,
        )?);
        let runner = jobs::Runner::new(
            lifecycle.clone(),
            clock.clone(),
            metrics.clone(),
            Arc::new(cee.france.clone()),
            exports.clone(),
            chrono::TimeDelta::seconds(i64::try_from(settings.jobs.lease_secs).unwrap_or(300)),
            i64::from(settings.jobs.batch.max(1)),
        );
        let state = Arc::new(http::State {
            store: store::observed(
                store::for_database(&db, &settings.ingest, metrics.insert_batch.clone()),
                metrics.db.clone(),
            ),
            lifecycle,
            exports,
            metrics: metrics.clone(),
            clock,
            cee,
        });
        let routes = operational(db, registry)
            .or(http::api(state))
            .unify()
            .boxed();
        let gatekeeper = Arc::new(Gatekeeper::new(key, http::AUDIENCE));
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let local_addr = listener.local_addr().context("no local address")?;
        let poll_interval = (settings.jobs.poll_interval_ms > 0)
            .then(|| std::time::Duration::from_millis(settings.jobs.poll_interval_ms));
        Ok(Self {
            listener,
            local_addr,
            routes,
            gatekeeper,
            metrics,
            runner,
            poll_interval,
        })
    }

    /// The lifecycle job runner of this registry (tests run it by hand, or start others on
    /// the same database with [`jobs::Runner::another`]).
    pub fn runner(&self) -> jobs::Runner {
        self.runner.clone()
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves, and runs the lifecycle jobs unless `jobs.poll_interval_ms` is 0, until
    /// `shutdown` resolves, then lets in-flight requests finish. The runner stops at once: a
    /// job cut short rolls back and is done again later.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let runner = self
            .poll_interval
            .map(|interval| tokio::spawn(self.runner.run(interval)));
        let routes = self.routes.recover(rpc_service::error::recover).unify();
        let routes = observed(routes, self.metrics.http, http::route_template);
        serve(routes, self.gatekeeper, self.listener, shutdown).await;
        if let Some(runner) = runner {
            runner.abort();
        }
    }
}

/// The CEE handlers' state: store, campaign, France boundary, signing key.
fn cee_state(settings: &settings::CeeSettings, db: &Database) -> anyhow::Result<http::Cee> {
    anyhow::ensure!(
        settings.campaign_start < settings.campaign_end,
        "cee.campaign_start must be before cee.campaign_end"
    );
    let france = domain::cee::France::load()
        .map_err(|e| anyhow::anyhow!("registry/data/france.geojson is broken: {e}"))?;
    Ok(http::Cee {
        store: store::cee_for_database(db),
        campaign: domain::cee::Campaign {
            start: settings.campaign_start,
            end: settings.campaign_end,
            delay: chrono::TimeDelta::days(i64::from(settings.delay_days)),
        },
        france,
        signer: cee_key::signer(settings)?,
    })
}
