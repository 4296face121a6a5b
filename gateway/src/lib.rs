//! The gateway: the single public endpoint (CONTRACT §1–§2), a pingora proxy in front of
//! auth-service and registry.
//!
//! Per request: route → credential → permission → version → forward with a signed identity
//! assertion. Credentials are verified locally against auth-service's JWKS and an exact
//! in-memory blacklist kept current by a change feed; nothing on the request path waits for
//! Redis or a database.
//!
//! - [`routes`], [`authorize`], [`reason`], [`cookies`]: the decisions, plain functions.
//! - [`ratelimit`]: per (class, subject) limits, leased from Redis across replicas.
//! - [`proxy`]: the pingora `ProxyHttp` glue.
//! - [`connections`]: per-replica and per-network connection caps.
//! - [`tls`]: the HTTPS listener's certificate, checked at start and reloaded live.
//! - [`jwks`], [`admin`], [`metrics`]: keys, the admin port, metrics.
//! - [`spawn`] / [`build_server`]: start it (in a thread for tests and the all-in-one runner).

pub mod admin;
pub mod authorize;
pub mod connections;
pub mod cookies;
pub mod forward;
pub mod jwks;
pub mod metrics;
pub mod proxy;
pub mod proxy_protocol;
pub mod ratelimit;
pub mod reason;
pub mod routes;
pub mod serve;
pub mod settings;
pub mod tls;
pub mod token_cache;
pub mod upstream_tls;
pub mod upstreams;
pub mod usage;

use anyhow::Context;
use async_trait::async_trait;
use auth_token::AssertionKey;
use auth_token::assertion::Prepared;
use blacklist::{BlacklistSet, Feed};
use pingora::listeners::{L4BufferSettings, ListenerConfig, TcpSocketOptions};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::{BackgroundService, background_service};
use pingora::services::listening::Service;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use settings::Settings;

/// What every part of the gateway reads.
pub struct Shared {
    pub assertion: AssertionKeys,
    pub jwks: jwks::Jwks,
    pub blacklist: Arc<BlacklistSet>,
    /// Tokens whose signature already verified under the current keys.
    pub tokens: token_cache::TokenCache,
    pub limiter: ratelimit::Limiter,
    pub metrics: metrics::Metrics,
    /// auth-service's and the registry's replicas.
    pub upstreams: upstreams::Upstreams,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Seconds a kept-alive client connection waits for its next request; `None`: no
    /// keep-alive ([`settings::ConnectionSettings::keepalive_idle_secs`]).
    pub keepalive_idle_secs: Option<u64>,
    /// The session cookies' names and whether they are `Secure` (over TLS: a public address
    /// that is not loopback, or `cookie_secure`).
    pub cookies: cookies::Names,
    /// Peers whose `X-Forwarded-For` names the client ([`Settings::trusted_proxies`]).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `Strict-Transport-Security` for answers over TLS (`None`: not sent).
    pub hsts: Option<http::HeaderValue>,
    /// The HTTPS port a request on the plain listener is sent to with 308, when TLS is on
    /// and the plain listener is not loopback; `None`: plain requests are served.
    pub redirect_to_tls: Option<u16>,
    /// TLS to the upstreams, when on.
    pub upstream_tls: Option<Arc<upstream_tls::UpstreamTls>>,
    /// Usage records, when on ([`settings::UsageSettings::enabled`]).
    pub usage: Option<Arc<usage::Recorder>>,
}

/// The assertion keys, one per upstream.
pub struct AssertionKeys {
    auth_service: AssertionKey,
    registry: AssertionKey,
    /// Tells these keys from another gateway's in this process (tests run several), for the
    /// prepared principals each thread keeps ([`AssertionKeys::sign`]).
    id: u64,
}

/// Principals prepared per upstream on one thread at most; past it, that upstream's are
/// dropped and prepared again as they come.
const PREPARED_PER_THREAD: usize = 1024;

/// Principals and their prepared parts under one key.
type PreparedBy = HashMap<auth_token::Principal, Prepared, foldhash::fast::RandomState>;

/// The principals prepared on this thread, per upstream, under the keys `keys` names.
#[derive(Default)]
struct PreparedPrincipals {
    keys: u64,
    auth_service: PreparedBy,
    registry: PreparedBy,
}

