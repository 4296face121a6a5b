//! Browser sessions for the console (CONTRACT §3.3): `POST /profile/signin`,
//! `POST /profile/signout` and `GET /profile`.
//!
//! The gateway hands out the `sessid` cookie and asserts its hash as the principal's
//! `session`. Signing in binds a user to that session without storing anything: the binding
//! is a signed `sessauth` cookie (a `Session` token carrying the hash and a CSRF token).
//! Signing out blacklists that token; the `sessid` stays.

use super::session::{authenticate, internal, revoke_presented};
use super::{State, Who, body, client_ip, json, run};
use crate::store::User;
use auth_token::session::{SESSAUTH_COOKIE, SESSION_TTL_SECS, new_csrf_token};
use auth_token::{Claims, CredentialKind, Principal};
use rpc_service::RpcError;
use serde::Deserialize;
use serde_json::{Value, json as j};
use std::net::IpAddr;
use warp::http::StatusCode;
use warp::http::header::{HeaderValue, SET_COOKIE};
use warp::reply::Response;
use warp::{Filter, Rejection};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    login: String,
    password: String,
}

pub(super) fn routes(
    state: State,
    who: Who,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let (s1, s2) = (state.clone(), state.clone());
    let sign_in = warp::path!("profile" / "signin")
        .and(warp::post())
        .and(who.clone())
        .and(client_ip())
        .and(body::<SignIn>())
        .and_then(move |p, ip, req| run(sign_in(s1.clone(), p, ip, req)));
    let sign_out = warp::path!("profile" / "signout")
        .and(warp::post())
        .and(who.clone())
        .and_then(move |p| run(sign_out(s2.clone(), p)));
    let profile = warp::path!("profile")
        .and(warp::get())
        .and(who)
        .and_then(move |p| run(profile(state.clone(), p)));
    sign_in.or(sign_out).unify().or(profile).unify()
}

async fn sign_in(
    state: State,
    p: Principal,
    ip: Option<IpAddr>,
    req: SignIn,
) -> Result<Response, RpcError> {
    let Some(sid) = p.session else {
        return Err(RpcError::invalid_request("no browser session"));
    };
    let user = authenticate(&state, &req.login, req.password, ip).await?;
    let role = user.role.parse().map_err(|_| RpcError::internal())?;
    let now = chrono::Utc::now().timestamp();
    let csrf = new_csrf_token();
    let siret = super::operator_siret(&state, user.operator_id).await?;
    let claims = Claims {
        jti: uuid::Uuid::new_v4().to_string(),
        kind: CredentialKind::Session,
        sub: user.id.to_string(),
        op: user.operator_id,
        role,
        iat: now,
        exp: Some(now + SESSION_TTL_SECS),
        client: None,
        uid: None,
        sid: Some(sid),
        csrf: Some(csrf.clone()),
        siret,
    };
    let token = state.0.keys.sign(&claims).map_err(|e| {
        tracing::error!(error = %e, "cannot sign a session token");
        RpcError::internal()
    })?;
    let body =
        j!({"user": user_json(&user), "permissions": permissions(&user), "csrf_token": csrf});
    let cookie = sessauth_cookie(&token, SESSION_TTL_SECS, state.0.cookie_secure);
    with_cookie(json(StatusCode::OK, &body), &cookie)
}

/// Ends the session's sign-in: the token is blacklisted and its cookie cleared.
async fn sign_out(state: State, p: Principal) -> Result<Response, RpcError> {
    if p.kind != Some(CredentialKind::Session) {
        return Err(RpcError::unauthorized("token_not_accepted_here"));
    }
    revoke_presented(&state, &p, "profile.sign_out").await?;
    let cookie = sessauth_cookie("", 0, state.0.cookie_secure);
    with_cookie(json(StatusCode::OK, &j!({"success": true})), &cookie)
}

/// The signed-in person and what their role may do; a session also gets its CSRF token back
/// (a reloaded page has lost it).
async fn profile(state: State, p: Principal) -> Result<Response, RpcError> {
    let signed_in = matches!(
        p.kind,
        Some(CredentialKind::Session | CredentialKind::Agent)
    );
    let id = uuid::Uuid::parse_str(&p.id).ok().filter(|_| signed_in);
    let Some(id) = id else {
        return Err(RpcError::unauthorized("token_not_accepted_here"));
    };
    let Some(user) = state.0.store.find_user_by_id(id).await.map_err(internal)? else {
        return Err(RpcError::unauthorized("invalid_token"));
    };
    let mut body = j!({"user": user_json(&user), "permissions": permissions(&user)});
    if p.kind == Some(CredentialKind::Session) {
        body["csrf_token"] = p.csrf.map_or(Value::Null, Value::String);
    }
    Ok(json(StatusCode::OK, &body))
}

/// The names of the permissions the user's role holds (CONTRACT §4): what the console shows.
/// The gateway still decides every request.
fn permissions(user: &User) -> Vec<&'static str> {
    user.role
        .parse::<auth_token::Role>()
        .map(|role| role.permissions().map(|p| p.as_str()).collect())
        .unwrap_or_default()
}

fn user_json(user: &User) -> Value {
    j!({
        "id": user.id,
        "email": user.email,
        "role": user.role,
        "operator_id": user.operator_id,
        "first_name": user.first_name,
        "last_name": user.last_name,
    })
}

/// The `sessauth` cookie: for the whole site, out of scripts' reach, kept `max_age` seconds
/// (0 clears it), and only over TLS when `secure`.
fn sessauth_cookie(token: &str, max_age: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{SESSAUTH_COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
}

fn with_cookie(mut response: Response, cookie: &str) -> Result<Response, RpcError> {
    let value = HeaderValue::from_str(cookie).map_err(|_| RpcError::internal())?;
    response.headers_mut().append(SET_COOKIE, value);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sessauth_cookie_is_http_only_lax_and_secure_when_configured() {
        assert_eq!(
            sessauth_cookie("t.o.k", 43200, false),
            "sessauth=t.o.k; Path=/; Max-Age=43200; HttpOnly; SameSite=Lax"
        );
        assert_eq!(
            sessauth_cookie("", 0, true),
            "sessauth=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax; Secure"
        );
    }
}
