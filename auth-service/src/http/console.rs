//! The console's static files (docs/console.md): `GET /console/` and `GET /console/{file}`,
//! embedded in the binary from the repo's `console/` folder so a release build serves them
//! with nothing else installed.
//!
//! They are public (the gateway forwards them without a credential, with its assertion like
//! any request): the pages hold no data, they call the JSON API, which needs the session.
//! Every answer forbids the browser to reach any other host (`Content-Security-Policy`),
//! to sniff types, or to frame the console.

use super::{Who, run};
use auth_token::Principal;
use rpc_service::RpcError;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;
use warp::http::StatusCode;
use warp::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, HeaderValue, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use warp::path::Tail;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

/// Only this origin: scripts, styles, images and API calls. No inline code, no plugins, no
/// framing, forms post nowhere else.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// One embedded file.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

/// Every file of the console. `index.html` is also served for `/console` and `/console/`.
pub const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../../console/index.html"),
    },
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../../console/console.css"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../../console/app.js"),
    },
    Asset {
        name: "lib.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../../console/lib.js"),
    },
    Asset {
        name: "pages.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../../console/pages.js"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../../console/icon.svg"),
    },
];

/// Strong validators of each asset, in [`ASSETS`] order: the files change only with the
/// binary, so a browser revalidates (`no-cache`) and gets 304 until an upgrade.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|asset| {
            let digest = Sha256::digest(asset.body);
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            format!("\"{hex}\"")
        })
        .collect()
});

/// The asset a path under `/console/` names (`""` is the index), if any.
pub fn asset(tail: &str) -> Option<(&'static Asset, &'static str)> {
    let name = if tail.is_empty() { "index.html" } else { tail };
    let index = ASSETS.iter().position(|a| a.name == name)?;
    Some((&ASSETS[index], ETAGS[index].as_str()))
}

pub(super) fn routes(who: Who) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path("console")
        .and(warp::path::tail())
        .and(warp::get())
        .and(who)
        .and(rpc_service::body::header_text("if-none-match"))
        .and_then(
            |tail: Tail, _anyone: Principal, validator: Option<String>| {
                run(async move { serve(tail.as_str(), validator.as_deref()) })
            },
        )
}

fn serve(tail: &str, if_none_match: Option<&str>) -> Result<Response, RpcError> {
    let (asset, etag) = asset(tail).ok_or_else(RpcError::not_found)?;
    let fresh = if_none_match.is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        asset.body.into_response()
    };
    let headers = response.headers_mut();
    let fixed = [
        (CONTENT_TYPE, asset.content_type),
        (CACHE_CONTROL, "no-cache"),
        (CONTENT_SECURITY_POLICY, CSP),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (X_FRAME_OPTIONS, "DENY"),
        (REFERRER_POLICY, "no-referrer"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    let etag = HeaderValue::from_str(etag).map_err(|_| RpcError::internal())?;
    headers.insert(ETAG, etag);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(asset: &Asset) -> &'static str {
        std::str::from_utf8(asset.body).unwrap()
    }

    #[test]
    fn the_index_is_served_for_the_folder_and_unknown_files_are_not() {
        assert_eq!(asset("").unwrap().0.name, "index.html");
        assert_eq!(asset("index.html").unwrap().0.name, "index.html");
        assert_eq!(
            asset("app.js").unwrap().0.content_type,
            "text/javascript; charset=utf-8"
        );
        for missing in ["nope.js", "../Cargo.toml", "app.js/x", "APP.JS"] {
            assert!(asset(missing).is_none(), "{missing}");
        }
    }

    #[test]
    fn every_file_the_pages_load_is_embedded() {
        let mut wanted: Vec<String> = Vec::new();
        for asset in ASSETS {
            let source = text(asset);
            // `src`/`href` attributes and module imports, all under /console/ or relative.
            for marker in ["src=\"/console/", "href=\"/console/", "from './"] {
                for part in source.split(marker).skip(1) {
                    let end = part.find(['"', '\'', '#', '?']).unwrap();
                    wanted.push(part[..end].to_owned());
                }
            }
        }
        assert!(wanted.len() >= 5, "{wanted:?}");
        for name in wanted {
            assert!(asset(&name).is_some(), "{name} is loaded but not embedded");
        }
    }

    #[test]
    fn no_file_names_another_host() {
        for asset in ASSETS {
            // The SVG namespace is a name, never fetched (the icon's attribute, the charts'
            // `createElementNS`).
            let source = text(asset)
                .replace("xmlns=\"http://www.w3.org/2000/svg\"", "")
                .replace("'http://www.w3.org/2000/svg'", "");
            for outside in ["http://", "https://", "src=\"//", "href=\"//", "url("] {
                assert!(
                    !source.contains(outside),
                    "{} mentions {outside}: the console must work on a closed network",
                    asset.name
                );
            }
        }
    }

    #[test]
    fn answers_carry_the_policy_and_revalidate() {
        let response = serve("", None).unwrap();
        assert_eq!(response.status(), 200);
        let h = response.headers();
        assert_eq!(h[CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(h[CACHE_CONTROL], "no-cache");
        assert!(
            h[CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .starts_with("default-src 'self'")
        );
        assert_eq!(h[X_CONTENT_TYPE_OPTIONS], "nosniff");
        let etag = h[ETAG].to_str().unwrap().to_owned();
        let again = serve("index.html", Some(&format!("\"other\", {etag}"))).unwrap();
        assert_eq!(again.status(), 304);
        assert_eq!(again.headers()[ETAG], etag.as_str());
        assert_eq!(
            serve("missing.css", None).unwrap_err().status,
            StatusCode::NOT_FOUND
        );
    }
}
