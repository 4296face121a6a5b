//! The pingora glue: runs the pipeline of CONTRACT §2 on each request and forwards it with
//! the identity assertion. Decisions are made by [`crate::routes`] and [`crate::authorize`];
//! this file only reads headers, answers and records.

use crate::authorize::{
    Outcome, Presented, Provenance, authorize, cross_site_refused, is_unsafe_method,
};
use crate::cookies;
use crate::forward::{self, Pooled, exchange, has_body, read_body, relay, upstream_parts};
use crate::ratelimit::{Decision, RouteClass, Subject};
use crate::reason::Reason;
use crate::routes::{
    HEALTH, OPENAPI_JSON, OPENAPI_YAML, PROFILE_SIGNIN, Route, Upstream, Versions, route,
};
use crate::token_cache::Cached;
use crate::{Shared, unix_now};
use async_trait::async_trait;
use auth_token::session::{is_well_formed_sessid, new_sessid, sid_of};
use auth_token::{CredentialKind, Principal};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType};
use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Request bodies above this are refused with 413.
pub const MAX_BODY_BYTES: u64 = 2 * 1024 * 1024;

/// How many times an idempotent request is sent again after its pooled upstream connection
/// turned out closed (pingora's proxy: `max_retries`, 16).
const MAX_RESENT: usize = 16;

/// Request lines plus headers above this are refused with 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The header names the pipeline reads or writes, parsed once: a name given as text is
/// parsed again on every look-up.
mod name {
    use http::HeaderName;
    pub use http::header::{
        ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, FORWARDED, HOST, LOCATION,
        ORIGIN, SET_COOKIE, STRICT_TRANSPORT_SECURITY, TRANSFER_ENCODING, USER_AGENT,
        WWW_AUTHENTICATE,
    };
    pub static ASSERTION: HeaderName = HeaderName::from_static(auth_token::ASSERTION_HEADER);
    pub static CSRF: HeaderName = HeaderName::from_static(auth_token::session::CSRF_HEADER);
    pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
    pub static X_API_VERSION: HeaderName = HeaderName::from_static("x-api-version");
    pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
    pub static ACCESS_TOKEN: HeaderName = HeaderName::from_static("access-token");
    pub static CLIENT: HeaderName = HeaderName::from_static("client");
    pub static UID: HeaderName = HeaderName::from_static("uid");
    pub static SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");
    pub static X_RPC_OUTCOME: HeaderName = HeaderName::from_static("x-rpc-outcome");
    pub static X_GATEWAY_ERROR: HeaderName = HeaderName::from_static("x-gateway-error");
}

/// Headers the client may not choose: they would let it speak for the gateway.
static STRIPPED: [&http::HeaderName; 6] = [
    &name::ASSERTION,
    &name::AUTHORIZATION,
    &name::ACCESS_TOKEN,
    &name::X_FORWARDED_FOR,
    &name::X_REAL_IP,
    &name::FORWARDED,
];

/// The fields the gateway adds to a forwarded request: its cookies without the gateway's,
/// `X-Request-Id`, `X-Forwarded-For`, the assertion.
const ADDED_FIELDS: usize = 4;

/// The fields the gateway may add to a forwarded answer ([`Gateway::response_filter`]).
const ADDED_RESPONSE_FIELDS: usize = 10;

/// Whether a field of the client's request is forwarded as it came: neither one that would
/// speak for the gateway ([`STRIPPED`]) nor its cookies, which are forwarded without the
/// gateway's own ([`cookies::forwarded`]).
fn forwarded_as_sent(name: &HeaderName) -> bool {
    *name != name::COOKIE && !STRIPPED.contains(&name)
}

/// One proxy service's pipeline ([`crate::build_server`] makes one per service).
pub struct Gateway {
    pub(crate) shared: Arc<Shared>,
    pub(crate) versions: Versions,
    /// This service's `gateway_service_requests_total`.
    served: prometheus::IntCounter,
    /// This service's requests by route, method and status.
    series: crate::metrics::RequestSeries,
    /// This service's index: its shard of the usage records.
    index: usize,
    /// This service's way to its upstreams, for every request it forwards
    /// ([`Gateway::forward`]), and its connections between two requests. Each service keeps
    /// its own: a pooled connection is only ever served by the thread it was opened on.
    connector: pingora::connectors::http::v1::Connector,
    idle: forward::Idle,
    /// This service's copy of the peer of each upstream given as one address (auth-service,
    /// registry): cloning the shared one per request moved its reference count between the
    /// cores, about 0.15 % of the gateway's CPU under the POST benchmark (issue 24); this
    /// one is lent, not cloned.
    own_peers: [Option<Pooled>; 2],
}

impl Gateway {
    /// The pipeline of proxy service `index`.
    pub fn new(shared: Arc<Shared>, versions: Versions, index: usize) -> Self {
        Self {
            own_peers: [Upstream::AuthService, Upstream::Registry]
                .map(|u| shared.upstreams.of(u).only().map(Pooled::own_copy)),
            served: shared.metrics.service_requests(index),
            series: shared.metrics.request_series(),
            index,
            shared,
            versions,
            connector: pingora::connectors::http::v1::Connector::new(None),
            idle: forward::Idle::new(),
        }
    }
}

