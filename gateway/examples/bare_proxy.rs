//! pingora with nothing on top: every request forwarded to one upstream, no filter at all,
//! the same server settings as the gateway (threads, scheduler, allocator, keep-alive).
//! It measures pingora's own cost on this machine, the floor under the gateway's figures
//! (docs/performance.md):
//!
//!     cargo build --release -p gateway --example bare_proxy
//!     BARE_LISTEN=127.0.0.1:18180 BARE_UPSTREAM=127.0.0.1:9201 target/release/examples/bare_proxy

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::upstreams::peer::HttpPeer;
use std::net::SocketAddr;
use std::time::Duration;

struct Bare(SocketAddr);

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.0, false, String::new());
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        Ok(Box::new(peer))
    }
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn main() {
    let listen = env("BARE_LISTEN", "127.0.0.1:18180");
    let upstream: SocketAddr = env("BARE_UPSTREAM", "127.0.0.1:9201")
        .parse()
        .expect("BARE_UPSTREAM is host:port");
    let conf = ServerConf {
        threads: env("BARE_THREADS", "2").parse().expect("BARE_THREADS"),
        work_stealing: env("BARE_WORK_STEALING", "false") == "true",
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, Bare(upstream));
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.run_forever()
}
