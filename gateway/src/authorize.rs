//! The credential and permission steps of the pipeline (CONTRACT §2), as one plain function:
//! headers in, a [`Principal`] or a [`Reason`] out. No I/O: keys and blacklist are passed in.

use crate::reason::Reason;
use crate::routes::{Access, Route};
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
}

impl<'a> Presented<'a> {
    /// Reads the credential from header values (any may be absent).
    pub fn from_headers(
        authorization: Option<&'a str>,
        access_token: Option<&'a str>,
        client: Option<&'a str>,
        uid: Option<&'a str>,
    ) -> Self {
        if let Some(token) = authorization.and_then(|v| v.strip_prefix("Bearer ")) {
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

    fn token(self) -> Option<&'a str> {
        match self {
            Presented::None => None,
            Presented::Bearer(t) | Presented::Triple { token: t, .. } => Some(t),
        }
    }
}

/// Verifies `presented` for `route` at `now` (unix seconds). `Err(Some(kid))` is never
/// returned: an unknown key is reported as [`Outcome::UnknownKey`] so the caller can refresh
/// the JWKS once and call again.
pub fn authorize(
    route: &Route,
    presented: Presented<'_>,
    keys: &KeySet,
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
    if revoked(&claims, blacklist, now) {
        return Outcome::Denied(Reason::RevokedToken);
    }
    if !accepted(route.access, claims.kind) {
        return Outcome::Denied(Reason::TokenNotAcceptedHere);
    }
    if let Some(permission) = route.permission
        && !claims.role.grants(permission)
    {
        return Outcome::Denied(Reason::InsufficientPermissions);
    }
    Outcome::Allowed(Principal {
        kind: Some(claims.kind),
        id: claims.sub,
        operator_id: claims.op,
        role: Some(claims.role),
        token_id: Some(claims.jti),
        client: claims.client,
        token_exp: claims.exp,
    })
}

/// What [`authorize`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Allowed(Principal),
    Denied(Reason),
    /// Signed by a key the gateway does not know yet.
    UnknownKey,
}

/// Agent tokens travel only in the header triple, whose `client` and `uid` must be the
/// token's; the other kinds only as a bearer token.
fn check_form(claims: &Claims, presented: Presented<'_>) -> Result<(), Reason> {
    match (claims.kind, presented) {
        (CredentialKind::Agent, Presented::Triple { client, uid, .. }) => {
            let same =
                claims.client.as_deref() == Some(client) && claims.uid.as_deref() == Some(uid);
            if same {
                Ok(())
            } else {
                Err(Reason::InvalidToken)
            }
        }
        (CredentialKind::Agent, _) | (_, Presented::Triple { .. }) => Err(Reason::InvalidToken),
        _ => Ok(()),
    }
}

/// Every blacklist entry that can name this token: itself, what it was minted from, its
/// operator.
fn revoked(claims: &Claims, blacklist: &BlacklistSet, now: i64) -> bool {
    let by_origin = match claims.kind {
        CredentialKind::Application => Some(Kind::Application),
        CredentialKind::Access | CredentialKind::Refresh => Some(Kind::Credential),
        CredentialKind::Agent => Some(Kind::User),
    };
    blacklist.contains(Kind::Jti, &claims.jti, now)
        || by_origin.is_some_and(|kind| blacklist.contains(kind, &claims.sub, now))
        || claims
            .op
            .is_some_and(|op| blacklist.contains(Kind::Operator, &op.to_string(), now))
}

fn accepted(access: Access, kind: CredentialKind) -> bool {
    match access {
        Access::Public => true,
        Access::OperatorApi => matches!(
            kind,
            CredentialKind::Application | CredentialKind::Access | CredentialKind::Agent
        ),
        Access::User => kind == CredentialKind::Agent,
    }
}