/// Per-request state.
pub struct Ctx {
    start: Instant,
    /// The client's `X-Request-Id` when sane, else a new one: a header value, shared by the
    /// upstream request and the answer without copying it.
    request_id: HeaderValue,
    route: Option<Route>,
    /// The methods of the path, when it is a route with other methods only (`Allow`).
    allow: Option<String>,
    /// The caller: set once the credential is known genuine, refused or not (an answered
    /// request is never forwarded, so a refused caller is only named in the usage records).
    principal: Option<Principal>,
    /// The code of the gateway's own refusal, when it answered one; or the upstream's finer
    /// outcome (`x-rpc-outcome`, one the usage records know).
    refusal: Option<&'static str>,
    /// The version served, as the answer's `X-API-Version`.
    version: Option<HeaderValue>,
    /// The rate limiter's decision, for the `RateLimit-*` headers of the response.
    rate: Option<Decision>,
    /// The browser session id: the client's when well-formed, else a new one for a request
    /// that could use a browser session; empty for a machine's request without one.
    sessid: String,
    /// The session id is new: every response sets its cookie.
    new_sessid: bool,
    /// The client's address: the TCP peer, or the last `X-Forwarded-For` entry when the
    /// peer is a trusted balancer.
    client_ip: IpAddr,
    /// The request line and headers' size, measured once for the limit and the usage records.
    header_bytes: usize,
    /// The digest of the request body ([`auth_token::body_digest`]), bound in the assertion.
    body_digest: Option<String>,
    /// Upstream connections refused for this request, and the replica that refused the last
    /// one (the next attempt goes elsewhere).
    attempts: usize,
    refused: Option<PeerAddr>,
    /// The request came over TLS: its answer carries HSTS, and its session cookies are the
    /// `__Host-` ones, `Secure`.
    tls: bool,
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            start: Instant::now(),
            request_id: HeaderValue::from_static(""),
            route: None,
            principal: None,
            refusal: None,
            allow: None,
            version: None,
            rate: None,
            sessid: String::new(),
            new_sessid: false,
            client_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            header_bytes: 0,
            body_digest: None,
            attempts: 0,
            refused: None,
            tls: false,
        }
    }

    /// Bounds how long this connection, once answered, waits for its next request.
    async fn early_request_filter(&self, session: &mut Session, _ctx: &mut Ctx) -> Result<()> {
        set_idle_timeout(session, self.shared.keepalive_idle_secs);
        Ok(())
    }

    /// The pipeline. Its future is boxed (`async_trait`) and so moved whole for every
    /// request: the paths other than forwarding an allowed request (answers, refusals,
    /// bodies) are boxed apart and awaited only when taken. Inline, their states made this
    /// future about 12 KB to copy per request (issue 24).
    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let now = unix_now();
        ctx.request_id = request_id(session.get_header(&name::X_REQUEST_ID));
        ctx.client_ip = client_ip(session, &self.shared.trusted_proxies);
        ctx.tls = session
            .digest()
            .is_some_and(|digest| digest.ssl_digest.is_some());
        let req = session.req_header();
        match cookies::values(cookie_headers(&req.headers), self.cookies(ctx).sessid)
            .find(|id| is_well_formed_sessid(id))
        {
            Some(sent) => ctx.sessid = sent.to_owned(),
            // Machines (a bearer token, an agent's header triple) are handed no cookie: the
            // reference's operator clients assert that `POST /journeys` sets none.
            None if carries_machine_credential(&req.headers) => {}
            None => {
                ctx.sessid = new_sessid();
                ctx.new_sessid = true;
            }
        }
        let too_large = req
            .headers
            .get(&name::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .is_some_and(|n| n > MAX_BODY_BYTES);
        if too_large {
            return Box::pin(self.answer(session, ctx, Reason::PayloadTooLarge)).await;
        }
        ctx.header_bytes = header_bytes(req);
        if ctx.header_bytes > MAX_HEADER_BYTES {
            return Box::pin(self.answer(session, ctx, Reason::HeadersTooLarge)).await;
        }
        if req.method == http::Method::GET && req.uri.path() == HEALTH {
            return Box::pin(self.answer_health(session, ctx)).await;
        }
        if req.method == http::Method::GET
            && let Some((content_type, body)) = api_description(req.uri.path())
        {
            let body = Bytes::from_static(body);
            return Box::pin(self.answer_own(session, ctx, 200, content_type, body)).await;
        }
        if let Some(port) = self.shared.redirect_to_tls
            && !ctx.tls
            && !is_trusted(&self.shared.trusted_proxies, session)
        {
            return Box::pin(self.redirect_to_tls(session, ctx, port)).await;
        }
        let Some(matched) = route(&req.method, req.uri.path()) else {
            // A route with other methods says which (RFC 9110 §15.5.6); else none is here.
            let allowed = crate::routes::allowed_methods(req.uri.path());
            if allowed.is_empty() {
                return Box::pin(self.answer(session, ctx, Reason::RouteNotFound)).await;
            }
            ctx.allow = Some(allowed.join(", "));
            return Box::pin(self.answer(session, ctx, Reason::MethodNotAllowed)).await;
        };
        if cross_site(session, &matched) {
            let code = Reason::CsrfFailed.code();
            self.shared.metrics.auth.with_label_values(&[code]).inc();
            ctx.route = Some(matched);
            return Box::pin(self.answer(session, ctx, Reason::CsrfFailed)).await;
        }
        let sent_sessid =
            (!ctx.new_sessid && !ctx.sessid.is_empty()).then_some(ctx.sessid.as_str());
        let names = self.cookies(ctx);
        let principal = match self
            .authorize(session, &matched, sent_sessid, names, now)
            .await
        {
            Ok(principal) => principal,
            Err((reason, principal)) => {
                ctx.route = Some(matched);
                // A genuine credential refused is still named in the usage records.
                ctx.principal = principal;
                return Box::pin(self.answer(session, ctx, reason)).await;
            }
        };
        if let Some(named) = &matched.version {
            let header = session
                .get_header(&name::X_API_VERSION)
                .map(|v| v.to_str().unwrap_or("?"));
            match self.served_version(named, header) {
                Some(v) => ctx.version = self.versions.header_value(v),
                None => {
                    ctx.route = Some(matched);
                    let reason = Reason::UnsupportedApiVersion;
                    return Box::pin(self.answer(session, ctx, reason)).await;
                }
            }
        }
        ctx.route = Some(matched);
        let limited = !self.rate_limit(session, ctx, &principal, now).await;
        ctx.principal = Some(Principal {
            session: (!ctx.sessid.is_empty()).then(|| sid_of(&ctx.sessid)),
            ..principal
        });
        if limited {
            return Box::pin(self.answer(session, ctx, Reason::RateLimited)).await;
        }
        let body = if has_body(session.req_header()) {
            // The assertion binds a digest of the body, so the body is read whole before
            // anything is forwarded.
            let Some(body) = Box::pin(read_body(session, MAX_BODY_BYTES)).await? else {
                return Box::pin(self.answer(session, ctx, Reason::PayloadTooLarge)).await;
            };
            ctx.body_digest = auth_token::body_digest(&body);
            body
        } else {
            Bytes::new()
        };
        Box::pin(self.forward(session, ctx, body)).await
    }

    /// Never called: `request_filter` answers or forwards every request itself
    /// ([`Gateway::forward`]), and the gateway's request loop ([`crate::serve::Answering`])
    /// is no proxy of pingora's.
    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        Error::e_explain(
            ErrorType::InternalError,
            "every request is forwarded by the gateway itself",
        )
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        edit_response(response, |headers| {
            headers.insert(&name::X_REQUEST_ID, ctx.request_id.clone());
            if let Some(version) = &ctx.version {
                headers.insert(&name::X_API_VERSION, version.clone());
            }
            rate_limit_headers(headers, ctx);
            if let Some(outcome) = headers.remove(&name::X_RPC_OUTCOME) {
                ctx.refusal = crate::usage::upstream_outcome(outcome.as_bytes());
            }
            self.set_transport_headers(headers, ctx);
            self.set_session_cookie(headers, ctx)
        })
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let reason = match (e.esource(), e.etype()) {
            (_, ErrorType::Custom(code)) if *code == Reason::PayloadTooLarge.code() => {
                Some(Reason::PayloadTooLarge)
            }
            (ErrorSource::Upstream, ErrorType::ReadTimedout | ErrorType::WriteTimedout) => {
                Some(Reason::UpstreamTimeout)
            }
            (ErrorSource::Upstream, _)
            | (
                _,
                ErrorType::ConnectTimedout
                | ErrorType::ConnectRefused
                | ErrorType::ConnectNoRoute
                | ErrorType::ConnectError,
            ) => Some(Reason::UpstreamUnavailable),
            _ => None,
        };
        let upstream = ctx.route.as_ref().map_or("none", |r| r.upstream.audience());
        let code = match reason {
            Some(reason) => {
                if reason.status() >= 500 {
                    self.shared
                        .metrics
                        .upstream_errors
                        .with_label_values(&[upstream, reason.code()])
                        .inc();
                }
                if session.response_written().is_none() {
                    let _ = self.write_error(session, ctx, reason).await;
                }
                if reason == Reason::PayloadTooLarge {
                    linger(session).await;
                }
                reason.status()
            }
            None => match e.etype() {
                ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed => 0,
                _ => {
                    let _ = session.respond_error(500).await;
                    500
                }
            },
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let template = match &ctx.route {
            Some(route) => route.template,
            None => match session.req_header().uri.path() {
                HEALTH => HEALTH,
                OPENAPI_JSON => OPENAPI_JSON,
                OPENAPI_YAML => OPENAPI_YAML,
                _ => "unmatched",
            },
        };
        let method = method_label(&session.req_header().method);
        if let Some(recorder) = &self.shared.usage {
            self.record_usage(recorder, session, ctx, status);
        }
        self.served.inc();
        let elapsed = ctx.start.elapsed();
        self.series
            .record(template, method, status_label(status), elapsed);
        // The access log is a debug one (`RUST_LOG=gateway=debug`): the metrics count every
        // request, and a formatted line written to stdout per request is not the pipeline's
        // purpose.
        tracing::debug!(
            request_id = rid(ctx),
            method,
            route = template,
            status,
            micros = elapsed.as_micros() as u64,
            "request"
        );
    }
}

