//! The credential and permission steps of the pipeline (CONTRACT §2), as one plain function:
//! headers in, a [`Principal`] or a [`Reason`] out. No I/O: keys and blacklist are passed in.
//! Also the browser's cross-site refusal ([`cross_site_refused`]), which guards sessions.

use crate::reason::Reason;
use crate::routes::{Access, Route};
use auth_token::session::{same_secret, sid_of};
use auth_token::{Claims, CredentialKind, KeySet, Principal, VerifyError};
use blacklist::{BlacklistSet, Kind};

/// The credential as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(&'a str),
    /// The agent header triple `access-token`, `client`, `uid`.
    Triple {
        token: &'a str,
        client: &'a str,
        uid: &'a str,
    },
    /// The browser session: the `sessauth` cookie, the `sessid` cookie it must be bound to
    /// (`None` when the request carried no well-formed one) and the `x-csrf-token` header,
    /// required when the method is unsafe.
    Session {
        sessid: Option<&'a str>,
        token: &'a str,
        csrf_header: Option<&'a str>,
        unsafe_method: bool,
    },
}

impl<'a> Presented<'a> {
    /// Reads the credential from header values (any may be absent).
    pub fn from_headers(
        authorization: Option<&'a str>,
        access_token: Option<&'a str>,
        client: Option<&'a str>,
        uid: Option<&'a str>,
    ) -> Self {
        if let Some(token) = authorization.and_then(bearer) {
            return Presented::Bearer(token.trim());
        }
        match (access_token, client, uid) {
            (Some(token), Some(client), Some(uid)) => Presented::Triple { token, client, uid },
            (Some(token), _, _) => Presented::Triple {
                token,
                client: "",
                uid: "",
            },
            _ => Presented::None,
        }
    }

    /// Falls back to the session cookies when no header credential was sent: a header
    /// credential is deliberate, cookies come with every request.
    pub fn or_session(
        self,
        sessid: Option<&'a str>,
        sessauth: Option<&'a str>,
        csrf_header: Option<&'a str>,
        unsafe_method: bool,
    ) -> Self {
        match (self, sessauth) {
            (Presented::None, Some(token)) => Presented::Session {
                sessid,
                token,
                csrf_header,
                unsafe_method,
            },
            _ => self,
        }
    }

    fn token(self) -> Option<&'a str> {
        match self {
            Presented::None => None,
            Presented::Bearer(t)
            | Presented::Triple { token: t, .. }
            | Presented::Session { token: t, .. } => Some(t),
        }
    }
}

