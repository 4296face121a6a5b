//! Sign-in throttling (CONTRACT §3): five failures for one (login, client IP) within a
//! minute, then 429 with `Retry-After`, the same for a login that does not exist.

use reqwest::Method;
use serde_json::{Value, json};
use tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Mode, Stack};

async fn attempt(stack: &Stack, email: &str, password: &str) -> (u16, Option<u64>, Value) {
    let response = stack
        .request(Method::POST, "/api/v1/auth/sign_in")
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (status, retry_after, response.json().await.unwrap())
}

async fn throttled_after_five_failures(mode: Mode) {
    let stack = Stack::start(mode).await.unwrap();
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let (_, op_admin) = stack.operator_with_admin(&admin).await.unwrap();
    let op_login = op_admin["uid"].to_str().unwrap().to_owned();
    let mut bodies = vec![];
    for login in [ADMIN_EMAIL, "nobody@registry.test"] {
        for _ in 0..5 {
            let (status, _, body) = attempt(&stack, login, "wrong password").await;
            assert_eq!(status, 401, "{login}");
            bodies.push(body);
        }
        // Locked now, even with the right password (for the real login).
        let (status, retry_after, body) = attempt(&stack, login, ADMIN_PASSWORD).await;
        assert_eq!(status, 429, "{login}");
        assert!(
            retry_after.is_some_and(|s| (1..=60).contains(&s)),
            "{retry_after:?}"
        );
        assert_eq!(body["error"]["code"], -32029);
        assert_eq!(body["error"]["data"], "too_many_failed_sign_ins");
        bodies.push(body);
    }
    // The answers do not tell an existing login from an unknown one.
    assert_eq!(bodies[0..6], bodies[6..12]);
    assert_eq!(bodies[0]["error"]["data"], "invalid_credentials");

    // Another login from the same address is not locked.
    assert_eq!(attempt(&stack, &op_login, ADMIN_PASSWORD).await.0, 200);
    assert_eq!(attempt(&stack, ADMIN_EMAIL, ADMIN_PASSWORD).await.0, 429);
    stack.stop().await;
}

#[tokio::test]
async fn sign_in_is_throttled_embedded() {
    throttled_after_five_failures(Mode::Embedded).await;
}

#[tokio::test]
async fn sign_in_is_throttled_production() {
    throttled_after_five_failures(Mode::Production).await;
}

async fn api_keys_are_throttled_too(mode: Mode) {
    let stack = Stack::start(mode).await.unwrap();
    let key = uuid::Uuid::new_v4();
    for _ in 0..5 {
        let response = stack
            .request(Method::POST, "/api/v1/auth/token/")
            .json(&json!({"apiKey": format!("{key}.wrong-secret")}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
    let response = stack
        .request(Method::POST, "/api/v1/auth/token/")
        .json(&json!({"apiKey": format!("{key}.wrong-secret")}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_failed_attempts");
    assert!(body["meta"]["timestamp"].is_string());
    // The reference flow counts against the same (key, address).
    let response = stack
        .request(Method::POST, "/v3/auth/access_token")
        .json(&json!({"access_key": key.to_string(), "secret_key": "wrong-secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    stack.stop().await;
}

#[tokio::test]
async fn api_keys_are_throttled_embedded() {
    api_keys_are_throttled_too(Mode::Embedded).await;
}

#[tokio::test]
async fn api_keys_are_throttled_production() {
    api_keys_are_throttled_too(Mode::Production).await;
}
