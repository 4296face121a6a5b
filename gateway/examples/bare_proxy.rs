//! pingora with nothing on top: every request forwarded to one upstream, no filter at all,
//! in the gateway's server layout (one single-threaded service per core, each with its own
//! `SO_REUSEPORT` listener; one peer built at start), served as the gateway serves a request
//! (its connection loop and request loop, `gateway::connections::Capped` with no cap and
//! `gateway::serve::Answering`) and forwarded as the gateway forwards it (`gateway::forward`:
//! the body read whole, head and body in one write, a pooled connection taken without
//! `getpeername`). It measures pingora's own cost on this machine, the floor under the
//! gateway's figures (docs/performance.md):
//!
//!     cargo build --release -p gateway --example bare_proxy
//!     BARE_LISTEN=127.0.0.1:18180 BARE_UPSTREAM=127.0.0.1:9201 target/release/examples/bare_proxy
//!
//! Other layouts, for comparison: `BARE_SERVICES` (default: one per core), `BARE_THREADS`
//! per service (default 1), `BARE_WORK_STEALING=true`, `BARE_SHARED_SOCKET=true` (every service
//! accepts on one socket instead of one `SO_REUSEPORT` socket each), `BARE_FORWARD=pingora`
//! (pingora's own connection loop and proxy serve and forward, as they did the gateway's
//! requests until issue 24's session 24; with it, `BARE_MODULES=default` adds pingora's
//! disabled compression module). `BARE_ASSERT=true` adds the one piece of work the contract
//! asks of every forwarded request and that no pipeline can skip (issue 26, finding 4): the
//! body's digest and an identity assertion bound to the request, signed for a principal
//! prepared once, as the gateway signs it. The gateway's pipeline over that is what the
//! rest of its steps cost.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use async_trait::async_trait;
use bytes::Bytes;
use gateway::forward::{self, Pooled};
use pingora::apps::ServerApp;
use pingora::connectors::http::v1::Connector;
use pingora::listeners::{ListenerConfig, TcpSocketOptions};
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::services::listening::Service;
use pingora::upstreams::peer::HttpPeer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

struct Bare {
    peer: HttpPeer,
    default_modules: bool,
    /// The gateway's own forwarding (the default), through this service's connector; `None`:
    /// pingora's proxy.
    own: Option<(Connector, Pooled, forward::Idle)>,
    /// `BARE_ASSERT`: the request-bound assertion, signed with this key for this principal.
    assert: Option<(auth_token::AssertionKey, auth_token::assertion::Prepared)>,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    fn init_downstream_modules(&self, modules: &mut HttpModules) {
        if self.default_modules {
            modules.add_module(
                pingora::modules::http::compression::ResponseCompressionBuilder::enable(0),
            );
        }
    }

    async fn request_filter(&self, session: &mut Session, _ctx: &mut ()) -> Result<bool> {
        let Some((connector, peer, idle)) = &self.own else {
            return Ok(false);
        };
        let body = if forward::has_body(session.req_header()) {
            forward::read_body(session, u64::MAX)
                .await?
                .unwrap_or_default()
        } else {
            Bytes::new()
        };
        let mut request = forward::upstream_request(session.req_header(), body.len())?;
        if let Some((key, prepared)) = &self.assert {
            let digest = auth_token::body_digest(&body);
            let bound = auth_token::Request {
                method: request.method.as_str(),
                path: request.uri.path(),
                query: request.uri.query().unwrap_or(""),
                body: digest.as_deref(),
            };
            let now = gateway::unix_now();
            // A request id of a generated one's length (the gateway's are UUIDs).
            let rid = "0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0";
            let token = key.sign_prepared(prepared, "registry", &bound, rid, now);
            let token = http::HeaderValue::from_maybe_shared(Bytes::from(token))
                .or_err(ErrorType::InvalidHTTPHeader, "an assertion")?;
            request.insert_header(auth_token::ASSERTION_HEADER, token)?;
        }
        let upstream = match idle.take(peer) {
            Some(upstream) => upstream,
            None => Box::pin(connector.get_http_session(peer))
                .await?
                .0
                .into_inner(),
        };
        let upstream = forward::exchange(upstream, peer, &request, &body, None).await?;
        let Some(response) = upstream.resp_header() else {
            return Error::e_explain(ErrorType::InvalidHTTPHeader, "no response header");
        };
        let response = forward::answer_head(response, 0);
        forward::relay(session, idle, peer, upstream, response).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.peer.clone()))
    }
}

