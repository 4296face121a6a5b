//! The credential contract shared by auth-service (which signs), the gateway (which verifies)
//! and the upstream services (which trust only what the gateway asserts).
//!
//! - [`roles`]: the roles and permissions of CONTRACT §4, as data.
//! - [`claims`]: what a credential JWT carries, whatever its kind.
//! - [`keys`]: Ed25519 signing keys, their JWKS form, and a verifier built from a JWKS.
//! - [`assertion`]: the short-lived, HMAC-signed identity assertion the gateway puts on every
//!   request it forwards; upstreams refuse requests without a valid one.
//! - [`session`]: browser sessions: the `sessid` id, its hash, the cookie and header names.
//! - [`usage`]: the usage records a gateway replica sends auth-service.
//!
//! Nothing here does I/O; fetching a JWKS or storing keys is the caller's business.

pub mod assertion;
pub mod claims;
pub mod keys;
pub mod roles;
pub mod session;
pub mod usage;

pub use assertion::{
    ASSERTION_HEADER, Assertion, AssertionError, AssertionKey, Principal, Replays, Request,
    body_digest,
};
pub use claims::{Claims, CredentialKind};
pub use keys::{KeySet, SigningKey, VerifyError};
pub use roles::{Permission, Role};
