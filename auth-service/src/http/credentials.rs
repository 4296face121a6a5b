//! API credentials (CONTRACT §3.2): `POST`, `GET` and `DELETE /{v}/auth/credentials`, and
//! the reference's token flow `POST /{v}/auth/access_token`. The token-pair flows built on the
//! same credentials are in `tokens.rs`.
//!
//! A credential is an access key (a UUIDv4, its public id) and a secret key shown once; only
//! the secret's argon2 hash is kept. Operator admins manage their own operator's credentials,
//! registry admins any operator's.
//!
//! These three routes follow the reference's guards (CONTRACT §4's exception): an operator
//! role must name its own operator as `operator_id` (missing, not an integer, or another
//! operator's: 403, before anything else is read); a registry admin must name an integer
//! (400) of an operator that exists (404), except when listing, where no `operator_id` lists
//! every operator's.

use super::session::{internal, publish};
use super::{
    State, Who, audit, body, client_ip, json, no_content, optional_body, require, run, throttled,
};
use crate::passwords;
use crate::refresh::REFERENCE_ACCESS_TTL_SECS;
use crate::store::{BlacklistRow, Credential, CredentialSecret, Minted, StoreError};
use auth_token::usage::Subject;
use auth_token::{Claims, CredentialKind, Permission, Principal, Role};
use blacklist::{Change, Entry, Kind};
use chrono::{DateTime, Utc};
use rpc_service::RpcError;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json as j};
use std::net::IpAddr;
use uuid::Uuid;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

/// Random bytes in a secret key.
const SECRET_BYTES: usize = 32;

/// The answer of the reference flow to bad credentials (its published `data`).
const INVALID_KEYS: &str = "Invalid access key or secret key";

/// `operator_id` is read as any JSON value: which answer a mistyped one gets depends on the
/// caller's role ([`scope`]), so it cannot be a parser's refusal.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NewCredential {
    #[serde(default)]
    operator_id: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    operator_id: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeQuery {
    operator_id: Option<Value>,
    token_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyPair {
    access_key: String,
    secret_key: String,
}

pub(super) fn routes(
    state: State,
    who: Who,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let (s1, s2, s3) = (state.clone(), state.clone(), state.clone());
    let create = warp::path!(String / "auth" / "credentials")
        .and(warp::post())
        .and(who.clone())
        .and(optional_body::<NewCredential>())
        .and_then(move |_v: String, p, req| run(create(s1.clone(), p, req)));
    let list = warp::path!(String / "auth" / "credentials")
        .and(warp::get())
        .and(who.clone())
        .and(rpc_service::body::query::<ListQuery>())
        .and_then(move |_v: String, p, q| run(list(s2.clone(), p, q)));
    let revoke = warp::path!(String / "auth" / "credentials")
        .and(warp::delete())
        .and(who.clone())
        .and(rpc_service::body::query::<RevokeQuery>())
        .and_then(move |_v: String, p, q| run(revoke(s3.clone(), p, q)));
    let access_token = warp::path!(String / "auth" / "access_token")
        .and(warp::post())
        .and(who)
        .and(client_ip())
        .and(body::<KeyPair>())
        .and_then(move |_v: String, _anyone: Principal, ip, req| {
            run(access_token(state.clone(), ip, req))
        });
    create
        .or(list)
        .unify()
        .or(revoke)
        .unify()
        .or(access_token)
        .unify()
}

/// Which operators a credentials request acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Operator(i64),
    /// Every operator (a registry admin's unfiltered list).
    All,
}

/// The `operator_id` a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    Absent,
    Id(i64),
    /// Present but not an integer.
    NotAnInteger,
}

impl Asked {
    fn of(value: Option<&Value>) -> Self {
        match value {
            None | Some(Value::Null) => Asked::Absent,
            Some(v) => v.as_i64().map_or(Asked::NotAnInteger, Asked::Id),
        }
    }
}

/// Why a request has no scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoScope {
    /// An operator role that does not name its own operator: 403 (the reference's guard).
    NotYours,
    /// A registry admin must name the operator: 400.
    Missing,
    /// A registry admin named something else than an integer: 400.
    NotAnInteger,
}

