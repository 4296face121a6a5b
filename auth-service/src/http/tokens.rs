//! The API-key token flows (CONTRACT §3.2), public at the gateway:
//! `POST /api/v1/auth/token/ {"apiKey"}` trades an API key for an access token and a refresh
//! token, starting a family; `POST /api/v1/auth/token/refresh/ {"refresh"}` trades a refresh
//! token for a new access token (and, with the operator's rotation on, the family's next
//! refresh token). Both accept the path with or without its trailing slash.
//!
//! These two routes answer in their own published shape, not JSON-RPC:
//! `{"data":{...},"meta":{"timestamp","request_id"}}` or
//! `{"error":{"code","message"},"meta":{...}}`, bad bodies included. What to answer for a
//! stored refresh token is decided by [`crate::refresh::decide`].

use super::credentials::{authenticate, key_login, mint_access};
use super::session::publish;
use super::{BODY_LIMIT, State, Who, client_ip, json, throttled};
use crate::refresh::{self, ACCESS_TTL_SECS, REFRESH_TTL_SECS, Refusal, Stored, Verdict};
use crate::store::{Audit, Issued, NewRefresh, RefreshRow, StoreError};
use crate::throttle::Locked;
use auth_token::Principal;
use blacklist::{Change, Entry, Kind};
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json as j};
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use uuid::Uuid;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

/// Random bytes in a refresh token.
const REFRESH_BYTES: usize = 32;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiKey {
    #[serde(rename = "apiKey")]
    api_key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    refresh: String,
}

/// An error of these routes: a status, a snake_case code and a sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TokenError {
    status: StatusCode,
    code: &'static str,
    message: &'static str,
    /// Seconds for `Retry-After` (429).
    retry_after: Option<u64>,
}

impl TokenError {
    const fn new(status: StatusCode, code: &'static str, message: &'static str) -> Self {
        Self {
            status,
            code,
            message,
            retry_after: None,
        }
    }

    fn bad_request(message: &'static str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
}

/// One answer for an unknown access key, a wrong secret and a revoked credential.
const INVALID_API_KEY: TokenError = TokenError::new(
    StatusCode::UNAUTHORIZED,
    "invalid_api_key",
    "Invalid API key",
);

const TOO_LARGE: TokenError = TokenError::new(
    StatusCode::PAYLOAD_TOO_LARGE,
    "payload_too_large",
    "The body must be at most 64 KiB",
);

const INTERNAL: TokenError = TokenError::new(
    StatusCode::INTERNAL_SERVER_ERROR,
    "internal_error",
    "Internal server error",
);

impl From<Refusal> for TokenError {
    fn from(refusal: Refusal) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, refusal.code(), refusal.message())
    }
}

impl From<Locked> for TokenError {
    fn from(locked: Locked) -> Self {
        Self {
            retry_after: Some(locked.seconds()),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_failed_attempts",
                "Too many failed attempts; retry later",
            )
        }
    }
}

impl From<super::credentials::AuthError> for TokenError {
    fn from(e: super::credentials::AuthError) -> Self {
        match e {
            super::credentials::AuthError::Store(e) => e.into(),
            super::credentials::AuthError::Busy(busy) => Self {
                retry_after: Some(busy.retry_after()),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "hashing_busy",
                    "Too many secrets are being checked; retry later",
                )
            },
        }
    }
}

impl From<StoreError> for TokenError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = %e, "store: database unavailable");
            return Self {
                retry_after: Some(rpc_service::error::DATABASE_RETRY_AFTER_SECS),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "The database is unavailable; retry later",
                )
            };
        }
        tracing::error!(error = %e, "store error");
        INTERNAL
    }
}

impl From<rpc_service::RpcError> for TokenError {
    fn from(_: rpc_service::RpcError) -> Self {
        INTERNAL
    }
}

