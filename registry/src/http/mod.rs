//! The HTTP surface: the only code that knows warp.
//!
//! [`api`] builds the operator routes behind the gateway's identity assertion; the
//! [`crate::Application`] adds `/health` and `/metrics`, the one `recover` and request metrics
//! (labelled by [`route_template`]).

mod cee;
mod cee_import;
mod exports;
mod journeys;
mod lifecycle;
mod metrics;

pub use cee::Cee;
pub use journeys::State;
pub use metrics::{Metrics, Outcome};

use std::sync::Arc;
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::{Filter, Rejection};

/// API versions served under `/{version}/...`; the gateway already refused the others.
pub const SERVED_VERSIONS: [&str; 3] = ["v3", "v3.2", "v3.3"];

/// Largest request body accepted, in bytes.
pub const BODY_LIMIT: u64 = 2 * 1024 * 1024;

/// The audience the gateway's assertions name for this service.
pub const AUDIENCE: &str = "registry";

/// The journey and CEE routes, each behind the identity assertion. Rejections are left to
/// `recover`.
pub fn api(state: Arc<State>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let principal = rpc_service::identity::principal();
    let with_state = warp::any().map(move || state.clone());

    let collection = || version().and(warp::path("journeys")).and(warp::path::end());
    let push = warp::path!("journeys" / "push");
    let one = version()
        .and(warp::path("journeys"))
        .and(warp::path::param::<String>().and_then(decoded_segment));
    let json_body = || rpc_service::body::value(BODY_LIMIT);

    // Paths before methods, so that an unknown path is a 404 rather than a 405.
    let create = collection()
        .or(push)
        .unify()
        .and(warp::post())
        .and(with_state.clone())
        .and(principal.clone())
        .and(json_body())
        .then(journeys::create);

    let list = collection()
        .and(warp::get())
        .and(with_state.clone())
        .and(principal.clone())
        .and(warp::query::<Vec<(String, String)>>())
        .then(journeys::list);

    let status = one
        .clone()
        .and(warp::path::end())
        .and(warp::get())
        .and(with_state.clone())
        .and(principal.clone())
        .and(rpc_service::body::query::<journeys::StatusQuery>())
        .then(journeys::status);

    let update = one
        .clone()
        .and(warp::path::end())
        .and(warp::patch().or(warp::post()).unify())
        .and(with_state.clone())
        .and(principal.clone())
        .and(json_body())
        .then(journeys::update);

    let cancel = one
        .and(warp::path("cancel"))
        .and(warp::path::end())
        .and(warp::post())
        .and(with_state.clone())
        .and(principal.clone())
        .and(json_body())
        .then(journeys::cancel);

    let lifecycle = lifecycle_routes(
        with_state.clone().boxed(),
        principal.clone().boxed(),
        json_body().boxed(),
    );
    let exports = export_routes(
        with_state.clone().boxed(),
        principal.clone().boxed(),
        json_body().boxed(),
    );
    let cee = cee_routes(with_state.boxed(), principal.boxed(), json_body().boxed());

    create
        .or(list)
        .unify()
        .or(status)
        .unify()
        .or(update)
        .unify()
        .or(cancel)
        .unify()
        .or(cee)
        .unify()
        .or(lifecycle)
        .unify()
        .or(exports)
        .unify()
}

/// `/admin/campaigns`, `/{version}/funding-calls`.
fn lifecycle_routes(
    with_state: BoxedFilter<(Arc<State>,)>,
    principal: BoxedFilter<(auth_token::Principal,)>,
    json_body: BoxedFilter<(serde_json::Value,)>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let campaigns = || warp::path!("admin" / "campaigns");
    let create_campaign = campaigns()
        .and(warp::post())
        .and(with_state.clone())
        .and(principal.clone())
        .and(json_body)
        .then(lifecycle::create_campaign);
    let list_campaigns = campaigns()
        .and(warp::get())
        .and(with_state.clone())
        .and(principal.clone())
        .then(lifecycle::list_campaigns);
    let funding_calls = version()
        .and(warp::path("funding-calls"))
        .and(warp::path::end())
        .and(warp::get())
        .and(with_state)
        .and(principal)
        .and(warp::query::<Vec<(String, String)>>())
        .then(lifecycle::funding_calls);
    create_campaign
        .or(list_campaigns)
        .unify()
        .or(funding_calls)
        .unify()
}

