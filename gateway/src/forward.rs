//! Forwarding a request whose body was read whole, as pingora's proxy would and for less
//! (issue 24). The gateway forwards every request this way ([`crate::proxy::Gateway`]), and
//! `examples/bare_proxy.rs` does too, so that it stays the floor under the gateway's figures.
//!
//! - [`upstream_request`] makes the request what pingora's proxy makes of it (HTTP/1.1,
//!   without the client connection's own fields).
//! - [`send_whole`] writes its head and body in one write, where pingora's HTTP/1 client
//!   flushes the head first and sends the body from its retry buffer (64 KiB, less than a
//!   bulk import).
//! - [`Pooled`] takes a pooled connection without pingora's `getpeername`.
//! - [`Idle`] keeps the connections between requests, per service, where pingora's pool
//!   spawned a task per connection given back, to watch it while it waited.
//! - Upstreams are spoken to in HTTP/1.1, new connections made by pingora's HTTP/1
//!   connector: the gateway's peers offer no other protocol (no ALPN `h2`), which pingora's
//!   connector for both would only check, in a future of 8.8 KB moved for every request.
//! - [`relay`] hands the answer to the client and the connection to [`Idle`]. pingora's
//!   proxy loop, which also watches the client while the upstream answers, is not needed for
//!   a request already read whole: a client that leaves is noticed when its answer is written.

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderName, HeaderValue, header};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::Stream;
use pingora::protocols::http::v1::client::{HttpSession, http_req_header_to_wire};
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::proxy::Session;
use pingora::upstreams::peer::{HttpPeer, Peer};
use pingora::{Error, ErrorType, RetryType};
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// How long an idle connection to an upstream is kept for the next request.
pub const UPSTREAM_IDLE: Duration = Duration::from_secs(60);

/// How many idle connections a service keeps, to all its upstreams (pingora's pool keeps
/// as many by default).
pub const IDLE_MAX: usize = 128;

/// One service's idle connections to its upstreams, the newest last: a connection is taken
/// by the request after the one it served, on the thread it was opened on.
///
/// pingora's connection pool (`TransportConnector::release_stream`) spawned, for every
/// connection given back, a task that watched it while it waited, and told that task to
/// end when the connection was taken again: a task spawned and woken, a lock and two
/// channels per forwarded request, about 8 % of the gateway's instructions under the GET
/// benchmark (issue 24). Here a connection waits in a list. Whether it is still alive is
/// checked when it is given back and when it is taken, as pingora checks it (a read that
/// must find nothing: the upstream closed it, or sent what no request asked for); one idle
/// past [`UPSTREAM_IDLE`] is closed when
/// the list is next used, so a connection the upstream closed lingers no longer than that
/// while requests come, and until the next one when none do.
pub struct Idle {
    waiting: std::sync::Mutex<std::collections::VecDeque<Waiting>>,
}

struct Waiting {
    key: u64,
    stream: Stream,
    since: std::time::Instant,
}

impl Default for Idle {
    fn default() -> Self {
        Self::new()
    }
}

impl Idle {
    pub fn new() -> Self {
        Self {
            waiting: std::sync::Mutex::new(std::collections::VecDeque::new()),
        }
    }

    /// The newest idle connection to `peer` that is still alive, if any.
    pub fn take(&self, peer: &Pooled) -> Option<Stream> {
        loop {
            let mut stream = {
                let mut waiting = self.waiting();
                expire(&mut waiting);
                let at = waiting.iter().rposition(|w| w.key == peer.reuse_hash)?;
                waiting.remove(at)?.stream
            };
            if reusable(&mut stream) {
                return Some(stream);
            }
        }
    }

