//! Downstream connections: how many a replica holds, how many one client network holds, and
//! how a connection past either cap is refused.
//!
//! [`Limits`] is the count (plain, tested without a socket); [`Capped`] wraps the request
//! loop ([`crate::serve::Answering`]) so that every accepted connection takes a [`Permit`]
//! for its whole life, kept-alive idle time included, and gives it back when it closes.
//! pingora's own accept filter (`ConnectionFilter`, behind a feature) only sees the accept,
//! never the close, so it cannot count open connections.
//!
//! A refused connection is answered, not reset: 503 `too_many_connections` in the gateway's
//! JSON-RPC shape, then a lingering close ([`refuse`]). What the idle timeout and the buffer
//! sizes are is `crate::build_server`'s; see docs/gateway.md, "Connections".

use crate::ratelimit::Subject;
use crate::reason::Reason;
use crate::serve::Answering;
use async_trait::async_trait;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::listeners::tls::Acceptor;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    ALPN, GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    Stream, TimingDigest, UniqueID, UniqueIDType,
};
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::ShutdownWatch;
use prometheus::{IntCounter, IntGauge};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Which cap refused a connection (the `cap` label of `gateway_connections_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    Replica,
    Network,
}

impl Cap {
    pub fn as_str(self) -> &'static str {
        match self {
            Cap::Replica => "replica",
            Cap::Network => "network",
        }
    }
}

/// Open connections, in all and per client network, against their caps.
pub struct Limits {
    per_replica: usize,
    per_network: usize,
    /// Peers not counted per network (the trusted balancers: every client behind one shares
    /// its address).
    exempt: Vec<ipnet::IpNet>,
    open: AtomicUsize,
    networks: Mutex<HashMap<IpAddr, usize>>,
    /// Refusals being answered now, by every listener; past [`MAX_LINGERING`] a refused
    /// connection is closed without an answer, so a flood of refused connections holds
    /// nothing.
    lingering: AtomicUsize,
}

impl Limits {
    /// `per_replica` and `per_network` of 0 mean no cap.
    pub fn new(per_replica: usize, per_network: usize, exempt: Vec<ipnet::IpNet>) -> Self {
        Self {
            per_replica: if per_replica == 0 {
                usize::MAX
            } else {
                per_replica
            },
            per_network: if per_network == 0 {
                usize::MAX
            } else {
                per_network
            },
            exempt,
            open: AtomicUsize::new(0),
            networks: Mutex::new(HashMap::new()),
            lingering: AtomicUsize::new(0),
        }
    }

    /// Counts a new connection from `peer`, or says which cap it is past.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Permit, Cap> {
        // A dual-stack listener's IPv4 peer (`::ffff:a.b.c.d`) is that IPv4 address.
        let peer = peer.to_canonical();
        let previous = self.open.fetch_add(1, Ordering::AcqRel);
        if previous >= self.per_replica {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Cap::Replica);
        }
        let network =
            (!self.exempt.iter().any(|net| net.contains(&peer))).then(|| Subject::network(peer));
        if let Some(network) = network {
            let mut networks = self.networks.lock().unwrap_or_else(|e| e.into_inner());
            let count = networks.entry(network).or_insert(0);
            if *count >= self.per_network {
                drop(networks);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(Cap::Network);
            }
            *count += 1;
        }
        Ok(Permit {
            limits: self.clone(),
            network,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Networks with at least one connection open (the map never holds more).
    pub fn networks(&self) -> usize {
        self.networks.lock().map_or(0, |n| n.len())
    }
}

/// One open connection; dropping it gives its place back.
pub struct Permit {
    limits: Arc<Limits>,
    network: Option<IpAddr>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(network) = self.network {
            let mut networks = self
                .limits
                .networks
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(count) = networks.get_mut(&network) {
                *count -= 1;
                if *count == 0 {
                    networks.remove(&network);
                }
            }
        }
        self.limits.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The connection metrics [`Capped`] keeps.
#[derive(Clone)]
pub struct ConnectionMetrics {
    pub open: IntGauge,
    /// This service's own share of `open`.
    pub service_open: IntGauge,
    pub refused_replica: IntCounter,
    pub refused_network: IntCounter,
}

/// A pipeline's request loop ([`Answering`]) behind the connection caps, and the TLS
/// handshake of the connections accepted on the HTTPS port.
pub struct Capped<P> {
    inner: Arc<Answering<P>>,
    limits: Arc<Limits>,
    metrics: ConnectionMetrics,
    tls: Option<Tls>,
    /// How long a kept-alive connection waits for its next request (`None`: no keep-alive).
    idle: Option<Duration>,
    /// Turns true when the service closes what is still waiting for a request
    /// ([`Capped::cleanup`]).
    closing: tokio::sync::watch::Sender<bool>,
    /// Connections accepted and not yet answered once (their PROXY header, handshake and
    /// first request included): what [`Capped::cleanup`] waits for.
    arriving: Arc<AtomicUsize>,
    /// How long [`Capped::cleanup`] waits for them at most.
    first_request_grace: Duration,
}

/// The HTTPS listener's port and the acceptor shared by every service ([`crate::tls`]).
pub struct Tls {
    pub port: u16,
    pub acceptor: Arc<Acceptor>,
    /// Connections of the HTTPS port that ended without a completed handshake (failed, timed
    /// out, closed before it, or a missing or bad PROXY header).
    pub failures: IntCounter,
    /// Peers whose connections begin with a PROXY protocol header ([`crate::proxy_protocol`]);
    /// empty: none is read.
    pub proxy_protocol_from: Vec<ipnet::IpNet>,
}

impl<P: ProxyHttp + Send + Sync + 'static> Capped<P>
where
    P::CTX: Send + Sync,
{
    pub fn new(
        inner: P,
        limits: Arc<Limits>,
        metrics: ConnectionMetrics,
        tls: Option<Tls>,
        idle: Option<Duration>,
    ) -> Self {
        Self {
            inner: Arc::new(Answering::new(inner)),
            limits,
            metrics,
            tls,
            idle,
            closing: tokio::sync::watch::Sender::new(false),
            arriving: Arc::default(),
            first_request_grace: FIRST_REQUEST_GRACE,
        }
    }

    /// How long, once the service stops accepting, the connections it accepted before get
    /// to send their first request and have it answered before the silent ones (and the
    /// idle kept-alive ones) are closed ([`Capped::cleanup`]); [`FIRST_REQUEST_GRACE`]
    /// unless set. Keep it well inside `server.grace_period_seconds`, at whose end
    /// everything still in flight is dropped.
    pub fn with_first_request_grace(mut self, grace: Duration) -> Self {
        self.first_request_grace = grace;
        self
    }

    /// The HTTPS port's acceptor when `stream` came in on it and is not TLS yet. A
    /// connection whose local port cannot be read is taken for a TLS one (it then fails its
    /// handshake rather than being served in plain).
    fn needs_handshake(&self, stream: &Stream) -> Option<&Tls> {
        let tls = self.tls.as_ref()?;
        if stream.get_ssl_digest().is_some() {
            return None;
        }
        let local = (stream.get_socket_digest())
            .and_then(|d| d.local_addr().and_then(|a| a.as_inet()).map(|a| a.port()));
        match local {
            Some(port) if port != tls.port => None,
            _ => Some(tls),
        }
    }
}

/// The connection's peer address: the TCP peer, or the client a balancer's PROXY header named.
fn peer_of(stream: &Stream) -> IpAddr {
    stream
        .get_socket_digest()
        .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()))
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ip| ip.to_canonical())
}

/// Accepted connections are pingora's TCP streams, which the acceptor takes as they are.
fn tcp(stream: Stream) -> Option<Box<L4Stream>> {
    stream.into_any().downcast::<L4Stream>().ok()
}

/// Reads the PROXY header a trusted balancer sends first ([`crate::proxy_protocol`]) within
/// [`crate::tls::HANDSHAKE_TIMEOUT`]; `None` (counted) when it is missing or bad.
async fn proxy_header(tls: &Tls, stream: Stream) -> Option<Stream> {
    let read = async {
        let mut l4 = tcp(stream)?;
        crate::proxy_protocol::accept(&mut l4).await.ok()?;
        Some(l4 as Stream)
    };
    let read = tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, read).await;
    if read.as_ref().is_ok_and(Option::is_some) {
        return read.ok().flatten();
    }
    tls.failures.inc();
    None
}

/// The TLS handshake on a connection of the HTTPS port, within
/// [`crate::tls::HANDSHAKE_TIMEOUT`]; `None` (counted) when it fails.
async fn handshake(tls: &Tls, stream: Stream) -> Option<Stream> {
    let handshake = async { tls.acceptor.tls_handshake(*tcp(stream)?).await.ok() };
    match tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Some(done)) => Some(Box::new(done)),
        _ => {
            tls.failures.inc();
            None
        }
    }
}

/// Refused connections answered at once at most; more are closed unanswered.
const MAX_LINGERING: usize = 1024;

/// How long a refused connection waits for its request, then drains it after the answer.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

impl<P: ProxyHttp + Send + Sync + 'static> Capped<P>
where
    P::CTX: Send + Sync,
{
    /// Serves the connection's requests: pingora's HTTP/1 loop, except that a connection
    /// waits for each next request outside any session ([`Capped::next_request`]), so while
    /// it is kept alive and idle it holds no session, head buffer or request state (pingora's
    /// own loop allocates the next request's session, and its whole request future, before
    /// waiting for it). HTTP/2 (negotiated over TLS) goes through pingora's loop; plain
    /// connections are HTTP/1 (the gateway offers no h2c).
    async fn serve(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
        arriving: Arriving,
    ) -> Option<Stream> {
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            // pingora's HTTP/2 loop ends its connections with a GOAWAY of its own.
            drop(arriving);
            return self.inner.process_new(stream, shutdown).await;
        }
        let limit = (self.inner.server_options()).and_then(|o| o.keepalive_request_limit);
        // Each session is made and moved into its request's (boxed) future in a block of
        // its own: a session in scope across an await would keep its room in this future,
        // which an idle connection holds.
        let mut served = {
            let mut session = Session::new_h1(stream);
            // As pingora's loop: keep-alive (60 s until the request sets its own) unless the
            // service is stopping.
            session.set_keepalive((!*shutdown.borrow()).then_some(60));
            session.set_keepalive_reuses_remaining(limit);
            Box::pin(self.inner.request(session, shutdown))
        }
        .await;
        drop(arriving);
        while let Some((stream, settings)) = served.map(|s| s.consume()) {
            let stream = self.next_request(stream).await?;
            served = {
                let mut session = Session::new_h1(stream);
                if let Some(settings) = settings {
                    settings.apply_to_session(session.as_downstream_mut());
                }
                if *shutdown.borrow() {
                    session.set_keepalive(None);
                }
                Box::pin(self.inner.request(session, shutdown))
            }
            .await;
        }
        None
    }

    /// Waits for a kept-alive connection's next request and reads its first bytes, within
    /// the idle timeout, outside any session. They are put back for the next session: for a
    /// typical request, the one read pingora would have made. A TCP stream takes them back
    /// itself (`rewind`); a TLS stream has no such thing and is wrapped in a [`Rewound`].
    /// `None`: close it (timed out, closed by the client, or the service is closing what
    /// waits).
    async fn next_request(&self, stream: Stream) -> Option<Stream> {
        let mut closing = self.closing.subscribe();
        if *closing.borrow_and_update() {
            return None;
        }
        let mut stream = match Rewound::unwrap(stream) {
            Ok(stream) => stream,
            // The last session left some of what was read for it: the next request's start.
            Err(rewound) => return Some(rewound),
        };
        let idle = self.idle.unwrap_or(Duration::ZERO);
        let first = tokio::select! {
            read = read_next(&mut stream) => read.ok().filter(|read| !read.is_empty())?,
            () = tokio::time::sleep(idle) => return None,
            _ = closing.wait_for(|closing| *closing) => return None,
        };
        if stream.as_any().is::<L4Stream>() {
            let mut tcp = tcp(stream)?;
            tcp.rewind(&first);
            return Some(tcp);
        }
        Some(Box::new(Rewound {
            first: first.into_boxed_slice(),
            at: 0,
            inner: stream,
        }))
    }
}

/// At most what [`Capped::next_request`] reads of a kept-alive connection's next request in
/// one read: a request line, headers with a bearer token, and a typical journey's body
/// (about 2 KB), so that pingora's session reads all of it from the stream's rewind buffer
/// with no system call of its own. A longer request (a bulk import) is read on by the
/// session.
const NEXT_REQUEST_READ: usize = 16 * 1024;

/// Reads what has arrived of the next request, up to [`NEXT_REQUEST_READ`] bytes, and
/// returns exactly that many. The room to read into is on the stack of each poll, never in
/// the future: a kept-alive connection waits for its next request holding no buffer
/// (issue 26, finding 10), and the request is still read in one system call, where a buffer
/// kept small for the idle wait needed two for a journey's body (issue 24). A read shorter
/// than its room also tells the runtime that the socket is drained, so pingora's session
/// makes no read that finds nothing.
fn read_next(stream: &mut Stream) -> impl Future<Output = std::io::Result<Vec<u8>>> + '_ {
    std::future::poll_fn(move |cx| {
        let mut room = [std::mem::MaybeUninit::<u8>::uninit(); NEXT_REQUEST_READ];
        let mut read = ReadBuf::uninit(&mut room);
        std::task::ready!(Pin::new(&mut *stream).poll_read(cx, &mut read))?;
        Poll::Ready(Ok(read.filled().to_vec()))
    })
}

/// A stream whose first bytes [`Capped::next_request`] has read, handed to the next session
/// to be read again first: what pingora's TCP stream does with `rewind`, for a TLS stream.
/// Everything else is the stream's own.
#[derive(Debug)]
struct Rewound {
    first: Box<[u8]>,
    /// How much of `first` was read again.
    at: usize,
    inner: Stream,
}

impl Rewound {
    /// The stream under a [`Rewound`] whose bytes were all read again (any other stream as
    /// it is); `Err`: a [`Rewound`] with bytes left.
    fn unwrap(stream: Stream) -> Result<Stream, Stream> {
        if !stream.as_any().is::<Rewound>() {
            return Ok(stream);
        }
        match stream.into_any().downcast::<Rewound>() {
            Ok(rewound) if rewound.at == rewound.first.len() => Ok(rewound.inner),
            Ok(rewound) => Err(rewound),
            Err(_) => unreachable!("a Rewound was checked for"),
        }
    }
}

impl AsyncRead for Rewound {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let left = &this.first[this.at..];
        if left.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let n = left.len().min(buf.remaining());
        buf.put_slice(&left[..n]);
        this.at += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Rewound {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Rewound {
    async fn shutdown(&mut self) {
        Shutdown::shutdown(&mut *self.inner).await;
    }
}

impl UniqueID for Rewound {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Rewound {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Rewound {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Rewound {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for Rewound {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for Rewound {}

impl<P: ProxyHttp + Send + Sync + 'static> Capped<P>
where
    P::CTX: Send + Sync,
{
    /// One accepted connection: its PROXY header, its admission under the caps, its TLS
    /// handshake, then its requests ([`Capped::serve`]).
    async fn connection(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
        arriving: Arriving,
    ) -> Option<Stream> {
        let mut stream = stream;
        let mut peer = peer_of(&stream);
        let tls = self.needs_handshake(&stream);
        // Behind a TCP balancer the client is the one its PROXY header names: read it first,
        // so the caps count that client, not the balancer (which they exempt).
        if let Some(tls) = tls
            && tls
                .proxy_protocol_from
                .iter()
                .any(|net| net.contains(&peer))
        {
            stream = Box::pin(proxy_header(tls, stream)).await?;
            peer = peer_of(&stream);
        }
        let permit = match self.limits.admit(peer) {
            Ok(permit) => permit,
            Err(cap) => {
                match cap {
                    Cap::Replica => self.metrics.refused_replica.inc(),
                    Cap::Network => self.metrics.refused_network.inc(),
                }
                // Refused before its handshake: no answer a TLS client could read, and no
                // handshake spent on it.
                if tls.is_some() {
                    return None;
                }
                let lingering = &self.limits.lingering;
                if lingering.fetch_add(1, Ordering::AcqRel) < MAX_LINGERING {
                    Box::pin(refuse(stream)).await;
                }
                lingering.fetch_sub(1, Ordering::AcqRel);
                return None;
            }
        };
        self.metrics.open.inc();
        self.metrics.service_open.inc();
        let stream = match tls {
            Some(tls) => Box::pin(handshake(tls, stream)).await,
            None => Some(stream),
        };
        let reused = match stream {
            Some(stream) => self.serve(stream, shutdown, arriving).await,
            None => None,
        };
        self.metrics.open.dec();
        self.metrics.service_open.dec();
        drop(permit);
        reused
    }
}

#[async_trait]
impl<P: ProxyHttp + Send + Sync + 'static> ServerApp for Capped<P>
where
    P::CTX: Send + Sync,
{
    /// Serves the connection in a task of its own and returns at once. pingora's accept loop
    /// spawns a task per connection whose future is sized for the TLS handshake its
    /// listener could do (8.6 KiB, held as long as the connection even though the gateway's
    /// listeners do none); [`Capped::connection`]'s future holds only what a connection
    /// keeps between requests, its handshake and refusal boxed while they last (issue 26,
    /// finding 10: an idle kept-alive connection's memory).
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        keep_a_timer_floor();
        let this = Arc::clone(self);
        let shutdown = shutdown.clone();
        // Counted before its task is spawned: a cleanup that starts right after this accept
        // waits for it, and the count is given back even if the task never runs.
        let arriving = Arriving::new(&self.arriving);
        tokio::spawn(async move {
            let mut next = this.connection(stream, &shutdown, arriving).await;
            while let Some(stream) = next {
                next = (this.connection(stream, &shutdown, Arriving::new(&this.arriving))).await;
            }
        });
        None
    }

    /// Called once the service has stopped accepting (shutdown or upgrade). pingora's
    /// cleanup closes every connection still waiting for a request, including ones accepted
    /// just before that whose request is on its way (or whose TLS handshake is): a client
    /// would see a reset on a request it had just sent. Those connections first get until
    /// their first answer, within [`Capped::with_first_request_grace`]; what arrives
    /// meanwhile is served and answered with `Connection: close`. The wait ends as soon as
    /// none is left, so that it never outlasts the server's grace period (whose end drops
    /// whatever is still in flight) when nothing is arriving.
    async fn cleanup(&self) {
        let until = tokio::time::Instant::now() + self.first_request_grace;
        while self.arriving.load(Ordering::Acquire) > 0 {
            let now = tokio::time::Instant::now();
            if now >= until {
                break;
            }
            tokio::time::sleep_until(until.min(now + ARRIVALS_POLL)).await;
        }
        // Kept-alive connections waiting in `next_request`, then those in pingora's sessions.
        self.closing.send_replace(true);
        self.inner.cleanup().await;
    }
}

thread_local! {
    /// Whether this thread's runtime has its [`keep_a_timer_floor`] task.
    static TIMER_FLOOR: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Keeps a timer due within a second in this runtime's timer wheel, with a task that sleeps
/// a second at a time (one per service thread, started by its first connection).
///
/// tokio's timer driver wakes its runtime through the runtime's eventfd (a `write` system
/// call, and one more turn of `epoll_wait`) whenever a timer is registered earlier than the
/// earliest one it knew when it last parked, and a wheel that was empty knows none. Every
/// request registers such a timer: the wait for a kept-alive connection's next request
/// ([`Capped::next_request`]). Under load, one request in about seven found the wheel empty
/// and paid for a wake-up of its own thread (issue 24). With a floor due within a second,
/// those timers (a minute and more ahead) are never the earliest.
fn keep_a_timer_floor() {
    if TIMER_FLOOR.with(|floor| floor.replace(true)) {
        return;
    }
    tokio::spawn(async {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// How long, once a service stops accepting, the connections it has accepted get to send
/// their request by default ([`Capped::with_first_request_grace`]; the gateway sets half
/// its grace period).
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// How often [`Capped::cleanup`] looks whether connections are still arriving: a shutdown
/// path only, so the request path pays nothing but a counter per connection.
const ARRIVALS_POLL: Duration = Duration::from_millis(10);

/// A connection counted in [`Capped`]'s `arriving` until its first answer (or its end).
struct Arriving(Arc<AtomicUsize>);

impl Arriving {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(count))
    }
}

impl Drop for Arriving {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Answers 503 `too_many_connections` on a connection that will not be served, then
/// closes it cleanly: the answer follows the first bytes of the request (or a short wait),
/// and what the client still sends is read and discarded for a moment (a lingering close),
/// so the client reads the answer instead of a reset.
async fn refuse(mut stream: Stream) {
    let mut scratch = [0u8; 2048];
    let _ = tokio::time::timeout(REFUSAL_LINGER, stream.read(&mut scratch)).await;
    if stream.write_all(&refusal()).await.is_err() || stream.flush().await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        let _ = stream.shutdown().await;
        let mut drained = 0usize;
        while drained < 64 * 1024 {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

/// The refusal as sent: pingora has not read the request, so the answer is written here.
fn refusal() -> Vec<u8> {
    let reason = Reason::TooManyConnections;
    let body = reason.body();
    let head = format!(
        "HTTP/1.1 {} Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nx-gateway-error: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
        reason.status(),
        body.len(),
        reason.code(),
    );
    [head.as_bytes(), &body].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_network_past_its_cap_is_refused_until_one_of_its_connections_closes() {
        let limits = Arc::new(Limits::new(100, 2, vec![]));
        let a = limits.admit(ip("198.51.100.7")).unwrap();
        let _b = limits.admit(ip("198.51.100.7")).unwrap();
        assert_eq!(limits.admit(ip("198.51.100.7")).err(), Some(Cap::Network));
        // Another network is not affected.
        let _c = limits.admit(ip("198.51.100.8")).unwrap();
        drop(a);
        let _d = limits.admit(ip("198.51.100.7")).unwrap();
        assert_eq!(limits.open(), 3);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let limits = Arc::new(Limits::new(100, 1, vec![]));
        let _a = limits.admit(ip("2001:db8:1:2::1")).unwrap();
        assert_eq!(
            limits.admit(ip("2001:db8:1:2:ffff::9")).err(),
            Some(Cap::Network)
        );
        let _b = limits.admit(ip("2001:db8:1:3::1")).unwrap();
    }

    #[test]
    fn the_replica_cap_counts_every_peer_and_trusted_balancers_only_against_it() {
        let limits = Arc::new(Limits::new(3, 1, vec!["10.0.0.0/8".parse().unwrap()]));
        let balancer = (0..3)
            .map(|_| limits.admit(ip("10.0.0.5")).unwrap())
            .collect::<Vec<_>>();
        assert_eq!(limits.admit(ip("198.51.100.7")).err(), Some(Cap::Replica));
        drop(balancer);
        assert_eq!(limits.open(), 0);
        assert_eq!(limits.networks(), 0, "closed networks leave the map");
        let _a = limits.admit(ip("198.51.100.7")).unwrap();
        // A dual-stack listener sees the balancer as ::ffff:10.0.0.5: still trusted.
        let _b = limits.admit(ip("::ffff:10.0.0.5")).unwrap();
        let _c = limits.admit(ip("::ffff:10.0.0.5")).unwrap();
    }

    #[test]
    fn zero_means_no_cap() {
        let limits = Arc::new(Limits::new(0, 0, vec![]));
        let held = (0..1000)
            .map(|_| limits.admit(ip("198.51.100.7")).unwrap())
            .collect::<Vec<_>>();
        assert_eq!(limits.open(), held.len());
    }

    /// A pipeline that answers nothing: the connection's own future does not depend on it
    /// (each request's future is boxed).
    struct Nothing;

    #[async_trait]
    impl ProxyHttp for Nothing {
        type CTX = ();
        fn new_ctx(&self) {}
        async fn upstream_peer(
            &self,
            _: &mut Session,
            _: &mut (),
        ) -> pingora::Result<Box<pingora::upstreams::peer::HttpPeer>> {
            pingora::Error::e_explain(pingora::ErrorType::InternalError, "nothing")
        }
    }

    /// What a kept-alive connection holds while idle is mostly its task's future (issue 26,
    /// finding 10): pingora's per-connection task was 8.6 KiB, sized for a TLS handshake.
    /// The connection's own future stays small: the handshake, the PROXY header and the
    /// refusal are boxed while they last, and the next request is read into room that
    /// exists only while the read is polled ([`read_next`]).
    #[tokio::test]
    async fn a_connection_holds_a_small_future_between_requests() {
        let limits = Arc::new(Limits::new(0, 0, vec![]));
        let capped = Arc::new(Capped::new(Nothing, limits, metrics(), None, None));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let stream: Stream = Box::new(L4Stream::from(tcp));
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        let connection = capped.connection(stream, &shutdown, Arriving::new(&capped.arriving));
        let size = std::mem::size_of_val(&connection);
        assert!(size <= 1024, "{size} bytes");
    }

    fn metrics() -> ConnectionMetrics {
        ConnectionMetrics {
            open: IntGauge::new("open", "open").unwrap(),
            service_open: IntGauge::new("service_open", "service_open").unwrap(),
            refused_replica: IntCounter::new("replica", "replica").unwrap(),
            refused_network: IntCounter::new("network", "network").unwrap(),
        }
    }

    /// A service answering 204 whose silent connections get `grace` at its cleanup, one
    /// connection accepted by it, and the client's end of that connection.
    async fn accepted(
        grace: Duration,
    ) -> (
        Arc<Capped<crate::serve::tests::NoContent>>,
        tokio::net::TcpStream,
        tokio::sync::watch::Sender<bool>,
    ) {
        let limits = Arc::new(Limits::new(0, 0, vec![]));
        let capped = Capped::new(
            crate::serve::tests::NoContent,
            limits,
            metrics(),
            None,
            None,
        )
        .with_first_request_grace(grace);
        let capped = Arc::new(capped);
        let (client, server) = connected().await;
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        ServerApp::process_new(&capped, Box::new(L4Stream::from(server)), &shutdown).await;
        (capped, client, stop)
    }

    /// A connection accepted just before the service stopped, whose request comes after:
    /// the cleanup waits for it (here the grace would allow a minute), the request is
    /// answered, and the cleanup ends as soon as it is, closing the connection then.
    /// (Until session 29 the wait was a fixed second, whatever the grace period: with one
    /// of 1 s, the cleanup never ran before the process dropped what was in flight.)
    #[tokio::test]
    async fn the_cleanup_waits_for_an_accepted_connection_until_its_first_answer() {
        let (capped, mut client, stop) = accepted(Duration::from_secs(60)).await;
        stop.send_replace(true);
        let cleanup = tokio::spawn({
            let capped = Arc::clone(&capped);
            async move { capped.cleanup().await }
        });
        // The cleanup is waiting: one connection has not been answered yet.
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert!(
            !cleanup.is_finished(),
            "the cleanup waits for the connection"
        );
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        let read =
            tokio::time::timeout(Duration::from_secs(30), client.read_to_string(&mut answer));
        read.await.expect("answered, then closed").unwrap();
        assert!(answer.starts_with("HTTP/1.1 204 "), "{answer}");
        tokio::time::timeout(Duration::from_secs(30), cleanup)
            .await
            .expect("the cleanup ends with the answer, long before its minute")
            .unwrap();
    }

    /// A connection that sends nothing is closed when the grace runs out.
    #[tokio::test]
    async fn a_connection_silent_past_the_grace_is_closed_by_the_cleanup() {
        let (capped, mut client, stop) = accepted(Duration::from_millis(200)).await;
        stop.send_replace(true);
        let cleanup = tokio::time::timeout(Duration::from_secs(30), capped.cleanup());
        cleanup.await.expect("the cleanup ends with its grace");
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(30), client.read_to_end(&mut rest));
        read.await.expect("closed").unwrap();
        assert!(rest.is_empty(), "closed unanswered");
    }

    /// Both ends of a loopback TCP connection: the client's, then the server's.
    async fn connected() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    /// A request with a journey's body is read whole in one read, and exactly: the buffer
    /// it was read into is not what is handed on. With nothing more arrived, the read waits
    /// (the idle wait) and holds no buffer meanwhile.
    #[tokio::test]
    async fn a_request_with_a_body_is_read_at_once_and_an_empty_socket_is_waited_on() {
        let (mut client, server) = connected().await;
        let request: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        client.write_all(&request).await.unwrap();
        let mut stream: Stream = Box::new(L4Stream::from(server));
        // A guard against a hang, not a measure: the bytes are there before the read starts.
        let arrived = std::time::Duration::from_secs(10);
        let read = tokio::time::timeout(arrived, read_next(&mut stream))
            .await
            .expect("what had arrived is read")
            .unwrap();
        assert_eq!(read, request);
        assert_eq!(read.capacity(), request.len());
        let mut next = std::pin::pin!(read_next(&mut stream));
        let waiting = std::future::poll_fn(|cx| Poll::Ready(next.as_mut().poll(cx).is_pending()));
        assert!(waiting.await, "nothing has arrived: the read waits");
        client.write_all(b"next").await.unwrap();
        let read = tokio::time::timeout(arrived, next).await.unwrap().unwrap();
        assert_eq!(read, b"next");
    }

    /// What [`Rewound`] holds is read first, across reads of any size, then the stream's own
    /// bytes; it gives its stream back only once all of it was read (what is left begins the
    /// next request).
    #[tokio::test]
    async fn a_rewound_stream_reads_its_first_bytes_again_then_its_own() {
        let (mut client, server) = connected().await;
        client.write_all(b" world").await.unwrap();
        let mut stream: Stream = Box::new(Rewound {
            first: b"hello"[..].into(),
            at: 0,
            inner: Box::new(L4Stream::from(server)),
        });
        let mut two = [0u8; 2];
        stream.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"he");
        let mut stream = Rewound::unwrap(stream).expect_err("three bytes are left");
        let mut rest = [0u8; 9];
        stream.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"llo world");
        let inner = Rewound::unwrap(stream).expect("all of it was read");
        assert!(inner.as_any().is::<L4Stream>());
    }

    #[test]
    fn the_refusal_is_a_whole_http_answer_in_the_json_rpc_shape() {
        let answer = String::from_utf8(refusal()).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(head.contains("connection: close"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["data"], "too_many_connections");
    }
}