/// `/{version}/exports...`; the synchronous `journeys` is matched before `{uuid}`.
fn export_routes(
    with_state: BoxedFilter<(Arc<State>,)>,
    principal: BoxedFilter<(auth_token::Principal,)>,
    json_body: BoxedFilter<(serde_json::Value,)>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let exports = || version().and(warp::path("exports"));
    let journeys_csv = exports()
        .and(warp::path("journeys"))
        .and(warp::path::end())
        .and(warp::get())
        .and(with_state.clone())
        .and(principal.clone())
        .and(warp::query::<Vec<(String, String)>>())
        .then(exports::journeys_csv);
    let create = exports()
        .and(warp::path::end())
        .and(warp::post())
        .and(with_state.clone())
        .and(principal.clone())
        .and(json_body)
        .then(exports::create);
    let one = || exports().and(warp::path::param::<String>().and_then(decoded_segment));
    let status = one()
        .and(warp::path::end())
        .and(warp::get())
        .and(with_state.clone())
        .and(principal.clone())
        .and_then(|uuid, state, principal| async move {
            Ok::<_, Rejection>(exports::status(state, principal, uuid).await)
        });
    let download = one()
        .and(warp::path("download"))
        .and(warp::path::end())
        .and(warp::get())
        .and(with_state)
        .and(principal)
        .and_then(|uuid, state, principal| async move {
            Ok::<_, Rejection>(exports::download(state, principal, uuid).await)
        });
    journeys_csv
        .or(create)
        .unify()
        .or(status)
        .unify()
        .or(download)
        .unify()
}

/// `/{version}/policies/cee...`; the public key and the imports are matched before `{uuid}`.
fn cee_routes(
    with_state: BoxedFilter<(Arc<State>,)>,
    principal: BoxedFilter<(auth_token::Principal,)>,
    json_body: BoxedFilter<(serde_json::Value,)>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let cee = || version().and(warp::path("policies")).and(warp::path("cee"));
    let register = cee()
        .and(warp::path::end())
        .and(warp::post())
        .and(with_state.clone())
        .and(principal.clone())
        .and(json_body.clone())
        .then(cee::register);
    let simulate = cee()
        .and(warp::path("simulate"))
        .and(warp::path::end())
        .and(warp::post())
        .and(with_state.clone())
        .and(principal.clone())
        .and(json_body.clone())
        .then(cee::simulate);
    let import = cee()
        .and(warp::path("import"))
        .and(warp::path::end())
        .and(warp::post())
        .and(with_state.clone())
        .and(principal.clone())
        .and(json_body.clone())
        .then(cee_import::import);
    let import_identity = cee()
        .and(warp::path("import"))
        .and(warp::path("identity"))
        .and(warp::path::end())
        .and(warp::post())
        .and(with_state.clone())
        .and(principal.clone())
        .and(json_body)
        .then(cee_import::import_identity);
    let public_key = cee()
        .and(warp::path("public-key"))
        .and(warp::path::end())
        .and(warp::get())
        .and(with_state.clone())
        .and(principal.clone())
        .then(cee::public_key);
    let one = || {
        cee()
            .and(warp::path::param::<String>().and_then(decoded_segment))
            .and(warp::path::end())
    };
    let find = one()
        .and(warp::get())
        .and(with_state.clone())
        .and(principal.clone())
        .then(cee::find);
    let delete = one()
        .and(warp::delete())
        .and(with_state)
        .and(principal)
        .then(cee::delete);
    register
        .or(simulate)
        .unify()
        .or(import)
        .unify()
        .or(import_identity)
        .unify()
        .or(public_key)
        .unify()
        .or(find)
        .unify()
        .or(delete)
        .unify()
}

