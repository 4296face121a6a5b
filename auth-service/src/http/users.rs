//! Registry staff accounts and user deactivation (CONTRACT §4, §5): `/admin/users` (registry
//! admins create and list staff: registry.user, registry.admin, registry.security),
//! `DELETE /admin/users/{uuid}` (registry admins, any user) and
//! `DELETE /admin/operators/{id}/users/{uuid}` (also operator admins, their own operator's).
//!
//! Deactivating a user ends its sign-ins and, through a blacklist entry of kind `user`, every
//! token it holds, on every gateway within a second.

use super::admin::{NewUser, check_operator, insert_user, user_json, validated_user};
use super::session::{internal, publish};
use super::{State, Who, audit, body, json, no_content, require, run};
use crate::store::BlacklistRow;
use auth_token::{Permission, Principal};
use blacklist::{Change, Entry, Kind};
use rpc_service::RpcError;
use serde_json::json as j;
use uuid::Uuid;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

pub(super) fn routes(
    state: State,
    who: Who,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let (s1, s2, s3) = (state.clone(), state.clone(), state.clone());
    let create = warp::path!("admin" / "users")
        .and(warp::post())
        .and(who.clone())
        .and(body::<NewUser>())
        .and_then(move |p, req| run(create_staff(s1.clone(), p, req)));
    let list = warp::path!("admin" / "users")
        .and(warp::get())
        .and(who.clone())
        .and_then(move |p| run(list_staff(s2.clone(), p)));
    let deactivate_any = warp::path!("admin" / "users" / Uuid)
        .and(warp::delete())
        .and(who.clone())
        .and_then(move |id, p| run(deactivate_any(s3.clone(), id, p)));
    let deactivate_own = warp::path!("admin" / "operators" / i64 / "users" / Uuid)
        .and(warp::delete())
        .and(who)
        .and_then(move |op, id, p| run(deactivate_of_operator(state.clone(), op, id, p)));
    create
        .or(list)
        .unify()
        .or(deactivate_any)
        .unify()
        .or(deactivate_own)
        .unify()
}

async fn create_staff(state: State, p: Principal, req: NewUser) -> Result<Response, RpcError> {
    require(&p, Permission::OperatorsAdmin)?;
    let user = validated_user(req, None).await?;
    insert_user(&state, &p, user).await
}

async fn list_staff(state: State, p: Principal) -> Result<Response, RpcError> {
    require(&p, Permission::OperatorsAdmin)?;
    let users = state.0.store.list_staff().await.map_err(internal)?;
    let body: Vec<_> = users.iter().map(user_json).collect();
    Ok(json(StatusCode::OK, &body))
}

async fn deactivate_any(state: State, id: Uuid, p: Principal) -> Result<Response, RpcError> {
    require(&p, Permission::OperatorsAdmin)?;
    deactivate(&state, &p, id, None).await
}

async fn deactivate_of_operator(
    state: State,
    operator_id: i64,
    id: Uuid,
    p: Principal,
) -> Result<Response, RpcError> {
    check_operator(&state, &p, operator_id).await?;
    deactivate(&state, &p, id, Some(operator_id)).await
}

async fn deactivate(
    state: &State,
    p: &Principal,
    id: Uuid,
    operator_id: Option<i64>,
) -> Result<Response, RpcError> {
    if p.id == id.to_string() {
        return Err(RpcError::conflict("cannot deactivate yourself"));
    }
    let row = BlacklistRow {
        id: Uuid::new_v4(),
        kind: "user".into(),
        value: id.to_string(),
        target_kind: "user".into(),
        target_value: id.to_string(),
        reason: "user deactivated".into(),
        created_by: p.id.clone(),
        created_at: chrono::Utc::now(),
        expires_at: None,
    };
    let record = audit(p, "user.deactivate", format!("user:{id}"), j!({}));
    let done = state
        .0
        .store
        .deactivate_user(id, operator_id, &row, record)
        .await
        .map_err(internal)?;
    if !done {
        return Err(RpcError::not_found());
    }
    publish(state, Change::Add(Entry::new(Kind::User, id.to_string()))).await?;
    Ok(no_content())
}
