//! The claims of every credential JWT auth-service signs.

use crate::roles::Role;
use serde::{Deserialize, Serialize};

/// Which kind of credential a token is; the gateway accepts each kind on different routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// Long-lived operator application token (CONTRACT §3.1). `sub` = application uuid.
    Application,
    /// Access token minted from an API credential (§3.2). `sub` = access key.
    Access,
    /// Refresh token minted from an API credential (§3.2). Only auth-service accepts it.
    Refresh,
    /// Header-triple agent token (§3.4). `sub` = user id; `client` and `uid` must match headers.
    Agent,
    /// Browser session token (§3.3), sent as the `sessauth` cookie. `sub` = user id; `sid`
    /// must be the hash of the `sessid` cookie sent with it; `csrf` guards unsafe methods.
    Session,
}

/// The payload of a credential JWT.
impl CredentialKind {
    pub const ALL: [CredentialKind; 5] = [
        Self::Application,
        Self::Access,
        Self::Refresh,
        Self::Agent,
        Self::Session,
    ];

    /// The kind's name, as serde writes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Application => "application",
            Self::Access => "access",
            Self::Refresh => "refresh",
            Self::Agent => "agent",
            Self::Session => "session",
        }
    }

    /// The JWT `typ` of this kind's tokens (RFC 8725 §3.11: explicit typing), so that a token
    /// of one kind is never read as another's.
    pub fn typ(self) -> &'static str {
        match self {
            Self::Application => "application+jwt",
            Self::Access => "access+jwt",
            Self::Refresh => "refresh+jwt",
            Self::Agent => "agent+jwt",
            Self::Session => "session+jwt",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Unique id of this token (blacklist kind `jti`).
    pub jti: String,
    pub kind: CredentialKind,
    /// The principal: application uuid, credential access key or user id, per `kind`.
    pub sub: String,
    /// The operator the principal belongs to; none for registry staff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<i64>,
    pub role: Role,
    pub iat: i64,
    /// Expiry (unix seconds). Application tokens have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Agent tokens: the device the token was issued to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// Agent tokens: the login the token was issued to (the `uid` header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Session tokens: [`crate::session::sid_of`] the `sessid` cookie the token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Session tokens: the value the `x-csrf-token` header must carry on unsafe methods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csrf: Option<String>,
    /// The SIRET of the operator in `op`, for the registry's CEE tokens. Absent from tokens
    /// minted before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub siret: Option<String>,
}
