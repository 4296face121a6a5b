//! Why the gateway answered instead of the upstream: status, JSON-RPC code and reason code
//! (CONTRACT §2). One place builds every gateway-made error body.

use bytes::Bytes;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    RouteNotFound,
    /// The path is a route, but not with this method (`Allow` names those it has).
    MethodNotAllowed,
    MissingToken,
    InvalidToken,
    ExpiredToken,
    RevokedToken,
    TokenNotAcceptedHere,
    InsufficientPermissions,
    /// A session's unsafe request without its CSRF token, or a cross-site one with cookies.
    CsrfFailed,
    UnsupportedApiVersion,
    RateLimited,
    PayloadTooLarge,
    HeadersTooLarge,
    UpstreamUnavailable,
    UpstreamTimeout,
    /// This gateway has not loaded the blacklist yet (it started while Redis was down or
    /// empty), so it cannot vouch for any credential: 503, never 401.
    BlacklistUnavailable,
    /// The connection is past this replica's cap, or its client network's
    /// (docs/gateway.md, "Connections"): 503, then the connection closes.
    TooManyConnections,
}

impl Reason {
    pub const ALL: [Reason; 17] = [
        Reason::RouteNotFound,
        Reason::MethodNotAllowed,
        Reason::MissingToken,
        Reason::InvalidToken,
        Reason::ExpiredToken,
        Reason::RevokedToken,
        Reason::TokenNotAcceptedHere,
        Reason::InsufficientPermissions,
        Reason::CsrfFailed,
        Reason::UnsupportedApiVersion,
        Reason::RateLimited,
        Reason::PayloadTooLarge,
        Reason::HeadersTooLarge,
        Reason::UpstreamUnavailable,
        Reason::UpstreamTimeout,
        Reason::BlacklistUnavailable,
        Reason::TooManyConnections,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Reason::RouteNotFound => "route_not_found",
            Reason::MethodNotAllowed => "method_not_allowed",
            Reason::MissingToken => "missing_token",
            Reason::InvalidToken => "invalid_token",
            Reason::ExpiredToken => "expired_token",
            Reason::RevokedToken => "revoked_token",
            Reason::TokenNotAcceptedHere => "token_not_accepted_here",
            Reason::InsufficientPermissions => "insufficient_permissions",
            Reason::CsrfFailed => "csrf_failed",
            Reason::UnsupportedApiVersion => "unsupported_api_version",
            Reason::RateLimited => "rate_limited",
            Reason::PayloadTooLarge => "payload_too_large",
            Reason::HeadersTooLarge => "headers_too_large",
            Reason::UpstreamUnavailable => "upstream_unavailable",
            Reason::UpstreamTimeout => "upstream_timeout",
            Reason::BlacklistUnavailable => "blacklist_unavailable",
            Reason::TooManyConnections => "too_many_connections",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Reason::RouteNotFound => 404,
            Reason::MethodNotAllowed => 405,
            Reason::MissingToken
            | Reason::InvalidToken
            | Reason::ExpiredToken
            | Reason::RevokedToken
            | Reason::TokenNotAcceptedHere => 401,
            Reason::InsufficientPermissions | Reason::CsrfFailed => 403,
            Reason::UnsupportedApiVersion => 422,
            Reason::RateLimited => 429,
            Reason::PayloadTooLarge => 413,
            Reason::HeadersTooLarge => 431,
            Reason::UpstreamUnavailable => 502,
            Reason::UpstreamTimeout => 504,
            Reason::BlacklistUnavailable | Reason::TooManyConnections => 503,
        }
    }

    fn rpc(self) -> (i32, &'static str) {
        match self.status() {
            401 => (-32501, "Unauthorized Error"),
            403 => (-32503, "Forbidden Error"),
            404 => (-32504, "Not found"),
            405 => (-32601, "Method not found"),
            422 => (-32422, "Unprocessable Request"),
            429 => (-32029, "Too Many Requests Error"),
            413 | 431 => (-32600, "Invalid Request"),
            _ => (-32603, "Internal Server Error"),
        }
    }

    /// `{"id":1,"jsonrpc":"2.0","error":{"code":..,"message":..,"data":"<reason>"}}`, written
    /// once per process: a flood of refusals formats and allocates none, and as static bytes
    /// the body shares no reference count between the service threads (issue 24).
    pub fn body(self) -> Bytes {
        static BODIES: OnceLock<[&'static [u8]; Reason::ALL.len()]> = OnceLock::new();
        let bodies = BODIES.get_or_init(|| {
            Reason::ALL.map(|reason| &*Box::leak(reason.render().into_bytes().into_boxed_slice()))
        });
        Bytes::from_static(bodies[self as usize])
    }

    fn render(self) -> String {
        let (code, message) = self.rpc();
        format!(
            r#"{{"id":1,"jsonrpc":"2.0","error":{{"code":{code},"message":"{message}","data":"{}"}}}}"#,
            self.code()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_body() {
        // `body` finds a reason's by its place in `ALL`.
        for (at, reason) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(reason as usize, at);
            assert_eq!(reason.body(), reason.render().as_bytes());
        }
    }

    #[test]
    fn bodies_are_the_contract_json_rpc_shape() {
        for reason in Reason::ALL {
            let body: serde_json::Value = serde_json::from_slice(&reason.body()).unwrap();
            assert_eq!(body["jsonrpc"], "2.0");
            assert_eq!(body["id"], 1);
            assert_eq!(body["error"]["data"], reason.code());
        }
        let b: serde_json::Value = serde_json::from_slice(&Reason::RevokedToken.body()).unwrap();
        assert_eq!(b["error"]["code"], -32501);
        let b: serde_json::Value =
            serde_json::from_slice(&Reason::UnsupportedApiVersion.body()).unwrap();
        assert_eq!(b["error"]["code"], -32422);
        let b: serde_json::Value = serde_json::from_slice(&Reason::CsrfFailed.body()).unwrap();
        assert_eq!(b["error"]["code"], -32503);
        assert_eq!(b["error"]["data"], "csrf_failed");
        assert_eq!(Reason::CsrfFailed.status(), 403);
        let b: serde_json::Value =
            serde_json::from_slice(&Reason::BlacklistUnavailable.body()).unwrap();
        assert_eq!(b["error"]["code"], -32603);
        assert_eq!(b["error"]["data"], "blacklist_unavailable");
    }
}
