//! Admits only requests that carry the gateway's identity assertion for this very request:
//! its method, path, query string and body, once. Going around the gateway gets 401, whatever
//! else the request carries.
//!
//! The check needs the whole body, which warp's filters cannot read twice, so it happens
//! before routing: [`crate::http::serve`] reads the body (at most [`MAX_BODY_BYTES`]), asks the
//! [`Gatekeeper`], and hands warp the request with the body and the verdict ([`Verified`]) in
//! its extensions; [`principal`] reads the verdict.

use crate::error::RpcError;
use auth_token::assertion::Refusal;
use auth_token::{ASSERTION_HEADER, AssertionError, AssertionKey, Principal, Replays, Request};
use warp::{Filter, Rejection};

/// The largest body an upstream reads: the gateway's own limit.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Checks assertions for one upstream, and remembers those it accepted.
pub struct Gatekeeper {
    key: AssertionKey,
    audience: &'static str,
    replays: Replays,
}

/// The verdict on a request's assertion, put in its extensions before routing.
#[derive(Debug, Clone)]
pub enum Verified {
    /// A valid assertion, seen for the first time.
    Caller(Principal),
    /// None, or not one for this request (the reason code answered with 401).
    Refused(&'static str),
    /// Valid, but this replica remembers as many assertions as it may: 503.
    Busy,
}

impl Gatekeeper {
    pub fn new(key: AssertionKey, audience: &'static str) -> Self {
        Self::with_capacity(key, audience, Replays::DEFAULT_CAPACITY)
    }

    /// With room for `capacity` assertions at once ([`Replays`]).
    pub fn with_capacity(key: AssertionKey, audience: &'static str, capacity: usize) -> Self {
        Self {
            key,
            audience,
            replays: Replays::new(capacity),
        }
    }

    /// The verdict on the assertion of a request (`parts`, `body`) at `now` (unix seconds).
    /// A valid assertion is admitted once; the refusals of a valid signature (another
    /// request, a replay) are logged, as only someone holding a captured assertion makes them.
    pub fn check(&self, parts: &http::request::Parts, body: &[u8], now: i64) -> Verified {
        let token = parts.headers.get(ASSERTION_HEADER).map(|v| v.to_str());
        let token = match token {
            None => return Verified::Refused("missing_gateway_assertion"),
            Some(Err(_)) => return Verified::Refused("invalid_gateway_assertion"),
            Some(Ok(token)) => token,
        };
        let digest = auth_token::body_digest(body);
        let request = Request {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or(""),
            body: digest.as_deref(),
        };
        let assertion = match self.key.verify(Some(token), self.audience, &request, now) {
            Ok(assertion) => assertion,
            Err(AssertionError::WrongRequest) => {
                tracing::warn!(
                    method = request.method,
                    path = request.path,
                    "gateway assertion made for another request"
                );
                return Verified::Refused("invalid_gateway_assertion");
            }
            Err(AssertionError::Missing) => return Verified::Refused("missing_gateway_assertion"),
            Err(AssertionError::Invalid) => return Verified::Refused("invalid_gateway_assertion"),
        };
        match self.replays.admit(&assertion.jti, now) {
            Ok(()) => Verified::Caller(assertion.principal),
            Err(Refusal::Replayed) => {
                tracing::warn!(
                    request_id = assertion.rid.as_str(),
                    method = request.method,
                    path = request.path,
                    "gateway assertion replayed"
                );
                Verified::Refused("replayed_gateway_assertion")
            }
            Err(Refusal::Full) => Verified::Busy,
        }
    }
}

/// Extracts the asserted [`Principal`], or rejects: 401 without a valid, first-time assertion
/// for this request; 503 when the replica cannot remember one more.
pub fn principal() -> impl Filter<Extract = (Principal,), Error = Rejection> + Clone {
    warp::ext::optional::<Verified>().and_then(|verified: Option<Verified>| async move {
        match verified {
            Some(Verified::Caller(principal)) => Ok(principal),
            Some(Verified::Refused(reason)) => {
                Err(warp::reject::custom(RpcError::unauthorized(reason)))
            }
            Some(Verified::Busy) => Err(warp::reject::custom(RpcError::unavailable(
                "assertions_busy",
                1,
            ))),
            // Served without the gatekeeper: nothing was checked, nothing is trusted.
            None => Err(warp::reject::custom(RpcError::unauthorized(
                "missing_gateway_assertion",
            ))),
        }
    })
}
