//! Gateway settings, with pingora's own server settings nested under `server`.

use layered_settings::Secret;
use serde::Deserialize;
use std::net::SocketAddr;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The one public address.
    pub listen: SocketAddr,
    /// `/metrics` and `/health` for operators of the gateway (not public).
    pub admin_listen: SocketAddr,
    /// auth-service's replicas ([`Targets`]).
    pub auth_service: Targets,
    /// The registry's replicas ([`Targets`]).
    pub registry: Targets,
    /// How the gateway checks and finds the upstreams' replicas.
    pub balancing: BalancingSettings,
    /// The secrets signing the identity assertions, one per upstream (each >= 32 bytes, and
    /// different: an upstream holding one cannot speak to the other).
    pub assertion_secrets: AssertionSecrets,
    /// Redis carrying the blacklist feed; required by the standalone binary.
    pub redis: Option<RedisSettings>,
    /// API versions served under `/{version}/`; `v3` names the newest `v3.x`.
    pub versions: Vec<String>,
    /// Minimum milliseconds between two JWKS fetches triggered by unknown `kid`s.
    pub jwks_refresh_min_interval_ms: u64,
    /// Seconds between two scheduled JWKS reloads (drops keys retired by a rotation).
    pub jwks_reload_secs: u64,
    /// Verified tokens kept so they are not verified again (0: no cache), in all: each proxy
    /// service keeps its share, and a token used on several services is verified once on each.
    pub token_cache_capacity: usize,
    /// Seconds between two full reads of the blacklist's fast copy, on top of the change feed
    /// (heals a missed message; notices a copy lost without a lost connection).
    pub blacklist_reconcile_secs: u64,
    /// Seconds allowed to connect to an upstream.
    pub upstream_connect_timeout_secs: u64,
    /// Seconds allowed between reads from an upstream before 504.
    pub upstream_read_timeout_secs: u64,
    /// Load balancers in front of the gateway (addresses or CIDR blocks, e.g.
    /// `10.0.0.0/8`). A connection from one of them names the client in the last
    /// `X-Forwarded-For` entry, which the balancer must set (not append to what the client
    /// sent). From any other peer the header is ignored: the TCP peer is the client. The
    /// client address keys the per-address limits and is what upstreams are told.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Session cookies named `__Host-sessid` / `__Host-sessauth` and marked `Secure`
    /// (browsers then take and send them only over TLS, from this host only). Always so when
    /// `listen` is not a loopback address: such a gateway is reached over HTTPS.
    pub cookie_secure: bool,
    /// Rate limits (CONTRACT §6): the reference's by default. Counted in Redis across
    /// replicas when `redis` is set, in this process otherwise.
    pub rate_limits: crate::ratelimit::Limits,
    /// Downstream connections: idle timeout and caps (docs/gateway.md, "Connections").
    pub connections: ConnectionSettings,
    /// HTTPS on a second public address (docs/gateway.md, "TLS"); off while `tls.listen`
    /// is unset.
    pub tls: TlsSettings,
    /// TLS to auth-service and the registry (off by default: the internal network is
    /// trusted).
    pub upstream_tls: UpstreamTlsSettings,
    /// Usage records per credential, sent to auth-service (docs/gateway.md, "Usage").
    pub usage: UsageSettings,
    /// `pretty` or `json`.
    pub log_format: String,
    /// pingora's server settings.
    pub server: ServerSettings,
}

/// What each credential does, counted per minute and sent to auth-service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsageSettings {
    /// Counts and sends usage records (off: nothing counted, no last-used times, no
    /// signals).
    pub enabled: bool,
    /// Seconds between two sends; also what a replica that dies loses at most.
    pub flush_secs: u64,
    /// Rows kept for auth-service while it does not take them; past it the oldest go.
    pub max_pending_rows: usize,
}

impl Default for UsageSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            flush_secs: 5,
            max_pending_rows: crate::usage::MAX_PENDING_ROWS,
        }
    }
}

/// Where an upstream's replicas are: `host:port` entries, each an address or a DNS name that
/// stands for every address it resolves to (a Kubernetes headless Service), written as a
/// list or as one comma-separated string (`GATEWAY__REGISTRY=10.0.0.5:8082,10.0.0.6:8082`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets(Vec<String>);

impl Targets {
    /// Checks every entry names a host and a port.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(entries: I) -> Result<Self, String> {
        let entries: Vec<String> = entries
            .into_iter()
            .map(Into::into)
            .flat_map(|e| {
                e.split(',')
                    .map(|p| p.trim().to_owned())
                    .collect::<Vec<_>>()
            })
            .filter(|e| !e.is_empty())
            .collect();
        if entries.is_empty() {
            return Err("no upstream address: give host:port, or several".into());
        }
        for entry in &entries {
            let port = entry
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>()));
            match port {
                Some((host, Ok(port))) if !host.is_empty() && port > 0 => {}
                _ => return Err(format!("`{entry}` is not host:port")),
            }
        }
        Ok(Self(entries))
    }

    pub fn entries(&self) -> &[String] {
        &self.0
    }

    /// The address, when there is one entry and it is an address (not a name).
    pub fn single_address(&self) -> Option<SocketAddr> {
        match self.0.as_slice() {
            [one] => one.parse().ok(),
            _ => None,
        }
    }
}

