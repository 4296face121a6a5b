//! Browser sessions end to end (CONTRACT §3.3), once per mode: the gateway hands out a
//! `sessid`, `POST /profile/signin` binds a user to it, unsafe requests need the CSRF token,
//! cross-site ones are refused, signing out and blacklisting end the session while the
//! `sessid` stays. Cookies are sent by hand (no cookie jar) so each test sees what goes out.

use reqwest::{Method, Response};
use serde_json::{Value, json};
use std::time::Duration;
use tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Browser, Mode, Stack, cookie_value, set_cookie};

async fn refused(r: Response, status: u16, reason: &str) {
    assert_eq!(r.status(), status, "{reason}");
    assert_eq!(r.headers()["x-gateway-error"], reason);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["data"], reason);
}

fn get(stack: &Stack, path: &str, browser: &Browser) -> reqwest::RequestBuilder {
    stack
        .request(Method::GET, path)
        .header("cookie", browser.cookie())
}

async fn sessions(mode: Mode) {
    let stack = Stack::start(mode).await.expect("stack starts");

    // A first request gets a sessid, whatever the answer (here the gateway's own 401).
    let first = stack.request(Method::GET, "/profile").send().await.unwrap();
    let line = set_cookie(&first, "sessid").expect("a first request gets a sessid");
    for attribute in ["Path=/", "HttpOnly", "SameSite=Lax"] {
        assert!(line.contains(attribute), "{line} has {attribute}");
    }
    assert!(!line.contains("Secure"), "not configured here: {line}");
    refused(first, 401, "missing_token").await;
    let mut browser = Browser {
        sessid: cookie_value(&line),
        ..Browser::default()
    };
    assert_eq!(browser.sessid.len(), 43);

    // Sent back, it is kept: no new sessid; still anonymous.
    let second = get(&stack, "/profile", &browser).send().await.unwrap();
    assert!(set_cookie(&second, "sessid").is_none());
    refused(second, 401, "missing_token").await;
    // A malformed one is replaced.
    let bad = stack
        .request(Method::GET, "/nowhere")
        .header("cookie", "sessid=forged")
        .send()
        .await
        .unwrap();
    let replaced = set_cookie(&bad, "sessid").expect("a malformed sessid is replaced");
    assert_ne!(cookie_value(&replaced), "forged");
    refused(bad, 404, "route_not_found").await;

    // An operator admin signs in on that session.
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let (operator_id, op_admin) = stack.operator_with_admin(&admin).await.unwrap();
    let op_email = op_admin["uid"].to_str().unwrap().to_owned();
    let signed_in = stack
        .browser_sign_in(&mut browser, &op_email, ADMIN_PASSWORD)
        .await
        .unwrap();
    assert_eq!(signed_in["user"]["email"], op_email.as_str());
    assert_eq!(signed_in["user"]["role"], "operator.admin");
    assert_eq!(signed_in["user"]["operator_id"], operator_id);
    let user_id = signed_in["user"]["id"].as_str().unwrap().to_owned();
    let csrf = browser.csrf.clone().expect("signin gives a csrf token");

    let profile = get(&stack, "/profile", &browser).send().await.unwrap();
    assert_eq!(profile.status(), 200);
    assert!(
        set_cookie(&profile, "sessid").is_none(),
        "the sessid never changes"
    );
    let profile: Value = profile.json().await.unwrap();
    assert_eq!(profile["user"]["id"], user_id.as_str());
    assert_eq!(profile["user"]["last_name"], "Lovelace");
    assert_eq!(profile["csrf_token"], csrf.as_str());

    // Unsafe methods need the CSRF token.
    let post_app = |b: &Browser| {
        stack
            .request(Method::POST, "/applications")
            .header("cookie", b.cookie())
            .json(&json!({"name": "console"}))
    };
    refused(post_app(&browser).send().await.unwrap(), 403, "csrf_failed").await;
    refused(
        post_app(&browser)
            .header("x-csrf-token", "a guess")
            .send()
            .await
            .unwrap(),
        403,
        "csrf_failed",
    )
    .await;
    let created = post_app(&browser)
        .header("x-csrf-token", &csrf)
        .header("origin", &stack.url)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    // Cross-site unsafe requests carrying cookies are refused, even with the token, and so
    // is a cross-site sign-in (login CSRF).
    refused(
        post_app(&browser)
            .header("x-csrf-token", &csrf)
            .header("origin", "https://evil.test")
            .send()
            .await
            .unwrap(),
        403,
        "csrf_failed",
    )
    .await;
    refused(
        post_app(&browser)
            .header("x-csrf-token", &csrf)
            .header("sec-fetch-site", "cross-site")
            .send()
            .await
            .unwrap(),
        403,
        "csrf_failed",
    )
    .await;
    refused(
        stack
            .request(Method::POST, "/profile/signin")
            .header("origin", "https://evil.test")
            .json(&json!({"login": op_email, "password": ADMIN_PASSWORD}))
            .send()
            .await
            .unwrap(),
        403,
        "csrf_failed",
    )
    .await;

    // Every forgery refused above is an auth outcome (cross-site ones included); outcomes
    // of other steps are not exported as auth outcomes.
    let metrics = stack.gateway_metrics(0).await.unwrap();
    let csrf_refusals = metrics
        .lines()
        .find_map(|l| l.strip_prefix("gateway_auth_outcomes_total{outcome=\"csrf_failed\"} "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(csrf_refusals >= Some(4), "{csrf_refusals:?}");
    assert!(!metrics.contains("outcome=\"route_not_found\""));

    // The session token is no bearer token, and is bound to its sessid.
    refused(
        stack
            .request(Method::GET, "/profile")
            .bearer_auth(browser.sessauth.as_deref().unwrap())
            .send()
            .await
            .unwrap(),
        401,
        "invalid_token",
    )
    .await;
    let mut stolen = browser.clone();
    stolen.sessid = stack.browser().await.unwrap().sessid;
    refused(
        get(&stack, "/profile", &stolen).send().await.unwrap(),
        401,
        "invalid_token",
    )
    .await;

    // Signing out clears sessauth, keeps the sessid, and the old token is dead.
    let old = browser.clone();
    let out = stack
        .request(Method::POST, "/profile/signout")
        .header("cookie", browser.cookie())
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 200);
    assert!(set_cookie(&out, "sessid").is_none(), "the sessid is kept");
    let cleared = set_cookie(&out, "sessauth").expect("signout clears sessauth");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(cookie_value(&cleared), "");
    assert_eq!(out.json::<Value>().await.unwrap(), json!({"success": true}));
    browser.sessauth = None;
    refused(
        get(&stack, "/profile", &browser).send().await.unwrap(),
        401,
        "missing_token",
    )
    .await;
    // The revocation reaches the gateway through the blacklist feed: within a second.
    let revoked = stack
        .eventually(Duration::from_secs(1), || async {
            let r = get(&stack, "/profile", &old).send().await.unwrap();
            r.status() == 401
        })
        .await;
    assert!(revoked, "the signed-out session token is refused");
    refused(
        get(&stack, "/profile", &old).send().await.unwrap(),
        401,
        "revoked_token",
    )
    .await;

    // A wrong password gets 401 and no cookie.
    let wrong = stack
        .request(Method::POST, "/profile/signin")
        .header("cookie", browser.cookie())
        .json(&json!({"login": op_email, "password": "not the password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(set_cookie(&wrong, "sessauth").is_none());
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["error"]["data"], "invalid_credentials");

    // Roles apply to sessions: a registry admin's session may manage operators, an
    // operator admin's may not.
    let mut staff = stack.browser().await.unwrap();
    stack
        .browser_sign_in(&mut staff, ADMIN_EMAIL, ADMIN_PASSWORD)
        .await
        .unwrap();
    let listed = get(&stack, "/admin/operators", &staff)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    stack
        .browser_sign_in(&mut browser, &op_email, ADMIN_PASSWORD)
        .await
        .unwrap();
    refused(
        get(&stack, "/admin/operators", &browser)
            .send()
            .await
            .unwrap(),
        403,
        "insufficient_permissions",
    )
    .await;

    // Blacklisting the user ends their sessions.
    let blacklisted = stack
        .request(Method::POST, "/admin/blacklist")
        .header("cookie", staff.cookie())
        .header("x-csrf-token", staff.csrf.as_deref().unwrap())
        .json(&json!({"kind": "user", "value": user_id, "reason": "left the company"}))
        .send()
        .await
        .unwrap();
    assert_eq!(blacklisted.status(), 201);
    let ended = stack
        .eventually(Duration::from_secs(2), || async {
            let r = get(&stack, "/profile", &browser).send().await.unwrap();
            r.status() == 401 && r.headers()["x-gateway-error"] == "revoked_token"
        })
        .await;
    assert!(ended, "a blacklisted user's session is refused");
    let still = get(&stack, "/profile", &staff).send().await.unwrap();
    assert_eq!(still.status(), 200, "other sessions live on");

    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_sessions_work_through_the_gateway_embedded() {
    sessions(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_sessions_work_through_the_gateway_on_postgres_and_redis() {
    sessions(Mode::Production).await;
}

/// Bad sign-in bodies get a 4xx in the JSON-RPC error shape, never a 500 or a cookie.
async fn bad_sign_ins(mode: Mode) {
    let stack = Stack::start(mode).await.expect("stack starts");
    let browser = stack.browser().await.unwrap();
    let cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        (
            "malformed JSON",
            "application/json",
            b"{\"login\":".to_vec(),
            400,
        ),
        (
            "missing field",
            "application/json",
            br#"{"login":"a@b.test"}"#.to_vec(),
            400,
        ),
        (
            "wrong type",
            "application/json",
            br#"{"login":1,"password":"x"}"#.to_vec(),
            400,
        ),
        (
            "unknown field",
            "application/json",
            br#"{"login":"a","password":"b","email":"c"}"#.to_vec(),
            400,
        ),
        ("wrong content type", "text/plain", b"login=a".to_vec(), 415),
        (
            "huge body",
            "application/json",
            format!(r#"{{"login":"{}","password":"x"}}"#, "a".repeat(100_000)).into_bytes(),
            413,
        ),
    ];
    for (name, content_type, body, status) in cases {
        let r = stack
            .request(Method::POST, "/profile/signin")
            .header("cookie", browser.cookie())
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{name}");
        assert!(set_cookie(&r, "sessauth").is_none(), "{name}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["jsonrpc"], "2.0", "{name}");
        assert!(body["error"]["code"].is_i64(), "{name}");
    }
    // Unknown login and wrong password: the same answer.
    let mut answers = Vec::new();
    for (login, password) in [(ADMIN_EMAIL, "wrong password!"), ("nobody@x.test", "x")] {
        let r = stack
            .request(Method::POST, "/profile/signin")
            .header("cookie", browser.cookie())
            .json(&json!({"login": login, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        answers.push(r.text().await.unwrap());
    }
    assert_eq!(answers[0], answers[1]);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sign_ins_get_a_clear_4xx_embedded() {
    bad_sign_ins(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sign_ins_get_a_clear_4xx_on_postgres_and_redis() {
    bad_sign_ins(Mode::Production).await;
}

/// The attack of the security review (issue 26, finding 9): where the gateway is reached
/// over TLS (its public address is not loopback), a page on a sibling subdomain or over plain
/// HTTP could plant a `sessid` cookie of its choosing (cookie tossing) and fixate a session.
/// There the session cookies are `__Host-` cookies, `Secure`, which browsers accept only from
/// this very host over TLS; cookies under the plain names are not a session.
async fn over_tls_session_cookies_are_host_only_and_secure(mode: Mode) {
    fn public(gw: &mut gateway::Settings) {
        gw.listen = std::net::SocketAddr::from(([0, 0, 0, 0], gw.listen.port()));
    }
    let options = tests::Options {
        gateway_settings: Some(public),
        ..tests::Options::default()
    };
    let stack = Stack::start_with(mode, options)
        .await
        .expect("stack starts");
    let first = stack.request(Method::GET, "/profile").send().await.unwrap();
    assert!(set_cookie(&first, "sessid").is_none(), "no plain sessid");
    let line = set_cookie(&first, "__Host-sessid").expect("a __Host-sessid");
    for attribute in ["Path=/", "HttpOnly", "SameSite=Lax", "Secure"] {
        assert!(line.contains(attribute), "{line} has {attribute}");
    }
    let sessid = cookie_value(&line);

    let signin = stack
        .request(Method::POST, "/profile/signin")
        .header("cookie", format!("__Host-sessid={sessid}"))
        .json(&json!({"login": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(signin.status(), 200);
    assert!(
        set_cookie(&signin, "sessauth").is_none(),
        "no plain sessauth"
    );
    let line = set_cookie(&signin, "__Host-sessauth").expect("a __Host-sessauth");
    assert!(line.contains("Secure") && line.contains("Path=/"), "{line}");
    let sessauth = cookie_value(&line);

    let profile = |cookie: String| {
        stack
            .request(Method::GET, "/profile")
            .header("cookie", cookie)
            .send()
    };
    let mine = profile(format!(
        "__Host-sessid={sessid}; __Host-sessauth={sessauth}"
    ))
    .await
    .unwrap();
    assert_eq!(mine.status(), 200);
    // The same values under the names a sibling subdomain can set: no session.
    let tossed = profile(format!("sessid={sessid}; sessauth={sessauth}"))
        .await
        .unwrap();
    refused(tossed, 401, "missing_token").await;
    stack.stop().await;
}

#[tokio::test]
async fn over_tls_session_cookies_are_host_only_and_secure_embedded() {
    over_tls_session_cookies_are_host_only_and_secure(Mode::Embedded).await;
}

#[tokio::test]
async fn over_tls_session_cookies_are_host_only_and_secure_production() {
    over_tls_session_cookies_are_host_only_and_secure(Mode::Production).await;
}
