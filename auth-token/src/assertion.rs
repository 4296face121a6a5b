//! The identity assertion the gateway attaches to every request it forwards.
//!
//! The gateway has already checked the credential; the upstream only needs to know *who* the
//! caller is and that the gateway said so. The assertion is an HS256 JWT under a secret the
//! gateway shares with that one upstream (each upstream has its own, so one that is compromised
//! cannot speak to the other), bound to one audience (the upstream's name), one request (method,
//! path, query string and a SHA-256 digest of the body) and a 30-second lifetime, and carrying a
//! random `jti` so that the upstream accepts it once ([`Replays`]): a captured header is of no
//! use for another request, nor for the same one again.

use crate::claims::CredentialKind;
use crate::roles::Role;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The request header carrying the assertion. The gateway strips any client-supplied copy.
pub const ASSERTION_HEADER: &str = "x-rpc-identity";

/// How long an assertion is valid after the gateway issued it.
pub const ASSERTION_TTL_SECS: i64 = 30;

/// How far the gateway's clock may be ahead of an upstream's: an assertion expiring later than
/// `now + ASSERTION_TTL_SECS + CLOCK_SKEW_SECS` is refused, which bounds how long an upstream
/// must remember a `jti` ([`Replays`]).
pub const CLOCK_SKEW_SECS: i64 = 30;

/// The id prefix of [`Principal::gateway`].
const GATEWAY_PREFIX: &str = "gateway:";

/// Who is calling, as established by the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Principal {
    /// The credential kind used; `None` for an anonymous caller on a public route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<CredentialKind>,
    /// Application uuid, access key or user id (empty for anonymous).
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_id: Option<i64>,
    /// The SIRET of that operator, when the credential carries it (CEE tokens sign it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_siret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The `jti` of the credential token presented, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// Agent tokens: the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// Expiry of the credential presented (unix seconds), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_exp: Option<i64>,
    /// The browser session this request belongs to, as [`crate::session::sid_of`] its
    /// `sessid` cookie (never the cookie itself). Set on every request, signed in or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Session tokens: their CSRF token, so the profile can hand it back to the page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csrf: Option<String>,
}

impl Principal {
    /// The gateway itself, sending its usage records ([`crate::usage`]): no credential kind,
    /// an id no credential has (`gateway:` and the replica). Clients never get it: the
    /// gateway asserts it only on its own requests.
    pub fn gateway(replica: &str) -> Self {
        Self {
            id: format!("{GATEWAY_PREFIX}{replica}"),
            ..Self::anonymous()
        }
    }

    /// Whether this is [`Principal::gateway`].
    pub fn is_gateway(&self) -> bool {
        self.kind.is_none() && self.role.is_none() && self.id.starts_with(GATEWAY_PREFIX)
    }

    pub fn anonymous() -> Self {
        Self {
            kind: None,
            id: String::new(),
            operator_id: None,
            operator_siret: None,
            role: None,
            token_id: None,
            client: None,
            token_exp: None,
            session: None,
            csrf: None,
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.kind.is_none()
    }
}

/// The request an assertion is made for, as the upstream receives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The query string, without `?`; empty when there is none.
    pub query: &'a str,
    /// The body's digest ([`body_digest`]); `None` for an empty body.
    pub body: Option<&'a str>,
}

/// The base64url SHA-256 of a request body, `None` when it is empty (a request without a body
/// and one with an empty body are the same request to the upstreams).
pub fn body_digest(body: &[u8]) -> Option<String> {
    (!body.is_empty()).then(|| URL_SAFE_NO_PAD.encode(Sha256::digest(body)))
}

/// The signed payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assertion {
    #[serde(flatten)]
    pub principal: Principal,
    /// The upstream this assertion is for.
    pub aud: String,
    pub method: String,
    pub path: String,
    /// The query string, without `?` (absent when empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub query: String,
    /// The body's digest ([`body_digest`]), absent for an empty body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Random and unique: the upstream accepts each assertion once ([`Replays`]).
    pub jti: String,
    /// The request id, so upstream logs join the gateway's.
    pub rid: String,
    pub exp: i64,
}

