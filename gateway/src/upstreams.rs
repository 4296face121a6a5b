//! auth-service's and the registry's replicas: pingora's load balancer over each upstream's
//! targets (addresses, or DNS names resolved again every `balancing.resolve_secs`), round
//! robin among the replicas whose `GET /health` answered 200 at the last check.
//!
//! - A replica that fails its check is out of the rotation until it passes one; checks run
//!   every `balancing.health_check_ms`, in parallel, each bounded by a 1 s timeout.
//! - Between two checks, a replica that refuses a connection costs no request: the proxy
//!   tries the next one ([`Pool::peer`] with the failed one avoided), for as many attempts
//!   as the upstream has replicas. Requests already sent to a replica that dies are lost
//!   with it (502), as on any proxy: they may have been applied.
//! - When no replica passed its last check, every one is tried anyway: a check may be
//!   stale, and an upstream whose database is down answers its own 503
//!   `database_unavailable` (with `Retry-After`), better than the gateway's guess.
//! - A name that does not resolve keeps the replicas found before; at start it leaves the
//!   pool empty (502 `upstream_unavailable`) until it resolves.

use crate::forward::Pooled;
use crate::routes::Upstream;
use async_trait::async_trait;
use pingora::lb::discovery::ServiceDiscovery;
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck};
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::upstreams::peer::HttpPeer;
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::settings::{BalancingSettings, Targets};

/// Both upstreams' pools.
pub struct Upstreams {
    pub auth_service: Arc<Pool>,
    pub registry: Arc<Pool>,
}

impl Upstreams {
    pub fn of(&self, upstream: Upstream) -> &Pool {
        match upstream {
            Upstream::AuthService => &self.auth_service,
            Upstream::Registry => &self.registry,
        }
    }
}

/// One upstream's replicas.
pub struct Pool {
    upstream: Upstream,
    balancer: Arc<LoadBalancer<RoundRobin>>,
    /// Every request's connection settings (timeouts, TLS); its address is each replica's.
    template: HttpPeer,
    /// The peer of an upstream given as one address: no choice to make, nothing to look up,
    /// nothing to build per request.
    only: Option<Pooled>,
}

impl Pool {
    /// The pool of `targets`, connecting with `template`'s settings. Addresses among the
    /// targets are known at once; names are resolved here once (blocking: this runs at
    /// start) and then by the balancing task.
    pub fn new(
        upstream: Upstream,
        targets: &Targets,
        template: HttpPeer,
        settings: &BalancingSettings,
    ) -> Self {
        let discovery = Discovery::new(targets.entries().to_vec());
        let resolved = discovery.has_first();
        let mut backends = Backends::new(Box::new(discovery));
        let mut check = HttpHealthCheck::new(upstream.audience(), template.is_tls());
        check.req = health_request(upstream);
        let mut probe = template.clone();
        probe.options.connection_timeout = Some(Duration::from_secs(1));
        probe.options.read_timeout = Some(Duration::from_secs(1));
        check.peer_template = probe;
        check.health_changed_callback = Some(Box::new(Flips { upstream }));
        backends.set_health_check(Box::new(check) as Box<dyn HealthCheck + Send + Sync>);
        let mut balancer = LoadBalancer::<RoundRobin>::from_backends(backends);
        balancer.health_check_frequency =
            Some(Duration::from_millis(settings.health_check_ms.max(50)));
        balancer.update_frequency = Some(Duration::from_secs(settings.resolve_secs.max(1)));
        balancer.parallel_health_check = true;
        // The first membership (resolved in `Discovery::new`, so this does not wait), for
        // requests that come before the task first runs. Unresolved (a headless Service
        // with no ready pod yet), the task resolves it later, on its runtime.
        if resolved {
            let mut first = std::pin::pin!(balancer.update());
            let mut context = std::task::Context::from_waker(std::task::Waker::noop());
            let _ = first.as_mut().poll(&mut context);
        }
        let balancer = Arc::new(balancer);
        let only = targets
            .single_address()
            .map(|addr| Pooled::new(with_address(&template, addr)));
        Self {
            upstream,
            balancer,
            template,
            only,
        }
    }

    /// The replica for the next attempt: round robin among the healthy ones, never `avoid`
    /// (the one that just refused a connection) while there is another; every replica when
    /// none is healthy. `None` while no replica is known.
    /// The peer of an upstream given as one address, made once.
    pub fn only(&self) -> Option<&Pooled> {
        self.only.as_ref()
    }

