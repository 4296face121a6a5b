//! The only code that knows warp. Every route but the JWKS sits behind the gateway's
//! assertion; handlers return `Result<Response, RpcError>`.

mod admin;
mod applications;
mod blacklist;
mod console;
mod credentials;
mod keys;
mod profile;
mod session;
mod signals;
mod tokens;
mod usage;
mod users;

use crate::keyring::Keyring;
use crate::passwords;
use crate::store::{Audit, Store};
use crate::throttle::{Locked, Throttle};
use auth_token::{Permission, Principal};
use prometheus::Registry;
use rpc_service::RpcError;
use rpc_service::error::{recover, respond};
use rpc_service::http::{HttpMetrics, observed, operational};
use serde::Serialize;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

/// Request bodies above this are refused (413).
const BODY_LIMIT: u64 = 64 * 1024;

/// The audience the gateway's assertions name for this service.
pub const AUDIENCE: &str = "auth-service";

/// What handlers share.
#[derive(Clone)]
pub struct State(Arc<Inner>);

struct Inner {
    store: Store,
    keys: Keyring,
    publisher: Arc<crate::publisher::Publisher>,
    /// Verified against when the login is unknown, so both answers take as long.
    dummy_hash: String,
    throttle: Throttle,
    /// Whether the `sessauth` cookie is marked `Secure`.
    cookie_secure: bool,
}

impl State {
    pub fn keys(&self) -> &Keyring {
        &self.0.keys
    }

    pub fn store(&self) -> &Store {
        &self.0.store
    }

    pub async fn new(
        store: Store,
        keys: Keyring,
        publisher: Arc<crate::publisher::Publisher>,
        cookie_secure: bool,
    ) -> anyhow::Result<Self> {
        let dummy_hash = passwords::hash(passwords::random_secret(24)).await?;
        Ok(Self(Arc::new(Inner {
            store,
            keys,
            publisher,
            dummy_hash,
            throttle: Throttle::new(),
            cookie_secure,
        })))
    }
}