/// Methods that change state; a session needs its CSRF token for them.
pub fn is_unsafe_method(method: &str) -> bool {
    !matches!(method, "GET" | "HEAD" | "OPTIONS")
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive
/// (RFC 7235 §2.1).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// Verifies `presented` for `route` at `now` (unix seconds). `Err(Some(kid))` is never
/// returned: an unknown key is reported as [`Outcome::UnknownKey`] so the caller can refresh
/// the JWKS once and call again.
pub fn authorize(
    route: &Route,
    presented: Presented<'_>,
    keys: &impl Verify,
    blacklist: &BlacklistSet,
    now: i64,
) -> Outcome {
    if route.access == Access::Public {
        return Outcome::Allowed(Principal::anonymous());
    }
    let Some(token) = presented.token().filter(|t| !t.is_empty()) else {
        return Outcome::Denied(Reason::MissingToken);
    };
    let claims = match keys.verify(token, now) {
        Ok(claims) => claims,
        Err(VerifyError::UnknownKey(_)) => return Outcome::UnknownKey,
        Err(VerifyError::Expired) => return Outcome::Denied(Reason::ExpiredToken),
        Err(VerifyError::Invalid) => return Outcome::Denied(Reason::InvalidToken),
    };
    if let Err(reason) = check_form(&claims, presented) {
        return Outcome::Denied(reason);
    }
    let refusal = refusal(route, &claims, presented, blacklist, now);
    let principal = Principal {
        kind: Some(claims.kind),
        id: claims.sub,
        operator_id: claims.op,
        operator_siret: claims.siret,
        role: Some(claims.role),
        token_id: Some(claims.jti),
        client: claims.client,
        token_exp: claims.exp,
        session: None,
        csrf: claims
            .csrf
            .filter(|_| claims.kind == CredentialKind::Session),
    };
    match refusal {
        Some(reason) => Outcome::Refused(reason, principal),
        None => Outcome::Allowed(principal),
    }
}

/// Why a genuine credential, presented in its own form, is refused here, if it is.
fn refusal(
    route: &Route,
    claims: &Claims,
    presented: Presented<'_>,
    blacklist: &BlacklistSet,
    now: i64,
) -> Option<Reason> {
    // A gateway that never loaded the blacklist cannot tell a revoked credential from a
    // good one: it refuses for now (503), never with a 401 that would blame the credential.
    if !blacklist.loaded() {
        return Some(Reason::BlacklistUnavailable);
    }
    if revoked(claims, blacklist, now) {
        return Some(Reason::RevokedToken);
    }
    if !accepted(route.access, claims.kind) {
        return Some(Reason::TokenNotAcceptedHere);
    }
    if !csrf_ok(claims, presented) {
        return Some(Reason::CsrfFailed);
    }
    if let Some(permission) = route.permission
        && !claims.role.grants(permission)
    {
        return Some(Reason::InsufficientPermissions);
    }
    None
}

/// Checks a token's signature and expiry. A [`KeySet`] does it itself; the gateway puts its
/// cache of verified tokens ([`crate::token_cache`]) in front.
pub trait Verify {
    fn verify(&self, token: &str, now: i64) -> Result<Claims, VerifyError>;
}

impl Verify for KeySet {
    fn verify(&self, token: &str, now: i64) -> Result<Claims, VerifyError> {
        KeySet::verify(self, token, now)
    }
}

/// What [`authorize`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Allowed(Principal),
    /// Refused before the credential was known to be genuine (missing, malformed, forged,
    /// expired, or in another credential's form).
    Denied(Reason),
    /// A genuine credential refused (revoked, not accepted on this route, no permission...):
    /// who it is, for the usage records.
    Refused(Reason, Principal),
    /// Signed by a key the gateway does not know yet.
    UnknownKey,
}

impl Outcome {
    /// Why the request is refused, if it is.
    pub fn refusal(&self) -> Option<Reason> {
        match self {
            Outcome::Allowed(_) => None,
            Outcome::Denied(reason) | Outcome::Refused(reason, _) => Some(*reason),
            Outcome::UnknownKey => Some(Reason::InvalidToken),
        }
    }
}

/// Agent tokens travel only in the header triple, whose `client` and `uid` must be the
/// token's; session tokens only in the `sessauth` cookie, beside the `sessid` whose hash is
/// their `sid`; the other kinds only as a bearer token.
fn check_form(claims: &Claims, presented: Presented<'_>) -> Result<(), Reason> {
    let same = match (claims.kind, presented) {
        (CredentialKind::Agent, Presented::Triple { client, uid, .. }) => {
            claims.client.as_deref() == Some(client) && claims.uid.as_deref() == Some(uid)
        }
        (CredentialKind::Session, Presented::Session { sessid, .. }) => {
            match (sessid, claims.sid.as_deref()) {
                (Some(sessid), Some(sid)) => same_secret(&sid_of(sessid), sid),
                _ => false,
            }
        }
        (CredentialKind::Agent | CredentialKind::Session, _)
        | (_, Presented::Triple { .. } | Presented::Session { .. }) => false,
        _ => true,
    };
    if same {
        Ok(())
    } else {
        Err(Reason::InvalidToken)
    }
}

/// A session's unsafe request must repeat the token's CSRF secret in `x-csrf-token`: another
/// site can make the browser send the cookies, not read the secret.
fn csrf_ok(claims: &Claims, presented: Presented<'_>) -> bool {
    match presented {
        Presented::Session {
            unsafe_method: true,
            csrf_header,
            ..
        } => match (csrf_header, claims.csrf.as_deref()) {
            (Some(sent), Some(expected)) => same_secret(sent, expected),
            _ => false,
        },
        _ => true,
    }
}

