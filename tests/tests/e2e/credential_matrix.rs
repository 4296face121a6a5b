//! Every credential kind end to end through the gateway (CONTRACT §2–§4): it works where it
//! is accepted; expired, revoked, on a route that does not accept it, and with a role that
//! lacks the permission, it is refused with the documented status and reason.
//!
//! Expired tokens cannot be waited for: they are signed with the stack's real current key
//! (`Stack::keys`), exactly as auth-service would have signed them an hour ago.

use auth_token::session::sid_of;
use auth_token::{Claims, CredentialKind, Role};
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};
use std::time::Duration;
use tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Browser, Mode, Stack, journey};

/// Sends `request`; checks status and, for gateway refusals, the reason code.
async fn expect(request: RequestBuilder, status: u16, reason: Option<&str>, what: &str) {
    let response = request.send().await.unwrap();
    let got = response.status().as_u16();
    let header = response
        .headers()
        .get("x-gateway-error")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(got, status, "{what}: {body}");
    if let Some(reason) = reason {
        assert_eq!(header.as_deref(), Some(reason), "{what}: {body}");
        assert_eq!(body["error"]["data"], reason, "{what}");
    }
}

/// Claims auth-service would sign for `kind`, expired a minute ago.
fn expired(kind: CredentialKind, sub: &str, op: Option<i64>, role: Role) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        jti: uuid::Uuid::new_v4().to_string(),
        kind,
        sub: sub.to_owned(),
        op,
        role,
        iat: now - 3600,
        exp: Some(now - 60),
        client: None,
        uid: None,
        sid: None,
        csrf: None,
        siret: None,
    }
}

/// Eventually refused with `reason` (blacklist changes propagate through the feed).
async fn refused_soon(stack: &Stack, make: impl Fn() -> RequestBuilder, reason: &str) -> bool {
    stack
        .eventually(Duration::from_secs(2), || async {
            let response = make().send().await.unwrap();
            response
                .headers()
                .get("x-gateway-error")
                .is_some_and(|v| v == reason)
        })
        .await
}

