//! The identity assertion the gateway attaches to every request it forwards.
//!
//! The gateway has already checked the credential; the upstream only needs to know *who* the
//! caller is and that the gateway said so. The assertion is an HS256 JWT under a secret shared
//! by the gateway and the upstreams, bound to one audience (the upstream's name), one method and
//! path, and a 30-second lifetime, so a captured header is of little use elsewhere.

use crate::claims::CredentialKind;
use crate::roles::Role;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The request header carrying the assertion. The gateway strips any client-supplied copy.
pub const ASSERTION_HEADER: &str = "x-rpc-identity";

/// How long an assertion is valid after the gateway issued it.
pub const ASSERTION_TTL_SECS: i64 = 30;

/// Who is calling, as established by the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// The signed payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assertion {
    #[serde(flatten)]
    pub principal: Principal,
    /// The upstream this assertion is for.
    pub aud: String,
    pub method: String,
    pub path: String,
    /// The request id, so upstream logs join the gateway's.
    pub rid: String,
    pub exp: i64,
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

/// The shared secret, able to sign (gateway) and verify (upstreams).
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
        // Serialising these plain structs cannot fail.
        let claims = serde_json::to_vec(assertion).unwrap_or_default();
        let claims_len = base64::encoded_len(claims.len(), false).unwrap_or(0);
        let mut token = String::with_capacity(HS256_HEADER.len() + claims_len + 45);
        token.push_str(HS256_HEADER);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&claims, &mut token);
        let mut mac = self.signer.clone();
        mac.update(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(mac.finalize().into_bytes(), &mut token);
        token
    }

    /// Verifies signature, audience, expiry (against `now`, unix seconds) and that the assertion
    /// was made for this method and path.
    pub fn verify(
        &self,
        token: Option<&str>,
        audience: &str,
        method: &str,
        path: &str,
        now: i64,
    ) -> Result<Assertion, AssertionError> {
        let token = token.ok_or(AssertionError::Missing)?;
        let assertion = self.decode(token).ok_or(AssertionError::Invalid)?;
        if assertion.exp < now || assertion.aud != audience {
            return Err(AssertionError::Invalid);
        }
        if assertion.method != method || assertion.path != path {
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

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};

    fn assertion() -> Assertion {
        Assertion {
            principal: Principal {
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
            },
            aud: "registry".into(),
            method: "POST".into(),
            path: "/v3/journeys".into(),
            rid: "r1".into(),
            exp: 100,
        }
    }

    #[test]
    fn an_assertion_verifies_only_for_its_audience_request_and_lifetime() {
        let key = AssertionKey::new(&[7; 32]).unwrap();
        let token = key.sign(&assertion());
        let ok = key.verify(Some(&token), "registry", "POST", "/v3/journeys", 100);
        assert_eq!(ok.unwrap(), assertion());
        let v = |aud, m, p, now| key.verify(Some(&token), aud, m, p, now).unwrap_err();
        assert_eq!(
            v("auth-service", "POST", "/v3/journeys", 90),
            AssertionError::Invalid
        );
        assert_eq!(
            v("registry", "POST", "/v3/journeys", 101),
            AssertionError::Invalid
        );
        assert_eq!(
            v("registry", "GET", "/v3/journeys", 90),
            AssertionError::WrongRequest
        );
        assert_eq!(
            v("registry", "POST", "/v3/journeys/x", 90),
            AssertionError::WrongRequest
        );
    }

    #[test]
    fn assertions_are_standard_hs256_jwts() {
        let key = AssertionKey::new(&[7; 32]).unwrap();
        let token = key.sign(&assertion());
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::HS256);
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        // jsonwebtoken's own encoder signs the same claims to the same token.
        let reference = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &assertion(),
            &jsonwebtoken::EncodingKey::from_secret(&[7; 32]),
        )
        .unwrap();
        assert_eq!(token, reference);
    }

    #[test]
    fn another_secret_or_no_header_is_refused() {
        let token = AssertionKey::new(&[7; 32]).unwrap().sign(&assertion());
        let other = AssertionKey::new(&[8; 32]).unwrap();
        assert_eq!(
            other.verify(Some(&token), "registry", "POST", "/v3/journeys", 0),
            Err(AssertionError::Invalid)
        );
        assert_eq!(
            other.verify(None, "registry", "POST", "/v3/journeys", 0),
            Err(AssertionError::Missing)
        );
        assert!(AssertionKey::new(b"short").is_err());
    }

    #[test]
    fn any_hs256_jwt_of_the_secret_verifies_and_nothing_else_does() {
        let key = AssertionKey::new(&[7; 32]).unwrap();
        let verify = |token: &str| key.verify(Some(token), "registry", "POST", "/v3/journeys", 0);
        let encode = |header: &Header, secret: &[u8]| {
            jsonwebtoken::encode(header, &assertion(), &EncodingKey::from_secret(secret)).unwrap()
        };
        // Another header than the gateway's (a key id, no `typ`) is still HS256.
        let mut with_kid = Header::new(Algorithm::HS256);
        with_kid.kid = Some("k1".into());
        with_kid.typ = None;
        assert_eq!(verify(&encode(&with_kid, &[7; 32])).unwrap(), assertion());
        for refused in [
            encode(&Header::new(Algorithm::HS384), &[7; 32]),
            encode(&Header::new(Algorithm::HS256), &[8; 32]),
        ] {
            assert_eq!(verify(&refused), Err(AssertionError::Invalid));
        }
        let token = key.sign(&assertion());
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let (header, _) = signed.split_once('.').unwrap();
        let mut other = assertion();
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