    pub fn peer(&self, avoid: Option<&PeerAddr>) -> Option<Pooled> {
        if let Some(only) = &self.only {
            return Some(only.clone());
        }
        let other = |b: &Backend| avoid.is_none_or(|a| &b.addr != a);
        // One pass over every replica: the first healthy one, else the first one seen that
        // is not `avoid`, else `avoid` itself. (A pass that accepts none moves the round
        // robin on by one more than the replicas, so the fallbacks rotate too.)
        let replicas = self.balancer.backends().get_backend().len();
        let fallback = std::cell::RefCell::new(None);
        let backend = self
            .balancer
            .select_with(b"", replicas, |b, healthy| {
                let other = other(b);
                if !healthy && other {
                    fallback.borrow_mut().get_or_insert_with(|| b.clone());
                }
                healthy && other
            })
            .or_else(|| fallback.into_inner())
            .or_else(|| self.balancer.backends().get_backend().first().cloned())?;
        let mut peer = self.template.clone();
        peer._address = backend.addr;
        Some(Pooled::new(peer))
    }

    /// The replicas known now, with whether each passed its last check.
    pub fn replicas(&self) -> Vec<(SocketAddr, bool)> {
        let backends = self.balancer.backends();
        (backends.get_backend().iter())
            .filter_map(|b| Some((*b.addr.as_inet()?, backends.ready(b))))
            .collect()
    }

    /// How many attempts a request may make: one per replica known.
    pub fn attempts(&self) -> usize {
        self.balancer.backends().get_backend().len().max(1)
    }

    /// An address to call directly (the JWKS, usage records): a healthy replica's, by
    /// round robin, else any.
    pub fn address(&self) -> Option<SocketAddr> {
        self.peer(None)
            .and_then(|peer| peer._address.as_inet().copied())
    }

    pub fn upstream(&self) -> Upstream {
        self.upstream
    }

    /// The task that checks and resolves the replicas (a pingora background service).
    pub fn task(&self) -> Balancing {
        Balancing(self.balancer.clone())
    }
}

/// `template` aimed at `addr`.
fn with_address(template: &HttpPeer, addr: SocketAddr) -> HttpPeer {
    let mut peer = template.clone();
    peer._address = PeerAddr::Inet(addr);
    peer
}

fn health_request(upstream: Upstream) -> pingora::http::RequestHeader {
    let mut req = pingora::http::RequestHeader::build("GET", b"/health", None)
        .expect("a static request line");
    req.append_header("Host", upstream.audience())
        .expect("a static header");
    req
}

/// Runs the checks and resolutions of one pool until shutdown.
pub struct Balancing(Arc<LoadBalancer<RoundRobin>>);

#[async_trait]
impl BackgroundService for Balancing {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.0.run(shutdown, None).await;
    }
}

/// Logs a replica going in or out of the rotation.
struct Flips {
    upstream: Upstream,
}

#[async_trait]
impl pingora::lb::health_check::HealthObserve for Flips {
    async fn observe(&self, target: &Backend, healthy: bool) {
        let upstream = self.upstream.audience();
        if healthy {
            tracing::info!(upstream, replica = %target.addr, "replica back in the rotation");
        } else {
            tracing::warn!(upstream, replica = %target.addr, "replica failed its health check: out of the rotation");
        }
    }
}

/// The targets, resolved: addresses as they are, names through the system's resolver.
struct Discovery {
    entries: Vec<String>,
    /// The replicas resolved at start, given by the first `discover`.
    first: std::sync::Mutex<Option<BTreeSet<Backend>>>,
}

impl Discovery {
    fn new(entries: Vec<String>) -> Self {
        let first = Self::resolve_blocking(&entries);
        Self {
            entries,
            first: std::sync::Mutex::new(first),
        }
    }

    fn backends(addrs: impl IntoIterator<Item = SocketAddr>) -> BTreeSet<Backend> {
        addrs
            .into_iter()
            .map(|addr| Backend {
                addr: PeerAddr::Inet(addr),
                weight: 1,
                ext: Default::default(),
            })
            .collect()
    }