impl Assertion {
    /// An assertion for `request` to the upstream `aud`, valid [`ASSERTION_TTL_SECS`] after
    /// `now`, with a fresh random `jti`.
    pub fn new(
        principal: Principal,
        aud: &str,
        request: &Request<'_>,
        rid: &str,
        now: i64,
    ) -> Self {
        Self {
            principal,
            aud: aud.to_owned(),
            method: request.method.to_owned(),
            path: request.path.to_owned(),
            query: request.query.to_owned(),
            body: request.body.map(str::to_owned),
            jti: new_jti(&mut [0u8; 22]).to_owned(),
            rid: rid.to_owned(),
            exp: now + ASSERTION_TTL_SECS,
        }
    }

    fn is_for(&self, request: &Request<'_>) -> bool {
        self.method == request.method
            && self.path == request.path
            && self.query == request.query
            && self.body.as_deref() == request.body
    }
}

/// 128 random bits in base64url, written into `buf`.
fn new_jti(buf: &mut [u8; 22]) -> &str {
    let written = URL_SAFE_NO_PAD
        .encode_slice(rand::random::<[u8; 16]>(), buf)
        .unwrap_or(0);
    // base64url is ASCII.
    std::str::from_utf8(&buf[..written]).unwrap_or("")
}

/// An [`Assertion`] as signed, borrowed from its parts: the principal's fields, then the
/// request's. It reads back as the same [`Assertion`]. [`Signed::json`] writes it; serde's
/// derive is the test's, which holds the two to each other.
#[cfg(test)]
#[derive(Serialize)]
struct Signed<'a> {
    #[serde(flatten)]
    principal: &'a Principal,
    #[serde(flatten)]
    request: RequestPart<'a>,
}

/// The claims that change with every request, after the principal's.
#[derive(Serialize)]
struct RequestPart<'a> {
    aud: &'a str,
    method: &'a str,
    path: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    query: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
    jti: &'a str,
    rid: &'a str,
    exp: i64,
}

#[cfg(test)]
impl Signed<'_> {
    /// The claims as JSON, exactly what `serde_json::to_vec(self)` writes (same fields, order
    /// and escapes; `the_claims_are_written_as_serde_writes_them` holds them to each other),
    /// written by hand: serde_json escapes every string byte by byte, and these are plain
    /// ASCII nearly always. The gateway signs one per forwarded request (issue 24).
    fn json(&self) -> Vec<u8> {
        let mut out = Json(Vec::with_capacity(512));
        principal_json(&mut out, self.principal);
        self.request.json(&mut out);
        out.0
    }
}

/// `{` and the principal's claims, as serde writes a [`Principal`] (no closing brace: the
/// request's claims follow, [`RequestPart::json`]).
fn principal_json(out: &mut Json, principal: &Principal) {
    out.0.push(b'{');
    if let Some(kind) = principal.kind {
        out.key("kind");
        out.str(kind.name());
        out.0.push(b',');
    }
    out.key("id");
    out.str(&principal.id);
    if let Some(operator_id) = principal.operator_id {
        out.next_key("operator_id");
        out.int(operator_id);
    }
    out.text("operator_siret", principal.operator_siret.as_deref());
    out.text("role", principal.role.map(Role::as_str));
    out.text("token_id", principal.token_id.as_deref());
    out.text("client", principal.client.as_deref());
    if let Some(token_exp) = principal.token_exp {
        out.next_key("token_exp");
        out.int(token_exp);
    }
    out.text("session", principal.session.as_deref());
    out.text("csrf", principal.csrf.as_deref());
}

impl<'a> RequestPart<'a> {
    /// `,` and the request's claims, then the closing brace: what follows [`principal_json`].
    fn json(&self, out: &mut Json) {
        out.text("aud", Some(self.aud));
        out.text("method", Some(self.method));
        out.text("path", Some(self.path));
        out.text("query", Some(self.query).filter(|q| !q.is_empty()));
        out.text("body", self.body);
        out.text("jti", Some(self.jti));
        out.text("rid", Some(self.rid));
        out.next_key("exp");
        out.int(self.exp);
        out.0.push(b'}');
    }