/// The operator a caller of `role` (of operator `own`) acts on when asking for `asked`.
/// Operator roles act on their own operator only, and must say so; registry roles on the one
/// they name, or on all when `all_allowed` (listing).
fn scope(role: Role, own: Option<i64>, asked: Asked, all_allowed: bool) -> Result<Scope, NoScope> {
    if role.is_operator() {
        return match (own, asked) {
            (Some(own), Asked::Id(asked)) if own == asked => Ok(Scope::Operator(own)),
            _ => Err(NoScope::NotYours),
        };
    }
    match asked {
        Asked::Id(id) => Ok(Scope::Operator(id)),
        Asked::Absent if all_allowed => Ok(Scope::All),
        Asked::Absent => Err(NoScope::Missing),
        Asked::NotAnInteger => Err(NoScope::NotAnInteger),
    }
}

/// [`scope`] for `p`, checked against the store: a named operator must exist.
async fn scope_of(
    state: &State,
    p: &Principal,
    asked: Option<&Value>,
    all_allowed: bool,
) -> Result<Scope, RpcError> {
    let role = p
        .role
        .ok_or_else(|| RpcError::forbidden("insufficient_permissions"))?;
    match scope(role, p.operator_id, Asked::of(asked), all_allowed) {
        Ok(Scope::Operator(id)) => {
            let exists = state.0.store.operator_exists(id).await.map_err(internal)?;
            if exists {
                Ok(Scope::Operator(id))
            } else {
                Err(RpcError::not_found())
            }
        }
        Ok(Scope::All) => Ok(Scope::All),
        Err(NoScope::NotYours) => Err(RpcError::forbidden("operator_id_not_yours")),
        Err(NoScope::Missing) => Err(RpcError::invalid_params(vec![
            ": must have required property 'operator_id'".to_string(),
        ])),
        Err(NoScope::NotAnInteger) => Err(RpcError::invalid_params(vec![
            "/operator_id: must be integer".to_string(),
        ])),
    }
}

async fn operator_scope(
    state: &State,
    p: &Principal,
    asked: Option<&Value>,
) -> Result<i64, RpcError> {
    match scope_of(state, p, asked, false).await? {
        Scope::Operator(id) => Ok(id),
        Scope::All => Err(RpcError::not_found()),
    }
}

async fn create(state: State, p: Principal, req: NewCredential) -> Result<Response, RpcError> {
    require(&p, Permission::Credentials)?;
    let operator_id = operator_scope(&state, &p, req.operator_id.as_ref()).await?;
    let secret_key = passwords::random_token(SECRET_BYTES);
    let secret_hash = passwords::hash(secret_key.clone()).await.map_err(|e| {
        tracing::error!(error = %e, "secret hashing failed");
        RpcError::internal()
    })?;
    let credential = Credential {
        access_key: Uuid::new_v4(),
        operator_id,
        role: Role::OperatorApplication.as_str().into(),
        created_at: Utc::now(),
    };
    let record = audit(
        &p,
        "credential.create",
        format!("credential:{}", credential.access_key),
        j!({"operator_id": operator_id}),
    );
    state
        .0
        .store
        .create_credential(&credential, &secret_hash, &p.id, record)
        .await
        .map_err(internal)?;
    let access_key = credential.access_key.to_string();
    let api_key = format!("{access_key}.{secret_key}");
    Ok(json(
        StatusCode::CREATED,
        &j!({"access_key": access_key, "secret_key": secret_key, "api_key": api_key}),
    ))
}

async fn list(state: State, p: Principal, q: ListQuery) -> Result<Response, RpcError> {
    require(&p, Permission::Credentials)?;
    let filter = match scope_of(&state, &p, q.operator_id.as_ref(), true).await? {
        Scope::Operator(id) => Some(id),
        Scope::All => None,
    };
    let store = &state.0.store;
    let credentials = store.list_credentials(filter).await.map_err(internal)?;
    let mut last = store
        .last_used(Subject::ApiCredential, filter)
        .await
        .map_err(internal)?;
    let listed: Vec<_> = credentials
        .into_iter()
        .map(|credential| {
            let last_used = last.remove(&credential.access_key.to_string());
            Listed {
                credential,
                last_used,
            }
        })
        .collect();
    Ok(json(StatusCode::OK, &listed))
}

/// A credential as listed: with the last use of its tokens (`null` until used, or when older
/// than the usage records' retention).
#[derive(Serialize)]
struct Listed {
    #[serde(flatten)]
    credential: Credential,
    last_used: Option<crate::store::LastUsed>,
}