/// Browser-sent hints of where a request comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Provenance<'a> {
    /// `Sec-Fetch-Site`.
    pub fetch_site: Option<&'a str>,
    /// `Origin`.
    pub origin: Option<&'a str>,
    /// `Host` (or the request's authority).
    pub host: Option<&'a str>,
}

/// Refuses (403 `csrf_failed`) an unsafe request from another site when it carries cookies
/// or signs in (login CSRF): `Sec-Fetch-Site: cross-site`, or an `Origin` that is not this
/// host. Requests without cookies (servers, CORS clients with bearer tokens) are left alone.
pub fn cross_site_refused(unsafe_method: bool, ambient: bool, from: Provenance<'_>) -> bool {
    unsafe_method && ambient && is_cross_site(from)
}

fn is_cross_site(from: Provenance<'_>) -> bool {
    let fetch_cross = from
        .fetch_site
        .is_some_and(|s| s.trim().eq_ignore_ascii_case("cross-site"));
    fetch_cross || from.origin.is_some_and(|o| !same_authority(o, from.host))
}

/// Whether `origin` (`scheme://host[:port]`) names `host` (`host[:port]`); a default port
/// may be written or not. An opaque origin (`null`) names nothing.
fn same_authority(origin: &str, host: Option<&str>) -> bool {
    let (Some((scheme, authority)), Some(host)) = (origin.trim().split_once("://"), host) else {
        return false;
    };
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        ":443"
    } else if scheme.eq_ignore_ascii_case("http") {
        ":80"
    } else {
        return false;
    };
    let bare = |a: &str| {
        let a = a.trim().trim_end_matches('/');
        a.strip_suffix(default_port)
            .unwrap_or(a)
            .to_ascii_lowercase()
    };
    !authority.is_empty() && bare(authority) == bare(host)
}

/// Every blacklist entry that can name this token: itself, what it was minted from, its
/// operator.
fn revoked(claims: &Claims, blacklist: &BlacklistSet, now: i64) -> bool {
    let by_origin = match claims.kind {
        CredentialKind::Application => Some(Kind::Application),
        CredentialKind::Access | CredentialKind::Refresh => Some(Kind::Credential),
        CredentialKind::Agent | CredentialKind::Session => Some(Kind::User),
    };
    blacklist.contains(Kind::Jti, &claims.jti, now)
        || by_origin.is_some_and(|kind| blacklist.contains(kind, &claims.sub, now))
        || claims.op.is_some_and(|op| {
            blacklist.contains(Kind::Operator, itoa::Buffer::new().format(op), now)
        })
}