impl From<SocketAddr> for Targets {
    fn from(addr: SocketAddr) -> Self {
        Self(vec![addr.to_string()])
    }
}

impl FromIterator<SocketAddr> for Targets {
    fn from_iter<I: IntoIterator<Item = SocketAddr>>(addrs: I) -> Self {
        Self(addrs.into_iter().map(|a| a.to_string()).collect())
    }
}

impl<'de> Deserialize<'de> for Targets {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            One(String),
            Many(Vec<String>),
        }
        let entries = match Written::deserialize(deserializer)? {
            Written::One(one) => vec![one],
            Written::Many(many) => many,
        };
        Self::new(entries).map_err(serde::de::Error::custom)
    }
}

/// The upstreams' replicas: checked and found again on a period.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BalancingSettings {
    /// Milliseconds between two health checks of each replica (`GET /health`, 200 is
    /// healthy); one failed check takes a replica out, one passed check brings it back.
    pub health_check_ms: u64,
    /// Seconds between two resolutions of the names among the targets.
    pub resolve_secs: u64,
}

impl Default for BalancingSettings {
    fn default() -> Self {
        Self {
            health_check_ms: 1000,
            resolve_secs: 5,
        }
    }
}

/// One assertion secret per upstream, each shared with that upstream only.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AssertionSecrets {
    /// auth-service's `assertion_secret`.
    pub auth_service: Secret<String>,
    /// registry's `assertion_secret`.
    pub registry: Secret<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    pub url: Secret<String>,
    #[serde(default = "default_prefix")]
    pub prefix: String,
}

fn default_prefix() -> String {
    "rpc:".into()
}

/// Downstream (client) connections.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionSettings {
    /// Seconds a kept-alive connection may wait for its next request before it is closed
    /// (nginx's `keepalive_timeout`). 0 turns keep-alive off: every answer closes.
    pub keepalive_idle_secs: u64,
    /// Connections this replica holds at most (0: no cap); past it a new one gets 503
    /// `too_many_connections` and is closed.
    pub max_per_replica: usize,
    /// Connections one client network (an IPv4 address, an IPv6 /64) holds at most on this
    /// replica (0: no cap). Peers in `trusted_proxies` are exempt: behind a balancer every
    /// client shares its address, so only `max_per_replica` bounds them, and the balancer
    /// is the one to cap its clients.
    pub max_per_network: usize,
    /// pingora's per-connection read buffer in bytes (pingora's default: 64 KiB), held for
    /// the connection's whole life, idle or not. 0: none; pingora then reads a request's
    /// head into its own 4 KiB buffer (grown as needed) and a body into its own, straight
    /// from the socket (docs/performance.md).
    pub read_buffer_bytes: usize,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        Self {
            keepalive_idle_secs: 75,
            max_per_replica: 20_000,
            max_per_network: 256,
            read_buffer_bytes: 0,
        }
    }
}

/// The TLS listener: where, which certificate, and how it is kept fresh.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// The HTTPS address (TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1 by ALPN); unset: no TLS.
    pub listen: Option<SocketAddr>,
    /// The certificate chain (PEM): the server's certificate first, then its intermediates.
    pub cert_file: std::path::PathBuf,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: std::path::PathBuf,
    /// When both files are missing, write a self-signed certificate for `localhost`,
    /// `127.0.0.1` and `::1` there first (key mode 0600). For the embedded stack, never for
    /// production.
    pub self_signed: bool,
    /// Seconds between two looks at the files; a changed pair is loaded without dropping a
    /// connection (SIGHUP loads it at once). 0: only on SIGHUP.
    pub reload_secs: u64,
    /// `Strict-Transport-Security: max-age=` on every HTTPS answer (0: none). A year by
    /// default, as browsers' preload lists ask.
    pub hsts_max_age_secs: u64,
    /// Connections to the HTTPS port from a peer in `trusted_proxies` begin with a PROXY
    /// protocol header (v1 or v2) naming the client: a TCP balancer's (nginx `stream` with
    /// `proxy_protocol on`, HAProxy `send-proxy`). Other peers send none and are not read.
    pub proxy_protocol: bool,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            listen: None,
            cert_file: "data/tls/cert.pem".into(),
            key_file: "data/tls/key.pem".into(),
            self_signed: false,
            reload_secs: 60,
            hsts_max_age_secs: 31_536_000,
            proxy_protocol: false,
        }
    }
}

