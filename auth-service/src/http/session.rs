//! Header-triple agent sign-in (CONTRACT §3.4): `POST /api/v1/auth/sign_in` and
//! `DELETE /api/v1/auth/sign_out`.

use super::{State, Who, audit, body, client_ip, json, run, throttled};
use crate::passwords;
use crate::store::User;
use auth_token::{Claims, CredentialKind, Principal};
use blacklist::{Change, Entry, Kind};
use rpc_service::RpcError;
use serde::Deserialize;
use serde_json::json as j;
use std::net::IpAddr;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

/// Agent tokens live 24 hours.
const AGENT_TTL_SECS: i64 = 24 * 3600;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    email: String,
    password: String,
}

pub(super) fn routes(
    state: State,
    who: Who,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let s = state.clone();
    let sign_in = warp::path!("api" / "v1" / "auth" / "sign_in")
        .and(warp::post())
        .and(who.clone())
        .and(client_ip())
        .and(body::<SignIn>())
        .and_then(move |_anyone: Principal, ip, req: SignIn| run(sign_in(s.clone(), ip, req)));
    let sign_out = warp::path!("api" / "v1" / "auth" / "sign_out")
        .and(warp::delete())
        .and(who)
        .and_then(move |p: Principal| run(sign_out(state.clone(), p)));
    sign_in.or(sign_out).unify()
}

/// The user whose login (email) and password these are, or 401 `invalid_credentials`. Every
/// person's sign-in goes through here: unknown logins are verified against a dummy hash, so
/// they cost the same work and get the same answer as a wrong password; attempts are
/// throttled per (login, client address) whether or not the login exists.
pub(super) async fn authenticate(
    state: &State,
    login: &str,
    password: String,
    ip: Option<IpAddr>,
) -> Result<User, RpcError> {
    let email = login.trim().to_lowercase();
    let attempt = async {
        let user = state
            .0
            .store
            .find_user_by_email(&email)
            .await
            .map_err(internal)?;
        let phc = user
            .as_ref()
            .map_or_else(|| state.0.dummy_hash.clone(), |u| u.password_hash.clone());
        let password_ok = passwords::verify(password, phc).await.map_err(busy)?;
        Ok::<_, RpcError>(user.filter(|_| password_ok))
    };
    throttled(state, &email, ip, attempt)
        .await?
        .ok_or_else(|| RpcError::unauthorized("invalid_credentials"))
}

async fn sign_in(state: State, ip: Option<IpAddr>, req: SignIn) -> Result<Response, RpcError> {
    let user = authenticate(&state, &req.email, req.password, ip).await?;
    let role = user.role.parse().map_err(|_| RpcError::internal())?;
    let now = chrono::Utc::now().timestamp();
    let client = uuid::Uuid::new_v4().simple().to_string();
    let siret = super::operator_siret(&state, user.operator_id).await?;
    let claims = Claims {
        jti: uuid::Uuid::new_v4().to_string(),
        kind: CredentialKind::Agent,
        sub: user.id.to_string(),
        op: user.operator_id,
        role,
        iat: now,
        exp: Some(now + AGENT_TTL_SECS),
        client: Some(client.clone()),
        uid: Some(user.email.clone()),
        sid: None,
        csrf: None,
        siret,
    };
    let token = state.0.keys.sign(&claims).map_err(|e| {
        tracing::error!(error = %e, "cannot sign an agent token");
        RpcError::internal()
    })?;
    let body = j!({"data": {
        "id": user.id,
        "email": user.email,
        "uid": user.email,
        "role": user.role,
        "operator_id": user.operator_id,
        "first_name": user.first_name,
        "last_name": user.last_name,
    }});
    let mut response = json(StatusCode::OK, &body);
    let headers = response.headers_mut();
    let pairs = [
        ("access-token", token),
        ("token-type", "Bearer".to_owned()),
        ("client", client),
        ("expiry", (now + AGENT_TTL_SECS).to_string()),
        ("uid", user.email),
    ];
    for (name, value) in pairs {
        if let Ok(value) = warp::http::HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    Ok(response)
}

/// Ends this client's token.
async fn sign_out(state: State, principal: Principal) -> Result<Response, RpcError> {
    if principal.kind != Some(CredentialKind::Agent) {
        return Err(RpcError::unauthorized("token_not_accepted_here"));
    }
    revoke_presented(&state, &principal, "session.sign_out").await?;
    Ok(json(StatusCode::OK, &j!({"success": true})))
}

/// Blacklists the `jti` of the token the caller presented until it would have expired: the
/// record and its audit row (`action`) in one transaction, then published. Every sign-out.
pub(super) async fn revoke_presented(
    state: &State,
    principal: &Principal,
    action: &'static str,
) -> Result<(), RpcError> {
    let Some(jti) = principal.token_id.clone() else {
        return Err(RpcError::unauthorized("token_not_accepted_here"));
    };
    let expires_at = principal.token_exp;
    let entry = Entry {
        kind: Kind::Jti,
        value: jti.clone(),
        expires_at,
    };
    let row = crate::store::BlacklistRow {
        id: uuid::Uuid::new_v4(),
        kind: "jti".into(),
        value: jti.clone(),
        target_kind: "jti".into(),
        target_value: jti.clone(),
        reason: "sign_out".into(),
        created_by: principal.id.clone(),
        created_at: chrono::Utc::now(),
        expires_at: expires_at.and_then(|t| chrono::DateTime::from_timestamp(t, 0)),
    };
    let record = audit(principal, action, format!("jti:{jti}"), j!({}));
    state
        .0
        .store
        .add_blacklist(&row, record)
        .await
        .map_err(internal)?;
    publish(state, Change::Add(entry)).await
}

/// Announces a blacklist change. The record is already committed: if the feed is down the
/// change reaches gateways with the rewrite that follows once it answers
/// ([`crate::publisher`]), but until then gateways do not refuse it, so report it rather
/// than hide it.
pub(super) async fn publish(state: &State, change: Change) -> Result<(), RpcError> {
    state.0.publisher.publish(&change).await.map_err(|e| {
        tracing::error!(error = %e, "blacklist feed publish failed");
        RpcError::internal()
    })
}

/// Publishes what now holds for one target: the strongest of its active entries (several
/// may name it: a revocation and a staff entry, say), or its removal when none is left. A
/// lift or a shorter entry must never undo a stronger one.
pub(super) async fn publish_target(state: &State, kind: Kind, value: &str) -> Result<(), RpcError> {
    use crate::publisher::PublishError;
    match state.0.publisher.publish_target(kind, value).await {
        Ok(()) => Ok(()),
        Err(PublishError::Store(e)) => Err(internal(e)),
        Err(PublishError::Feed(e)) => {
            tracing::error!(error = %e, "blacklist feed publish failed");
            Err(RpcError::internal())
        }
    }
}

/// A failed store call: 503 `database_unavailable` when the database is out of reach, else
/// 500. Logs the cause once.
pub(super) fn internal(e: crate::store::StoreError) -> RpcError {
    if e.is_unavailable() {
        tracing::warn!(error = %e, "store: database unavailable");
        return RpcError::database_unavailable();
    }
    tracing::error!(error = %e, "store error");
    RpcError::internal()
}

/// 503 `hashing_busy` with `Retry-After`: too many secrets wait to be checked.
pub(super) fn busy(b: passwords::Busy) -> RpcError {
    RpcError::unavailable("hashing_busy", b.retry_after())
}