fn accepted(access: Access, kind: CredentialKind) -> bool {
    match access {
        Access::Public => true,
        Access::OperatorApi => matches!(
            kind,
            CredentialKind::Application
                | CredentialKind::Access
                | CredentialKind::Agent
                | CredentialKind::Session
        ),
        Access::User => matches!(kind, CredentialKind::Agent | CredentialKind::Session),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::route;
    use auth_token::session::SESSION_TTL_SECS;
    use auth_token::{Role, SigningKey};
    use blacklist::Entry;
    use jsonwebtoken::jwk::JwkSet;
    use proptest::prelude::*;

    const NOW: i64 = 1_000_000;
    const SESSID: &str = "sessid-of-the-browser-under-test-0123456789";
    const CSRF: &str = "csrf-secret-of-the-session-0123456789abcdef";
    const USER: &str = "9b2f2a3c-1d4e-4f5a-8b6c-7d8e9f0a1b2c";

    fn session_claims(role: Role) -> Claims {
        Claims {
            jti: "jti-1".into(),
            kind: CredentialKind::Session,
            sub: USER.into(),
            op: Some(7),
            role,
            iat: NOW,
            exp: Some(NOW + SESSION_TTL_SECS),
            client: None,
            uid: None,
            sid: Some(sid_of(SESSID)),
            csrf: Some(CSRF.into()),
            siret: Some("13002526500013".into()),
        }
    }

    fn keys() -> (SigningKey, KeySet) {
        let (key, _) = SigningKey::generate().unwrap();
        let set = KeySet::from_jwks(&JwkSet {
            keys: vec![key.jwk()],
        });
        (key, set)
    }

    fn session<'a>(
        sessid: Option<&'a str>,
        token: &'a str,
        csrf: Option<&'a str>,
        method: &str,
    ) -> Presented<'a> {
        Presented::None.or_session(sessid, Some(token), csrf, is_unsafe_method(method))
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("BEARER abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearerabc"), None);
    }

    #[test]
    fn sessions_need_their_sessid_and_csrf_token_on_unsafe_methods() {
        let (key, set) = keys();
        let admin = key.sign(&session_claims(Role::OperatorAdmin)).unwrap();
        let blacklist = BlacklistSet::new();
        blacklist.replace([]);
        let id = Some(SESSID);
        let other = "another-browser-sessid-0123456789abcdefghij";
        type Case<'a> = (&'a str, &'a str, &'a str, Presented<'a>, Option<Reason>);
        let cases: &[Case] = &[
            (
                "valid, GET",
                "GET",
                "/profile",
                session(id, &admin, None, "GET"),
                None,
            ),
            (
                "valid, POST with csrf",
                "POST",
                "/applications",
                session(id, &admin, Some(CSRF), "POST"),
                None,
            ),
            (
                "operator API route",
                "GET",
                "/v3/journeys",
                session(id, &admin, None, "GET"),
                None,
            ),
            (
                "wrong sid",
                "GET",
                "/profile",
                session(Some(other), &admin, None, "GET"),
                Some(Reason::InvalidToken),
            ),
            (
                "no sessid",
                "GET",
                "/profile",
                session(None, &admin, None, "GET"),
                Some(Reason::InvalidToken),
            ),
            (
                "POST without csrf",
                "POST",
                "/applications",
                session(id, &admin, None, "POST"),
                Some(Reason::CsrfFailed),
            ),
            (
                "POST with wrong csrf",
                "POST",
                "/applications",
                session(id, &admin, Some("guess"), "POST"),
                Some(Reason::CsrfFailed),
            ),
            (
                "DELETE without csrf",
                "DELETE",
                "/applications/x",
                session(id, &admin, None, "DELETE"),
                Some(Reason::CsrfFailed),
            ),
            (
                "session token as Bearer",
                "GET",
                "/profile",
                Presented::Bearer(&admin),
                Some(Reason::InvalidToken),
            ),
            (
                "role still applies",
                "GET",
                "/admin/operators",
                session(id, &admin, None, "GET"),
                Some(Reason::InsufficientPermissions),
            ),
        ];
        for (name, method, path, presented, expected) in cases {
            let route = route(&method.parse().unwrap(), path).unwrap();
            let got = authorize(&route, *presented, &set, &blacklist, NOW);
            match expected {
                None => {
                    let Outcome::Allowed(p) = got else {
                        panic!("{name}: {got:?}")
                    };
                    assert_eq!(p.kind, Some(CredentialKind::Session), "{name}");
                    assert_eq!(p.id, USER, "{name}");
                    assert_eq!(p.csrf.as_deref(), Some(CSRF), "{name}");
                    assert_eq!(p.operator_siret.as_deref(), Some("13002526500013"));
                }
                Some(reason) => assert_eq!(got.refusal(), Some(*reason), "{name}"),
            }
        }
    }

    #[test]
    fn other_tokens_cannot_pose_as_sessions() {
        let (key, set) = keys();
        let mut agent = session_claims(Role::OperatorAdmin);
        agent.kind = CredentialKind::Agent;
        agent.client = Some("device".into());
        agent.uid = Some("a@b.test".into());
        let agent = key.sign(&agent).unwrap();
        let profile = route(&http::Method::GET, "/profile").unwrap();
        let got = authorize(
            &profile,
            session(Some(SESSID), &agent, Some(CSRF), "GET"),
            &set,
            &BlacklistSet::new(),
            NOW,
        );
        assert_eq!(got, Outcome::Denied(Reason::InvalidToken));
        // A header credential is used before the cookies.
        let triple = Presented::from_headers(None, Some(&agent), Some("device"), Some("a@b.test"))
            .or_session(Some(SESSID), Some("cookie"), None, false);
        assert!(matches!(triple, Presented::Triple { .. }));
    }

    #[test]
    fn blacklisting_the_token_user_or_operator_ends_the_session() {
        let (key, set) = keys();
        let token = key.sign(&session_claims(Role::OperatorAdmin)).unwrap();
        let profile = route(&http::Method::GET, "/profile").unwrap();
        for entry in [
            Entry::new(Kind::Jti, "jti-1"),
            Entry::new(Kind::User, USER),
            Entry::new(Kind::Operator, "7"),
        ] {
            let blacklist = BlacklistSet::new();
            blacklist.replace([entry.clone()]);
            let got = authorize(
                &profile,
                session(Some(SESSID), &token, None, "GET"),
                &set,
                &blacklist,
                NOW,
            );
            assert_eq!(got.refusal(), Some(Reason::RevokedToken), "{entry:?}");
        }
    }

    #[test]
    fn until_the_blacklist_is_loaded_valid_credentials_get_503_and_bad_ones_401() {
        let (key, set) = keys();
        let token = key.sign(&session_claims(Role::OperatorAdmin)).unwrap();
        let profile = route(&http::Method::GET, "/profile").unwrap();
        let signin = route(&http::Method::POST, "/profile/signin").unwrap();
        let never_loaded = BlacklistSet::new();
        let check =
            |route: &Route, presented| authorize(route, presented, &set, &never_loaded, NOW);
        assert_eq!(
            check(&profile, session(Some(SESSID), &token, None, "GET")).refusal(),
            Some(Reason::BlacklistUnavailable)
        );
        assert_eq!(Reason::BlacklistUnavailable.status(), 503);
        // What is wrong whatever the blacklist says is still said.
        assert_eq!(
            check(&profile, Presented::None),
            Outcome::Denied(Reason::MissingToken)
        );
        assert_eq!(
            check(&profile, session(Some(SESSID), "not.a.token", None, "GET")),
            Outcome::Denied(Reason::InvalidToken)
        );
        // Public routes (signing in) do not depend on it.
        assert!(matches!(
            check(&signin, Presented::None),
            Outcome::Allowed(_)
        ));
        never_loaded.replace([]);
        assert!(matches!(
            check(&profile, session(Some(SESSID), &token, None, "GET")),
            Outcome::Allowed(_)
        ));
    }

    #[test]
    fn cross_site_unsafe_requests_with_cookies_are_refused() {
        let from = |fetch_site, origin, host| Provenance {
            fetch_site,
            origin,
            host,
        };
        let host = Some("gw.test:8080");
        let cases = [
            (true, true, from(None, None, host), false),
            (
                true,
                true,
                from(None, Some("http://gw.test:8080"), host),
                false,
            ),
            (
                true,
                true,
                from(None, Some("HTTP://GW.test:8080/"), host),
                false,
            ),
            (true, true, from(None, Some("http://evil.test"), host), true),
            (
                true,
                true,
                from(None, Some("http://gw.test:9090"), host),
                true,
            ),
            (true, true, from(None, Some("null"), host), true),
            (true, true, from(Some("cross-site"), None, host), true),
            (true, true, from(Some("same-origin"), None, host), false),
            (true, true, from(Some("same-site"), None, host), false),
            // Default ports may be left out on either side.
            (
                true,
                true,
                from(None, Some("https://gw.test"), Some("gw.test:443")),
                false,
            ),
            (
                true,
                true,
                from(None, Some("http://gw.test:80"), Some("gw.test")),
                false,
            ),
            (
                true,
                true,
                from(None, Some("https://gw.test"), Some("gw.test:80")),
                true,
            ),
            (true, true, from(None, Some("http://gw.test"), None), true),
            // Safe methods and requests without cookies are not at stake.
            (
                false,
                true,
                from(Some("cross-site"), Some("http://evil.test"), host),
                false,
            ),
            (
                true,
                false,
                from(Some("cross-site"), Some("http://evil.test"), host),
                false,
            ),
        ];
        for (unsafe_method, ambient, provenance, refused) in cases {
            assert_eq!(
                cross_site_refused(unsafe_method, ambient, provenance),
                refused,
                "{unsafe_method} {ambient} {provenance:?}"
            );
        }
    }

    /// A header value as a client could send it: nothing, any text, a JWT's shape, a JWT's
    /// shape whose header names an EdDSA key, or a bearer of one of those.
    fn header_value() -> impl Strategy<Value = Option<String>> {
        let segment = "[A-Za-z0-9_-]{0,60}";
        let jwt_shaped = (segment, segment, segment).prop_map(|(a, b, c)| format!("{a}.{b}.{c}"));
        let eddsa_header = (segment, segment, "[a-z0-9]{0,20}").prop_map(|(claims, sig, kid)| {
            use base64::Engine;
            let header = format!(r#"{{"alg":"EdDSA","typ":"access+jwt","kid":"{kid}"}}"#);
            let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header);
            format!("{header}.{claims}.{sig}")
        });
        let text = prop_oneof![".{0,80}", jwt_shaped, eddsa_header];
        prop_oneof![
            Just(None),
            text.clone().prop_map(Some),
            text.prop_map(|t| Some(format!("Bearer {t}"))),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000)
        ))]

        /// Fuzzed credentials (issue 26): whatever a client puts in the bearer header, the
        /// header triple or the session cookies, on any route, the decision is a refusal with
        /// its reason (or, for an unknown key id, a JWKS refresh), never a caller, never a panic.
        #[test]
        fn no_header_value_is_a_credential(
            authorization in header_value(),
            access_token in header_value(),
            client in header_value(),
            uid in header_value(),
            sessid in header_value(),
            sessauth in header_value(),
            csrf in header_value(),
            unsafe_method: bool,
            which in 0..4usize,
        ) {
            let (_, set) = keys();
            let blacklist = BlacklistSet::new();
            blacklist.replace([]);
            let (method, path) = [
                ("POST", "/v3/journeys"),
                ("GET", "/admin/operators"),
                ("DELETE", "/applications/3f2b5c9e-1c1d-4c1e-9a8b-0d6f4b8a2e11"),
                ("GET", "/profile"),
            ][which];
            let route = route(&method.parse().unwrap(), path).unwrap();
            let presented = Presented::from_headers(
                authorization.as_deref(),
                access_token.as_deref(),
                client.as_deref(),
                uid.as_deref(),
            )
            .or_session(sessid.as_deref(), sessauth.as_deref(), csrf.as_deref(), unsafe_method);
            match authorize(&route, presented, &set, &blacklist, NOW) {
                Outcome::Denied(reason) | Outcome::Refused(reason, _) => prop_assert!(
                    matches!(reason.status(), 401 | 403),
                    "{reason:?}"
                ),
                Outcome::UnknownKey => {}
                Outcome::Allowed(p) => prop_assert!(false, "allowed {p:?}"),
            }
        }

        /// A genuine token with any one character changed is no credential.
        #[test]
        fn a_changed_character_spoils_a_genuine_token(at in 0..400usize, with in "[A-Za-z0-9_.=-]") {
            let (key, set) = keys();
            let blacklist = BlacklistSet::new();
            blacklist.replace([]);
            let mut claims = session_claims(Role::OperatorAdmin);
            claims.kind = CredentialKind::Access;
            let token = key.sign(&claims).unwrap();
            let at = at % token.len();
            let mut changed = token.clone();
            changed.replace_range(at..at + 1, &with);
            prop_assume!(changed != token);
            let route = route(&http::Method::GET, "/admin/operators").unwrap();
            let bearer = format!("Bearer {changed}");
            let presented = Presented::from_headers(Some(&bearer), None, None, None);
            let outcome = authorize(&route, presented, &set, &blacklist, NOW);
            prop_assert!(!matches!(outcome, Outcome::Allowed(_)), "{outcome:?}");
        }
    }
}
