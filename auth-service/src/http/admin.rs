//! Operators and their users (CONTRACT §4): `/admin/operators`, `/admin/operators/{id}` (its
//! options), `/admin/operators/{id}/users`.

use super::session::internal;
use super::{State, Who, audit, body, json, require, run};
use crate::passwords;
use crate::store::{StoreError, User};
use auth_token::{Permission, Principal, Role};
use rpc_service::RpcError;
use serde::Deserialize;
use serde_json::json as j;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOperator {
    name: String,
    siret: String,
}

/// The operator options a registry admin may change.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatorChange {
    refresh_rotation: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewUser {
    email: String,
    password: String,
    role: String,
    first_name: String,
    last_name: String,
}

pub(super) fn routes(
    state: State,
    who: Who,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let (s1, s2, s3, s4) = (state.clone(), state.clone(), state.clone(), state.clone());
    let create_operator = warp::path!("admin" / "operators")
        .and(warp::post())
        .and(who.clone())
        .and(body::<NewOperator>())
        .and_then(move |p, req| run(create_operator(s1.clone(), p, req)));
    let list_operators = warp::path!("admin" / "operators")
        .and(warp::get())
        .and(who.clone())
        .and_then(move |p| run(list_operators(s2.clone(), p)));
    let update_operator = warp::path!("admin" / "operators" / i64)
        .and(warp::patch())
        .and(who.clone())
        .and(body::<OperatorChange>())
        .and_then(move |id, p, req| run(update_operator(s4.clone(), id, p, req)));
    let create_user = warp::path!("admin" / "operators" / i64 / "users")
        .and(warp::post())
        .and(who.clone())
        .and(body::<NewUser>())
        .and_then(move |id, p, req| run(create_user(s3.clone(), id, p, req)));
    let list_users = warp::path!("admin" / "operators" / i64 / "users")
        .and(warp::get())
        .and(who)
        .and_then(move |id, p| run(list_users(state.clone(), id, p)));
    create_operator
        .or(list_operators)
        .unify()
        .or(update_operator)
        .unify()
        .or(create_user)
        .unify()
        .or(list_users)
        .unify()
}

async fn create_operator(
    state: State,
    p: Principal,
    req: NewOperator,
) -> Result<Response, RpcError> {
    require(&p, Permission::OperatorsAdmin)?;
    let name = req.name.trim();
    let mut errors = Vec::new();
    if name.is_empty() || name.chars().count() > 256 {
        errors.push("/name: must be 1 to 256 characters".to_string());
    }
    if req.siret.len() != 14 || !req.siret.bytes().all(|b| b.is_ascii_digit()) {
        errors.push("/siret: must be 14 digits".to_string());
    }
    if !errors.is_empty() {
        return Err(RpcError::invalid_params(errors));
    }
    let record = audit(
        &p,
        "operator.create",
        String::new(),
        j!({"name": name, "siret": req.siret}),
    );
    match state
        .0
        .store
        .create_operator(name, &req.siret, record)
        .await
    {
        Ok(op) => Ok(json(StatusCode::CREATED, &op)),
        Err(StoreError::Conflict) => Err(RpcError::conflict("siret already registered")),
        Err(e) => Err(internal(e)),
    }
}

async fn list_operators(state: State, p: Principal) -> Result<Response, RpcError> {
    require(&p, Permission::OperatorsAdmin)?;
    let ops = state.0.store.list_operators().await.map_err(internal)?;
    Ok(json(StatusCode::OK, &ops))
}

async fn update_operator(
    state: State,
    id: i64,
    p: Principal,
    req: OperatorChange,
) -> Result<Response, RpcError> {
    require(&p, Permission::OperatorsAdmin)?;
    let record = audit(
        &p,
        "operator.update",
        format!("operator:{id}"),
        j!({"refresh_rotation": req.refresh_rotation}),
    );
    let op = state
        .0
        .store
        .update_operator(id, req.refresh_rotation, record)
        .await
        .map_err(internal)?
        .ok_or_else(RpcError::not_found)?;
    Ok(json(StatusCode::OK, &op))
}