    fn new(aud: &'a str, request: &Request<'a>, jti: &'a str, rid: &'a str, exp: i64) -> Self {
        Self {
            aud,
            method: request.method,
            path: request.path,
            query: request.query,
            body: request.body,
            jti,
            rid,
            exp,
        }
    }
}

/// JSON being written by [`principal_json`] and [`RequestPart::json`].
struct Json(Vec<u8>);

impl Json {
    /// `,"name":`: a key after another.
    fn next_key(&mut self, name: &str) {
        self.0.push(b',');
        self.key(name);
    }

    /// `,"name":"value"` when there is a value (a key after another).
    fn text(&mut self, name: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.next_key(name);
            self.str(value);
        }
    }

    /// `"name":`.
    fn key(&mut self, name: &str) {
        self.0.push(b'"');
        self.0.extend_from_slice(name.as_bytes());
        self.0.extend_from_slice(b"\":");
    }

    /// A JSON string: copied as it is when nothing in it needs an escape, else written by
    /// serde_json (so escapes are always serde_json's).
    fn str(&mut self, text: &str) {
        if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            self.0.push(b'"');
            self.0.extend_from_slice(text.as_bytes());
            self.0.push(b'"');
        } else {
            // Writing a string into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut self.0, text);
        }
    }

    fn int(&mut self, n: i64) {
        self.0
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    }
}

/// What an assertion's signature needs of its principal, made once per principal and key
/// ([`AssertionKey::prepare`]): the token's start (the header, a dot and the principal's
/// claims in base64url, as far as they fill whole groups of three bytes), the one or two
/// bytes of those claims left over, and the HMAC already fed with that start. A gateway
/// signs many requests of one credential; [`AssertionKey::sign_prepared`] then writes,
/// encodes and hashes only the request's part.
#[derive(Clone)]
pub struct Prepared {
    head: String,
    left: Vec<u8>,
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prepared(<keyed>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    #[error("no identity assertion")]
    Missing,
    #[error("identity assertion is invalid or expired")]
    Invalid,
    #[error("identity assertion was issued for another request")]
    WrongRequest,
}

/// The secret the gateway shares with one upstream, able to sign (gateway) and verify (that
/// upstream).
#[derive(Clone)]
pub struct AssertionKey {
    /// HMAC-SHA256 already keyed with the secret: signing clones it instead of hashing the
    /// key again on every request.
    signer: Hmac<Sha256>,
}

/// `{"typ":"JWT","alg":"HS256"}` in base64url, the header of every assertion.
const HS256_HEADER: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9";

impl std::fmt::Debug for AssertionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AssertionKey(<redacted>)")
    }
}

impl AssertionKey {
    /// Secrets shorter than 32 bytes are refused: the assertion is the upstreams' only defence.
    pub fn new(secret: &[u8]) -> Result<Self, ShortSecret> {
        if secret.len() < 32 {
            return Err(ShortSecret);
        }
        Ok(Self {
            signer: Hmac::new_from_slice(secret).map_err(|_| ShortSecret)?,
        })
    }

    /// An HS256 JWT of `assertion` (the gateway signs one per forwarded request, so this is
    /// done by hand rather than through `jsonwebtoken::encode`; any JWT library reads it).
    pub fn sign(&self, assertion: &Assertion) -> String {
        let request = Request {
            method: &assertion.method,
            path: &assertion.path,
            query: &assertion.query,
            body: assertion.body.as_deref(),
        };
        let part = RequestPart::new(
            &assertion.aud,
            &request,
            &assertion.jti,
            &assertion.rid,
            assertion.exp,
        );
        self.finish(&self.prepare(&assertion.principal), &part)
    }

    /// The assertion [`Assertion::new`] would make, signed, without copying its parts.
    pub fn sign_new(
        &self,
        principal: &Principal,
        aud: &str,
        request: &Request<'_>,
        rid: &str,
        now: i64,
    ) -> String {
        self.sign_prepared(&self.prepare(principal), aud, request, rid, now)
    }

