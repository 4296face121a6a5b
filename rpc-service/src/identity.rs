//! Admits only requests that carry the gateway's identity assertion for this very request.
//! Going around the gateway gets 401, whatever else the request carries.

use crate::error::RpcError;
use auth_token::{ASSERTION_HEADER, AssertionError, AssertionKey, Principal};
use std::sync::Arc;
use warp::filters::path::FullPath;
use warp::http::Method;
use warp::{Filter, Rejection};

/// Extracts the asserted [`Principal`], or rejects with 401.
pub fn principal(
    key: Arc<AssertionKey>,
    audience: &'static str,
) -> impl Filter<Extract = (Principal,), Error = Rejection> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(warp::header::optional::<String>(ASSERTION_HEADER))
        .and_then(
            move |method: Method, path: FullPath, token: Option<String>| {
                let key = key.clone();
                async move {
                    let now = chrono::Utc::now().timestamp();
                    key.verify(
                        token.as_deref(),
                        audience,
                        method.as_str(),
                        path.as_str(),
                        now,
                    )
                    .map(|assertion| assertion.principal)
                    .map_err(|e| {
                        let reason = match e {
                            AssertionError::Missing => "missing_gateway_assertion",
                            AssertionError::Invalid | AssertionError::WrongRequest => {
                                "invalid_gateway_assertion"
                            }
                        };
                        warp::reject::custom(RpcError::unauthorized(reason))
                    })
                }
            },
        )
}