/// Registry admins act on any operator, operator admins on their own; another operator's
/// users are reported as not found (CONTRACT §4).
pub(super) async fn check_operator(
    state: &State,
    p: &Principal,
    operator_id: i64,
) -> Result<(), RpcError> {
    require(p, Permission::UsersManage)?;
    let own = p.role.is_some_and(Role::is_operator);
    if own && p.operator_id != Some(operator_id) {
        return Err(RpcError::not_found());
    }
    if !state
        .0
        .store
        .operator_exists(operator_id)
        .await
        .map_err(internal)?
    {
        return Err(RpcError::not_found());
    }
    Ok(())
}

async fn create_user(
    state: State,
    operator_id: i64,
    p: Principal,
    req: NewUser,
) -> Result<Response, RpcError> {
    check_operator(&state, &p, operator_id).await?;
    let user = validated_user(req, Some(operator_id)).await?;
    insert_user(&state, &p, user).await
}

/// A new user from `req`: an operator's (operator roles only) or, with no operator, registry
/// staff (registry roles only). 400 lists every violation.
pub(super) async fn validated_user(
    req: NewUser,
    operator_id: Option<i64>,
) -> Result<User, RpcError> {
    let email = req.email.trim().to_lowercase();
    let mut errors = Vec::new();
    if !plausible_email(&email) {
        errors.push("/email: must be an email address".to_string());
    }
    if !(12..=128).contains(&req.password.chars().count()) {
        errors.push("/password: must be 12 to 128 characters".to_string());
    }
    let staff = operator_id.is_none();
    let role = req
        .role
        .parse::<Role>()
        .ok()
        .filter(|r| r.is_operator() != staff);
    if role.is_none() {
        errors.push(if staff {
            "/role: must be registry.user, registry.admin or registry.security".into()
        } else {
            "/role: must be operator.user, operator.admin or operator.application".into()
        });
    }
    for (field, value) in [
        ("first_name", &req.first_name),
        ("last_name", &req.last_name),
    ] {
        if value.trim().is_empty() || value.chars().count() > 128 {
            errors.push(format!("/{field}: must be 1 to 128 characters"));
        }
    }
    let Some(role) = role.filter(|_| errors.is_empty()) else {
        return Err(RpcError::invalid_params(errors));
    };
    Ok(User {
        id: uuid::Uuid::new_v4(),
        email,
        password_hash: passwords::hash(req.password).await.map_err(|e| {
            tracing::error!(error = %e, "password hashing failed");
            RpcError::internal()
        })?,
        role: role.as_str().into(),
        operator_id,
        first_name: req.first_name.trim().into(),
        last_name: req.last_name.trim().into(),
        created_at: chrono::Utc::now(),
    })
}

/// Stores `user` with its audit record: 201, or 409 when the email is taken.
pub(super) async fn insert_user(
    state: &State,
    p: &Principal,
    user: User,
) -> Result<Response, RpcError> {
    let record = audit(
        p,
        "user.create",
        format!("user:{}", user.id),
        j!({"operator_id": user.operator_id, "role": user.role}),
    );
    match state.0.store.create_user(&user, record).await {
        Ok(()) => Ok(json(StatusCode::CREATED, &user_json(&user))),
        Err(StoreError::Conflict) => Err(RpcError::conflict("email already registered")),
        Err(e) => Err(internal(e)),
    }
}

async fn list_users(state: State, operator_id: i64, p: Principal) -> Result<Response, RpcError> {
    check_operator(&state, &p, operator_id).await?;
    let users = state
        .0
        .store
        .list_users(operator_id)
        .await
        .map_err(internal)?;
    let body: Vec<_> = users.iter().map(user_json).collect();
    Ok(json(StatusCode::OK, &body))
}

pub(super) fn user_json(user: &User) -> serde_json::Value {
    j!({
        "id": user.id,
        "email": user.email,
        "role": user.role,
        "operator_id": user.operator_id,
        "first_name": user.first_name,
        "last_name": user.last_name,
    })
}

/// A light check: one `@`, something before it, a dot after it, no spaces.
fn plausible_email(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.contains(char::is_whitespace)
                && !domain.contains('@')
                && email.len() <= 254
        }
        None => false,
    }
}
