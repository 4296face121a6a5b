//! The attack of the security review (issue 26, finding 5): security staff lifting the
//! blacklist entry that records a revocation (an application revoked by its operator, an API
//! credential revoked, a user deactivated) brought the revoked credential back, and its
//! operator could no longer revoke it (404). Such a lift is refused (409) and the credential
//! stays refused; an entry staff added on their own is still lifted as before.

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Mode, Stack, journey};

async fn call(
    stack: &Stack,
    method: Method,
    path: &str,
    by: &HeaderMap,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = stack.request(method, path).headers(by.clone());
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The active blacklist entry whose target is `value`.
async fn entry_of(stack: &Stack, admin: &HeaderMap, value: &str) -> String {
    let (_, entries) = call(stack, Method::GET, "/admin/blacklist", admin, None).await;
    entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["target_value"] == value || e["value"] == value)
        .unwrap_or_else(|| panic!("an entry for {value}: {entries}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn push(stack: &Stack, token: &str, id: &str) -> StatusCode {
    stack
        .request(Method::POST, "/v3/journeys")
        .bearer_auth(token)
        .json(&journey(id))
        .send()
        .await
        .unwrap()
        .status()
}

async fn revocations_stay(mode: Mode) {
    let stack = Stack::start(mode).await.expect("stack starts");
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let (operator_id, op_admin) = stack.operator_with_admin(&admin).await.unwrap();

    // An application revoked by its operator.
    let (_, created) = call(
        &stack,
        Method::POST,
        "/applications",
        &op_admin,
        Some(json!({"name": "leaked"})),
    )
    .await;
    let token = created["token"].as_str().unwrap().to_owned();
    let app = created["application"]["uuid"].as_str().unwrap().to_owned();
    assert_eq!(push(&stack, &token, "r-1").await, StatusCode::CREATED);
    let (status, _) = call(
        &stack,
        Method::DELETE,
        &format!("/applications/{app}"),
        &op_admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let entry = entry_of(&stack, &admin, &app).await;
    let (status, body) = call(
        &stack,
        Method::DELETE,
        &format!("/admin/blacklist/{entry}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["data"], "revocation_cannot_be_lifted");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        push(&stack, &token, "r-2").await,
        StatusCode::UNAUTHORIZED,
        "the application stays revoked"
    );

    // An API credential revoked by its operator.
    let credential = stack.credential(&op_admin, operator_id).await.unwrap();
    let key = credential["access_key"].as_str().unwrap().to_owned();
    let (status, _) = call(
        &stack,
        Method::DELETE,
        &format!("/v3/auth/credentials?operator_id={operator_id}&token_id={key}"),
        &op_admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let entry = entry_of(&stack, &admin, &key).await;
    let (status, _) = call(
        &stack,
        Method::DELETE,
        &format!("/admin/blacklist/{entry}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let pair = stack
        .request(Method::POST, "/api/v1/auth/token/")
        .json(&json!({"apiKey": credential["api_key"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        pair.status(),
        StatusCode::UNAUTHORIZED,
        "the credential stays revoked"
    );

    // A deactivated user.
    let user = stack
        .user_with_role(&admin, operator_id, "operator.user")
        .await
        .unwrap();
    let (_, profile) = call(&stack, Method::GET, "/profile", &user, None).await;
    let user_id = profile["user"]["id"].as_str().unwrap().to_owned();
    let (status, _) = call(
        &stack,
        Method::DELETE,
        &format!("/admin/users/{user_id}"),
        &admin,
        None,
    )
    .await;
    assert!(status.is_success(), "{status}");
    let entry = entry_of(&stack, &admin, &user_id).await;
    let (status, _) = call(
        &stack,
        Method::DELETE,
        &format!("/admin/blacklist/{entry}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // An entry staff added on their own is lifted as before.
    let token2 = stack.application_token(&op_admin).await.unwrap();
    let (status, _) = call(
        &stack,
        Method::POST,
        "/admin/blacklist",
        &admin,
        Some(json!({"kind": "token", "value": token2, "reason": "suspicious"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, entries) = call(&stack, Method::GET, "/admin/blacklist", &admin, None).await;
    let staff_entry = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["reason"] == "suspicious")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = call(
        &stack,
        Method::DELETE,
        &format!("/admin/blacklist/{staff_entry}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    stack.stop().await;
}

#[tokio::test]
async fn a_lift_cannot_undo_a_revocation_embedded() {
    revocations_stay(Mode::Embedded).await;
}

#[tokio::test]
async fn a_lift_cannot_undo_a_revocation_production() {
    revocations_stay(Mode::Production).await;
}
