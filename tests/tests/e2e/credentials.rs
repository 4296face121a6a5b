//! API credentials and their token flows (CONTRACT §3.2) end to end through the gateway, once
//! per mode: credentials CRUD and its tenant rules; API key → access/refresh pair, refresh,
//! the reference access_token flow; revocation at the gateway and for refresh tokens;
//! refresh rotation with reuse detection revoking a whole family.

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Mode, Stack, journey};

/// Status and JSON body (null when not JSON) of a request through the gateway.
async fn call(
    stack: &Stack,
    method: Method,
    path: &str,
    who: &HeaderMap,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let request = stack.request(method, path).headers(who.clone());
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    let response = request.send().await.expect("sent");
    let status = response.status();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A public token route's answer: status and body.
async fn post_token(stack: &Stack, path: &str, body: Value) -> (StatusCode, Value) {
    call(stack, Method::POST, path, &HeaderMap::new(), Some(body)).await
}

/// The status of an operator API read with `access` as bearer token.
async fn read_with(stack: &Stack, access: &str) -> reqwest::Response {
    stack
        .request(Method::GET, "/v3/journeys?status=pending")
        .bearer_auth(access)
        .send()
        .await
        .expect("sent")
}

/// Whether `access` is refused at the gateway as revoked, within the propagation delay.
async fn refused_as_revoked(stack: &Stack, access: &str) -> bool {
    stack
        .eventually(Duration::from_secs(2), || async {
            let r = read_with(stack, access).await;
            r.status() == 401 && r.headers()["x-gateway-error"] == "revoked_token"
        })
        .await
}

fn tokens_of(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("a JSON array")
        .iter()
        .filter_map(|c| c["token_id"].as_str())
        .collect()
}

async fn crud(mode: Mode) {
    let stack = Stack::start(mode).await.expect("stack starts");
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let (op1, op1_admin) = stack.operator_with_admin(&admin).await.unwrap();
    let (op2, _) = stack.operator_with_admin(&admin).await.unwrap();
    let path = "/v3/auth/credentials";

    // An operator admin creates one for its own operator, named as the reference requires:
    // without it, or with anything else, 403 (the reference's guard, CONTRACT §4).
    for refused in [
        json!({}),
        json!({"operator_id": op2}),
        json!({"operator_id": "wrong"}),
    ] {
        let (status, body) = call(&stack, Method::POST, path, &op1_admin, Some(refused)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    let (status, created) = call(
        &stack,
        Method::POST,
        path,
        &op1_admin,
        Some(json!({"operator_id": op1})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let access_key = created["access_key"].as_str().unwrap().to_owned();
    let secret_key = created["secret_key"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(&access_key).is_ok());
    assert_eq!(secret_key.len(), 43, "32 bytes in base64url");
    assert_eq!(created["api_key"], format!("{access_key}.{secret_key}"));
    let (status, _) = call(
        &stack,
        Method::POST,
        path,
        &op1_admin,
        Some(json!({"operator_id": op1})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    // Listing shows its own, without secrets, asked by its operator id.
    let own = format!("{path}?operator_id={op1}");
    let (status, listed) = call(&stack, Method::GET, &own, &op1_admin, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tokens_of(&listed).len(), 2);
    assert!(tokens_of(&listed).contains(&access_key.as_str()));
    let first = &listed[0];
    assert_eq!(first["operator_id"], op1);
    assert_eq!(first["role"], "operator.application");
    assert!(first["created_at"].is_string());
    assert!(first.get("secret_key").is_none() && first.get("secret_hash").is_none());
    for refused in [
        path.to_owned(),
        format!("{path}?operator_id={op2}"),
        format!("{path}?operator_id=x"),
    ] {
        let (status, _) = call(&stack, Method::GET, &refused, &op1_admin, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    }

    // The registry admin must name an operator that exists, by an integer.
    let (status, body) = call(&stack, Method::POST, path, &admin, Some(json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["error"]["data"],
        json!([": must have required property 'operator_id'"])
    );
    let (status, body) = call(
        &stack,
        Method::POST,
        path,
        &admin,
        Some(json!({"operator_id": "one"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["error"]["data"],
        json!(["/operator_id: must be integer"])
    );
    let (status, _) = call(
        &stack,
        Method::POST,
        path,
        &admin,
        Some(json!({"operator_id": 999_999})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let other = stack.credential(&admin, op2).await.unwrap();
    let other_key = other["access_key"].as_str().unwrap();
    let (_, all) = call(&stack, Method::GET, path, &admin, None).await;
    assert_eq!(tokens_of(&all).len(), 3);
    let (_, of_op2) = call(
        &stack,
        Method::GET,
        &format!("{path}?operator_id={op2}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(tokens_of(&of_op2), vec![other_key]);

    // Deleting: naming another operator is 403; another operator's key under one's own
    // operator id is not found.
    let delete =
        |operator: i64, token: &str| format!("{path}?operator_id={operator}&token_id={token}");
    let (status, _) = call(
        &stack,
        Method::DELETE,
        &delete(op2, other_key),
        &op1_admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(
        &stack,
        Method::DELETE,
        &delete(op1, other_key),
        &op1_admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&stack, Method::DELETE, &delete(999_999, "x"), &admin, None).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a registry admin naming no operator"
    );
    let (status, body) = call(
        &stack,
        Method::DELETE,
        &format!("{path}?operator_id={op1}"),
        &op1_admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = call(
        &stack,
        Method::DELETE,
        &delete(op1, "not-a-key"),
        &op1_admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(
        &stack,
        Method::DELETE,
        &delete(op1, &access_key),
        &op1_admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(
        &stack,
        Method::DELETE,
        &delete(op1, &access_key),
        &op1_admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "already revoked");
    let (_, listed) = call(&stack, Method::GET, &own, &op1_admin, None).await;
    assert!(!tokens_of(&listed).contains(&access_key.as_str()));
    let (status, _) = call(
        &stack,
        Method::DELETE,
        &delete(op2, other_key),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // An operator user may not manage credentials.
    let user = stack
        .user_with_role(&admin, op1, "operator.user")
        .await
        .unwrap();
    let (status, body) = call(&stack, Method::POST, path, &user, Some(json!({}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // Bad bodies are 4xx in the JSON-RPC shape, in our words.
    for (content_type, raw, expected) in [
        ("application/json", "not json", StatusCode::BAD_REQUEST),
        (
            "application/json",
            r#"{"operator_id":"one"}"#,
            StatusCode::FORBIDDEN,
        ),
        (
            "application/json",
            r#"{"operator_id":1,"surprise":1}"#,
            StatusCode::BAD_REQUEST,
        ),
        ("text/plain", "{}", StatusCode::UNSUPPORTED_MEDIA_TYPE),
    ] {
        let r = stack
            .request(Method::POST, path)
            .headers(op1_admin.clone())
            .header("content-type", content_type)
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), expected, "{raw}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["jsonrpc"], "2.0");
        let data = body["error"]["data"].to_string();
        for parser_words in ["line 1 column", "expected", "invalid type", "deserialize"] {
            assert!(!data.contains(parser_words), "{data}");
        }
    }

    let (_, audit) = call(&stack, Method::GET, "/admin/audit", &admin, None).await;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for action in ["credential.create", "credential.revoke"] {
        assert!(actions.contains(&action), "audit has {action}: {actions:?}");
    }
    stack.stop().await;
}

async fn token_flows(mode: Mode) {
    let stack = Stack::start(mode).await.expect("stack starts");
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let (op, op_admin) = stack.operator_with_admin(&admin).await.unwrap();
    let credential = stack.credential(&op_admin, op).await.unwrap();
    let api_key = credential["api_key"].as_str().unwrap();
    let access_key = credential["access_key"].as_str().unwrap();
    let secret_key = credential["secret_key"].as_str().unwrap();

    // API key → access + refresh, in the published shape.
    let issued = stack
        .request(Method::POST, "/api/v1/auth/token/")
        .header("x-request-id", "cred-req-1")
        .json(&json!({"apiKey": api_key}))
        .send()
        .await
        .unwrap();
    assert_eq!(issued.status(), StatusCode::OK);
    let issued: Value = issued.json().await.unwrap();
    assert_eq!(issued["meta"]["request_id"], "cred-req-1");
    assert!(
        chrono::DateTime::parse_from_rfc3339(issued["meta"]["timestamp"].as_str().unwrap()).is_ok()
    );
    let data = &issued["data"];
    let access = data["access"].as_str().unwrap().to_owned();
    let refresh = data["refresh"].as_str().unwrap().to_owned();
    assert!(
        !refresh.contains('.'),
        "the refresh token is opaque, not a JWT"
    );
    assert_eq!(data["refesh_expire"], data["refresh_expire"]);
    let expiry = |field: &str| {
        chrono::DateTime::parse_from_rfc3339(data[field].as_str().unwrap())
            .unwrap()
            .with_timezone(&chrono::Utc)
            - chrono::Utc::now()
    };
    assert!((3500..=3600).contains(&expiry("access_expire").num_seconds()));
    assert!((7 * 86_400 - 100..=7 * 86_400).contains(&expiry("refresh_expire").num_seconds()));

    // The access token works on the operator API.
    let pushed = stack
        .request(Method::POST, "/v3/journeys")
        .bearer_auth(&access)
        .json(&journey("cred-journey-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), StatusCode::CREATED);
    // ... but not on an admin route.
    let r = stack
        .request(Method::GET, "/v3/auth/credentials")
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-gateway-error"], "token_not_accepted_here");

    // Refresh, without and with the trailing slash; no rotation: the token stays usable.
    for path in ["/api/v1/auth/token/refresh", "/api/v1/auth/token/refresh/"] {
        let (status, body) = post_token(&stack, path, json!({"refresh": refresh})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(
            body["data"].get("refresh").is_none(),
            "no rotation by default"
        );
        assert!(body["data"]["access_expires"].is_string());
        let fresh = body["data"]["access"].as_str().unwrap();
        assert_ne!(fresh, access);
        assert_eq!(read_with(&stack, fresh).await.status(), StatusCode::OK);
    }
    let (status, _) = post_token(&stack, "/api/v1/auth/token", json!({"apiKey": api_key})).await;
    assert_eq!(status, StatusCode::OK, "without the trailing slash too");

    // A wrong secret and an unknown key get the same answer, apart from meta.
    let wrong_secret = format!("{access_key}.{}", "A".repeat(43));
    let unknown_key = format!("{}.{secret_key}", uuid::Uuid::new_v4());
    let mut errors = Vec::new();
    for key in [wrong_secret.as_str(), unknown_key.as_str(), "no-dot-at-all"] {
        let (status, body) =
            post_token(&stack, "/api/v1/auth/token/", json!({"apiKey": key})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(body["meta"]["timestamp"].is_string());
        errors.push(body["error"].clone());
    }
    assert_eq!(errors[0]["code"], "invalid_api_key");
    assert!(errors.iter().all(|e| *e == errors[0]), "{errors:?}");
    let (status, body) = post_token(
        &stack,
        "/api/v1/auth/token/refresh/",
        json!({"refresh": "nope"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "invalid_refresh_token");

    // Bad bodies: 400 in the same error shape.
    for (content_type, raw) in [
        ("application/json", "{"),
        ("application/json", "{}"),
        ("application/json", r#"{"apiKey": 12}"#),
        ("text/plain", r#"{"apiKey": "x.y"}"#),
    ] {
        for path in ["/api/v1/auth/token/", "/api/v1/auth/token/refresh/"] {
            let r = stack
                .request(Method::POST, path)
                .header("content-type", content_type)
                .body(raw)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path} {raw}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "invalid_request", "{body}");
            assert!(body["meta"]["timestamp"].is_string());
        }
    }

    // The reference flow: a key pair for an access token.
    let (status, body) = post_token(
        &stack,
        "/v3/auth/access_token",
        json!({"access_key": access_key, "secret_key": secret_key}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let reference = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(read_with(&stack, &reference).await.status(), StatusCode::OK);
    let (status, body) = post_token(
        &stack,
        "/v3/auth/access_token",
        json!({"access_key": access_key, "secret_key": "wrong"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["data"], "Invalid access key or secret key");

    // Revoking the credential kills its access tokens at the gateway and its refresh tokens.
    let (status, _) = call(
        &stack,
        Method::DELETE,
        &format!("/v3/auth/credentials?operator_id={op}&token_id={access_key}"),
        &op_admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(
        refused_as_revoked(&stack, &access).await,
        "access token refused"
    );
    assert!(
        refused_as_revoked(&stack, &reference).await,
        "reference token refused"
    );
    let (status, body) = post_token(
        &stack,
        "/api/v1/auth/token/refresh/",
        json!({"refresh": refresh}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "credential_revoked");
    let (status, body) =
        post_token(&stack, "/api/v1/auth/token/", json!({"apiKey": api_key})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], errors[0], "a revoked key is just a bad key");
    stack.stop().await;
}

async fn rotation(mode: Mode) {
    let stack = Stack::start(mode).await.expect("stack starts");
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let (op, op_admin) = stack.operator_with_admin(&admin).await.unwrap();
    let option = format!("/admin/operators/{op}");

    // Only a registry admin turns rotation on.
    let on = json!({"refresh_rotation": true});
    let (status, _) = call(&stack, Method::PATCH, &option, &op_admin, Some(on.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = call(&stack, Method::PATCH, &option, &admin, Some(json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = call(
        &stack,
        Method::PATCH,
        "/admin/operators/999999",
        &admin,
        Some(on.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = call(&stack, Method::PATCH, &option, &admin, Some(on)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], op);
    assert_eq!(body["refresh_rotation"], true);

    let credential = stack.credential(&op_admin, op).await.unwrap();
    let api_key = credential["api_key"].as_str().unwrap();
    let family = stack.token_pair(api_key).await.unwrap();
    let other = stack.token_pair(api_key).await.unwrap();
    let first_access = family["access"].as_str().unwrap().to_owned();
    let first_refresh = family["refresh"].as_str().unwrap().to_owned();

    // A refresh answers the family's next refresh token and spends the one presented.
    let refresh_path = "/api/v1/auth/token/refresh/";
    let (status, body) = post_token(&stack, refresh_path, json!({"refresh": first_refresh})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second_access = body["data"]["access"].as_str().unwrap().to_owned();
    let second_refresh = body["data"]["refresh"].as_str().unwrap().to_owned();
    assert!(body["data"]["refresh_expire"].is_string());
    assert_ne!(second_refresh, first_refresh);
    assert_eq!(
        read_with(&stack, &second_access).await.status(),
        StatusCode::OK
    );

    // Reuse of the spent one revokes the whole family.
    let (status, body) = post_token(&stack, refresh_path, json!({"refresh": first_refresh})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "refresh_reused");
    let (status, body) = post_token(&stack, refresh_path, json!({"refresh": second_refresh})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "refresh_revoked");
    assert!(refused_as_revoked(&stack, &first_access).await);
    assert!(refused_as_revoked(&stack, &second_access).await);

    // Another family of the same credential is untouched.
    let other_access = other["access"].as_str().unwrap();
    assert_eq!(
        read_with(&stack, other_access).await.status(),
        StatusCode::OK
    );
    let (status, body) = post_token(
        &stack,
        refresh_path,
        json!({"refresh": other["refresh"].as_str().unwrap()}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let next = body["data"]["access"].as_str().unwrap();
    assert_eq!(read_with(&stack, next).await.status(), StatusCode::OK);

    let (_, audit) = call(&stack, Method::GET, "/admin/audit", &admin, None).await;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for action in ["refresh.reuse_detected", "operator.update"] {
        assert!(actions.contains(&action), "audit has {action}: {actions:?}");
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_crud_respects_operators_embedded() {
    crud(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_crud_respects_operators_on_postgres_and_redis() {
    crud(Mode::Production).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_tokens_work_until_the_credential_is_revoked_embedded() {
    token_flows(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_tokens_work_until_the_credential_is_revoked_on_postgres_and_redis() {
    token_flows(Mode::Production).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_reuse_revokes_the_family_embedded() {
    rotation(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_reuse_revokes_the_family_on_postgres_and_redis() {
    rotation(Mode::Production).await;
}