    /// What [`AssertionKey::sign_prepared`] needs of `principal` under this key.
    pub fn prepare(&self, principal: &Principal) -> Prepared {
        let mut json = Json(Vec::with_capacity(256));
        principal_json(&mut json, principal);
        let whole = json.0.len() / 3 * 3;
        let mut head = String::with_capacity(HS256_HEADER.len() + 1 + whole / 3 * 4);
        head.push_str(HS256_HEADER);
        head.push('.');
        URL_SAFE_NO_PAD.encode_string(&json.0[..whole], &mut head);
        let mut mac = self.signer.clone();
        mac.update(head.as_bytes());
        Prepared {
            head,
            left: json.0[whole..].to_vec(),
            mac,
        }
    }

    /// [`AssertionKey::sign_new`] for a principal prepared under this key: what the gateway
    /// does for every request it forwards.
    pub fn sign_prepared(
        &self,
        prepared: &Prepared,
        aud: &str,
        request: &Request<'_>,
        rid: &str,
        now: i64,
    ) -> String {
        let mut jti = [0u8; 22];
        let jti = new_jti(&mut jti);
        let part = RequestPart::new(aud, request, jti, rid, now + ASSERTION_TTL_SECS);
        self.finish(prepared, &part)
    }

    /// The token: the prepared start, then the rest of the claims (the principal's bytes
    /// left over and the request's) in base64url, hashed on from the prepared HMAC.
    fn finish(&self, prepared: &Prepared, part: &RequestPart<'_>) -> String {
        let mut rest = Json(Vec::with_capacity(320));
        rest.0.extend_from_slice(&prepared.left);
        part.json(&mut rest);
        let rest_len = base64::encoded_len(rest.0.len(), false).unwrap_or(0);
        let mut token = String::with_capacity(prepared.head.len() + rest_len + 45);
        token.push_str(&prepared.head);
        URL_SAFE_NO_PAD.encode_string(&rest.0, &mut token);
        let mut mac = prepared.mac.clone();
        mac.update(&token.as_bytes()[prepared.head.len()..]);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(mac.finalize().into_bytes(), &mut token);
        token
    }

    /// Verifies signature, audience, expiry (against `now`, unix seconds; an expiry further
    /// ahead than the gateway gives is refused too) and that the assertion was made for this
    /// very request. Whether it was used before is [`Replays`]' business.
    pub fn verify(
        &self,
        token: Option<&str>,
        audience: &str,
        request: &Request<'_>,
        now: i64,
    ) -> Result<Assertion, AssertionError> {
        let token = token.ok_or(AssertionError::Missing)?;
        let assertion = self.decode(token).ok_or(AssertionError::Invalid)?;
        let latest = now + ASSERTION_TTL_SECS + CLOCK_SKEW_SECS;
        if assertion.exp < now || assertion.exp > latest || assertion.aud != audience {
            return Err(AssertionError::Invalid);
        }
        if !assertion.is_for(request) {
            return Err(AssertionError::WrongRequest);
        }
        Ok(assertion)
    }

    /// The claims of `token` when it is an HS256 JWT signed with this secret: what
    /// `jsonwebtoken::decode` checks, without keying a new HMAC per token (the upstreams
    /// verify one assertion per request). The MAC is compared in constant time.
    fn decode(&self, token: &str) -> Option<Assertion> {
        let (signed, signature) = token.rsplit_once('.')?;
        let (header, claims) = signed.split_once('.')?;
        if header != HS256_HEADER {
            #[derive(Deserialize)]
            struct Header {
                alg: String,
            }
            let header: Header =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
            if header.alg != "HS256" {
                return None;
            }
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        let mut mac = self.signer.clone();
        mac.update(signed.as_bytes());
        mac.verify_slice(&signature).ok()?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the assertion secret must be at least 32 bytes")]
pub struct ShortSecret;

/// The `jti`s of the assertions an upstream has accepted, each remembered at least until it
/// expires, so that every assertion is accepted once. Two generations of at most
/// `ASSERTION_TTL_SECS + CLOCK_SKEW_SECS` each: memory is bounded by the requests of the last
/// two minutes, and by `capacity` entries (about 40 bytes each), past which [`Replays::admit`]
/// refuses rather than forget.
pub struct Replays {
    capacity: usize,
    generations: std::sync::Mutex<Generations>,
}

#[derive(Default)]
struct Generations {
    current: std::collections::HashSet<[u8; 16]>,
    previous: std::collections::HashSet<[u8; 16]>,
    started: i64,
}

/// Why [`Replays::admit`] refused an assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its `jti` was accepted before.
    Replayed,
    /// `capacity` assertions are being remembered: this one could not be.
    Full,
}

impl Replays {
    /// Default capacity: four million assertions in two minutes, some 30 000 requests a second
    /// to one upstream replica, in at most about 160 MB.
    pub const DEFAULT_CAPACITY: usize = 4_000_000;

    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            generations: std::sync::Mutex::new(Generations::default()),
        }
    }