impl Gateway {
    /// Counts a request of a known credential in the usage records.
    fn record_usage(
        &self,
        recorder: &crate::usage::Recorder,
        session: &Session,
        ctx: &Ctx,
        status: u16,
    ) {
        let Some(principal) = &ctx.principal else {
            return;
        };
        let Some(kind) = principal.kind else {
            return;
        };
        let req = session.req_header();
        let class = ctx
            .route
            .as_ref()
            .and_then(|r| RouteClass::of(r.template, req.method.as_str()))
            .map_or("public", RouteClass::as_str);
        let downstream = session.as_downstream();
        recorder.record(
            self.index,
            &crate::usage::Seen {
                kind,
                id: &principal.id,
                operator_id: principal.operator_id,
                class,
                outcome: crate::usage::outcome(ctx.refusal, status),
                client: ctx.client_ip,
                user_agent: req
                    .headers
                    .get(&name::USER_AGENT)
                    .and_then(|v| v.to_str().ok()),
                bytes_in: (ctx.header_bytes + downstream.body_bytes_read()) as u64,
                bytes_out: downstream.body_bytes_sent() as u64,
                at_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64),
            },
        );
    }

    /// After `peer` refused the connection: whether another attempt is left (one per replica
    /// of the upstream), which then avoids `peer`.
    fn try_another_replica(&self, ctx: &mut Ctx, peer: &HttpPeer) -> bool {
        let Some(route) = &ctx.route else {
            return false;
        };
        ctx.attempts += 1;
        if ctx.attempts >= self.shared.upstreams.of(route.upstream).attempts() {
            return false;
        }
        ctx.refused = Some(peer._address.clone());
        true
    }

    /// A replica of the request's route's upstream for the next attempt (the registry for an
    /// unrouted request, which is never forwarded).
    fn peer(&self, ctx: &Ctx) -> Result<Cow<'_, Pooled>> {
        let upstream = ctx
            .route
            .as_ref()
            .map_or(Upstream::Registry, |r| r.upstream);
        let own = match upstream {
            Upstream::AuthService => &self.own_peers[0],
            Upstream::Registry => &self.own_peers[1],
        };
        if let Some(peer) = own {
            return Ok(Cow::Borrowed(peer));
        }
        match self
            .shared
            .upstreams
            .of(upstream)
            .peer(ctx.refused.as_ref())
        {
            Some(peer) => Ok(Cow::Owned(peer)),
            None => Error::e_explain(
                ErrorType::ConnectNoRoute,
                "no replica of the upstream is known",
            ),
        }
    }

    /// The request as the upstream gets it: the client's own forwarding and identity headers
    /// replaced by the gateway's, the credential cookies dropped, and the identity assertion
    /// for this very request (method, path, query string, body) under the upstream's own key.
    /// One pass copies what is kept of the client's fields ([`upstream_parts`]) into a map
    /// with room for the gateway's own.
    fn upstream_request(
        &self,
        downstream: &RequestHeader,
        body_len: usize,
        ctx: &Ctx,
    ) -> Result<RequestHeader> {
        let (Some(route), Some(principal)) = (&ctx.route, &ctx.principal) else {
            return Error::e_explain(ErrorType::InternalError, "forwarding an unrouted request");
        };
        let mut parts = upstream_parts(downstream, body_len, ADDED_FIELDS, forwarded_as_sent)?;
        let headers = &mut parts.headers;
        if let Some(kept) = cookies::forwarded(cookie_headers(&downstream.headers)) {
            headers.insert(&name::COOKIE, header_value(kept)?);
        }
        headers.insert(&name::X_REQUEST_ID, ctx.request_id.clone());
        if !ctx.client_ip.is_unspecified() {
            let client = forwarded_for(ctx.client_ip)?;
            headers.insert(&name::X_FORWARDED_FOR, client);
        }
        let request = auth_token::Request {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or(""),
            body: ctx.body_digest.as_deref(),
        };
        let token =
            (self.shared.assertion).sign(route.upstream, principal, &request, rid(ctx), unix_now());
        // The token's own buffer becomes the value: no copy of its ~500 bytes.
        let token = HeaderValue::from_maybe_shared(Bytes::from(token)).or_err(
            ErrorType::InvalidHTTPHeader,
            "a header value the gateway writes",
        )?;
        parts.headers.insert(&name::ASSERTION, token);
        Ok(RequestHeader::from(parts))
    }

    /// Forwards an allowed request, its body read whole, through this service's connector
    /// ([`crate::forward`]: head and body in one write, a pooled connection taken without a
    /// `getpeername`; issue 24), and relays the answer.
    ///
    /// What pingora's proxy does on failure, this does too. A replica that refuses the
    /// connection (down, restarting, between two health checks) costs no request: the next
    /// attempt goes to another one, up to one per replica; nothing was sent, so trying again
    /// cannot apply it twice. An idempotent request whose pooled connection the upstream
    /// closed as it was taken is sent again on another connection (pingora's default retry
    /// policy); a `POST` is not, as the upstream may have applied it.
    async fn forward(&self, session: &mut Session, ctx: &mut Ctx, body: Bytes) -> Result<bool> {
        let request = self.upstream_request(session.req_header(), body.len(), ctx)?;
        let connector = &self.connector;
        let read_timeout = Some(self.shared.read_timeout);
        let idempotent = request.method.is_idempotent();
        let mut resent = 0;
        let (peer, upstream) = loop {
            let peer = self.peer(ctx)?;
            // A pooled connection first: the future that connects (and would shake hands
            // with a TLS upstream) is 8.4 KB, boxed apart so that it is not in this future,
            // which is moved into its box for every request.
            let (upstream, reused) = match self.idle.take(&peer) {
                Some(upstream) => (upstream, true),
                None => match Box::pin(connector.get_http_session(&*peer)).await {
                    Ok((upstream, reused)) => (upstream.into_inner(), reused),
                    Err(_) if self.try_another_replica(ctx, &peer) => continue,
                    Err(e) => return Err(e.into_up()),
                },
            };
            match exchange(upstream, &peer, &request, &body, read_timeout).await {
                Ok(upstream) => break (peer, upstream),
                Err(mut e) => {
                    e.retry.decide_reuse(reused);
                    if idempotent && e.retry() && resent < MAX_RESENT {
                        resent += 1;
                        continue;
                    }
                    return Err(e.into_up());
                }
            }
        };
        let Some(response) = upstream.resp_header() else {
            return Error::e_explain(ErrorType::InvalidHTTPHeader, "no response header")
                .map_err(|e| e.into_up());
        };
        let mut response = forward::answer_head(response, ADDED_RESPONSE_FIELDS);
        self.response_filter(session, &mut response, ctx).await?;
        relay(session, &self.idle, &peer, upstream, response).await?;
        Ok(true)
    }

    /// The credential and permission steps, refreshing the JWKS once for an unknown key.
    /// `sessid` is the client's session id, if it sent a well-formed one; `names`, the
    /// session cookies' names on this request's listener.
    async fn authorize(
        &self,
        session: &Session,
        matched: &Route,
        sessid: Option<&str>,
        names: cookies::Names,
        now: i64,
    ) -> std::result::Result<Principal, (Reason, Option<Principal>)> {
        let req = session.req_header();
        let header = |name: &HeaderName| session.get_header(name).and_then(|v| v.to_str().ok());
        let sessauth = cookies::values(cookie_headers(&req.headers), names.sessauth).next();
        let presented = Presented::from_headers(
            header(&name::AUTHORIZATION),
            header(&name::ACCESS_TOKEN),
            header(&name::CLIENT),
            header(&name::UID),
        )
        .or_session(
            sessid,
            sessauth,
            header(&name::CSRF),
            is_unsafe_method(req.method.as_str()),
        );
        let shared = &self.shared;
        let check = |now| {
            let keys = shared.jwks.keys();
            let keys = Cached {
                cache: &shared.tokens,
                segment: self.index,
                keys: &keys,
                counted: &shared.metrics.verifications,
            };
            authorize(matched, presented, &keys, &shared.blacklist, now)
        };
        let mut outcome = check(now);
        if outcome == Outcome::UnknownKey && Box::pin(shared.jwks.refresh()).await {
            outcome = check(unix_now());
        }
        let result = match outcome {
            Outcome::Allowed(principal) => Ok(principal),
            Outcome::Denied(reason) => Err((reason, None)),
            Outcome::Refused(reason, principal) => Err((reason, Some(principal))),
            Outcome::UnknownKey => Err((Reason::InvalidToken, None)),
        };
        if matched.access != crate::routes::Access::Public {
            match &result {
                Ok(_) => shared.metrics.auth_ok.inc(),
                Err((reason, _)) => shared
                    .metrics
                    .auth
                    .with_label_values(&[reason.code()])
                    .inc(),
            }
        }
        result
    }

    /// The rate-limit step: counts the request against its (route class, subject) and keeps
    /// the decision for the response's headers. False when refused.
    async fn rate_limit(
        &self,
        session: &Session,
        ctx: &mut Ctx,
        principal: &Principal,
        now: i64,
    ) -> bool {
        let method = session.req_header().method.as_str();
        let Some(class) = ctx
            .route
            .as_ref()
            .and_then(|r| RouteClass::of(r.template, method))
        else {
            return true;
        };
        let person = matches!(
            principal.kind,
            Some(CredentialKind::Agent | CredentialKind::Session)
        );
        let subject = Subject::of(
            class,
            person,
            principal.operator_id,
            Some(&principal.id),
            ctx.client_ip,
        );
        let now = u64::try_from(now).unwrap_or(0);
        let decision = self.shared.limiter.check(class, &subject, now).await;
        let metrics = &self.shared.metrics;
        if !decision.allowed {
            let operator = metrics.operator_label(principal.operator_id);
            metrics
                .ratelimit_limited
                .with_label_values(&[operator.as_str(), class.as_str()])
                .inc();
        }
        metrics.decision(class, decision.allowed);
        let allowed = decision.allowed;
        ctx.rate = Some(decision);
        allowed
    }

    /// The path's version resolved to a served one; the optional header must agree.
    fn served_version(&self, named: &str, header: Option<&str>) -> Option<&str> {
        let served = self.versions.resolve(named)?;
        match header {
            None => Some(served),
            Some(h) if self.versions.resolve(h) == Some(served) => Some(served),
            Some(_) => None,
        }
    }

    /// Answers with a gateway error. A small declared body is drained first (within
    /// [`LINGER`]) so the connection can be reused; an oversized, large or streamed body is
    /// not read: the answer goes first and the connection closes after a bounded [`linger`].
    async fn answer(&self, session: &mut Session, ctx: &mut Ctx, reason: Reason) -> Result<bool> {
        if reason == Reason::PayloadTooLarge {
            session.set_keepalive(None);
            self.write_error(session, ctx, reason).await?;
            linger(session).await;
            return Ok(true);
        }
        // Only a small declared body is read to keep the connection, and only for so long: a
        // refused chunked or large body could otherwise be streamed at the gateway forever.
        // Anything else is answered at once and closed after a bounded linger.
        let headers = &session.req_header().headers;
        let declared = headers
            .get(&name::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
        let streamed = headers.contains_key(&name::TRANSFER_ENCODING);
        let drainable = !streamed && declared.unwrap_or(0) <= DRAIN_MAX_BYTES;
        let drained = drainable
            && matches!(
                tokio::time::timeout(LINGER, session.as_downstream_mut().drain_request_body())
                    .await,
                Ok(Ok(()))
            );
        if !drained {
            session.set_keepalive(None);
        }
        self.write_error(session, ctx, reason).await?;
        if !drainable {
            linger(session).await;
        }
        Ok(true)
    }

    async fn write_error(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        reason: Reason,
    ) -> Result<()> {
        ctx.refusal = Some(reason.code());
        let body = reason.body();
        let allow = ctx.allow.take();
        let header = own_response(reason.status(), |headers| {
            headers.insert(
                &name::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            headers.insert(
                &name::CONTENT_LENGTH,
                crate::header_number(body.len() as u64),
            );
            headers.insert(
                &name::X_GATEWAY_ERROR,
                HeaderValue::from_static(reason.code()),
            );
            headers.insert(&name::X_REQUEST_ID, ctx.request_id.clone());
            if reason.status() == 401 {
                headers.insert(&name::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            if let Some(allow) = allow {
                headers.insert(&name::ALLOW, header_value(allow)?);
            }
            rate_limit_headers(headers, ctx);
            self.set_transport_headers(headers, ctx);
            self.set_session_cookie(headers, ctx)
        })?;
        session.write_response_header(header, false).await?;
        session.write_response_body(Some(body), true).await
    }

    /// Sends a request that came in plain to the same place over HTTPS (308 keeps the method
    /// and body), then closes: the client's next request goes to the TLS port. Whatever
    /// body it sent is not read (a bounded [`linger`]).
    async fn redirect_to_tls(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        port: u16,
    ) -> Result<bool> {
        let req = session.req_header();
        let host = req
            .uri
            .host()
            .or_else(|| req.headers.get(&name::HOST)?.to_str().ok())
            .map(host_without_port)
            .unwrap_or("localhost");
        let target = https_location(
            host,
            port,
            req.uri.path_and_query().map_or("/", |p| p.as_str()),
        );
        let Ok(location) = HeaderValue::from_str(&target) else {
            // A Host no header can carry: nowhere to send the client.
            return self.answer(session, ctx, Reason::RouteNotFound).await;
        };
        let header = own_response(308, |headers| {
            headers.insert(&name::LOCATION, location);
            headers.insert(&name::CONTENT_LENGTH, HeaderValue::from_static("0"));
            headers.insert(&name::X_REQUEST_ID, ctx.request_id.clone());
            Ok(())
        })?;
        session.set_keepalive(None);
        session.write_response_header(header, true).await?;
        if has_body(session.req_header()) {
            linger(session).await;
        }
        Ok(true)
    }

    /// The session cookies' names for this request: the `__Host-` ones over TLS, else the
    /// plain listener's.
    fn cookies(&self, ctx: &Ctx) -> cookies::Names {
        if ctx.tls {
            cookies::Names::new(true)
        } else {
            self.shared.cookies
        }
    }

    /// `Strict-Transport-Security` on an answer over TLS.
    fn set_transport_headers(&self, headers: &mut HeaderMap, ctx: &Ctx) {
        if ctx.tls
            && let Some(hsts) = &self.shared.hsts
        {
            headers.insert(&name::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
    }

    /// The public `/health`: the replica's state word (the admin port's `/health` has the
    /// details), 503 until it can check credentials, so a balancer can route around it.
    async fn answer_health(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let (status, state) = crate::admin::readiness(&self.shared);
        let body = Bytes::from(format!(r#"{{"status":"{state}"}}"#));
        self.answer_own(session, ctx, status, "application/json", body)
            .await
    }

    /// Answers a route the gateway serves itself (`/health`, the API description).
    async fn answer_own(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        status: u16,
        content_type: &'static str,
        body: Bytes,
    ) -> Result<bool> {
        let header = own_response(status, |headers| {
            headers.insert(&name::CONTENT_TYPE, HeaderValue::from_static(content_type));
            headers.insert(
                &name::CONTENT_LENGTH,
                crate::header_number(body.len() as u64),
            );
            headers.insert(&name::X_REQUEST_ID, ctx.request_id.clone());
            self.set_transport_headers(headers, ctx);
            self.set_session_cookie(headers, ctx)
        })?;
        session.write_response_header(header, false).await?;
        session.write_response_body(Some(body), true).await?;
        Ok(true)
    }

    /// Hands a new session id to the browser, whatever the answer.
    fn set_session_cookie(&self, headers: &mut HeaderMap, ctx: &Ctx) -> Result<()> {
        let names = self.cookies(ctx);
        if names.secure && headers.contains_key(&name::SET_COOKIE) {
            // auth-service's `sessauth`, under this gateway's `__Host-` name.
            let lines: Vec<String> = (headers.get_all(&name::SET_COOKIE).iter())
                .filter_map(|v| v.to_str().ok())
                .map(|line| names.outgoing(line).unwrap_or_else(|| line.to_owned()))
                .collect();
            headers.remove(&name::SET_COOKIE);
            for line in lines {
                headers.append(&name::SET_COOKIE, header_value(line)?);
            }
        }
        if ctx.new_sessid {
            let cookie = cookies::set_sessid(names, &ctx.sessid);
            headers.append(&name::SET_COOKIE, header_value(cookie)?);
        }
        Ok(())
    }
}

/// Whether the request carries a credential that only machines and agents send: an
/// `Authorization: Bearer` token or the `access-token` of a header triple. Such a request
/// cannot use a browser session, so it is handed none (CONTRACT §3.3).
fn carries_machine_credential(headers: &http::HeaderMap) -> bool {
    let bearer = headers.get_all(&name::AUTHORIZATION).iter().any(|v| {
        v.as_bytes()
            .get(..7)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
    });
    bearer || headers.contains_key(&name::ACCESS_TOKEN)
}

/// Sets the keep-alive of this request's connection to `idle_secs` (`None`: close after the
/// answer). pingora 0.9.1 gives a connection 60 s for its first request, but once a request
/// is read it takes the client's keep-alive, which for HTTP/1.1 is no timeout at all: an
/// idle kept-alive connection was held forever. The timeout set here is carried to the wait
/// for the next request (pingora's `HttpPersistentSettings`), where pingora closes the
/// connection when it runs out. A client's `Connection: close` still wins.
fn set_idle_timeout(session: &mut Session, idle_secs: Option<u64>) {
    session.set_keepalive(idle_secs);
}

/// The client's address ([`Ctx::client_ip`]); unspecified when unknown (a Unix socket).
fn client_ip(session: &Session, trusted: &[ipnet::IpNet]) -> IpAddr {
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        // A dual-stack listener (`[::]`) sees an IPv4 peer as `::ffff:a.b.c.d`: it is that
        // IPv4 address, for the trusted balancers as for the limits.
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip().to_canonical());
    if trusted.is_empty() || !trusted.iter().any(|net| net.contains(&peer)) {
        return peer;
    }
    forwarded_client(
        session
            .req_header()
            .headers
            .get_all(&name::X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
    .unwrap_or(peer)
}

/// Whether the TCP peer is one of the trusted balancers (which terminate TLS themselves in
/// front of the plain listener).
fn is_trusted(trusted: &[ipnet::IpNet], session: &Session) -> bool {
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip().to_canonical());
    peer.is_some_and(|peer| trusted.iter().any(|net| net.contains(&peer)))
}

/// `host` (a name, an IPv4 address or a bracketed IPv6 one) without its `:port`.
fn host_without_port(host: &str) -> &str {
    if let Some(end) = host.find(']') {
        return &host[..=end];
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// `https://host[:port]/path?query`, the port left out when it is 443.
fn https_location(host: &str, port: u16, path_and_query: &str) -> String {
    if port == 443 {
        format!("https://{host}{path_and_query}")
    } else {
        format!("https://{host}:{port}{path_and_query}")
    }
}

/// The last address of `X-Forwarded-For` (the one the trusted balancer wrote), if it is one.
fn forwarded_client<'a>(values: impl Iterator<Item = &'a str>) -> Option<IpAddr> {
    let last = values.last()?.rsplit(',').next()?.trim();
    last.parse().ok().map(|ip: IpAddr| ip.to_canonical())
}

/// The largest declared body of a refused request that is read (and discarded) to keep the
/// connection alive; larger ones, and streamed (chunked) ones, close it.
const DRAIN_MAX_BYTES: u64 = 64 * 1024;

/// How long a connection refused with 413 keeps reading (and discarding) what the client
/// is still sending before it closes.
const LINGER: Duration = Duration::from_secs(2);

/// Reads and discards the rest of a refused body for at most [`LINGER`] (a "lingering
/// close", as nginx does). Closing with unread bytes makes the kernel send a reset, and a
/// client still writing its body then loses the 413 it was sent; after the linger the
/// close is a clean one. A client that keeps sending past it gets the reset.
async fn linger(session: &mut Session) {
    let _ = tokio::time::timeout(LINGER, session.as_downstream_mut().drain_request_body()).await;
}

/// The size of the request line and headers as sent (near enough: separators counted).
fn header_bytes(req: &pingora::http::RequestHeader) -> usize {
    let line = req.method.as_str().len() + req.raw_path().len() + 12;
    req.headers.iter().fold(line, |n, (name, value)| {
        n + name.as_str().len() + value.len() + 4
    })
}

/// The API description (`api-doc`, committed under docs/), served as a public route.
fn api_description(path: &str) -> Option<(&'static str, &'static [u8])> {
    match path {
        OPENAPI_JSON => Some((
            "application/json",
            include_bytes!("../../docs/openapi.json"),
        )),
        OPENAPI_YAML => Some((
            "application/yaml",
            include_bytes!("../../docs/openapi.yaml"),
        )),
        _ => None,
    }
}

/// `RateLimit-*` (and `Retry-After` when refused) on responses of limited routes.
fn rate_limit_headers(headers: &mut HeaderMap, ctx: &Ctx) {
    if let Some(decision) = &ctx.rate {
        for (name, value) in decision.headers() {
            headers.insert(name, value);
        }
    }
}

/// Edits a response's headers in its `http` parts.
///
/// pingora keeps beside each header map a second map of the names' spellings, and its
/// `insert_header` parses the name again and writes both maps, allocating for each name it
/// does not know: about 6 % of the gateway's CPU under the GET benchmark (issue 24). The
/// edits go straight into the `http` map instead, and the spellings are dropped: names then
/// go out as pingora writes unspelt ones, the usual ones titled and the rest in lower case.
/// Header names are case-insensitive (RFC 9110 §5.1), and HTTP/2 sends them all in lower
/// case. A forwarded request is made the same way ([`upstream_parts`]).
fn edit_response(
    response: &mut ResponseHeader,
    edit: impl FnOnce(&mut HeaderMap) -> Result<()>,
) -> Result<()> {
    let empty = ResponseHeader::from(http::Response::new(()).into_parts().0);
    let mut parts = http::response::Parts::from(std::mem::replace(response, empty));
    // Room for the fields the gateway adds: none when the head was made with it.
    parts.headers.reserve(ADDED_RESPONSE_FIELDS);
    let edited = edit(&mut parts.headers);
    *response = ResponseHeader::from(parts);
    edited
}

/// A response of the gateway's own, its headers written as [`edit_response`] says.
fn own_response(
    status: u16,
    edit: impl FnOnce(&mut HeaderMap) -> Result<()>,
) -> Result<Box<ResponseHeader>> {
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = http::StatusCode::from_u16(status).or_err(
        ErrorType::InternalError,
        "a status the gateway answers with",
    )?;
    edit(&mut parts.headers)?;
    Ok(Box::new(ResponseHeader::from(parts)))
}

/// A header value from text the gateway writes; the text was checked where it came from,
/// so a refusal here is a fault of the gateway's.
fn header_value<T: TryInto<HeaderValue>>(text: T) -> Result<HeaderValue> {
    text.try_into().map_err(|_| {
        Error::explain(
            ErrorType::InvalidHTTPHeader,
            "a header value the gateway writes",
        )
    })
}

/// The `Cookie` header values that are text.
fn cookie_headers(headers: &http::HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(&name::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
}

/// An unsafe request from another site that carries cookies, or signs in (login CSRF).
fn cross_site(session: &Session, matched: &Route) -> bool {
    let req = session.req_header();
    let header = |name: &HeaderName| req.headers.get(name).and_then(|v| v.to_str().ok());
    let ambient = req.headers.contains_key(&name::COOKIE) || matched.template == PROFILE_SIGNIN;
    let from = Provenance {
        fetch_site: header(&name::SEC_FETCH_SITE),
        origin: header(&name::ORIGIN),
        host: header(&name::HOST).or_else(|| req.uri.authority().map(|a| a.as_str())),
    };
    cross_site_refused(is_unsafe_method(req.method.as_str()), ambient, from)
}

/// The client's request id when it is sane (1 to 128 visible ASCII characters), else a new one.
fn request_id(sent: Option<&HeaderValue>) -> HeaderValue {
    match sent {
        Some(id)
            if !id.is_empty()
                && id.len() <= 128
                && id.as_bytes().iter().all(|b| b.is_ascii_graphic()) =>
        {
            id.clone()
        }
        // 128 random bits as 32 hex digits, from the thread's generator (no system call).
        _ => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let bits = rand::random::<u128>();
            let mut digits = [0u8; 32];
            for (i, digit) in digits.iter_mut().enumerate() {
                *digit = HEX[(bits >> ((31 - i) * 4)) as usize & 15];
            }
            HeaderValue::from_maybe_shared(Bytes::copy_from_slice(&digits))
                .expect("hex digits are a header value")
        }
    }
}

/// The request id as text (visible ASCII, [`request_id`]).
fn rid(ctx: &Ctx) -> &str {
    ctx.request_id.to_str().unwrap_or_default()
}

/// `X-Forwarded-For`'s value: the client's address as text. IPv4 is written digit by digit
/// (the formatting machinery cost more than the rest of the header edits, issue 24).
fn forwarded_for(ip: IpAddr) -> Result<HeaderValue> {
    match ip {
        IpAddr::V4(v4) => {
            let mut text = [0u8; 15];
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[len] = b'.';
                    len += 1;
                }
                let mut buffer = itoa::Buffer::new();
                let digits = buffer.format(octet).as_bytes();
                text[len..len + digits.len()].copy_from_slice(digits);
                len += digits.len();
            }
            header_value(&text[..len])
        }
        IpAddr::V6(_) => header_value(ip.to_string()),
    }
}

fn method_label(method: &http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

fn status_label(status: u16) -> &'static str {
    const KNOWN: [(u16, &str); 17] = [
        (0, "0"),
        (200, "200"),
        (201, "201"),
        (204, "204"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (409, "409"),
        (413, "413"),
        (422, "422"),
        (429, "429"),
        (431, "431"),
        (500, "500"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
    ];
    match KNOWN.iter().find(|(s, _)| *s == status) {
        Some((_, label)) => label,
        None if status < 300 => "2xx",
        None if status < 500 => "4xx",
        None => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_requests_are_sent_to_the_same_host_and_path_over_https() {
        assert_eq!(host_without_port("api.example.fr:8080"), "api.example.fr");
        assert_eq!(host_without_port("api.example.fr"), "api.example.fr");
        assert_eq!(host_without_port("[2001:db8::1]:8080"), "[2001:db8::1]");
        assert_eq!(host_without_port("[2001:db8::1]"), "[2001:db8::1]");
        assert_eq!(host_without_port("10.0.0.1:80"), "10.0.0.1");
        assert_eq!(
            https_location("api.example.fr", 443, "/v3/journeys?a=1"),
            "https://api.example.fr/v3/journeys?a=1"
        );
        assert_eq!(https_location("[::1]", 8443, "/"), "https://[::1]:8443/");
    }

    #[test]
    fn the_client_is_the_last_forwarded_address() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            forwarded_client(["203.0.113.7"].into_iter()),
            Some(ip("203.0.113.7"))
        );
        // What the client wrote comes first; the balancer's entry is the last one.
        assert_eq!(
            forwarded_client(["1.2.3.4, 203.0.113.7"].into_iter()),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(
            forwarded_client(["1.2.3.4", "2001:db8::1"].into_iter()),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(forwarded_client(["1.2.3.4, garbage"].into_iter()), None);
        assert_eq!(forwarded_client(std::iter::empty()), None);
    }

    #[test]
    fn request_ids_are_kept_when_sane_and_replaced_otherwise() {
        let sent = |text: &str| request_id(Some(&HeaderValue::from_str(text).unwrap()));
        assert_eq!(sent("abc-123"), "abc-123");
        assert_eq!(request_id(None).len(), 32);
        assert_ne!(sent("has space"), "has space");
        assert_ne!(sent(&"x".repeat(129)).len(), 129);
        assert_eq!(sent(&"x".repeat(128)), "x".repeat(128).as_str());
        assert_eq!(sent("").len(), 32);
        let obs = HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap();
        assert_eq!(request_id(Some(&obs)).len(), 32);
        let made = request_id(None);
        assert!(
            made.as_bytes()
                .iter()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(made, request_id(None));
    }

    proptest::proptest! {
        /// Whichever of the stripped headers a client sends, in any case and any number of
        /// times, none reaches an upstream, and every other header does.
        #[test]
        fn no_header_that_speaks_for_the_gateway_is_forwarded(
            sent in proptest::collection::vec((0..STRIPPED.len() + 3, proptest::bool::ANY), 0..12),
        ) {
            let others = ["accept", "x-custom", "user-agent"];
            let mut request = RequestHeader::build("GET", b"/v3/journeys", None).unwrap();
            for (i, upper) in &sent {
                let name = match STRIPPED.get(*i) {
                    Some(stripped) => stripped.as_str(),
                    None => others[i - STRIPPED.len()],
                };
                let name = if *upper { name.to_uppercase() } else { name.to_owned() };
                request.append_header(name, "v").unwrap();
            }
            // Compared as sorted lists of names, without the `Host` every request is given.
            let listed = |headers: &HeaderMap| {
                let mut names: Vec<_> = headers.keys().map(|n| n.to_string()).collect();
                names.retain(|name| name != "host");
                names.sort();
                names
            };
            let mut kept = listed(&request.headers);
            kept.retain(|name| !STRIPPED.iter().any(|s| s.as_str() == name));
            let forwarded = upstream_parts(&request, 0, 0, forwarded_as_sent).unwrap().headers;
            for stripped in STRIPPED {
                proptest::prop_assert!(!forwarded.contains_key(stripped));
            }
            proptest::prop_assert_eq!(listed(&forwarded), kept);
        }

        #[test]
        fn the_forwarded_address_is_the_address_as_text(ip in proptest::prelude::any::<IpAddr>()) {
            let value = forwarded_for(ip).unwrap();
            proptest::prop_assert_eq!(value.to_str().unwrap(), ip.to_string());
        }
    }

    #[test]
    fn only_requests_that_could_use_a_browser_session_are_handed_one() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = http::HeaderMap::new();
            for (name, value) in pairs {
                h.append(*name, http::HeaderValue::from_static(value));
            }
            h
        };
        for machine in [
            headers(&[("authorization", "Bearer eyJ")]),
            headers(&[("authorization", "bearer eyJ")]),
            headers(&[("access-token", "x"), ("client", "c"), ("uid", "u")]),
        ] {
            assert!(carries_machine_credential(&machine), "{machine:?}");
        }
        for browser in [
            headers(&[]),
            headers(&[("authorization", "Basic dTpw")]),
            headers(&[("authorization", "Bearer")]),
            headers(&[("cookie", "sessauth=x")]),
        ] {
            assert!(!carries_machine_credential(&browser), "{browser:?}");
        }
    }

    proptest::proptest! {
        /// Fuzzed `X-Forwarded-For` and cookies (issue 26): any header values give a canonical
        /// address or none, and cookie values that were in the header, never a panic.
        #[test]
        fn forwarded_for_and_cookies_take_any_text(
            values in proptest::collection::vec("[ -~]{0,60}", 0..4),
            name in "[a-zA-Z_-]{1,12}",
        ) {
            if let Some(ip) = forwarded_client(values.iter().map(String::as_str)) {
                proptest::prop_assert_eq!(ip, ip.to_canonical());
                let last = values.last().unwrap();
                proptest::prop_assert!(last.contains(&ip.to_string()) || last.contains(':'));
            }
            for value in cookies::values(values.iter().map(String::as_str), &name) {
                proptest::prop_assert!(values.iter().any(|v| v.contains(value)));
            }
            let _ = cookies::forwarded(values.iter().map(String::as_str));
        }
    }
}
