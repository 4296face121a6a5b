//! The blacklist admin API and the audit log (CONTRACT §5): `/admin/blacklist`,
//! `/admin/blacklist/{id}`, `/admin/audit`. The database is the record; every change is then
//! published to the feed the gateways follow.

use super::session::{internal, publish_target};
use super::{State, Who, audit, body, json, no_content, require, run};
use crate::store::{BlacklistRow, Lift};
use auth_token::{KeySet, Permission, Principal};
use blacklist::Kind;
use chrono::{DateTime, Utc};
use rpc_service::RpcError;
use serde::Deserialize;
use serde_json::json as j;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEntry {
    kind: String,
    value: String,
    reason: String,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    limit: Option<i64>,
}

pub(super) fn routes(
    state: State,
    who: Who,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let (s1, s2, s3) = (state.clone(), state.clone(), state.clone());
    let add = warp::path!("admin" / "blacklist")
        .and(warp::post())
        .and(who.clone())
        .and(body::<NewEntry>())
        .and_then(move |p, req| run(add(s1.clone(), p, req)));
    let list = warp::path!("admin" / "blacklist")
        .and(warp::get())
        .and(who.clone())
        .and_then(move |p| run(list(s2.clone(), p)));
    let lift = warp::path!("admin" / "blacklist" / Uuid)
        .and(warp::delete())
        .and(who.clone())
        .and_then(move |id, p| run(lift(s3.clone(), id, p)));
    let audit_log = warp::path!("admin" / "audit")
        .and(warp::get())
        .and(who)
        .and(rpc_service::body::query::<AuditQuery>())
        .and_then(move |p, q| run(audit_log(state.clone(), p, q)));
    add.or(list).unify().or(lift).unify().or(audit_log).unify()
}

/// What gateways must check for an entry: a raw token becomes its `jti` and is kept only as
/// a hash; other kinds are checked as given, after a format check.
fn target(state: &State, kind: &str, value: &str) -> Result<(Kind, String, String), String> {
    let value = value.trim();
    if value.is_empty() || value.len() > 4096 {
        return Err("/value: must not be empty".into());
    }
    let uuid = |k: Kind| {
        uuid::Uuid::parse_str(value)
            .map(|u| (k, u.to_string(), u.to_string()))
            .map_err(|_| format!("/value: must be a {k} uuid"))
    };
    match kind {
        "token" => {
            let keys = KeySet::from_jwks(&state.0.keys.jwks());
            // Any signature this service made, expired or not, may be blacklisted.
            let claims = keys
                .verify(value, i64::MIN)
                .map_err(|_| "/value: not a token issued by this registry".to_string())?;
            let digest = Sha256::digest(value.as_bytes());
            let shown: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            Ok((Kind::Jti, claims.jti, format!("sha256:{shown}")))
        }
        "application" => uuid(Kind::Application),
        "user" => uuid(Kind::User),
        "operator" => value
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .map(|id| (Kind::Operator, id.to_string(), id.to_string()))
            .ok_or_else(|| "/value: must be an operator id".to_string()),
        // Access keys are uuids: any spelling of one names the same credential.
        "credential" => uuid(Kind::Credential),
        // Every jti this service issues is a uuid; normalise those, keep others as given.
        "jti" if uuid::Uuid::parse_str(value).is_ok() => uuid(Kind::Jti),
        "jti" if value.len() <= 256 => Ok((Kind::Jti, value.to_owned(), value.to_owned())),
        "jti" => Err("/value: at most 256 characters".into()),
        _ => {
            Err("/kind: must be one of token, jti, application, credential, user, operator".into())
        }
    }
}

async fn add(state: State, p: Principal, req: NewEntry) -> Result<Response, RpcError> {
    require(&p, Permission::Blacklist)?;
    let mut errors = Vec::new();
    let target = target(&state, &req.kind, &req.value)
        .map_err(|e| errors.push(e))
        .ok();
    let reason = req.reason.trim();
    if reason.is_empty() || reason.chars().count() > 1024 {
        errors.push("/reason: must be 1 to 1024 characters".into());
    }
    if req.expires_at.is_some_and(|t| t <= Utc::now()) {
        errors.push("/expires_at: must be in the future".into());
    }
    let Some((kind, checked, shown)) = target.filter(|_| errors.is_empty()) else {
        return Err(RpcError::invalid_params(errors));
    };
    let row = BlacklistRow {
        id: uuid::Uuid::new_v4(),
        kind: req.kind.clone(),
        value: shown,
        target_kind: kind.as_str().into(),
        target_value: checked.clone(),
        reason: reason.to_owned(),
        created_by: p.id.clone(),
        created_at: Utc::now(),
        expires_at: req.expires_at,
    };
    let record = audit(
        &p,
        "blacklist.add",
        format!("{}:{}", row.kind, row.value),
        j!({"id": row.id, "reason": row.reason}),
    );
    state
        .0
        .store
        .add_blacklist(&row, record)
        .await
        .map_err(internal)?;
    publish_target(&state, kind, &checked).await?;
    Ok(json(StatusCode::CREATED, &row))
}

async fn list(state: State, p: Principal) -> Result<Response, RpcError> {
    require(&p, Permission::Blacklist)?;
    let rows = state.0.store.active_blacklist().await.map_err(internal)?;
    Ok(json(StatusCode::OK, &rows))
}

async fn lift(state: State, id: uuid::Uuid, p: Principal) -> Result<Response, RpcError> {
    require(&p, Permission::Blacklist)?;
    let record = audit(&p, "blacklist.lift", format!("blacklist:{id}"), j!({}));
    let row = match state
        .0
        .store
        .lift_blacklist(id, &p.id, record)
        .await
        .map_err(internal)?
    {
        Lift::Lifted(row) => row,
        Lift::Absent => return Err(RpcError::not_found()),
        Lift::Revocation => return Err(RpcError::conflict("revocation_cannot_be_lifted")),
    };
    if let Ok(kind) = row.target_kind.parse::<Kind>() {
        publish_target(&state, kind, &row.target_value).await?;
    }
    Ok(no_content())
}

async fn audit_log(state: State, p: Principal, q: AuditQuery) -> Result<Response, RpcError> {
    require(&p, Permission::Blacklist)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows = state.0.store.audit_log(limit).await.map_err(internal)?;
    Ok(json(StatusCode::OK, &rows))
}