/// `service` with `threads` threads, listening on `key` with `SO_REUSEPORT`.
fn service<A: ServerApp + Send + Sync + 'static>(
    mut service: Service<A>,
    key: String,
    threads: usize,
) -> Service<A> {
    service.threads = Some(threads);
    let mut socket = TcpSocketOptions::default();
    socket.so_reuseport = Some(true);
    service.add_listener(ListenerConfig::tcp(key).tcp_socket_options(socket));
    service
}

/// Connection counters nobody reads.
fn metrics() -> gateway::connections::ConnectionMetrics {
    let counter = |name: &str| prometheus::IntCounter::new(name, name).expect("a counter");
    gateway::connections::ConnectionMetrics {
        open: prometheus::IntGauge::new("open", "open").expect("a gauge"),
        service_open: prometheus::IntGauge::new("service_open", "service_open").expect("a gauge"),
        refused_replica: counter("refused_replica"),
        refused_network: counter("refused_network"),
    }
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn main() {
    let listen: SocketAddr = env("BARE_LISTEN", "127.0.0.1:18180")
        .parse()
        .expect("BARE_LISTEN is host:port");
    let upstream: SocketAddr = env("BARE_UPSTREAM", "127.0.0.1:9201")
        .parse()
        .expect("BARE_UPSTREAM is host:port");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let services: usize = env("BARE_SERVICES", &cores.to_string())
        .parse()
        .expect("BARE_SERVICES");
    let threads: usize = env("BARE_THREADS", "1").parse().expect("BARE_THREADS");
    let shared_socket = env("BARE_SHARED_SOCKET", "false") == "true";
    let conf = ServerConf {
        threads: 1,
        work_stealing: env("BARE_WORK_STEALING", "false") == "true",
        // Stopped at once (pingora's default grace is 5 minutes): a benchmark run waits for it.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut peer = HttpPeer::new(upstream, false, String::new());
    peer.options.idle_timeout = Some(Duration::from_secs(60));
    for index in 0..services {
        let own = env("BARE_FORWARD", "own") == "own";
        let bare = Bare {
            peer: peer.clone(),
            default_modules: env("BARE_MODULES", "none") == "default",
            assert: (env("BARE_ASSERT", "false") == "true").then(|| {
                let key = auth_token::AssertionKey::new(&[7; 32]).expect("a 32-byte secret");
                let principal = auth_token::Principal {
                    kind: Some(auth_token::CredentialKind::Application),
                    id: "c0ffee00-0000-4000-8000-000000000001".to_owned(),
                    operator_id: Some(1),
                    role: Some(auth_token::Role::OperatorApplication),
                    token_id: Some("c0ffee00-0000-4000-8000-000000000002".to_owned()),
                    ..auth_token::Principal::anonymous()
                };
                let prepared = key.prepare(&principal);
                (key, prepared)
            }),
            own: own.then(|| {
                (
                    Connector::new(None),
                    Pooled::new(peer.clone()),
                    forward::Idle::new(),
                )
            }),
        };
        let name = format!("bare {index}");
        // A distinct spelling per service gets a socket of its own (gateway::listener_key);
        // the same spelling shares the first service's socket.
        let key = gateway::listener_key(listen, if shared_socket { 0 } else { index });
        if own {
            // The gateway's connection loop, with no cap, and its keep-alive.
            let uncapped = Arc::new(gateway::connections::Limits::new(0, 0, Vec::new()));
            let app = gateway::connections::Capped::new(
                bare,
                uncapped,
                metrics(),
                None,
                Some(Duration::from_secs(60)),
            );
            server.add_service(service(Service::new(name, app), key, threads));
        } else {
            let app = pingora::proxy::http_proxy(&server.configuration, bare);
            server.add_service(service(Service::new(name, app), key, threads));
        }
    }
    server.run_forever()
}