pub(super) fn routes(
    state: State,
    who: Who,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let s = state.clone();
    let issue = warp::path!("api" / "v1" / "auth" / "token")
        .and(warp::post())
        .and(who.clone())
        .and(request_id())
        .and(client_ip())
        .and(raw_body())
        .and_then(move |_anyone: Principal, rid, ip, body| answer(rid, issue(s.clone(), ip, body)));
    let refresh = warp::path!("api" / "v1" / "auth" / "token" / "refresh")
        .and(warp::post())
        .and(who)
        .and(request_id())
        .and(raw_body())
        .and_then(move |_anyone: Principal, rid, body| answer(rid, refresh(state.clone(), body)));
    issue.or(refresh).unify()
}

fn request_id() -> impl Filter<Extract = (Option<String>,), Error = Infallible> + Clone {
    warp::header::optional::<String>("x-request-id")
        .or(warp::any().map(|| None))
        .unify()
}

/// The body, or the error to answer for it: never a rejection, so bad bodies get this
/// route's error shape rather than JSON-RPC's.
fn raw_body() -> impl Filter<Extract = (Result<Bytes, TokenError>,), Error = Infallible> + Clone {
    warp::body::content_length_limit(BODY_LIMIT)
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::body::bytes())
        .map(|content_type: Option<String>, bytes: Bytes| {
            let json = content_type.as_deref().is_none_or(|ct| {
                ct.split(';')
                    .next()
                    .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
            });
            if json {
                Ok(bytes)
            } else {
                Err(TokenError::bad_request(
                    "content-type must be application/json",
                ))
            }
        })
        .or_else(|rejection: Rejection| async move {
            let error = if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
                TOO_LARGE
            } else {
                TokenError::bad_request("the body must be JSON with a content-length")
            };
            Ok::<_, Infallible>((Err(error),))
        })
}

fn parse<T: DeserializeOwned>(body: Result<Bytes, TokenError>) -> Result<T, TokenError> {
    serde_json::from_slice(&body?).map_err(|e| {
        let message = match e.classify() {
            serde_json::error::Category::Data => "the body lacks a required string field",
            _ => "the body is not a JSON object",
        };
        TokenError::bad_request(message)
    })
}