    /// Keeps `upstream`'s connection for the next request to `peer` once its answer is read
    /// whole, if the upstream keeps it open (its `Connection`, its version); else closes it.
    pub async fn keep(&self, peer: &Pooled, mut upstream: HttpSession) {
        upstream.respect_keepalive();
        let Some(mut stream) = upstream.reuse().await else {
            return;
        };
        if !reusable(&mut stream) {
            return;
        }
        let mut waiting = self.waiting();
        expire(&mut waiting);
        if waiting.len() == IDLE_MAX {
            waiting.pop_front();
        }
        waiting.push_back(Waiting {
            key: peer.reuse_hash,
            stream,
            since: std::time::Instant::now(),
        });
    }

    /// How many connections wait.
    pub fn len(&self) -> usize {
        self.waiting().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<Waiting>> {
        // Nothing is left half-done under this lock: a panic elsewhere cannot spoil it.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Closes the connections idle past [`UPSTREAM_IDLE`] (the oldest are first).
fn expire(waiting: &mut std::collections::VecDeque<Waiting>) {
    while waiting
        .front()
        .is_some_and(|w| w.since.elapsed() > UPSTREAM_IDLE)
    {
        waiting.pop_front();
    }
}

/// Whether an idle connection can carry a request: reading it must find nothing, without
/// waiting (pingora's `test_reusable_stream`). An end of stream is the upstream's close; data
/// is what no request asked for.
fn reusable(stream: &mut Stream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut byte = [0u8; 1];
    // Unconstrained: out of its budget, the runtime would say "nothing yet" of any read.
    let read = std::pin::pin!(tokio::task::unconstrained(stream.read(&mut byte)));
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    read.poll(&mut context).is_pending()
}

/// Whether the request has a body to forward: a `Content-Length` above 0, or a transfer coding.
pub fn has_body(request: &RequestHeader) -> bool {
    let headers = &request.headers;
    headers.contains_key(&header::TRANSFER_ENCODING)
        || headers
            .get(&header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0)
}

/// The whole request body, or `None` past `limit` bytes. A client that asked to be told
/// to go on (`Expect: 100-continue`) is told so first; the upstream is not asked again.
pub async fn read_body(session: &mut Session, limit: u64) -> Result<Option<Bytes>> {
    let downstream = session.as_downstream_mut();
    if downstream
        .get_header(&header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
    {
        downstream.write_continue_response().await?;
    }
    downstream.req_header_mut().remove_header(&header::EXPECT);
    // Most bodies come in one piece (a journey with its head in one read): that piece is
    // the body, not copied again.
    let Some(first) = downstream.read_request_body().await? else {
        return Ok(Some(Bytes::new()));
    };
    if first.len() as u64 > limit {
        return Ok(None);
    }
    let Some(second) = downstream.read_request_body().await? else {
        return Ok(Some(first));
    };
    let mut body = BytesMut::from(first);
    let mut next = Some(second);
    while let Some(chunk) = next {
        if (body.len() + chunk.len()) as u64 > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
        next = downstream.read_request_body().await?;
    }
    Ok(Some(body.freeze()))
}

/// The request to send to an HTTP/1.1 upstream, for one the gateway forwards itself with its
/// body read whole: what pingora's proxy makes of a request before forwarding it
/// (pingora-proxy's `proxy_1to1`, whose helpers are not public), then the body's length.
/// - HTTP/1.1, whatever the client spoke: a request that came over HTTP/2 has no `Host`
///   but an authority, which becomes its `Host` (RFC 9113 §8.3.1).
/// - The fields the client's `Connection` names, and the hop-by-hop fields, are the client's
///   connection's, not the request's: dropped (RFC 9110 §7.6.1). `Host` is never dropped
///   that way; the fields the gateway writes itself are written after this.
/// - The body was read whole, so it goes with its length, never chunked.
pub fn upstream_request(downstream: &RequestHeader, body_len: usize) -> Result<RequestHeader> {
    upstream_parts(downstream, body_len, 0, |_| true).map(RequestHeader::from)
}

/// [`upstream_request`] as `http` parts, for a caller that writes fields of its own: those
/// `keep` refuses are left out too, and the map has room for `room` more without growing.
///
/// One pass copies the fields kept into a new map. Cloning pingora's request, then removing
/// the hop-by-hop fields one by one (each removal hashes its name, sent or not) and growing
/// the map for the caller's fields, cost about twice as much (issue 24). The names' spellings
/// are not kept: they go out as pingora writes unspelt names, the usual ones titled and the
/// rest in lower case (names are case-insensitive, RFC 9110 §5.1; HTTP/2 sends them all in
/// lower case). The request target is written from the URI.
pub fn upstream_parts(
    downstream: &RequestHeader,
    body_len: usize,
    room: usize,
    keep: impl Fn(&HeaderName) -> bool,
) -> Result<http::request::Parts> {
    let sent = &downstream.headers;
    let nominated: Vec<HeaderName> = (sent.get_all(&header::CONNECTION).iter())
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .filter_map(|token| HeaderName::from_bytes(token.trim_ascii()).ok())
        .filter(|name| *name != header::HOST)
        .collect();
    // `Host` and `Content-Length` may be written below.
    let mut headers = http::HeaderMap::with_capacity(sent.len() + room + 2);
    for (name, value) in sent {
        if !HOP_BY_HOP.contains(name) && !nominated.contains(name) && keep(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = downstream.method.clone();
    parts.uri = downstream.uri.clone();
    parts.version = http::Version::HTTP_11;
    if let Some(authority) = parts.uri.authority() {
        let host = HeaderValue::from_str(authority.as_str()).or_err(
            ErrorType::InvalidHTTPHeader,
            "an authority that is no header value",
        )?;
        headers.insert(header::HOST, host);
    } else if !headers.contains_key(&header::HOST) {
        headers.insert(header::HOST, HeaderValue::from_static(""));
    }
    // A request without a body (most `GET`s) goes without a length, as the client sent it.
    if body_len > 0 || has_body(downstream) {
        headers.insert(
            header::CONTENT_LENGTH,
            crate::header_number(body_len as u64),
        );
    }
    parts.headers = headers;
    Ok(parts)
}

/// The head of an upstream's answer as the client gets it, with room for `room` more fields
/// without growing its map: its status and fields, in the spelling [`upstream_parts`]
/// writes. Cloning pingora's head copied its map of spellings too, and the gateway's fields
/// then grew the map, copying it once more (issue 24).
pub fn answer_head(upstream: &ResponseHeader, room: usize) -> ResponseHeader {
    let mut headers = http::HeaderMap::with_capacity(upstream.headers.len() + room);
    for (name, value) in &upstream.headers {
        headers.append(name.clone(), value.clone());
    }
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = upstream.status;
    parts.version = upstream.version;
    parts.headers = headers;
    ResponseHeader::from(parts)
}

/// Fields that describe one connection, never forwarded (RFC 9110 §7.6.1; the list pingora's
/// proxy drops).
static HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TE,
    http::header::TRAILER,
    header::TRANSFER_ENCODING,
    http::header::UPGRADE,
    HeaderName::from_static("http2-settings"),
];

/// A replica as [`relay`] reaches it: pingora's [`HttpPeer`], shared and with its pool key
/// worked out once, in all but one check.
///
/// - Before handing out a pooled connection, pingora asks the kernel for the peer of its
///   file descriptor (`matches_fd`: a `getpeername` per forwarded request, issue 24). The
///   pool keys its connections by the peer already, and owns each one's file descriptor
///   while it waits, so the descriptor cannot have come to name another socket; whether the
///   connection is still alive, pingora still checks (a read that must find nothing).
/// - pingora hashes the whole peer for its pool key when a connection is taken and again
///   when it is given back: here the key is worked out once, when the peer is made, and
///   kept beside it. The peer of an upstream given as one address is made once and shared
///   (it was cloned, 672 bytes, per request); one picked among replicas is made per
///   request, as before. Nothing changes a peer once made (`get_mut_peer_options` gives
///   nothing).
#[derive(Clone)]
pub struct Pooled {
    peer: Arc<HttpPeer>,
    reuse_hash: u64,
}

impl Pooled {
    pub fn new(peer: HttpPeer) -> Self {
        let reuse_hash = peer.reuse_hash();
        Self {
            peer: Arc::new(peer),
            reuse_hash,
        }
    }

    /// The same peer in an allocation of its own: a service that keeps one shares its
    /// reference count with no other thread (issue 24).
    pub fn own_copy(&self) -> Self {
        Self {
            peer: Arc::new(HttpPeer::clone(&self.peer)),
            reuse_hash: self.reuse_hash,
        }
    }
}

impl std::ops::Deref for Pooled {
    type Target = HttpPeer;

    fn deref(&self) -> &HttpPeer {
        &self.peer
    }
}

impl std::fmt::Display for Pooled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.peer.fmt(f)
    }
}

impl Peer for Pooled {
    fn address(&self) -> &PeerAddr {
        self.peer.address()
    }
    fn tls(&self) -> bool {
        self.peer.tls()
    }
    fn sni(&self) -> &str {
        self.peer.sni()
    }
    fn reuse_hash(&self) -> u64 {
        self.reuse_hash
    }
    fn get_proxy(&self) -> Option<&pingora::upstreams::peer::Proxy> {
        self.peer.get_proxy()
    }
    fn get_peer_options(&self) -> Option<&pingora::upstreams::peer::PeerOptions> {
        self.peer.get_peer_options()
    }
    fn get_client_cert_key(&self) -> Option<&Arc<pingora::utils::tls::CertKey>> {
        self.peer.get_client_cert_key()
    }
    fn get_tracer(&self) -> Option<pingora::upstreams::peer::Tracer> {
        self.peer.get_tracer()
    }
    fn matches_fd<V: std::os::fd::AsRawFd>(&self, _: V) -> bool {
        true
    }
}

/// Sends a request's head and its whole body to the upstream in one write: pingora's HTTP/1
/// client flushes the head on its own, then writes the body, two system calls where one
/// does (issue 24).
pub async fn send_whole(
    mut stream: Stream,
    peer: &Pooled,
    request: &RequestHeader,
    body: &Bytes,
) -> Result<HttpSession> {
    let Some(head) = http_req_header_to_wire(request) else {
        return Error::e_explain(
            ErrorType::InvalidHTTPHeader,
            "a request line pingora refuses",
        );
    };
    // Head and body in one `writev`: the body is not copied after the head.
    let mut wire = (&head[..]).chain(&body[..]);
    let written = match stream.write_all_buf(&mut wire).await {
        Ok(()) => stream.flush().await,
        Err(e) => Err(e),
    };
    if let Err(e) = written {
        // As pingora's client marks a failed read of the answer: a pooled connection the
        // upstream closed fails here, and the request may be sent again on another one.
        let mut e = Error::because(ErrorType::WriteError, "while writing the request", e);
        e.retry = RetryType::ReusedOnly;
        return Err(e);
    }
    Ok(HttpSession::new_with_options(stream, peer))
}

/// Lets the thread's other ready connections run before this one writes its answer
/// (issue 24).
///
/// Each service thread serves its connections one task each. Written as soon as it was
/// ready, every answer woke its reader (a client on the same cores: the load generator of
/// a benchmark, a local client) on its own, and a reader woken while asleep took the core
/// from the gateway at once: a context switch there and one back per write. Put at the back
/// of the runtime's queue (it wakes itself, once), the task writes after the tasks that were
/// ready with it, so a turn's answers go out after its reads, as HAProxy sends after
/// receiving on every ready connection, and a woken reader finds several answers. It does
/// not wait for connections that become ready later (the I/O driver is polled after the
/// queue): `tokio::task::yield_now` did, at the cost of one more `epoll_wait` per turn.
///
/// Only answers wait. Session 28 made the upstream request wait as well: with the upstream
/// doing real work on the other core (the registry storing journeys, grouped), that held
/// each request back while the turn's other requests went through the pipeline, and the
/// registry idle meanwhile: 0.4–0.7 ms more per journey inside the gateway and 5–15 % fewer
/// journeys a second in `scripts/bench/ingest.sh` (docs/performance.md, session 29).
pub fn after_the_others() -> impl Future<Output = ()> {
    let mut queued = false;
    std::future::poll_fn(move |cx| {
        if queued {
            return Poll::Ready(());
        }
        queued = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
}

/// Sends the request on `stream` and reads the head of its answer, each read of it waiting
/// `read_timeout` at most. The request is written at once: the upstream starts on it while
/// the thread goes on with its other connections.
pub async fn exchange(
    stream: Stream,
    peer: &Pooled,
    request: &RequestHeader,
    body: &Bytes,
    read_timeout: Option<Duration>,
) -> Result<HttpSession> {
    let mut upstream = send_whole(stream, peer, request, body).await?;
    upstream.read_timeout = read_timeout;
    upstream.read_response().await?;
    Ok(upstream)
}

/// Hands the upstream's answer to the client (`response`: its head, as the caller edited
/// it), then its connection to `idle`, for the next request. An error reading the upstream
/// is the upstream's ([`Error::into_up`]); one writing to the client, the client's. The
/// answer is written when the thread's other ready connections have had their turn
/// ([`after_the_others`]).
pub async fn relay(
    session: &mut Session,
    idle: &Idle,
    peer: &Pooled,
    mut upstream: HttpSession,
    response: ResponseHeader,
) -> Result<()> {
    let done = upstream.is_body_done();
    after_the_others().await;
    session
        .write_response_header(Box::new(response), done)
        .await?;
    if !done {
        loop {
            let chunk = upstream.read_body_bytes().await.map_err(|e| e.into_up())?;
            let end = chunk.is_none() || upstream.is_body_done();
            session.write_response_body(chunk, end).await?;
            if end {
                break;
            }
        }
    }
    idle.keep(peer, upstream).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::connectors::http::v1::Connector;

    /// A request the gateway forwards itself goes out as pingora's proxy would send it: in
    /// HTTP/1.1 with a `Host` (a browser's HTTP/2 request has only an authority: it was
    /// answered 400 before), without the client connection's own fields, with its length.
    #[test]
    fn a_forwarded_request_is_http_1_1_without_the_client_connections_fields() {
        // As pingora's HTTP/2 session makes it: the URI with its scheme and authority.
        let (parts, ()) = http::Request::post("https://localhost:8443/profile/signin")
            .version(http::Version::HTTP_2)
            .body(())
            .unwrap()
            .into_parts();
        let mut h2 = RequestHeader::from(parts);
        for (name, value) in [
            ("content-type", "application/json"),
            ("connection", "keep-alive, X-Secret , host"),
            ("x-secret", "for the next hop only"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic dTpw"),
        ] {
            h2.append_header(name, value).unwrap();
        }
        let sent = upstream_request(&h2, 36).unwrap();
        assert_eq!(sent.version, http::Version::HTTP_11);
        let names: Vec<&str> = sent.headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["content-type", "host", "content-length"]);
        assert_eq!(sent.headers["host"], "localhost:8443");
        assert_eq!(sent.headers["content-length"], "36");
        let wire = http_req_header_to_wire(&sent).expect("pingora writes it");
        assert!(
            wire.starts_with(b"POST /profile/signin HTTP/1.1\r\n"),
            "{wire:?}"
        );

        // HTTP/1.1: its `Host` stays, even when its `Connection` names it.
        let mut h1 = RequestHeader::build("POST", b"/v3/journeys", None).unwrap();
        h1.append_header("host", "api.example.fr").unwrap();
        h1.append_header("connection", "host, close").unwrap();
        let sent = upstream_request(&h1, 0).unwrap();
        assert_eq!(sent.headers["host"], "api.example.fr");
        assert!(!sent.headers.contains_key("connection"));
        // HTTP/1.0 may send none; HTTP/1.1 requires one.
        let bare = RequestHeader::build("POST", b"/v3/journeys", None).unwrap();
        assert_eq!(upstream_request(&bare, 0).unwrap().headers["host"], "");
    }

    /// A connection ready to write waits for the thread's other ready connections: all of
    /// them are read before any is written, the batching `relay` relies on, and they are
    /// then written in the order they were read. (On the service threads' runtime, one
    /// thread per service, as here.)
    #[tokio::test(flavor = "current_thread")]
    async fn a_write_waits_for_the_other_ready_connections() {
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let connections: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|name| {
                let order = order.clone();
                tokio::spawn(async move {
                    order.lock().unwrap().push(format!("{name} read"));
                    after_the_others().await;
                    order.lock().unwrap().push(format!("{name} written"));
                })
            })
            .collect();
        for connection in connections {
            connection.await.unwrap();
        }
        let order = order.lock().unwrap();
        let expected = [
            "a read",
            "b read",
            "c read",
            "a written",
            "b written",
            "c written",
        ];
        assert_eq!(*order, expected);
    }

    /// ... but not for a connection whose data arrives meanwhile: that one is read in the
    /// next turn, after this turn's writes (`yield_now` polled the I/O driver first, so
    /// under load each write waited for a whole further turn of reads).
    #[tokio::test(flavor = "current_thread")]
    async fn a_write_does_not_wait_for_a_connection_ready_after_its_turn() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut waiting, _) = listener.accept().await.unwrap();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let later = tokio::spawn({
            let order = order.clone();
            async move {
                let mut byte = [0u8; 1];
                waiting.read_exact(&mut byte).await.unwrap();
                order.lock().unwrap().push("later read");
            }
        });
        // It waits on its socket; then its request arrives, while `now` is being served.
        tokio::task::yield_now().await;
        assert!(order.lock().unwrap().is_empty());
        client.write_all(b"x").await.unwrap();
        let now = tokio::spawn({
            let order = order.clone();
            async move {
                order.lock().unwrap().push("now read");
                after_the_others().await;
                order.lock().unwrap().push("now written");
            }
        });
        now.await.unwrap();
        later.await.unwrap();
        let order = order.lock().unwrap();
        assert_eq!(*order, ["now read", "now written", "later read"]);
    }

    /// A request with a body goes out whole, head and body as pingora would write them; the
    /// session then reads the answer, and its connection goes back to the pool and is used
    /// again. Nothing of pingora's bookkeeping depends on the head having gone through it.
    #[tokio::test]
    async fn a_request_sent_whole_is_answered_and_its_connection_kept() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let body = Bytes::from(vec![b'j'; 3000]);
        let mut request = RequestHeader::build("POST", b"/v3/journeys", None).unwrap();
        request.insert_header("host", "registry").unwrap();
        request.insert_header("content-length", body.len()).unwrap();
        let mut expected = http_req_header_to_wire(&request).unwrap();
        expected.extend_from_slice(&body);
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            for answer in ["first", "again"] {
                let mut got = vec![0u8; expected.len()];
                conn.read_exact(&mut got).await.unwrap();
                assert_eq!(got, expected);
                let len = answer.len();
                let response =
                    format!("HTTP/1.1 201 Created\r\nContent-Length: {len}\r\n\r\n{answer}");
                conn.write_all(response.as_bytes()).await.unwrap();
            }
        });
        let connector = Connector::new(None);
        let idle = Idle::new();
        let peer = Pooled::new(HttpPeer::new(addr, false, String::new()));
        for (answer, reused) in [("first", false), ("again", true)] {
            let taken = idle.take(&peer);
            assert_eq!(
                taken.is_some(),
                reused,
                "the kept connection is taken again"
            );
            let stream = match taken {
                Some(stream) => stream,
                None => connector
                    .get_http_session(&peer)
                    .await
                    .unwrap()
                    .0
                    .into_inner(),
            };
            let mut upstream = send_whole(stream, &peer, &request, &body).await.unwrap();
            upstream.read_response().await.unwrap();
            assert_eq!(upstream.resp_header().unwrap().status, 201);
            let read = upstream.read_body_bytes().await.unwrap();
            assert_eq!(read.as_deref(), Some(answer.as_bytes()));
            assert!(upstream.is_body_done());
            idle.keep(&peer, upstream).await;
            if !reused {
                // (The upstream closes after its second answer.)
                assert_eq!(idle.len(), 1, "kept for the next request");
            }
        }
        server.await.unwrap();
    }

    /// An upstream that answers once on each connection, then does `after` with it.
    async fn answering_once(
        after: &'static str,
    ) -> (
        std::net::SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tell, told) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut got = [0u8; 1024];
            let _ = conn.read(&mut got).await.unwrap();
            let close = if after == "says close" {
                "Connection: close\r\n"
            } else {
                ""
            };
            let response = format!("HTTP/1.1 200 OK\r\n{close}Content-Length: 2\r\n\r\nok");
            conn.write_all(response.as_bytes()).await.unwrap();
            let _ = told.await;
            match after {
                "closes" => drop(conn),
                "sends more" => conn.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap(),
                _ => {}
            }
            // Held open until the test has looked.
            tokio::time::sleep(Duration::from_millis(300)).await;
        });
        (addr, tell, server)
    }

    /// One request on a new connection to `addr`, its connection then given to `idle`.
    async fn one_request(idle: &Idle, peer: &Pooled) {
        let connector = Connector::new(None);
        let stream = connector
            .get_http_session(peer)
            .await
            .unwrap()
            .0
            .into_inner();
        let request = RequestHeader::build("GET", b"/health", None).unwrap();
        let mut upstream = exchange(stream, peer, &request, &Bytes::new(), None)
            .await
            .unwrap();
        assert_eq!(
            upstream.read_body_bytes().await.unwrap().as_deref(),
            Some(&b"ok"[..])
        );
        assert!(upstream.is_body_done());
        idle.keep(peer, upstream).await;
    }

    /// A connection the upstream closed while it waited, or on which it sent what no request
    /// asked for, is never handed to a request (which would fail on it); nor is one whose
    /// answer said it would be closed kept at all.
    #[tokio::test]
    async fn a_connection_the_upstream_closed_or_spoke_on_is_not_taken() {
        for after in ["closes", "sends more"] {
            let (addr, tell, server) = answering_once(after).await;
            let peer = Pooled::new(HttpPeer::new(addr, false, String::new()));
            let idle = Idle::new();
            one_request(&idle, &peer).await;
            assert_eq!(idle.len(), 1, "{after}: kept while it looked alive");
            tell.send(()).unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(idle.take(&peer).is_none(), "{after}: taken");
            assert!(idle.is_empty(), "{after}: closed");
            server.await.unwrap();
        }
        let (addr, tell, server) = answering_once("says close").await;
        let peer = Pooled::new(HttpPeer::new(addr, false, String::new()));
        let idle = Idle::new();
        one_request(&idle, &peer).await;
        assert!(
            idle.is_empty(),
            "kept though the upstream said it closes it"
        );
        tell.send(()).unwrap();
        server.await.unwrap();
    }

    /// A connection is taken only for the replica it goes to, and one idle too long is closed
    /// when the list is next used.
    #[tokio::test]
    async fn a_connection_serves_its_own_replica_and_expires() {
        let (addr, tell, server) = answering_once("stays").await;
        let peer = Pooled::new(HttpPeer::new(addr, false, String::new()));
        let idle = Idle::new();
        one_request(&idle, &peer).await;
        let other = Pooled::new(HttpPeer::new("127.0.0.1:9", false, String::new()));
        assert!(idle.take(&other).is_none());
        assert_eq!(
            idle.len(),
            1,
            "another replica's connection is left waiting"
        );
        let long_ago = std::time::Instant::now() - UPSTREAM_IDLE - Duration::from_secs(1);
        idle.waiting()[0].since = long_ago;
        assert!(
            idle.take(&peer).is_none(),
            "an expired connection was taken"
        );
        assert!(idle.is_empty());
        tell.send(()).unwrap();
        server.await.unwrap();
    }
}