    /// Records the `jti` of a verified assertion, at `now` (unix seconds), unless it was seen
    /// before. [`AssertionKey::verify`] has refused every assertion expiring more than
    /// `ASSERTION_TTL_SECS + CLOCK_SKEW_SECS` after `now`, which is how long one generation lasts.
    pub fn admit(&self, jti: &str, now: i64) -> Result<(), Refusal> {
        const GENERATION: i64 = ASSERTION_TTL_SECS + CLOCK_SKEW_SECS;
        let mut key = [0; 16];
        key.copy_from_slice(&Sha256::digest(jti.as_bytes())[..16]);
        let mut g = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        if now - g.started >= 2 * GENERATION {
            g.previous = Default::default();
            g.current = Default::default();
            g.started = now;
        } else if now - g.started >= GENERATION {
            g.previous = std::mem::take(&mut g.current);
            g.started = now;
        }
        if g.current.contains(&key) || g.previous.contains(&key) {
            return Err(Refusal::Replayed);
        }
        if g.current.len() + g.previous.len() >= self.capacity {
            return Err(Refusal::Full);
        }
        g.current.insert(key);
        Ok(())
    }
}

impl Default for Replays {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};

    const BODY: &[u8] = br#"{"operator_journey_id":"j1"}"#;

    fn request(digest: &str) -> Request<'_> {
        Request {
            method: "POST",
            path: "/v3/journeys",
            query: "dry=1",
            body: Some(digest),
        }
    }

    fn assertion() -> Assertion {
        let principal = Principal {
            kind: Some(CredentialKind::Application),
            id: "app-1".into(),
            operator_id: Some(3),
            operator_siret: Some("13002526500013".into()),
            role: Some(Role::OperatorApplication),
            token_id: Some("jti".into()),
            client: None,
            token_exp: None,
            session: Some("sid".into()),
            csrf: None,
        };
        let digest = body_digest(BODY).unwrap();
        Assertion::new(principal, "registry", &request(&digest), "r1", 70)
    }

    /// Any text: plain, with quotes, backslashes, control characters, DEL and non-ASCII.
    fn text() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::string::string_regex("(.|[\"\\\\\\x00-\\x1f\\x7f\u{e9}\u{1F600}]){0,24}").unwrap()
    }

    proptest::proptest! {
        /// `Signed::json` writes exactly what serde_json would: same fields, order, escapes.
        #[test]
        fn the_claims_are_written_as_serde_writes_them(
            kind in proptest::option::of(proptest::sample::select(CredentialKind::ALL.to_vec())),
            role in proptest::option::of(proptest::sample::select(Role::ALL.to_vec())),
            numbers in proptest::collection::vec(proptest::option::of(proptest::num::i64::ANY), 3),
            texts in proptest::collection::vec(text(), 11),
            present in proptest::collection::vec(proptest::bool::ANY, 7),
        ) {
            let optional = |i: usize| present[i].then_some(texts[i].as_str());
            let owned = |i: usize| optional(i).map(str::to_owned);
            let principal = Principal {
                kind,
                id: texts[7].clone(),
                operator_id: numbers[0],
                operator_siret: owned(0),
                role,
                token_id: owned(1),
                client: owned(2),
                token_exp: numbers[1],
                session: owned(3),
                csrf: owned(4),
            };
            let claims = Signed {
                principal: &principal,
                request: RequestPart {
                    aud: &texts[8],
                    method: &texts[9],
                    path: &texts[10],
                    query: if present[5] { &texts[5] } else { "" },
                    body: optional(6),
                    jti: &texts[6],
                    rid: &texts[0],
                    exp: numbers[2].unwrap_or(0),
                },
            };
            let by_hand = String::from_utf8(claims.json()).unwrap();
            proptest::prop_assert_eq!(&by_hand, &serde_json::to_string(&claims).unwrap());

            // Signed from a prepared principal (its claims cut at any length, whole groups
            // of three bytes encoded ahead): the JWT of those very claims, HMAC and all.
            let secret = [9u8; 32];
            let key = AssertionKey::new(&secret).unwrap();
            let token = key.finish(&key.prepare(&principal), &claims.request);
            let input = format!("{HS256_HEADER}.{}", URL_SAFE_NO_PAD.encode(&by_hand));
            let mut mac = Hmac::<Sha256>::new_from_slice(&secret).unwrap();
            mac.update(input.as_bytes());
            let whole = format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()));
            proptest::prop_assert_eq!(token, whole);
        }
    }

    #[test]
    fn an_assertion_verifies_only_for_its_audience_request_and_lifetime() {
        let key = AssertionKey::new(&[7; 32]).unwrap();
        let assertion = assertion();
        let token = key.sign(&assertion);
        let digest = body_digest(BODY).unwrap();
        let ok = key.verify(Some(&token), "registry", &request(&digest), 100);
        assert_eq!(ok.unwrap(), assertion);
        let v = |aud, r: Request<'_>, now| key.verify(Some(&token), aud, &r, now).unwrap_err();
        let this = request(&digest);
        assert_eq!(v("auth-service", this, 90), AssertionError::Invalid);
        assert_eq!(v("registry", this, 101), AssertionError::Invalid);
        // Issued further ahead than the gateway issues them: a clock or a signer gone wrong.
        assert_eq!(v("registry", this, 39), AssertionError::Invalid);
        let other_body = body_digest(b"{}").unwrap();
        for other in [
            Request {
                method: "GET",
                ..this
            },
            Request {
                path: "/v3/journeys/x",
                ..this
            },
            Request { query: "", ..this },
            Request {
                query: "dry=2",
                ..this
            },
            Request { body: None, ..this },
            Request {
                body: Some(&other_body),
                ..this
            },
        ] {
            assert_eq!(
                v("registry", other, 90),
                AssertionError::WrongRequest,
                "{other:?}"
            );
        }
    }

    #[test]
    fn an_assertion_signed_from_its_parts_reads_back_as_the_assertion() {
        let key = AssertionKey::new(&[7; 32]).unwrap();
        let made = assertion();
        let digest = body_digest(BODY).unwrap();
        let this = request(&digest);
        let token = key.sign_new(&made.principal, "registry", &this, "r1", 70);
        let read = key.verify(Some(&token), "registry", &this, 90).unwrap();
        assert_eq!(read.jti.len(), 22);
        assert_ne!(read.jti, made.jti);
        assert_eq!(
            read,
            Assertion {
                jti: read.jti.clone(),
                ..made.clone()
            }
        );
        // The same JSON as the owned struct gives, key for key.
        let claims = |token: &str| -> serde_json::Value {
            let part = token.split('.').nth(1).unwrap();
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
        };
        let owned = serde_json::to_value(&read).unwrap();
        assert_eq!(claims(&token), owned);
        assert_eq!(
            claims(&key.sign(&made)),
            serde_json::to_value(&made).unwrap()
        );
        let anonymous = Principal::anonymous();
        let bare = Request {
            query: "",
            body: None,
            ..this
        };
        let token = key.sign_new(&anonymous, "registry", &bare, "r2", 70);
        let read = key.verify(Some(&token), "registry", &bare, 90).unwrap();
        assert_eq!(claims(&token), serde_json::to_value(&read).unwrap());
        assert_eq!(read.principal, anonymous);
    }

    #[test]
    fn each_assertion_has_its_own_jti_and_an_empty_body_has_no_digest() {
        assert_ne!(assertion().jti, assertion().jti);
        assert_eq!(assertion().jti.len(), 22);
        assert_eq!(body_digest(b""), None);
        // The SHA-256 of "abc" (FIPS 180-2), in base64url.
        assert_eq!(
            body_digest(b"abc").as_deref(),
            Some("ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0")
        );
    }

    #[test]
    fn a_jti_is_admitted_once_while_it_can_be_valid() {
        let replays = Replays::new(10);
        assert_eq!(replays.admit("a", 1000), Ok(()));
        assert_eq!(replays.admit("a", 1000), Err(Refusal::Replayed));
        assert_eq!(replays.admit("b", 1000), Ok(()));
        // A generation later "a" is in the previous one: still refused while it can be valid.
        assert_eq!(replays.admit("c", 1060), Ok(()));
        assert_eq!(replays.admit("a", 1061), Err(Refusal::Replayed));
        // Two generations after "a" was seen it has expired (verify refuses it): forgotten.
        assert_eq!(replays.admit("a", 1120), Ok(()));
        assert_eq!(replays.admit("c", 1120), Err(Refusal::Replayed));
        assert_eq!(replays.admit("d", 1300), Ok(()));
        assert_eq!(replays.admit("a", 1300), Ok(()));
    }

    #[test]
    fn past_its_capacity_replays_refuses_rather_than_forgets() {
        let replays = Replays::new(2);
        assert_eq!(replays.admit("a", 0), Ok(()));
        assert_eq!(replays.admit("b", 0), Ok(()));
        assert_eq!(replays.admit("c", 0), Err(Refusal::Full));
        assert_eq!(replays.admit("a", 0), Err(Refusal::Replayed));
        assert_eq!(replays.admit("c", 120), Ok(()));
    }

    #[test]
    fn assertions_are_standard_hs256_jwts() {
        let key = AssertionKey::new(&[7; 32]).unwrap();
        let assertion = assertion();
        let token = key.sign(&assertion);
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::HS256);
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        // jsonwebtoken's own encoder signs the same claims to the same token.
        let reference = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &assertion,
            &jsonwebtoken::EncodingKey::from_secret(&[7; 32]),
        )
        .unwrap();
        assert_eq!(token, reference);
    }

    #[test]
    fn another_secret_or_no_header_is_refused() {
        let token = AssertionKey::new(&[7; 32]).unwrap().sign(&assertion());
        let other = AssertionKey::new(&[8; 32]).unwrap();
        let digest = body_digest(BODY).unwrap();
        assert_eq!(
            other.verify(Some(&token), "registry", &request(&digest), 80),
            Err(AssertionError::Invalid)
        );
        assert_eq!(
            other.verify(None, "registry", &request(&digest), 80),
            Err(AssertionError::Missing)
        );
        assert!(AssertionKey::new(b"short").is_err());
    }

    #[test]
    fn any_hs256_jwt_of_the_secret_verifies_and_nothing_else_does() {
        let key = AssertionKey::new(&[7; 32]).unwrap();
        let assertion = assertion();
        let digest = body_digest(BODY).unwrap();
        let verify = |token: &str| key.verify(Some(token), "registry", &request(&digest), 80);
        let encode = |header: &Header, secret: &[u8]| {
            jsonwebtoken::encode(header, &assertion, &EncodingKey::from_secret(secret)).unwrap()
        };
        // Another header than the gateway's (a key id, no `typ`) is still HS256.
        let mut with_kid = Header::new(Algorithm::HS256);
        with_kid.kid = Some("k1".into());
        with_kid.typ = None;
        assert_eq!(verify(&encode(&with_kid, &[7; 32])).unwrap(), assertion);
        for refused in [
            encode(&Header::new(Algorithm::HS384), &[7; 32]),
            encode(&Header::new(Algorithm::HS256), &[8; 32]),
        ] {
            assert_eq!(verify(&refused), Err(AssertionError::Invalid));
        }
        let token = key.sign(&assertion);
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let (header, _) = signed.split_once('.').unwrap();
        let mut other = assertion.clone();
        other.principal.operator_id = Some(4);
        let forged_claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).unwrap());
        let unsigned_alg = URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#);
        for refused in [
            format!("{header}.{forged_claims}.{signature}"),
            format!("{signed}.{}", &signature[..signature.len() - 2]),
            format!("{signed}."),
            format!("{unsigned_alg}.{}.", signed.split_once('.').unwrap().1),
            signed.to_owned(),
            String::new(),
        ] {
            assert_eq!(verify(&refused), Err(AssertionError::Invalid), "{refused}");
        }
    }
}