/// Revokes the credential: recorded and blacklisted in one transaction, then published, so
/// every gateway refuses the access tokens minted from it; its refresh tokens die with it.
async fn revoke(state: State, p: Principal, q: RevokeQuery) -> Result<Response, RpcError> {
    require(&p, Permission::Credentials)?;
    let operator_id = operator_scope(&state, &p, q.operator_id.as_ref()).await?;
    let Some(token_id) = q.token_id else {
        return Err(RpcError::invalid_params(vec![
            ": must have required property 'token_id'".to_string(),
        ]));
    };
    let access_key = Uuid::parse_str(&token_id).map_err(|_| RpcError::not_found())?;
    let row = BlacklistRow {
        id: Uuid::new_v4(),
        kind: "credential".into(),
        value: access_key.to_string(),
        target_kind: "credential".into(),
        target_value: access_key.to_string(),
        reason: "revoked by its operator".into(),
        created_by: p.id.clone(),
        created_at: Utc::now(),
        expires_at: None,
    };
    let record = audit(
        &p,
        "credential.revoke",
        format!("credential:{access_key}"),
        j!({"operator_id": operator_id}),
    );
    let revoked = state
        .0
        .store
        .revoke_credential(access_key, operator_id, &row, record)
        .await
        .map_err(internal)?;
    if !revoked {
        return Err(RpcError::not_found());
    }
    publish(
        &state,
        Change::Add(Entry::new(Kind::Credential, access_key.to_string())),
    )
    .await?;
    Ok(no_content())
}

/// The reference flow: a key pair for a five-minute access token, no refresh token.
async fn access_token(
    state: State,
    ip: Option<IpAddr>,
    req: KeyPair,
) -> Result<Response, RpcError> {
    let now = Utc::now();
    let attempt = async {
        let found = authenticate(&state, &req.access_key, req.secret_key, now).await;
        found.map_err(RpcError::from)
    };
    let credential = throttled(&state, &key_login(&req.access_key), ip, attempt)
        .await?
        .ok_or_else(|| RpcError::unauthorized(INVALID_KEYS))?;
    let (token, _) = mint_access(
        &state,
        credential.access_key,
        credential.operator_id,
        &credential.role,
        now,
        REFERENCE_ACCESS_TTL_SECS,
    )
    .await?;
    Ok(json(StatusCode::CREATED, &j!({"access_token": token})))
}

/// The throttle's login for an access key: every spelling of one uuid is one login.
pub(super) fn key_login(access_key: &str) -> String {
    Uuid::parse_str(access_key).map_or_else(|_| access_key.to_owned(), |u| u.to_string())
}

/// Why a key pair could not be checked.
#[derive(Debug, thiserror::Error)]
pub(super) enum AuthError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Busy(#[from] passwords::Busy),
}

impl From<AuthError> for RpcError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Store(e) => internal(e),
            AuthError::Busy(b) => super::session::busy(b),
        }
    }
}

/// The live, unblacklisted credential of `access_key` if `secret` is its secret. An unknown
/// or malformed key is verified against a dummy hash: same work, same answer.
pub(super) async fn authenticate(
    state: &State,
    access_key: &str,
    secret: String,
    now: DateTime<Utc>,
) -> Result<Option<CredentialSecret>, AuthError> {
    let credential = match Uuid::parse_str(access_key) {
        Ok(key) => state.0.store.live_credential(key).await?,
        Err(_) => None,
    };
    let phc = credential
        .as_ref()
        .map_or_else(|| state.0.dummy_hash.clone(), |c| c.secret_hash.clone());
    let secret_ok = passwords::verify(secret, phc).await?;
    let Some(credential) = credential else {
        return Ok(None);
    };
    let blacklisted = secret_ok
        && state
            .0
            .store
            .credential_blacklisted(credential.access_key, credential.operator_id, now)
            .await?;
    if !secret_ok || blacklisted {
        // The gateway saw an anonymous request: only here is the credential known, so the
        // usage records (and the guessing and revoked rules) hear of it from here; written
        // beside the answer, not before it, so a known key takes as long as an unknown one.
        let outcome = if blacklisted {
            "revoked_token"
        } else {
            "bad_secret"
        };
        let store = state.0.store.clone();
        tokio::spawn(async move {
            let recorded = store
                .record_refusal(
                    Subject::ApiCredential,
                    &credential.access_key.to_string(),
                    Some(credential.operator_id),
                    "access_token",
                    outcome,
                    now.timestamp(),
                )
                .await;
            if let Err(e) = recorded {
                tracing::warn!(error = %e, "a refused API key exchange not recorded");
            }
        });
        return Ok(None);
    }
    Ok(Some(credential))
}

