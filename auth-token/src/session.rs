//! The browser session contract (CONTRACT §3.3), shared by the gateway (which hands out the
//! `sessid` cookie and checks `sessauth`) and auth-service (which signs `sessauth`).
//!
//! - `sessid`: an opaque random id, made by the gateway for any request without a well-formed
//!   one. An anonymous session is stored nowhere, and the id never changes.
//! - `sessauth`: a [`crate::CredentialKind::Session`] JWT binding a user to one `sessid`
//!   through its `sid` claim, [`sid_of`] the `sessid`. Upstreams only ever see that hash.
//!
//! Nothing here knows HTTP; cookie headers are parsed and written by the callers.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The cookie carrying the session id.
pub const SESSID_COOKIE: &str = "sessid";
/// The cookie carrying the signed-in session token.
pub const SESSAUTH_COOKIE: &str = "sessauth";
/// The header that must repeat the session's CSRF token on unsafe methods.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Session tokens live 12 hours.
pub const SESSION_TTL_SECS: i64 = 12 * 3600;

/// Length of a session id: 32 random bytes in unpadded base64url.
const SESSID_LEN: usize = 43;

/// 32 random bytes in unpadded base64url: session ids and CSRF tokens. The thread's
/// ChaCha12 generator (seeded and periodically reseeded from the OS) is a CSPRNG like the
/// OS's, without a system call per token: every answer to a cookie-less request mints one.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A new session id.
pub fn new_sessid() -> String {
    random_token()
}

/// A new CSRF token for a session.
pub fn new_csrf_token() -> String {
    random_token()
}

/// Whether `value` has the shape of an id [`new_sessid`] makes; anything else is replaced.
pub fn is_well_formed_sessid(value: &str) -> bool {
    value.len() == SESSID_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The `sid` of a session: unpadded base64url SHA-256 of its id. What the token carries and
/// upstreams see, so neither a token nor a log can give the cookie away.
pub fn sid_of(sessid: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(sessid.as_bytes()))
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_well_formed_and_distinct() {
        let (a, b) = (new_sessid(), new_sessid());
        assert!(is_well_formed_sessid(&a) && is_well_formed_sessid(&b));
        assert_ne!(a, b);
        assert_eq!(new_csrf_token().len(), SESSID_LEN);
    }

    #[test]
    fn malformed_ids_are_refused() {
        let good = "A".repeat(SESSID_LEN);
        assert!(is_well_formed_sessid(&good));
        for bad in [
            String::new(),
            "A".repeat(SESSID_LEN - 1),
            "A".repeat(SESSID_LEN + 1),
            format!("{}=", "A".repeat(SESSID_LEN - 1)),
            format!("{}+", "A".repeat(SESSID_LEN - 1)),
            format!("{};", "A".repeat(SESSID_LEN - 1)),
        ] {
            assert!(!is_well_formed_sessid(&bad), "{bad:?}");
        }
    }

    #[test]
    fn sid_is_a_stable_hash_and_secrets_compare_exactly() {
        let id = new_sessid();
        assert_eq!(sid_of(&id), sid_of(&id));
        assert_ne!(sid_of(&id), id);
        assert_eq!(sid_of(&id).len(), 43);
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
        assert!(!same_secret("", "a"));
    }
}