    fn has_first(&self) -> bool {
        self.first
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Every entry resolved with the system's (blocking) resolver; `None` if one does not
    /// resolve or none gives an address.
    fn resolve_blocking(entries: &[String]) -> Option<BTreeSet<Backend>> {
        use std::net::ToSocketAddrs;
        let mut found = Vec::new();
        for entry in entries {
            found.extend(entry.to_socket_addrs().ok()?);
        }
        Some(Self::backends(found)).filter(|b| !b.is_empty())
    }
}

#[async_trait]
impl ServiceDiscovery for Discovery {
    async fn discover(&self) -> pingora::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        let first = self.first.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(first) = first {
            return Ok((first, HashMap::new()));
        }
        let mut found = Vec::new();
        for entry in &self.entries {
            match entry.parse::<SocketAddr>() {
                Ok(addr) => found.push(addr),
                Err(_) => match tokio::net::lookup_host(entry.as_str()).await {
                    Ok(addrs) => found.extend(addrs),
                    Err(error) => {
                        tracing::warn!(target = %entry, %error, "upstream name does not resolve: keeping the replicas known");
                        return pingora::Error::e_explain(
                            pingora::ErrorType::ConnectNoRoute,
                            "an upstream name does not resolve",
                        );
                    }
                },
            }
        }
        if found.is_empty() {
            return pingora::Error::e_explain(
                pingora::ErrorType::ConnectNoRoute,
                "the upstream names resolve to no address",
            );
        }
        Ok((Self::backends(found), HashMap::new()))
    }
}

/// Where the gateway's own calls to auth-service go (the JWKS, the usage records): each call
/// to a replica the pool picks, under auth-service's certificate name with upstream TLS.
pub struct Caller {
    path: &'static str,
    pool: Arc<Pool>,
    tls: Option<Arc<crate::upstream_tls::UpstreamTls>>,
    builder: fn() -> reqwest::ClientBuilder,
    /// One client for plain HTTP (the address is in the URL); with TLS one per replica
    /// (the name is in the URL, the client resolves it to that replica).
    clients: std::sync::Mutex<HashMap<Option<SocketAddr>, reqwest::Client>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("no replica of {0} is known")]
    NoReplica(&'static str),
    #[error("the client for {0}: {1}")]
    Client(SocketAddr, reqwest::Error),
}

impl Caller {
    pub fn new(
        path: &'static str,
        pool: Arc<Pool>,
        tls: Option<Arc<crate::upstream_tls::UpstreamTls>>,
        builder: fn() -> reqwest::ClientBuilder,
    ) -> Self {
        Self {
            path,
            pool,
            tls,
            builder,
            clients: Default::default(),
        }
    }