/// Signs an access token of the credential `access_key` (of `operator_id`, holding `role`)
/// living `ttl_secs` from `now`; returns it with the record of its `jti` and expiry.
pub(super) async fn mint_access(
    state: &State,
    access_key: Uuid,
    operator_id: i64,
    role: &str,
    now: DateTime<Utc>,
    ttl_secs: i64,
) -> Result<(String, Minted), RpcError> {
    let role = role.parse().map_err(|_| {
        tracing::error!("a stored credential has an unknown role");
        RpcError::internal()
    })?;
    let expires_at = now + chrono::Duration::seconds(ttl_secs);
    let siret = super::operator_siret(state, Some(operator_id)).await?;
    let claims = Claims {
        jti: Uuid::new_v4().to_string(),
        kind: CredentialKind::Access,
        sub: access_key.to_string(),
        op: Some(operator_id),
        role,
        iat: now.timestamp(),
        exp: Some(expires_at.timestamp()),
        client: None,
        uid: None,
        sid: None,
        csrf: None,
        siret,
    };
    let token = state.0.keys.sign(&claims).map_err(|e| {
        tracing::error!(error = %e, "cannot sign an access token");
        RpcError::internal()
    })?;
    Ok((
        token,
        Minted {
            jti: claims.jti,
            expires_at,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_follows_the_references_guards() {
        use Asked::{Absent, Id};
        use NoScope::*;
        use Role::*;
        use Scope::*;
        type Case = (Role, Option<i64>, Asked, bool, Result<Scope, NoScope>);
        let cases: &[Case] = &[
            // Operator roles name their own operator, whatever the route.
            (OperatorAdmin, Some(7), Id(7), false, Ok(Operator(7))),
            (OperatorAdmin, Some(7), Id(7), true, Ok(Operator(7))),
            (OperatorAdmin, Some(7), Absent, false, Err(NotYours)),
            (OperatorAdmin, Some(7), Absent, true, Err(NotYours)),
            (
                OperatorAdmin,
                Some(7),
                Asked::NotAnInteger,
                false,
                Err(NotYours),
            ),
            (OperatorAdmin, Some(7), Id(8), false, Err(NotYours)),
            (OperatorAdmin, Some(7), Id(8), true, Err(NotYours)),
            (OperatorAdmin, None, Id(7), true, Err(NotYours)),
            // Registry admins name one, or list all.
            (RegistryAdmin, None, Id(8), false, Ok(Operator(8))),
            (RegistryAdmin, None, Absent, false, Err(Missing)),
            (
                RegistryAdmin,
                None,
                Asked::NotAnInteger,
                false,
                Err(NotAnInteger),
            ),
            (
                RegistryAdmin,
                None,
                Asked::NotAnInteger,
                true,
                Err(NotAnInteger),
            ),
            (RegistryAdmin, None, Absent, true, Ok(All)),
            (RegistryAdmin, None, Id(8), true, Ok(Operator(8))),
        ];
        for (role, own, asked, all_allowed, expected) in cases {
            assert_eq!(
                scope(*role, *own, *asked, *all_allowed),
                *expected,
                "{role} of {own:?} asking {asked:?} (all allowed: {all_allowed})"
            );
        }
    }

    #[test]
    fn operator_id_is_read_from_any_json_value() {
        use serde_json::json;
        assert_eq!(Asked::of(None), Asked::Absent);
        assert_eq!(Asked::of(Some(&json!(null))), Asked::Absent);
        assert_eq!(Asked::of(Some(&json!(12))), Asked::Id(12));
        assert_eq!(Asked::of(Some(&json!("12"))), Asked::NotAnInteger);
        assert_eq!(Asked::of(Some(&json!("wrong"))), Asked::NotAnInteger);
        assert_eq!(Asked::of(Some(&json!(1.5))), Asked::NotAnInteger);
    }
}
