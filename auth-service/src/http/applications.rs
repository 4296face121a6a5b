//! Application tokens (CONTRACT §3.1): `POST /applications`, `GET /applications`,
//! `DELETE /applications/{uuid}`. The token is shown once; only the application id is stored.

use super::session::{internal, publish};
use super::{State, Who, audit, body, json, no_content, require, run};
use crate::store::Application;
use auth_token::usage::Subject;
use auth_token::{Claims, CredentialKind, Permission, Principal, Role};
use blacklist::{Change, Entry, Kind};
use rpc_service::RpcError;
use serde::{Deserialize, Serialize};
use serde_json::json as j;
use uuid::Uuid;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewApplication {
    name: String,
}

pub(super) fn routes(
    state: State,
    who: Who,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let (s1, s2) = (state.clone(), state.clone());
    let create = warp::path!("applications")
        .and(warp::post())
        .and(who.clone())
        .and(body::<NewApplication>())
        .and_then(move |p, req| run(create(s1.clone(), p, req)));
    let list = warp::path!("applications")
        .and(warp::get())
        .and(who.clone())
        .and_then(move |p| run(list(s2.clone(), p)));
    let revoke = warp::path!("applications" / Uuid)
        .and(warp::delete())
        .and(who)
        .and_then(move |id, p| run(revoke(state.clone(), id, p)));
    create.or(list).unify().or(revoke).unify()
}

fn operator_of(p: &Principal) -> Result<i64, RpcError> {
    p.operator_id
        .ok_or_else(|| RpcError::forbidden("insufficient_permissions"))
}

async fn create(state: State, p: Principal, req: NewApplication) -> Result<Response, RpcError> {
    require(&p, Permission::ApplicationsManage)?;
    let operator_id = operator_of(&p)?;
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 128 {
        return Err(RpcError::invalid_params(vec![
            "/name: must be 1 to 128 characters".to_string(),
        ]));
    }
    let creator = uuid::Uuid::parse_str(&p.id)
        .map_err(|_| RpcError::forbidden("insufficient_permissions"))?;
    let app = Application {
        uuid: uuid::Uuid::new_v4(),
        name: name.to_owned(),
        operator_id,
        created_at: chrono::Utc::now(),
    };
    let siret = super::operator_siret(&state, Some(operator_id)).await?;
    let claims = Claims {
        jti: app.uuid.to_string(),
        kind: CredentialKind::Application,
        sub: app.uuid.to_string(),
        op: Some(operator_id),
        role: Role::OperatorApplication,
        iat: app.created_at.timestamp(),
        exp: None,
        client: None,
        uid: None,
        sid: None,
        csrf: None,
        siret,
    };
    let (token, kid) = state.0.keys.sign_with_kid(&claims).map_err(|e| {
        tracing::error!(error = %e, "cannot sign an application token");
        RpcError::internal()
    })?;
    let record = audit(
        &p,
        "application.create",
        format!("application:{}", app.uuid),
        j!({"name": name}),
    );
    state
        .0
        .store
        .create_application(&app, creator, &kid, record)
        .await
        .map_err(internal)?;
    Ok(json(
        StatusCode::CREATED,
        &j!({"application": app, "token": token}),
    ))
}

async fn list(state: State, p: Principal) -> Result<Response, RpcError> {
    require(&p, Permission::ApplicationsList)?;
    let operator = operator_of(&p)?;
    let store = &state.0.store;
    let apps = store.list_applications(operator).await.map_err(internal)?;
    let mut last = store
        .last_used(Subject::Application, Some(operator))
        .await
        .map_err(internal)?;
    let listed: Vec<_> = apps
        .into_iter()
        .map(|app| {
            let last_used = last.remove(&app.uuid.to_string());
            Listed { app, last_used }
        })
        .collect();
    Ok(json(StatusCode::OK, &listed))
}

/// An application as listed: with its token's last use (`null` until it is used, or when
/// older than the usage records' retention).
#[derive(Serialize)]
struct Listed {
    #[serde(flatten)]
    app: Application,
    last_used: Option<crate::store::LastUsed>,
}

/// Revokes the application: recorded, then blacklisted so every gateway refuses its token.
async fn revoke(state: State, id: uuid::Uuid, p: Principal) -> Result<Response, RpcError> {
    require(&p, Permission::ApplicationsManage)?;
    let operator_id = operator_of(&p)?;
    let row = crate::store::BlacklistRow {
        id: uuid::Uuid::new_v4(),
        kind: "application".into(),
        value: id.to_string(),
        target_kind: "application".into(),
        target_value: id.to_string(),
        reason: "revoked by its operator".into(),
        created_by: p.id.clone(),
        created_at: chrono::Utc::now(),
        expires_at: None,
    };
    let record = audit(
        &p,
        "application.revoke",
        format!("application:{id}"),
        j!({}),
    );
    let revoked = state
        .0
        .store
        .revoke_application(id, operator_id, &row, record)
        .await
        .map_err(internal)?;
    if !revoked {
        return Err(RpcError::not_found());
    }
    publish(
        &state,
        Change::Add(Entry::new(Kind::Application, id.to_string())),
    )
    .await?;
    Ok(no_content())
}
