//! The walking skeleton's slice, end to end through the gateway, once per mode: registry
//! admin signs in, creates an operator and its admin; the operator admin creates an
//! application token; the token pushes a journey and reads its status; security blacklists
//! the application and the token's next call is refused.

use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Mode, Stack, journey};

async fn slice(mode: Mode) {
    let stack = Stack::start(mode).await.expect("stack starts");
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let (operator_id, op_admin) = stack.operator_with_admin(&admin).await.unwrap();

    // 3. the operator admin creates an application token
    let created = stack
        .request(Method::POST, "/applications")
        .headers(op_admin.clone())
        .json(&json!({"name": "backend"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    let app_uuid = created["application"]["uuid"].as_str().unwrap().to_owned();
    assert_eq!(created["application"]["operator_id"], operator_id);
    let listed: Value = stack
        .request(Method::GET, "/applications")
        .headers(op_admin.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["uuid"], app_uuid.as_str());
    assert!(listed[0].get("token").is_none(), "the token is shown once");

    // 4. the token pushes a journey: 201 with the reference's JSON-RPC body
    let pushed = stack
        .request(Method::POST, "/v3/journeys")
        .bearer_auth(&token)
        .header("x-request-id", "e2e-req-1")
        .json(&journey("journey-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 201);
    assert_eq!(pushed.headers()["x-request-id"], "e2e-req-1");
    assert_eq!(pushed.headers()["x-api-version"], "v3.3");
    let body: Value = pushed.json().await.unwrap();
    assert_eq!(body["jsonrpc"], "2.0");
    assert_eq!(body["id"], 1);
    assert_eq!(body["result"]["meta"], Value::Null);
    assert_eq!(body["result"]["data"]["operator_journey_id"], "journey-1");
    assert!(body["result"]["data"]["created_at"].is_string());

    // 5. its status
    let status = stack
        .request(Method::GET, "/v3/journeys/journey-1")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 200);
    let status: Value = status.json().await.unwrap();
    assert_eq!(status["operator_journey_id"], "journey-1");
    assert_eq!(status["status"], "pending");

    // 6. security staff (the registry admin here) blacklists the application
    let listed = stack
        .request(Method::POST, "/admin/blacklist")
        .headers(admin.clone())
        .json(&json!({"kind": "application", "value": app_uuid, "reason": "abuse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 201);
    let refused = stack
        .eventually(Duration::from_secs(2), || async {
            let r = stack
                .request(Method::GET, "/v3/journeys/journey-1")
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            r.status() == 401 && r.headers()["x-gateway-error"] == "revoked_token"
        })
        .await;
    assert!(refused, "a blacklisted application's token is refused");
    let audit: Value = stack
        .request(Method::GET, "/admin/audit")
        .headers(admin.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for action in [
        "blacklist.add",
        "application.create",
        "user.create",
        "operator.create",
    ] {
        assert!(actions.contains(&action), "audit has {action}: {actions:?}");
    }

    // Going around the gateway gets nothing.
    let direct = stack
        .http
        .post(format!("http://{}/v3/journeys", stack.registry_addr))
        .bearer_auth(&token)
        .json(&journey("journey-2"))
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 401);
    let direct = stack
        .http
        .get(format!("http://{}/admin/operators", stack.auth_addr))
        .headers(admin.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 401);

    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slice_works_through_the_gateway_embedded() {
    slice(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slice_works_through_the_gateway_on_postgres_and_redis() {
    slice(Mode::Production).await;
}

/// The gateway's own refusals, in pipeline order, with the contract's body and headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_refusals_follow_the_pipeline_order() {
    let stack = Stack::start(Mode::Embedded).await.unwrap();
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let (operator_id, op_admin) = stack.operator_with_admin(&admin).await.unwrap();
    let token: Value = stack
        .request(Method::POST, "/applications")
        .headers(op_admin.clone())
        .json(&json!({"name": "backend"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap().to_owned();

    let expect = |status: u16, reason: &'static str| {
        move |r: reqwest::Response| async move {
            assert_eq!(r.status(), status, "{reason}");
            assert_eq!(r.headers()["x-gateway-error"], reason);
            assert!(r.headers().contains_key("x-request-id"));
            if status == 401 {
                assert_eq!(r.headers()["www-authenticate"], "Bearer");
            }
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["jsonrpc"], "2.0");
            assert_eq!(body["error"]["data"], reason);
            let rpc_code = match status {
                401 => -32501,
                403 => -32503,
                404 => -32504,
                422 => -32422,
                _ => unreachable!("{status}"),
            };
            assert_eq!(body["error"]["code"], rpc_code, "{reason}");
        }
    };
    let send = |m: Method, p: &str| stack.request(m, p);

    expect(404, "route_not_found")(send(Method::GET, "/nowhere").send().await.unwrap()).await;
    expect(401, "missing_token")(send(Method::POST, "/v3/journeys").send().await.unwrap()).await;
    expect(401, "invalid_token")(
        send(Method::POST, "/v3/journeys")
            .bearer_auth("not.a.jwt")
            .send()
            .await
            .unwrap(),
    )
    .await;
    // An application token on an admin route.
    expect(401, "token_not_accepted_here")(
        send(Method::GET, "/admin/operators")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    // An operator admin on a registry-admin route.
    expect(403, "insufficient_permissions")(
        send(Method::GET, "/admin/blacklist")
            .headers(op_admin.clone())
            .send()
            .await
            .unwrap(),
    )
    .await;
    // Credential and permission come before the version check.
    expect(401, "missing_token")(send(Method::POST, "/v4/journeys").send().await.unwrap()).await;
    expect(422, "unsupported_api_version")(
        send(Method::POST, "/v4/journeys")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    for header in ["v3.2", "v4"] {
        expect(422, "unsupported_api_version")(
            send(Method::POST, "/v3/journeys")
                .bearer_auth(&token)
                .header("x-api-version", header)
                .send()
                .await
                .unwrap(),
        )
        .await;
    }
    // A header that agrees with the path passes; the answer names the version served.
    let agreed = send(Method::GET, "/v3.2/journeys/none")
        .bearer_auth(&token)
        .header("x-api-version", "v3.2")
        .send()
        .await
        .unwrap();
    assert_eq!(agreed.status(), 404, "the registry's own answer");
    assert!(!agreed.headers().contains_key("x-gateway-error"));
    assert_eq!(agreed.headers()["x-api-version"], "v3.2");
    // Permission comes before the version: a role that may not create journeys.
    let user = stack
        .user_with_role(&admin, operator_id, "operator.user")
        .await
        .unwrap();
    expect(403, "insufficient_permissions")(
        send(Method::POST, "/v4/journeys")
            .headers(user)
            .send()
            .await
            .unwrap(),
    )
    .await;
    // A client may not assert identity itself: the header is replaced, the token decides.
    let forged = send(Method::GET, "/admin/operators")
        .header("x-rpc-identity", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    // The triple with a mismatched client is not the session it claims to be.
    let mut wrong = op_admin.clone();
    wrong.insert("client", "another-device".parse().unwrap());
    expect(401, "invalid_token")(
        send(Method::GET, "/applications")
            .headers(wrong)
            .send()
            .await
            .unwrap(),
    )
    .await;
    // Signing out ends that client's token.
    let entries_before = blacklist_entries(&stack).await;
    let out = send(Method::DELETE, "/api/v1/auth/sign_out")
        .headers(op_admin.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 200);
    // The sign-out reaches the gateway through the blacklist feed, as a blacklisting does
    // (asynchronously: within a second, not before the sign-out's answer).
    let applied = stack
        .eventually(Duration::from_secs(2), || async {
            blacklist_entries(&stack).await > entries_before
        })
        .await;
    assert!(
        applied,
        "the sign-out did not reach the gateway's blacklist within 2 s"
    );
    expect(401, "revoked_token")(
        send(Method::GET, "/applications")
            .headers(op_admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    // Gateway health and metrics.
    let public_health = stack.request(Method::GET, "/health").send().await.unwrap();
    assert_eq!(public_health.status(), 200);
    let public_health: serde_json::Value = public_health.json().await.unwrap();
    assert!(
        ["ok", "degraded"].contains(&public_health["status"].as_str().unwrap_or("")),
        "{public_health}"
    );
    let health = stack
        .http
        .get(format!("{}/health", stack.admin_url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // A request is counted in its logging phase, after its answer went out: read until the
    // last one is in.
    let metrics_url = format!("{}/metrics", stack.admin_url);
    let metrics = || async {
        let response = stack.http.get(&metrics_url).send().await.unwrap();
        response.text().await.unwrap()
    };
    let own_health = "gateway_requests_total{method=\"GET\",route=\"/health\",status=\"200\"} 1";
    let counted = stack
        .eventually(Duration::from_secs(5), || async {
            metrics().await.contains(own_health)
        })
        .await;
    assert!(counted, "the gateway's own /health is labelled by its path");
    let metrics = metrics().await;
    assert!(metrics.contains("gateway_auth_outcomes_total{outcome=\"revoked_token\"} 1"));
    assert!(
        metrics.contains(
            "gateway_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1"
        )
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_login_get_the_same_answer() {
    let stack = Stack::start(Mode::Embedded).await.unwrap();
    let mut bodies = Vec::new();
    for (email, password) in [
        (ADMIN_EMAIL, "wrong password!"),
        ("nobody@x.test", "whatever it is"),
    ] {
        let r = stack
            .request(Method::POST, "/api/v1/auth/sign_in")
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers().get("access-token").is_none());
        bodies.push(r.text().await.unwrap());
    }
    assert_eq!(bodies[0], bodies[1]);
    stack.stop().await;
}

/// `gateway_blacklist_entries` of the stack's first gateway.
async fn blacklist_entries(stack: &Stack) -> u64 {
    let metrics = stack.gateway_metrics(0).await.unwrap();
    metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("gateway_blacklist_entries ")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}