async fn blacklist_jti(stack: &Stack, admin: &HeaderMap, jti: &str) {
    let response = stack
        .request(Method::POST, "/admin/blacklist")
        .headers(admin.clone())
        .json(&json!({"kind": "jti", "value": jti, "reason": "matrix"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

fn jti_of(token: &str) -> String {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

async fn matrix(mode: Mode) {
    let stack = Stack::start(mode).await.unwrap();
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let (operator_id, op_admin) = stack.operator_with_admin(&admin).await.unwrap();
    let op_user = stack
        .user_with_role(&admin, operator_id, "operator.user")
        .await
        .unwrap();
    let list = "/v3/journeys?status=pending";

    // ---- application tokens ----
    let created: Value = stack
        .request(Method::POST, "/applications")
        .headers(op_admin.clone())
        .json(&json!({"name": "matrix"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let app = created["token"].as_str().unwrap().to_owned();
    let app_id = created["application"]["uuid"].as_str().unwrap().to_owned();
    let bearer = |token: &str, m: Method, path: &str| stack.request(m, path).bearer_auth(token);
    expect(
        bearer(&app, Method::POST, "/v3/journeys").json(&journey("m-1")),
        201,
        None,
        "app works",
    )
    .await;
    expect(
        bearer(&app, Method::GET, "/applications"),
        401,
        Some("token_not_accepted_here"),
        "app on a people route",
    )
    .await;
    let forged = stack
        .keys
        .sign(&expired(
            CredentialKind::Application,
            &app_id,
            Some(operator_id),
            Role::OperatorApplication,
        ))
        .unwrap();
    expect(
        bearer(&forged, Method::GET, list),
        401,
        Some("expired_token"),
        "expired app",
    )
    .await;
    let revoked = stack
        .request(Method::DELETE, &format!("/applications/{app_id}"))
        .headers(op_admin.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    assert!(
        refused_soon(&stack, || bearer(&app, Method::GET, list), "revoked_token").await,
        "revoked app"
    );

    // ---- API access tokens ----
    let bodyless = stack
        .request(Method::POST, "/v3/auth/credentials")
        .headers(op_admin.clone())
        .send()
        .await
        .unwrap();
    // The published request has no body, but the reference's code requires the caller's own
    // operator_id (403 without it): we follow the code operators' clients were written for.
    assert_eq!(bodyless.status(), 403, "no operator_id");
    let credential = stack.credential(&op_admin, operator_id).await.unwrap();
    let pair = stack
        .token_pair(credential["api_key"].as_str().unwrap())
        .await
        .unwrap();
    let access = pair["access"].as_str().unwrap().to_owned();
    expect(
        bearer(&access, Method::GET, list),
        200,
        None,
        "access works",
    )
    .await;
    expect(
        bearer(&access, Method::GET, "/admin/blacklist"),
        401,
        Some("token_not_accepted_here"),
        "access on a people route",
    )
    .await;
    let key = credential["access_key"].as_str().unwrap();
    let forged = stack
        .keys
        .sign(&expired(
            CredentialKind::Access,
            key,
            Some(operator_id),
            Role::OperatorApplication,
        ))
        .unwrap();
    expect(
        bearer(&forged, Method::GET, list),
        401,
        Some("expired_token"),
        "expired access",
    )
    .await;
    blacklist_jti(&stack, &admin, &jti_of(&access)).await;
    assert!(
        refused_soon(
            &stack,
            || bearer(&access, Method::GET, list),
            "revoked_token"
        )
        .await,
        "revoked access"
    );

    // ---- agent header triple ----
    let triple = |h: &HeaderMap, m: Method, path: &str| stack.request(m, path).headers(h.clone());
    expect(
        triple(&op_user, Method::GET, "/applications"),
        200,
        None,
        "agent works",
    )
    .await;
    expect(
        triple(&op_user, Method::POST, "/v3/journeys").json(&journey("m-2")),
        403,
        Some("insufficient_permissions"),
        "operator.user writes",
    )
    .await;
    // The triple's token alone, as a bearer token, is not the triple.
    let agent_token = op_user["access-token"].to_str().unwrap().to_owned();
    expect(
        bearer(&agent_token, Method::GET, "/applications"),
        401,
        Some("invalid_token"),
        "agent token as bearer",
    )
    .await;
    expect(
        triple(&op_user, Method::POST, "/profile/signout"),
        401,
        None,
        "agent on a session route",
    )
    .await;
    let profile: Value = triple(&op_user, Method::GET, "/profile")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user_id = profile["user"]["id"].as_str().unwrap();
    let mut claims = expired(
        CredentialKind::Agent,
        user_id,
        Some(operator_id),
        Role::OperatorUser,
    );
    claims.client = Some(op_user["client"].to_str().unwrap().to_owned());
    claims.uid = Some(op_user["uid"].to_str().unwrap().to_owned());
    let mut stale = op_user.clone();
    stale.insert(
        "access-token",
        stack.keys.sign(&claims).unwrap().parse().unwrap(),
    );
    expect(
        triple(&stale, Method::GET, "/applications"),
        401,
        Some("expired_token"),
        "expired agent",
    )
    .await;
    // The same agent token minted without an expiry (a signer's slip, or a key misused):
    // only application tokens live until blacklisted (issue 26, finding 8).
    claims.exp = None;
    let mut eternal = op_user.clone();
    eternal.insert(
        "access-token",
        stack.keys.sign(&claims).unwrap().parse().unwrap(),
    );
    expect(
        triple(&eternal, Method::GET, "/applications"),
        401,
        Some("invalid_token"),
        "agent token without expiry",
    )
    .await;
    let out = triple(&op_user, Method::DELETE, "/api/v1/auth/sign_out")
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 200);
    assert!(
        refused_soon(
            &stack,
            || triple(&op_user, Method::GET, "/applications"),
            "revoked_token"
        )
        .await,
        "signed-out agent"
    );

    // ---- browser sessions ----
    let login = op_admin["uid"].to_str().unwrap().to_owned();
    let mut browser: Browser = stack.browser().await.unwrap();
    let signed_in = stack
        .browser_sign_in(&mut browser, &login, ADMIN_PASSWORD)
        .await
        .unwrap();
    let session = |b: &Browser, m: Method, path: &str| {
        let mut r = stack.request(m, path).header("cookie", b.cookie());
        if let Some(csrf) = &b.csrf {
            r = r.header("x-csrf-token", csrf);
        }
        r
    };
    expect(
        session(&browser, Method::GET, "/profile"),
        200,
        None,
        "session works",
    )
    .await;
    expect(
        session(&browser, Method::GET, list),
        200,
        None,
        "session reads journeys",
    )
    .await;
    expect(
        session(&browser, Method::DELETE, "/api/v1/auth/sign_out"),
        401,
        None,
        "session on an agent-only route",
    )
    .await;
    expect(
        session(&browser, Method::GET, "/admin/operators"),
        403,
        Some("insufficient_permissions"),
        "operator admin session on registry admin route",
    )
    .await;
    let user_id = signed_in["user"]["id"].as_str().unwrap();
    let mut claims = expired(
        CredentialKind::Session,
        user_id,
        Some(operator_id),
        Role::OperatorAdmin,
    );
    claims.sid = Some(sid_of(&browser.sessid));
    claims.csrf = browser.csrf.clone();
    let stale = Browser {
        sessauth: Some(stack.keys.sign(&claims).unwrap()),
        ..browser.clone()
    };
    expect(
        session(&stale, Method::GET, "/profile"),
        401,
        Some("expired_token"),
        "expired session",
    )
    .await;
    let out = session(&browser, Method::POST, "/profile/signout")
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 200);
    assert!(
        refused_soon(
            &stack,
            || session(&browser, Method::GET, "/profile"),
            "revoked_token"
        )
        .await,
        "signed-out session"
    );
    stack.stop().await;
}

#[tokio::test]
async fn every_credential_kind_embedded() {
    matrix(Mode::Embedded).await;
}

#[tokio::test]
async fn every_credential_kind_production() {
    matrix(Mode::Production).await;
}

/// `token`'s header and claims under the signature of `other`, a token the same real key
/// signed over other bytes: well formed, the real key id, and forged.
fn forge(token: &str, other: &str) -> String {
    let (signed, _) = token.rsplit_once('.').unwrap();
    let (_, signature) = other.rsplit_once('.').unwrap();
    format!("{signed}.{signature}")
}

/// The attack: one forged application token sent over and over (a flood, or a client retrying
/// a spoilt token in a loop) would cost the gateway a signature verification per request,
/// several times what a genuine request costs it (docs/performance.md, session 30). It is
/// refused every time, and verified once per proxy service; forgeries that differ are each
/// verified; the genuine token still works.
#[tokio::test]
async fn a_repeated_forged_token_is_refused_without_verifying_it_again() {
    let stack = Stack::start(Mode::Embedded).await.unwrap();
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let (operator_id, op_admin) = stack.operator_with_admin(&admin).await.unwrap();
    let app = stack.application_token(&op_admin).await.unwrap();
    // Signatures the real key made, over other claims.
    let signatures: Vec<String> = (0..3)
        .map(|_| {
            let claims = expired(
                CredentialKind::Application,
                "another application",
                Some(operator_id),
                Role::OperatorApplication,
            );
            stack.keys.sign(&claims).unwrap()
        })
        .collect();
    let metrics_url = format!("{}/metrics", stack.admin_url);
    let verified = |outcome: &'static str| {
        let (http, url) = (stack.http.clone(), metrics_url.clone());
        async move {
            let text = http.get(&url).send().await.unwrap().text().await.unwrap();
            let series = format!("gateway_token_verifications_total{{outcome=\"{outcome}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&series)?.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {series} in the metrics"))
        }
    };
    let list = "/v3/journeys?status=pending";
    let bearer = |token: &str| stack.request(Method::GET, list).bearer_auth(token);
    let services = 2; // at most: one per core, and CI has two
    let before = verified("invalid").await;

    let forged = forge(&app, &signatures[0]);
    for _ in 0..20 {
        expect(bearer(&forged), 401, Some("invalid_token"), "forged").await;
    }
    let once = verified("invalid").await - before;
    assert!(
        (1..=services).contains(&once),
        "20 forged requests, {once} verifications"
    );

    for signature in &signatures[1..] {
        let other = forge(&app, signature);
        expect(bearer(&other), 401, Some("invalid_token"), "forged anew").await;
        expect(bearer(&other), 401, Some("invalid_token"), "forged anew").await;
    }
    let anew = verified("invalid").await - before - once;
    assert!((2..=2 * services).contains(&anew), "{anew} verifications");

    let valid = verified("valid").await;
    expect(bearer(&app), 200, None, "the genuine token").await;
    expect(bearer(&app), 200, None, "the genuine token").await;
    assert!(verified("valid").await - valid <= services);
    expect(bearer(&forged), 401, Some("invalid_token"), "forged, after").await;
}
