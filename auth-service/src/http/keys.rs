//! Signing-key administration (CONTRACT §3.5): `GET /admin/keys` lists every key (never the
//! private half), `POST /admin/keys/rotate` makes a new signing key and plans the old ones'
//! retirement after an overlap.

use super::session::internal;
use super::{State, Who, audit, json, optional_body, require, run};
use auth_token::{Permission, Principal};
use rpc_service::RpcError;
use serde::Deserialize;
use serde_json::json as j;
use std::time::Duration;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

/// Default overlap: the longest lifetime of an expiring token (agent tokens, 24 h), so a
/// routine rotation ends no session early.
pub const DEFAULT_OVERLAP: Duration = Duration::from_secs(24 * 3600);
/// Overlaps longer than this are refused: a key meant to be retired should be.
pub const MAX_OVERLAP: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Rotate {
    overlap_seconds: Option<u64>,
    keep_for_applications: Option<bool>,
}

pub(super) fn routes(
    state: State,
    who: Who,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let s = state.clone();
    let list = warp::path!("admin" / "keys")
        .and(warp::get())
        .and(who.clone())
        .and_then(move |p| run(list(s.clone(), p)));
    let rotate = warp::path!("admin" / "keys" / "rotate")
        .and(warp::post())
        .and(who)
        .and(optional_body::<Rotate>())
        .and_then(move |p, req| run(rotate(state.clone(), p, req)));
    list.or(rotate).unify()
}

async fn list(state: State, p: Principal) -> Result<Response, RpcError> {
    require(&p, Permission::Keys)?;
    let keys = state.0.store.list_keys().await.map_err(internal)?;
    let signing = state.keys().signing_kid();
    Ok(json(
        StatusCode::OK,
        &j!({"signing": signing, "keys": keys}),
    ))
}

async fn rotate(state: State, p: Principal, req: Rotate) -> Result<Response, RpcError> {
    require(&p, Permission::Keys)?;
    let keep = req.keep_for_applications.unwrap_or(true);
    // Not keeping applications' keys means a leak: the old keys go now unless told otherwise.
    let default = if keep {
        DEFAULT_OVERLAP
    } else {
        Duration::ZERO
    };
    let overlap = req.overlap_seconds.map_or(default, Duration::from_secs);
    if overlap > MAX_OVERLAP {
        return Err(RpcError::invalid_params(vec![format!(
            "/overlap_seconds: must be at most {}",
            MAX_OVERLAP.as_secs()
        )]));
    }
    let record = audit(
        &p,
        "key.rotate",
        String::new(),
        j!({"overlap_seconds": overlap.as_secs(), "keep_for_applications": keep}),
    );
    let rotation = state
        .keys()
        .rotate(overlap, keep, record)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "key rotation failed");
            RpcError::internal()
        })?;
    Ok(json(StatusCode::CREATED, &rotation))
}