/// TLS from the gateway to its upstreams ([`crate::upstream_tls`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamTlsSettings {
    /// Speak TLS to both upstreams.
    pub enabled: bool,
    /// The authority (PEM, one or more certificates) the upstreams' certificates are
    /// checked against; required when enabled.
    pub ca_file: std::path::PathBuf,
    /// The gateway's client certificate chain (PEM), for upstreams that require one; with
    /// `key_file`.
    pub cert_file: Option<std::path::PathBuf>,
    pub key_file: Option<std::path::PathBuf>,
    /// The name auth-service's certificate must carry (the address stays `auth_service`).
    pub auth_service_name: String,
    /// The name the registry's certificate must carry.
    pub registry_name: String,
}

impl Default for UpstreamTlsSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            ca_file: std::path::PathBuf::new(),
            cert_file: None,
            key_file: None,
            auth_service_name: "auth-service".into(),
            registry_name: "registry".into(),
        }
    }
}

/// The parts of pingora's `ServerConf` worth setting here.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Proxy services, each one thread with its own listener on `listen` (`SO_REUSEPORT`:
    /// the kernel spreads new connections over them) and its own upstream connections, so a
    /// connection's work never hops between threads. 0: one per available core.
    pub threads: usize,
    /// Each service's runtime: tokio's multi-threaded one (true, with one worker), or
    /// pingora's single-threaded one (false, the cheaper). Processes that start a gateway
    /// more than once (the tests) need true ([`crate::spawn`]).
    pub work_stealing: bool,
    /// Seconds requests in flight get to finish after SIGTERM (or after handing the
    /// listeners over on SIGQUIT); no new connection is accepted meanwhile. Longer than the
    /// slowest answer expected (`upstream_read_timeout_secs` bounds each read).
    pub grace_period_seconds: u64,
    /// Seconds then given to the runtimes' blocking work to stop (what is still running
    /// after the grace period is dropped).
    pub graceful_shutdown_timeout_seconds: u64,
    /// Per-instance paths, so replicas on one machine do not collide.
    pub pid_file: String,
    pub upgrade_sock: String,
}

impl ServerSettings {
    /// The number of proxy services: [`ServerSettings::threads`], or one per core.
    pub fn proxy_services(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            threads: 0,
            work_stealing: false,
            grace_period_seconds: 5,
            graceful_shutdown_timeout_seconds: 10,
            pid_file: "data/gateway.pid".into(),
            upgrade_sock: "data/gateway-upgrade.sock".into(),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            auth_service: SocketAddr::from(([127, 0, 0, 1], 8081)).into(),
            registry: SocketAddr::from(([127, 0, 0, 1], 8082)).into(),
            balancing: BalancingSettings::default(),
            assertion_secrets: AssertionSecrets::default(),
            redis: None,
            versions: vec!["v3.2".into(), "v3.3".into()],
            jwks_refresh_min_interval_ms: 1000,
            jwks_reload_secs: 60,
            token_cache_capacity: 100_000,
            blacklist_reconcile_secs: 10,
            upstream_connect_timeout_secs: 2,
            upstream_read_timeout_secs: 30,
            trusted_proxies: Vec::new(),
            cookie_secure: false,
            rate_limits: crate::ratelimit::Limits::default(),
            connections: ConnectionSettings::default(),
            tls: TlsSettings::default(),
            upstream_tls: UpstreamTlsSettings::default(),
            usage: UsageSettings::default(),
            log_format: "pretty".into(),
            server: ServerSettings::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::{RouteClass, Subject};

    #[test]
    fn rate_limit_classes_and_operator_overrides_load_from_a_settings_file() {
        let dir = std::env::temp_dir().join(format!("gw-settings-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("gateway.yaml");
        std::fs::write(
            &file,
            "rate_limits:\n  classes: { default: 300 }\n  overrides: { 42: { journeys_write: 40000 } }\n",
        )
        .unwrap();
        let settings: Settings = layered_settings::load("gateway-test", Some(&file)).unwrap();
        std::fs::remove_dir_all(&dir).ok();
        let limits = &settings.rate_limits;
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        let operator = |id| Subject::of(RouteClass::JourneysWrite, false, Some(id), None, ip);
        assert_eq!(
            limits
                .policy(RouteClass::JourneysWrite, &operator(42))
                .limit,
            40_000
        );
        assert_eq!(
            limits.policy(RouteClass::JourneysWrite, &operator(7)).limit,
            20_000
        );
        assert_eq!(limits.policy(RouteClass::Default, &operator(7)).limit, 300);
    }

    #[test]
    fn an_unknown_route_class_is_refused_at_start() {
        let dir = std::env::temp_dir().join(format!("gw-settings-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("gateway.yaml");
        std::fs::write(&file, "rate_limits:\n  classes: { journeys: 5 }\n").unwrap();
        let error = layered_settings::load::<Settings>("gateway-test", Some(&file)).unwrap_err();
        std::fs::remove_dir_all(&dir).ok();
        assert!(format!("{error:#}").contains("journeys"), "{error:#}");
    }
}