/// Wraps a handler's result in the `data` / `error` + `meta` shape.
async fn answer(
    request_id: Option<String>,
    result: impl Future<Output = Result<Value, TokenError>>,
) -> Result<Response, Infallible> {
    let result = result.await;
    let meta = j!({
        "timestamp": rfc3339(Utc::now()),
        "request_id": request_id,
    });
    Ok(match result {
        Ok(data) => json(StatusCode::OK, &j!({"data": data, "meta": meta})),
        Err(e) => {
            let body = j!({"error": {"code": e.code, "message": e.message}, "meta": meta});
            let mut response = json(e.status, &body);
            if let Some(seconds) = e.retry_after {
                response
                    .headers_mut()
                    .insert(warp::http::header::RETRY_AFTER, seconds.into());
            }
            response
        }
    })
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `POST /api/v1/auth/token/`: a new family with its first access and refresh tokens.
async fn issue(
    state: State,
    ip: Option<IpAddr>,
    body: Result<Bytes, TokenError>,
) -> Result<Value, TokenError> {
    let req: ApiKey = parse(body)?;
    let (access_key, secret) = req.api_key.split_once('.').unwrap_or((&req.api_key, ""));
    let now = Utc::now();
    let attempt = async {
        let found = authenticate(&state, access_key, secret.to_owned(), now).await;
        found.map_err(TokenError::from)
    };
    let credential = throttled(&state, &key_login(access_key), ip, attempt)
        .await?
        .ok_or(INVALID_API_KEY)?;
    let (access, minted) = mint_access(
        &state,
        credential.access_key,
        credential.operator_id,
        &credential.role,
        now,
        ACCESS_TTL_SECS,
    )
    .await?;
    let (refresh, stored) = new_refresh(now);
    state
        .0
        .store
        .start_family(Uuid::new_v4(), credential.access_key, &stored, &minted)
        .await?;
    let refresh_expire = rfc3339(stored.expires_at);
    Ok(j!({
        "access": access,
        "refresh": refresh,
        "access_expire": rfc3339(minted.expires_at),
        "refresh_expire": refresh_expire,
        "refesh_expire": refresh_expire,
    }))
}

/// `POST /api/v1/auth/token/refresh/`: a new access token of the refresh token's family.
async fn refresh(state: State, body: Result<Bytes, TokenError>) -> Result<Value, TokenError> {
    let req: RefreshRequest = parse(body)?;
    let hash = sha256_hex(&req.refresh);
    let now = Utc::now();
    let Some(row) = state.0.store.refresh_token(&hash).await? else {
        return Err(Refusal::Unknown.into());
    };
    let stored = stored(&state, &row, now).await?;
    let rotate = match refresh::decide(Some(&stored), now.timestamp()) {
        Verdict::Issue { rotate } => rotate,
        Verdict::Reuse => return Err(reuse(&state, &row, now).await),
        Verdict::Refuse(refusal) => return Err(refusal.into()),
    };
    let (access, minted) = mint_access(
        &state,
        row.access_key,
        row.operator_id,
        &row.role,
        now,
        ACCESS_TTL_SECS,
    )
    .await?;
    let next = rotate.then(|| new_refresh(now));
    let issued = state
        .0
        .store
        .issue_in_family(
            row.family_id,
            rotate.then_some(hash.as_str()),
            next.as_ref().map(|(_, stored)| stored),
            &minted,
        )
        .await?;
    match issued {
        Issued::Done => {}
        Issued::FamilyRevoked => return Err(Refusal::Revoked.into()),
        Issued::AlreadySpent => return Err(reuse(&state, &row, now).await),
    }
    let mut data = j!({"access": access, "access_expires": rfc3339(minted.expires_at)});
    if let Some((token, stored)) = next {
        data["refresh"] = j!(token);
        data["refresh_expire"] = j!(rfc3339(stored.expires_at));
    }
    Ok(data)
}

/// The rules' view of a stored refresh token.
async fn stored(state: &State, row: &RefreshRow, now: DateTime<Utc>) -> Result<Stored, TokenError> {
    let blacklisted = state
        .0
        .store
        .credential_blacklisted(row.access_key, row.operator_id, now)
        .await?;
    Ok(Stored {
        expires_at: row.expires_at.timestamp(),
        spent: row.spent_at.is_some(),
        family_revoked: row.family_revoked_at.is_some(),
        credential_revoked: row.credential_revoked_at.is_some() || blacklisted,
        rotation: row.refresh_rotation,
    })
}

/// A spent refresh token came back: revoke its family (every refresh token, and every live
/// access token by `jti`), then publish. The answer is `refresh_reused` even if the feed is
/// down: the record is committed and reaches gateways with the next republish.
async fn reuse(state: &State, row: &RefreshRow, now: DateTime<Utc>) -> TokenError {
    let record = Audit {
        actor: "auth-service".into(),
        role: None,
        action: "refresh.reuse_detected",
        target: format!("token_family:{}", row.family_id),
        detail: j!({"credential": row.access_key, "operator_id": row.operator_id}),
    };
    let revoked = match state
        .0
        .store
        .revoke_family(row.family_id, now, "refresh token reuse detected", record)
        .await
    {
        Ok(revoked) => revoked,
        Err(e) => return e.into(),
    };
    tracing::warn!(
        family = %row.family_id,
        operator_id = row.operator_id,
        access_tokens = revoked.len(),
        "refresh token reuse: family revoked"
    );
    for token in revoked {
        let entry = Entry {
            kind: Kind::Jti,
            value: token.jti,
            expires_at: Some(token.expires_at.timestamp()),
        };
        // `publish` logs a failure; the rest are still worth trying.
        let _ = publish(state, Change::Add(entry)).await;
    }
    Refusal::Reused.into()
}

/// A new opaque refresh token and what is stored of it.
fn new_refresh(now: DateTime<Utc>) -> (String, NewRefresh) {
    let token = crate::passwords::random_token(REFRESH_BYTES);
    let stored = NewRefresh {
        hash: sha256_hex(&token),
        expires_at: now + chrono::Duration::seconds(REFRESH_TTL_SECS),
    };
    (token, stored)
}

fn sha256_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