thread_local! {
    static PREPARED: std::cell::RefCell<PreparedPrincipals> =
        std::cell::RefCell::new(PreparedPrincipals::default());
}

impl AssertionKeys {
    /// Refuses secrets shorter than 32 bytes, and one secret for both upstreams (then either
    /// could sign what the other accepts).
    pub fn new(secrets: &settings::AssertionSecrets) -> anyhow::Result<Self> {
        let (auth, registry) = (secrets.auth_service.expose(), secrets.registry.expose());
        anyhow::ensure!(
            auth != registry,
            "assertion_secrets.auth_service and assertion_secrets.registry must differ: each \
             upstream gets its own"
        );
        static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Ok(Self {
            auth_service: AssertionKey::new(auth.as_bytes())
                .context("assertion_secrets.auth_service")?,
            registry: AssertionKey::new(registry.as_bytes())
                .context("assertion_secrets.registry")?,
            id: IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// The identity assertion of `principal` for `request` to `upstream`, signed with that
    /// principal's part prepared once on this thread ([`AssertionKey::prepare`]): its JSON,
    /// base64 and HMAC are spent once per credential rather than once per request (issue 24).
    /// Prepared parts are found by the whole principal, so one can only ever serve the very
    /// principal it was made from.
    pub fn sign(
        &self,
        upstream: routes::Upstream,
        principal: &auth_token::Principal,
        request: &auth_token::Request<'_>,
        rid: &str,
        now: i64,
    ) -> String {
        let key = self.of(upstream);
        let audience = upstream.audience();
        PREPARED.with_borrow_mut(|prepared| {
            if prepared.keys != self.id {
                *prepared = PreparedPrincipals {
                    keys: self.id,
                    ..PreparedPrincipals::default()
                };
            }
            let known = match upstream {
                routes::Upstream::AuthService => &mut prepared.auth_service,
                routes::Upstream::Registry => &mut prepared.registry,
            };
            if let Some(part) = known.get(principal) {
                return key.sign_prepared(part, audience, request, rid, now);
            }
            let part = key.prepare(principal);
            let token = key.sign_prepared(&part, audience, request, rid, now);
            if known.len() >= PREPARED_PER_THREAD {
                known.clear();
            }
            known.insert(principal.clone(), part);
            token
        })
    }

    /// The key of `upstream`.
    pub fn of(&self, upstream: routes::Upstream) -> &AssertionKey {
        match upstream {
            routes::Upstream::AuthService => &self.auth_service,
            routes::Upstream::Registry => &self.registry,
        }
    }
}

/// A number as a header value, in one allocation of its digits: `HeaderValue::from(u64)`
/// writes into a growable buffer, then hands it over with a second allocation, a shared
/// header, as its length is not its capacity (issue 24).
pub fn header_number(n: u64) -> http::HeaderValue {
    let digits = itoa::Buffer::new().format(n).as_bytes().to_vec();
    http::HeaderValue::from_maybe_shared(bytes::Bytes::from(digits))
        .expect("digits are a header value")
}

/// The wall clock in unix seconds, as the pipeline reads it (0 before 1970).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Builds the pingora server: the proxy, the admin endpoint, the blacklist sync and the
/// first JWKS fetch. `opt` carries pingora's command-line flags (`-u` upgrade, ...).
pub fn build_server(
    settings: &Settings,
    feed: Arc<dyn Feed>,
    opt: Option<Opt>,
) -> anyhow::Result<Server> {
    let assertion = AssertionKeys::new(&settings.assertion_secrets)?;
    let versions = routes::Versions::new(&settings.versions)
        .context("versions must name at least one version like v3.3")?;
    let metrics = metrics::Metrics::new().context("metrics")?;
    let counters: Arc<dyn ratelimit::SharedCounter> = match &settings.redis {
        Some(redis) => Arc::new(metrics::ObservedCounter::new(
            Arc::new(
                ratelimit::RedisCounter::new(redis.url.expose(), &redis.prefix)
                    .context("redis.url")?,
            ),
            &metrics,
        )),
        None => Arc::new(ratelimit::MemoryCounter::default()),
    };
    let upstream_tls = upstream_tls::UpstreamTls::load(&settings.upstream_tls)
        .map_err(|e| anyhow::anyhow!("upstream_tls: {e}"))?;
    let upstream_tls = upstream_tls.map(Arc::new);
    let upstreams = upstreams_of(settings, upstream_tls.as_deref());
    let jwks = jwks::Jwks::new(
        upstreams::Caller::new(
            "/.well-known/jwks.json",
            upstreams.auth_service.clone(),
            upstream_tls.clone(),
            jwks::Jwks::client_builder,
        ),
        Duration::from_millis(settings.jwks_refresh_min_interval_ms),
    );
    let shared = Arc::new(Shared {
        assertion,
        jwks,
        blacklist: Arc::new(BlacklistSet::new()),
        tokens: token_cache::TokenCache::segmented(
            settings.token_cache_capacity,
            settings.server.proxy_services(),
        ),
        limiter: ratelimit::Limiter::new(settings.rate_limits.clone(), counters),
        metrics,
        upstreams,
        connect_timeout: Duration::from_secs(settings.upstream_connect_timeout_secs),
        read_timeout: Duration::from_secs(settings.upstream_read_timeout_secs),
        keepalive_idle_secs: Some(settings.connections.keepalive_idle_secs).filter(|&s| s > 0),
        cookies: cookies::Names::new(settings.cookie_secure || !settings.listen.ip().is_loopback()),
        trusted_proxies: settings.trusted_proxies.clone(),
        hsts: (settings.tls.hsts_max_age_secs > 0).then(|| {
            http::HeaderValue::from_str(&format!("max-age={}", settings.tls.hsts_max_age_secs))
                .expect("digits are a header value")
        }),
        redirect_to_tls: settings
            .tls
            .listen
            .filter(|_| !settings.listen.ip().is_loopback())
            .map(|tls| tls.port()),
        upstream_tls,
        usage: settings
            .usage
            .enabled
            .then(|| Arc::new(usage::Recorder::new(settings.server.proxy_services()))),
    });
    if let Some(tls) = settings.tls.listen {
        anyhow::ensure!(
            tls.port() != settings.listen.port(),
            "tls.listen must have a port of its own (the plain listener has {})",
            settings.listen.port()
        );
    }
    // The certificate is checked before anything listens: a gateway that cannot serve it
    // does not start, and says which file is at fault.
    let tls = match settings.tls.listen {
        Some(_) => Some(Arc::new(
            tls::Reloader::new(&settings.tls, &shared.metrics)
                .map_err(|e| anyhow::anyhow!("tls: {e}"))?,
        )),
        None => None,
    };
    let acceptor = match &tls {
        Some(reloader) => Some(Arc::new(
            tls::acceptor(reloader.certificates()).context("tls: the server configuration")?,
        )),
        None => None,
    };

    let s = &settings.server;
    for path in [&s.pid_file, &s.upgrade_sock] {
        if let Some(dir) = std::path::Path::new(path).parent() {
            std::fs::create_dir_all(dir).ok();
        }
    }
    let conf = ServerConf {
        // The proxy services set their own; this is the admin port's and the tasks'.
        threads: 1,
        work_stealing: s.work_stealing,
        grace_period_seconds: Some(s.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(s.graceful_shutdown_timeout_seconds),
        pid_file: s.pid_file.clone(),
        upgrade_sock: s.upgrade_sock.clone(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let c = &settings.connections;
    let limits = Arc::new(connections::Limits::new(
        c.max_per_replica,
        c.max_per_network,
        settings.trusted_proxies.clone(),
    ));
    for index in 0..s.proxy_services() {
        let gateway = proxy::Gateway::new(shared.clone(), versions.clone(), index);
        let service = proxy_service(
            gateway,
            settings,
            &shared,
            limits.clone(),
            acceptor.clone(),
            index,
        );
        server.add_service(service);
    }
    if let Some(reloader) = tls {
        server.add_service(background_service(
            "tls reload",
            tls::ReloadService {
                reloader,
                every: Duration::from_secs(settings.tls.reload_secs),
            },
        ));
    }

    let mut admin = admin::service(shared.clone());
    admin.add_tcp(&settings.admin_listen.to_string());
    server.add_service(admin);

    server.add_service(background_service(
        "blacklist sync",
        BlacklistSync {
            feed,
            shared: shared.clone(),
            options: blacklist::SyncOptions {
                reconcile_every: Duration::from_secs(settings.blacklist_reconcile_secs.max(1)),
                now: unix_now,
                ..Default::default()
            },
        },
    ));
    if let Some(recorder) = &shared.usage {
        server.add_service(background_service(
            "usage",
            UsageFlush {
                flusher: usage_flusher(settings, &shared, recorder.clone())?,
                shared: shared.clone(),
            },
        ));
    }
    for pool in [&shared.upstreams.auth_service, &shared.upstreams.registry] {
        let name = format!("{} replicas", pool.upstream().audience());
        server.add_service(background_service(&name, pool.task()));
    }
    let reload_every = Duration::from_secs(settings.jwks_reload_secs.max(1));
    server.add_service(background_service(
        "jwks",
        JwksUpkeep {
            shared,
            reload_every,
        },
    ));
    Ok(server)
}

/// The pools of both upstreams: every request's connection settings (timeouts, TLS under
/// each upstream's certificate name), aimed at each replica in turn.
fn upstreams_of(
    settings: &Settings,
    tls: Option<&upstream_tls::UpstreamTls>,
) -> upstreams::Upstreams {
    let pool = |upstream: routes::Upstream, targets| {
        let mut template = pingora::upstreams::peer::HttpPeer::new(
            SocketAddr::from(([0, 0, 0, 0], 1)),
            false,
            String::new(),
        );
        template.options.connection_timeout =
            Some(Duration::from_secs(settings.upstream_connect_timeout_secs));
        template.options.read_timeout =
            Some(Duration::from_secs(settings.upstream_read_timeout_secs));
        template.options.idle_timeout = Some(forward::UPSTREAM_IDLE);
        if let Some(tls) = tls {
            let name = match upstream {
                routes::Upstream::AuthService => &tls.auth_service_name,
                routes::Upstream::Registry => &tls.registry_name,
            };
            tls.apply(&mut template, name);
        }
        Arc::new(upstreams::Pool::new(
            upstream,
            targets,
            template,
            &settings.balancing,
        ))
    };
    upstreams::Upstreams {
        auth_service: pool(routes::Upstream::AuthService, &settings.auth_service),
        registry: pool(routes::Upstream::Registry, &settings.registry),
    }
}

/// Proxy service `index`: one thread, the gateway's pipeline ([`serve::Answering`]) behind
/// the connection caps (shared by all services), its own listener on the public address with
/// the read buffer of `connections.read_buffer_bytes`, and with TLS its own listener on
/// `tls.listen` too.
fn proxy_service(
    gateway: proxy::Gateway,
    settings: &Settings,
    shared: &Shared,
    limits: Arc<connections::Limits>,
    acceptor: Option<Arc<pingora::listeners::tls::Acceptor>>,
    index: usize,
) -> Service<connections::Capped<proxy::Gateway>> {
    let tls = settings
        .tls
        .listen
        .zip(acceptor)
        .map(|(addr, acceptor)| connections::Tls {
            port: addr.port(),
            acceptor,
            failures: shared.metrics.tls_handshake_failures.clone(),
            proxy_protocol_from: if settings.tls.proxy_protocol {
                settings.trusted_proxies.clone()
            } else {
                Vec::new()
            },
        });
    let app = connections::Capped::new(
        gateway,
        limits,
        shared.metrics.connections(index),
        tls,
        shared.keepalive_idle_secs.map(Duration::from_secs),
    )
    // Half the grace period for the connections accepted just before a stop to send their
    // first request; the other half to answer it.
    .with_first_request_grace(Duration::from_secs(settings.server.grace_period_seconds) / 2);
    let mut service = Service::new(format!("gateway {index}"), app);
    service.threads = Some(1);
    let mut socket = TcpSocketOptions::default();
    socket.so_reuseport = Some(true);
    let buffers = L4BufferSettings {
        read: Some(settings.connections.read_buffer_bytes),
        write: None,
    };
    let listener = ListenerConfig::tcp(listener_key(settings.listen, index))
        .tcp_socket_options(socket.clone())
        .l4_buffer(buffers);
    service.add_listener(listener);
    if let Some(addr) = settings.tls.listen {
        // A TCP listener: `Capped` counts the connection against the caps, then does the
        // handshake with the acceptor all services share.
        let listener = ListenerConfig::tcp(listener_key(addr, index))
            .tcp_socket_options(socket)
            .l4_buffer(buffers);
        service.add_listener(listener);
    }
    service
}

/// The address string of service `index`'s listener: `addr` with its port written with
/// `index` extra leading zeros (`127.0.0.1:8080`, `127.0.0.1:08080`, ...). pingora hands
/// listening sockets over in a graceful upgrade by this string, and a second listener
/// under an existing string would share the first's socket instead of binding its own;
/// every spelling binds the same address.
pub fn listener_key(addr: SocketAddr, index: usize) -> String {
    // The address as written (an IPv6 scope id included), zeros put before the port.
    let written = addr.to_string();
    let (host, port) = written.rsplit_once(':').unwrap_or((&written, ""));
    format!("{host}:{}{port}", "0".repeat(index))
}

/// Keeps the blacklist set equal to the feed ([`blacklist::run_sync`]), into the metrics.
struct BlacklistSync {
    feed: Arc<dyn Feed>,
    shared: Arc<Shared>,
    options: blacklist::SyncOptions,
}

#[async_trait]
impl BackgroundService for BlacklistSync {
    async fn start(&self, shutdown: ShutdownWatch) {
        let set = self.shared.blacklist.clone();
        let observer = Arc::new(SyncMetrics(self.shared.clone()));
        blacklist::run_sync(self.feed.clone(), set, observer, self.options, shutdown).await;
    }
}

/// Turns what the blacklist sync reports into metrics.
struct SyncMetrics(Arc<Shared>);

impl blacklist::SyncObserver for SyncMetrics {
    fn change_applied(&self, published_ms: Option<i64>) {
        if let Some(published_ms) = published_ms {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            // Clocks of two machines may disagree by a little; a negative lag is zero.
            let lag = (now_ms - published_ms).max(0) as f64 / 1000.0;
            self.0.metrics.blacklist_propagation.observe(lag);
        }
    }

    fn feed_failed(&self, error: &blacklist::FeedError) {
        let metrics = &self.0.metrics;
        metrics
            .blacklist_feed_errors
            .with_label_values(&[error.kind()])
            .inc();
    }
}

/// Runs the JWKS task ([`jwks::Jwks::run`]).
struct JwksUpkeep {
    shared: Arc<Shared>,
    reload_every: Duration,
}

#[async_trait]
impl BackgroundService for JwksUpkeep {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let stopped = async move {
            let _ = shutdown.changed().await;
        };
        self.shared.jwks.run(self.reload_every, stopped).await;
    }
}

/// The usage flusher: auth-service's address (under its certificate's name with upstream
/// TLS), the gateway's own assertion key for it, and a replica id new at each start.
fn usage_flusher(
    settings: &Settings,
    shared: &Shared,
    recorder: Arc<usage::Recorder>,
) -> anyhow::Result<usage::Flusher> {
    let caller = upstreams::Caller::new(
        auth_token::usage::USAGE_PATH,
        shared.upstreams.auth_service.clone(),
        shared.upstream_tls.clone(),
        || reqwest::Client::builder().pool_max_idle_per_host(1),
    );
    let secret = settings.assertion_secrets.auth_service.expose();
    Ok(usage::Flusher {
        recorder,
        replica: format!("{:016x}", rand::random::<u64>()),
        caller,
        key: auth_token::AssertionKey::new(secret.as_bytes())
            .context("assertion_secrets.auth_service")?,
        every: Duration::from_secs(settings.usage.flush_secs.max(1)),
        max_pending_rows: settings.usage.max_pending_rows,
    })
}

/// Runs the usage flusher ([`usage::Flusher::run`]).
struct UsageFlush {
    flusher: usage::Flusher,
    shared: Arc<Shared>,
}

#[async_trait]
impl BackgroundService for UsageFlush {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let stopped = async move {
            let _ = shutdown.changed().await;
        };
        self.flusher.run(&self.shared.metrics, stopped).await;
    }
}

/// A gateway running on its own thread (pingora owns its runtimes).
pub struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Asks for a fast shutdown and waits for the thread to end.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct StopSignal(tokio::sync::watch::Receiver<bool>);

#[async_trait]
impl ShutdownSignalWatch for StopSignal {
    async fn recv(&self) -> ShutdownSignal {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|stop| *stop).await;
        ShutdownSignal::FastShutdown
    }
}

/// Starts the gateway on a thread. Readiness is the caller's to await (connect to `listen`).
///
/// An in-process gateway always uses tokio's work-stealing scheduler, whatever
/// `server.work_stealing` says. pingora's per-thread runtimes record their pool in a
/// thread-local that a later thread with a reused id inherits: a second gateway started in
/// the same process after one stopped spawned its tasks onto the dead runtimes and never
/// accepted a connection. The standalone binary (one server per process) is not affected.
pub fn spawn(settings: &Settings, feed: Arc<dyn Feed>) -> anyhow::Result<Running> {
    let mut settings = settings.clone();
    settings.server.work_stealing = true;
    let server = build_server(&settings, feed, None)?;
    let (stop, rx) = tokio::sync::watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("gateway".into())
        .spawn(move || {
            server.run(RunArgs {
                shutdown_signal: Box::new(StopSignal(rx)),
            })
        })
        .context("cannot start the gateway thread")?;
    Ok(Running {
        stop,
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use layered_settings::Secret;

    fn secrets(auth: &str, registry: &str) -> settings::AssertionSecrets {
        settings::AssertionSecrets {
            auth_service: Secret::new(auth.into()),
            registry: Secret::new(registry.into()),
        }
    }

    #[test]
    fn every_listener_key_binds_the_same_address() {
        for addr in [
            "127.0.0.1:8080",
            "[::]:443",
            "0.0.0.0:1",
            "[::1]:65535",
            "[fe80::1%2]:80",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            let keys: Vec<String> = (0..64).map(|i| listener_key(addr, i)).collect();
            assert_eq!(keys[0], addr.to_string());
            for key in &keys {
                assert_eq!(key.parse::<SocketAddr>().unwrap(), addr, "{key}");
            }
            let distinct: std::collections::HashSet<_> = keys.iter().collect();
            assert_eq!(distinct.len(), keys.len());
        }
    }

    #[test]
    fn each_upstream_needs_its_own_long_secret() {
        let long = "a secret of thirty-two bytes or more";
        let other = "another secret of thirty-two bytes or more";
        assert!(AssertionKeys::new(&secrets(long, other)).is_ok());
        let same = AssertionKeys::new(&secrets(long, long)).err().unwrap();
        assert!(format!("{same:#}").contains("must differ"), "{same:#}");
        let short = AssertionKeys::new(&secrets("short", other)).err().unwrap();
        assert!(
            format!("{short:#}").contains("assertion_secrets.auth_service"),
            "{short:#}"
        );
    }

    /// The prepared principals a thread keeps serve only the principal and the keys they were
    /// made for: a token signed after another principal's (differing in one claim), or by
    /// another gateway's keys on the same thread, verifies under its own key and reads back
    /// as its own principal; under another upstream's key it does not verify at all.
    #[test]
    fn a_prepared_principal_serves_only_its_own_principal_and_keys() {
        let one = "the first gateway's auth-service secret, 32 bytes+";
        let two = "the first gateway's registry secret, 32 bytes or more";
        let three = "the second gateway's registry secret, 32 bytes or more";
        let first = AssertionKeys::new(&secrets(one, two)).unwrap();
        let second = AssertionKeys::new(&secrets(one, three)).unwrap();
        let principal = |operator_id| auth_token::Principal {
            kind: Some(auth_token::CredentialKind::Application),
            id: "app".into(),
            operator_id: Some(operator_id),
            ..auth_token::Principal::anonymous()
        };
        let request = auth_token::Request {
            method: "GET",
            path: "/v3/journeys",
            query: "",
            body: None,
        };
        let registry = |secret: &str| AssertionKey::new(secret.as_bytes()).unwrap();
        let read = |secret: &str, token: &str| {
            (registry(secret).verify(Some(token), "registry", &request, 100))
                .map(|assertion| assertion.principal.operator_id)
        };
        for round in 0..2 {
            // The second round finds both principals prepared.
            for (keys, secret) in [(&first, two), (&second, three)] {
                for operator in [1, 2] {
                    let token = keys.sign(
                        routes::Upstream::Registry,
                        &principal(operator),
                        &request,
                        "rid",
                        90,
                    );
                    assert_eq!(read(secret, &token), Ok(Some(operator)), "round {round}");
                    let other = if secret == two { three } else { two };
                    assert!(read(other, &token).is_err());
                    let auth = AssertionKey::new(one.as_bytes()).unwrap();
                    assert!(
                        auth.verify(Some(&token), "registry", &request, 100)
                            .is_err()
                    );
                }
            }
        }
    }
}