/// Matches one served version segment; anything else is not found here.
fn version() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::path::param::<String>()
        .and_then(|v: String| async move {
            if SERVED_VERSIONS.contains(&v.as_str()) {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
}

async fn decoded_segment(raw: String) -> Result<String, Rejection> {
    percent_decode(&raw).ok_or_else(warp::reject::not_found)
}

/// Decodes `%XX` escapes of a path segment; `None` when malformed, not UTF-8 or holding
/// U+0000 (no id holds it: the stores cannot).
fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().filter(|s| !s.contains('\0'))
}

/// The route template of a raw path, for metric labels and logs (never raw ids).
pub fn route_template(path: &str) -> &'static str {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let versioned = segments.first().is_some_and(|v| {
        v.starts_with('v') && v.len() > 1 && v[1..].chars().all(|c| c.is_ascii_digit() || c == '.')
    });
    match segments.as_slice() {
        ["health"] => "/health",
        ["health", "live"] => "/health/live",
        ["metrics"] => "/metrics",
        ["journeys", "push"] => "/journeys/push",
        ["admin", "campaigns"] => "/admin/campaigns",
        [_, "exports"] if versioned => "/{version}/exports",
        [_, "exports", "journeys"] if versioned => "/{version}/exports/journeys",
        [_, "exports", _] if versioned => "/{version}/exports/{uuid}",
        [_, "exports", _, "download"] if versioned => "/{version}/exports/{uuid}/download",
        [_, "funding-calls"] if versioned => "/{version}/funding-calls",
        [_, "journeys"] if versioned => "/{version}/journeys",
        [_, "journeys", _] if versioned => "/{version}/journeys/{id}",
        [_, "journeys", _, "cancel"] if versioned => "/{version}/journeys/{id}/cancel",
        [_, "policies", "cee"] if versioned => "/{version}/policies/cee",
        [_, "policies", "cee", "simulate"] if versioned => "/{version}/policies/cee/simulate",
        [_, "policies", "cee", "public-key"] if versioned => "/{version}/policies/cee/public-key",
        // Also `GET /{v}/policies/cee/import`, a find of the uuid "import" (answered 400).
        [_, "policies", "cee", "import"] if versioned => "/{version}/policies/cee/import",
        [_, "policies", "cee", "import", "identity"] if versioned => {
            "/{version}/policies/cee/import/identity"
        }
        [_, "policies", "cee", _] if versioned => "/{version}/policies/cee/{uuid}",
        _ => "unmatched",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_paths_map_to_templates() {
        let cases = [
            ("/health", "/health"),
            ("/health/live", "/health/live"),
            ("/metrics", "/metrics"),
            ("/journeys/push", "/journeys/push"),
            ("/v3/journeys", "/{version}/journeys"),
            ("/v3.3/journeys/abc-123", "/{version}/journeys/{id}"),
            (
                "/v3.2/journeys/abc/cancel",
                "/{version}/journeys/{id}/cancel",
            ),
            ("/v3/policies/cee", "/{version}/policies/cee"),
            (
                "/v3.3/policies/cee/simulate",
                "/{version}/policies/cee/simulate",
            ),
            (
                "/v3/policies/cee/public-key",
                "/{version}/policies/cee/public-key",
            ),
            ("/v3/policies/cee/0b7c", "/{version}/policies/cee/{uuid}"),
            ("/v3/policies/cee/import", "/{version}/policies/cee/import"),
            (
                "/v3.3/policies/cee/import/identity",
                "/{version}/policies/cee/import/identity",
            ),
            ("/v3/policies/cee/import/other", "unmatched"),
            ("/admin/campaigns", "/admin/campaigns"),
            ("/v3/exports", "/{version}/exports"),
            ("/v3/exports/journeys", "/{version}/exports/journeys"),
            ("/v3.3/exports/8a9d2da9-39e3", "/{version}/exports/{uuid}"),
            (
                "/v3/exports/8a9d2da9-39e3/download",
                "/{version}/exports/{uuid}/download",
            ),
            ("/v3.3/funding-calls", "/{version}/funding-calls"),
            ("/v3/unknown", "unmatched"),
            ("/journeys/abc", "unmatched"),
            ("/", "unmatched"),
        ];
        for (path, template) in cases {
            assert_eq!(route_template(path), template, "{path}");
        }
    }

    #[test]
    fn path_segments_are_percent_decoded() {
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("%C3%A9t%C3%A9").as_deref(), Some("été"));
        assert_eq!(percent_decode("plain-id").as_deref(), Some("plain-id"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("%FF"), None);
        assert_eq!(percent_decode("a%00b"), None);
    }
}