    /// The client and URL of the next call.
    pub fn target(&self) -> Result<(reqwest::Client, String), CallError> {
        let addr =
            (self.pool.address()).ok_or(CallError::NoReplica(self.pool.upstream.audience()))?;
        let key = self.tls.as_ref().map(|_| addr);
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.len() > 64 {
            // Replicas come and go (pods are replaced): keep only what is in use.
            clients.clear();
        }
        let client = match clients.get(&key) {
            Some(client) => client.clone(),
            None => {
                let built = match &self.tls {
                    Some(tls) => tls.jwks_client((self.builder)(), addr),
                    None => (self.builder)().build(),
                };
                let client = built.map_err(|e| CallError::Client(addr, e))?;
                clients.insert(key, client.clone());
                client
            }
        };
        let url = match &self.tls {
            Some(tls) => format!(
                "https://{}:{}{}",
                tls.auth_service_name,
                addr.port(),
                self.path
            ),
            None => format!("http://{addr}{}", self.path),
        };
        Ok((client, url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn targets_are_a_list_or_one_comma_separated_string() {
        let one: Targets = serde_json::from_str(r#""10.0.0.5:8082, 10.0.0.6:8082""#).unwrap();
        let list: Targets = serde_json::from_str(r#"["10.0.0.5:8082", "10.0.0.6:8082"]"#).unwrap();
        assert_eq!(one, list);
        assert_eq!(one.entries(), ["10.0.0.5:8082", "10.0.0.6:8082"]);
        assert_eq!(one.single_address(), None);
        let named: Targets = serde_json::from_str(r#""registry.rpc.svc:8082""#).unwrap();
        assert_eq!(
            named.single_address(),
            None,
            "a name is looked up, not parsed"
        );
        let v6: Targets = serde_json::from_str(r#""[::1]:8082""#).unwrap();
        assert_eq!(v6.single_address(), Some("[::1]:8082".parse().unwrap()));
        for bad in [
            r#""""#,
            r#""registry""#,
            r#""registry:http""#,
            r#""registry:0""#,
            "[]",
        ] {
            let error = serde_json::from_str::<Targets>(bad)
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("host:port") || error.contains("no upstream"),
                "{bad}: {error}"
            );
        }
    }

    /// A replica whose `/health` answers 200 while `up`, else 503.
    async fn replica(up: Arc<AtomicBool>) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let up = up.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = socket.read(&mut buf).await;
                    let status = if up.load(Ordering::SeqCst) {
                        "200 OK"
                    } else {
                        "503 Service Unavailable"
                    };
                    let answer = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        addr
    }

    fn pool(targets: &[SocketAddr]) -> Pool {
        let template = HttpPeer::new(SocketAddr::from(([0, 0, 0, 0], 1)), false, String::new());
        let targets: Targets = targets.iter().copied().collect();
        Pool::new(
            Upstream::Registry,
            &targets,
            template,
            &BalancingSettings::default(),
        )
    }

    fn picks(pool: &Pool, avoid: Option<SocketAddr>, n: usize) -> BTreeSet<SocketAddr> {
        let avoid = avoid.map(PeerAddr::Inet);
        (0..n)
            .map(|_| {
                *pool
                    .peer(avoid.as_ref())
                    .unwrap()
                    ._address
                    .as_inet()
                    .unwrap()
            })
            .collect()
    }

    #[tokio::test]
    async fn a_replica_failing_its_check_leaves_the_rotation_until_it_passes_one() {
        let (a_up, b_up) = (
            Arc::new(AtomicBool::new(true)),
            Arc::new(AtomicBool::new(true)),
        );
        let (a, b) = (replica(a_up.clone()).await, replica(b_up.clone()).await);
        let pool = pool(&[a, b]);
        assert_eq!(pool.attempts(), 2);
        assert_eq!(
            picks(&pool, None, 4),
            BTreeSet::from([a, b]),
            "round robin over both"
        );

        b_up.store(false, Ordering::SeqCst);
        pool.balancer.backends().run_health_check(true).await;
        assert_eq!(picks(&pool, None, 4), BTreeSet::from([a]));
        assert_eq!(pool.replicas().iter().filter(|(_, up)| *up).count(), 1);

        // The healthy one refused a connection: the next attempt takes the other, checked
        // or not, rather than the same one again.
        assert_eq!(picks(&pool, Some(a), 4), BTreeSet::from([b]));

        // None healthy: every replica is tried (each answers for itself).
        a_up.store(false, Ordering::SeqCst);
        pool.balancer.backends().run_health_check(true).await;
        assert_eq!(picks(&pool, None, 4), BTreeSet::from([a, b]));

        b_up.store(true, Ordering::SeqCst);
        pool.balancer.backends().run_health_check(true).await;
        assert_eq!(picks(&pool, None, 4), BTreeSet::from([b]));
    }

    #[tokio::test]
    async fn a_replica_that_is_gone_fails_its_check() {
        let a = replica(Arc::new(AtomicBool::new(true))).await;
        let gone = test_ports::free_port();
        let pool = pool(&[a, gone]);
        pool.balancer.backends().run_health_check(true).await;
        assert_eq!(picks(&pool, None, 4), BTreeSet::from([a]));
    }

    /// A name that does not resolve yet (a headless Service before its first ready pod):
    /// the gateway starts (outside any runtime, as the binary builds its server) with no
    /// replica, and finds it once the name resolves.
    #[test]
    fn a_name_that_does_not_resolve_at_start_leaves_the_pool_empty() {
        let template = HttpPeer::new(SocketAddr::from(([0, 0, 0, 0], 1)), false, String::new());
        let targets = Targets::new(["registry.replicas.invalid:8082"]).unwrap();
        let pool = Pool::new(
            Upstream::Registry,
            &targets,
            template,
            &BalancingSettings::default(),
        );
        assert!(pool.peer(None).is_none());
        assert!(pool.replicas().is_empty());
        assert_eq!(pool.attempts(), 1);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        assert!(
            runtime.block_on(pool.balancer.update()).is_err(),
            "still unresolved"
        );
        assert!(pool.peer(None).is_none(), "nothing known is nothing lost");
    }

    #[tokio::test]
    async fn a_name_stands_for_every_address_it_resolves_to() {
        let a = replica(Arc::new(AtomicBool::new(true))).await;
        let template = HttpPeer::new(SocketAddr::from(([0, 0, 0, 0], 1)), false, String::new());
        let targets = Targets::new([format!("localhost:{}", a.port())]).unwrap();
        let pool = Pool::new(
            Upstream::Registry,
            &targets,
            template,
            &BalancingSettings::default(),
        );
        let known: Vec<SocketAddr> = pool.replicas().into_iter().map(|(addr, _)| addr).collect();
        assert!(known.contains(&a), "localhost resolved at start: {known:?}");
        assert!(
            known
                .iter()
                .all(|addr| addr.ip().is_loopback() && addr.port() == a.port())
        );
        // Resolved again by the task, with the same answer.
        pool.balancer.update().await.unwrap();
        assert!(pool.replicas().iter().any(|(addr, _)| *addr == a));
    }
}