/// All routes, observed and recovered.
pub fn routes(
    state: State,
    registry: Registry,
    metrics: HttpMetrics,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone {
    let usage_metrics = usage::UsageMetrics::new(&registry);
    let ops = operational(state.0.store.database().clone(), registry);
    let jwks_state = state.clone();
    let jwks = warp::path!(".well-known" / "jwks.json")
        .and(warp::get())
        .then(move || {
            let jwks_state = jwks_state.clone();
            async move { jwks_state.0.keys.fresh_jwks().await }
        })
        .map(|keys: jsonwebtoken::jwk::JwkSet| {
            let jwks = warp::reply::json(&keys);
            // Gateways and third parties may cache it briefly; rotation keeps old keys
            // published for far longer than this.
            warp::reply::with_header(jwks, "cache-control", "public, max-age=60").into_response()
        });
    let who: Who = rpc_service::identity::principal().boxed();
    let api = session::routes(state.clone(), who.clone())
        .or(profile::routes(state.clone(), who.clone()))
        .unify()
        .or(admin::routes(state.clone(), who.clone()))
        .unify()
        .or(applications::routes(state.clone(), who.clone()))
        .unify()
        .or(blacklist::routes(state.clone(), who.clone()))
        .unify()
        .or(keys::routes(state.clone(), who.clone()))
        .unify()
        .or(users::routes(state.clone(), who.clone()))
        .unify()
        .or(credentials::routes(state.clone(), who.clone()))
        .unify()
        .or(tokens::routes(state.clone(), who.clone()))
        .unify()
        .or(signals::routes(state.clone(), who.clone()))
        .unify()
        .or(usage::routes(state, who.clone(), usage_metrics))
        .unify()
        .or(console::routes(who))
        .unify();
    let all = ops
        .or(jwks)
        .unify()
        .or(api)
        .unify()
        .recover(recover)
        .unify();
    observed(all, metrics, template)
}

/// The caller, as asserted by the gateway (401 without a valid assertion).
type Who = warp::filters::BoxedFilter<(Principal,)>;

/// A JSON body with a status.
fn json(status: StatusCode, body: &impl Serialize) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

/// 204 with no body.
fn no_content() -> Response {
    warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response()
}

/// The body filter every JSON route uses: an object, at most [`BODY_LIMIT`] bytes, refused
/// in the reference's words (`rpc_service::body`).
fn body<T: serde::de::DeserializeOwned + Send>()
-> impl Filter<Extract = (T,), Error = warp::Rejection> + Clone {
    rpc_service::body::object(BODY_LIMIT)
}

/// A JSON body that may be absent or empty (then `T::default()`), for routes whose
/// published form has no body but that take optional fields.
fn optional_body<T: serde::de::DeserializeOwned + Default + Send>()
-> impl Filter<Extract = (T,), Error = warp::Rejection> + Clone {
    rpc_service::body::optional_object(BODY_LIMIT)
}

/// 403 unless the caller's role grants `permission`. The gateway checked already; this is
/// the second lock on the same door.
fn require(principal: &Principal, permission: Permission) -> Result<(), RpcError> {
    match principal.role {
        Some(role) if role.grants(permission) => Ok(()),
        _ => Err(RpcError::forbidden("insufficient_permissions")),
    }
}

/// The SIRET of `operator_id`, for the `siret` claim of tokens bound to an operator (the
/// registry signs it into CEE tokens).
async fn operator_siret(
    state: &State,
    operator_id: Option<i64>,
) -> Result<Option<String>, RpcError> {
    let Some(id) = operator_id else {
        return Ok(None);
    };
    state
        .0
        .store
        .operator_siret(id)
        .await
        .map_err(session::internal)
}

/// The audit record of an action by `principal`.
fn audit(
    principal: &Principal,
    action: &'static str,
    target: String,
    detail: serde_json::Value,
) -> Audit {
    Audit {
        actor: if principal.id.is_empty() {
            "anonymous".into()
        } else {
            principal.id.clone()
        },
        role: principal.role.map(|r| r.as_str().to_owned()),
        action,
        target,
        detail,
    }
}

/// The client's address as the gateway saw it. The gateway replaces any client-sent
/// `x-forwarded-for`, and only the gateway's asserted requests reach the handlers.
fn client_ip() -> impl Filter<Extract = (Option<IpAddr>,), Error = std::convert::Infallible> + Clone
{
    warp::header::optional::<String>("x-forwarded-for")
        .or(warp::any().map(|| None))
        .unify()
        .map(|v: Option<String>| v.and_then(|v| v.split(',').next()?.trim().parse().ok()))
}

/// One sign-in attempt for `login` from `ip` (CONTRACT §3): refused with 429 while five
/// failures of the last minute stand, whether or not the login exists; `attempt` says
/// whether the credentials were right, and its outcome is counted.
async fn throttled<T, E: From<Locked>>(
    state: &State,
    login: &str,
    ip: Option<IpAddr>,
    attempt: impl std::future::Future<Output = Result<Option<T>, E>>,
) -> Result<Option<T>, E> {
    let attempt_slot = state.0.throttle.begin(login, ip, Instant::now())?;
    let outcome = attempt.await?;
    match outcome {
        Some(_) => attempt_slot.succeeded(),
        None => attempt_slot.failed(Instant::now()),
    }
    Ok(outcome)
}

impl From<Locked> for RpcError {
    fn from(locked: Locked) -> Self {
        RpcError::too_many_requests("too_many_failed_sign_ins").retry_after(locked.seconds())
    }
}

/// Route templates for metrics and logs.
fn template(path: &str) -> &'static str {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["health"] => "/health",
        ["health", "live"] => "/health/live",
        ["metrics"] => "/metrics",
        [".well-known", "jwks.json"] => "/.well-known/jwks.json",
        ["api", "v1", "auth", "sign_in"] => "/api/v1/auth/sign_in",
        ["api", "v1", "auth", "sign_out"] => "/api/v1/auth/sign_out",
        ["console"] => "/console/",
        ["console", ..] => "/console/{file}",
        ["profile"] => "/profile",
        ["profile", "signin"] => "/profile/signin",
        ["profile", "signout"] => "/profile/signout",
        ["admin", "operators"] => "/admin/operators",
        ["admin", "operators", _] => "/admin/operators/{id}",
        ["admin", "operators", _, "users"] => "/admin/operators/{id}/users",
        ["admin", "operators", _, "users", _] => "/admin/operators/{id}/users/{uuid}",
        ["admin", "users"] => "/admin/users",
        ["admin", "users", _] => "/admin/users/{uuid}",
        ["internal", "usage"] => "/internal/usage",
        ["applications"] => "/applications",
        ["applications", _] => "/applications/{uuid}",
        ["admin", "blacklist"] => "/admin/blacklist",
        ["admin", "blacklist", _] => "/admin/blacklist/{id}",
        ["admin", "audit"] => "/admin/audit",
        ["admin", "signals"] => "/admin/signals",
        ["admin", "signals", _, action] => match *action {
            "acknowledge" => "/admin/signals/{id}/acknowledge",
            "dismiss" => "/admin/signals/{id}/dismiss",
            "blacklist" => "/admin/signals/{id}/blacklist",
            _ => "other",
        },
        ["admin", "usage", _, _] => "/admin/usage/{subject}/{id}",
        ["admin", "keys"] => "/admin/keys",
        ["admin", "keys", "rotate"] => "/admin/keys/rotate",
        ["api", "v1", "auth", "token"] => "/api/v1/auth/token/",
        ["api", "v1", "auth", "token", "refresh"] => "/api/v1/auth/token/refresh/",
        [_, "auth", "credentials"] => "/{version}/auth/credentials",
        [_, "auth", "access_token"] => "/{version}/auth/access_token",
        _ => "other",
    }
}

/// Wraps a handler future's result for warp.
async fn run(
    result: impl std::future::Future<Output = Result<Response, RpcError>>,
) -> Result<Response, std::convert::Infallible> {
    respond(result.await)
}
