//! Signing keys end to end: tokens verified by an independent JWT library (PyJWT) against
//! the published JWKS, and key rotation while requests flow (CONTRACT §3.5).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Mode, Stack};

/// The `kid` in a JWT's header.
fn kid_of(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

fn agent_token(triple: &HeaderMap) -> String {
    triple["access-token"].to_str().unwrap().to_owned()
}

async fn jwks(stack: &Stack) -> Value {
    let response = stack
        .request(Method::GET, "/.well-known/jwks.json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// Runs tests/pyjwt/verify.py; returns its exit success and one JSON value per token.
fn pyjwt(jwks: &Value, tokens: &[&str]) -> (bool, Vec<Value>) {
    let dir = std::env::temp_dir().join(format!("pyjwt-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("jwks.json");
    std::fs::write(&path, jwks.to_string()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/pyjwt/verify.py");
    let output = std::process::Command::new("python3")
        .arg(script)
        .arg(&path)
        .args(tokens)
        .output()
        .expect("python3 runs (scripts/prereqs.sh installs PyJWT)");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.code().is_some_and(|c| c <= 1),
        "verify.py crashed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (output.status.success(), lines)
}

async fn tokens_verify_with_pyjwt(mode: Mode) {
    let stack = Stack::start(mode).await.unwrap();
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let (operator_id, op_admin) = stack.operator_with_admin(&admin).await.unwrap();
    let app = stack.application_token(&op_admin).await.unwrap();
    let agent = agent_token(&admin);
    let published = jwks(&stack).await;
    assert!(
        published["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["kty"] == "OKP" && k["crv"] == "Ed25519" && k.get("d").is_none()),
        "public Ed25519 keys only: {published}"
    );

    let credential = stack.credential(&op_admin, operator_id).await.unwrap();
    let pair = stack
        .token_pair(credential["api_key"].as_str().unwrap())
        .await
        .unwrap();
    let access = pair["access"].as_str().unwrap();
    let mut browser = stack.browser().await.unwrap();
    stack
        .browser_sign_in(&mut browser, ADMIN_EMAIL, ADMIN_PASSWORD)
        .await
        .unwrap();
    let session = browser.sessauth.clone().unwrap();

    let (ok, results) = pyjwt(&published, &[&app, &agent, access, &session]);
    assert!(ok, "{results:?}");
    assert_eq!(results[2]["claims"]["kind"], "access");
    assert_eq!(results[2]["claims"]["sub"], credential["access_key"]);
    assert_eq!(results[3]["claims"]["kind"], "session");
    assert!(results[3]["claims"]["exp"].as_i64().unwrap() > chrono::Utc::now().timestamp());
    assert_eq!(results[0]["claims"]["kind"], "application");
    assert_eq!(results[0]["claims"]["op"], operator_id);
    assert_eq!(results[0]["claims"]["role"], "operator.application");
    assert_eq!(results[1]["claims"]["kind"], "agent");
    assert_eq!(results[1]["claims"]["role"], "registry.admin");
    assert_eq!(results[1]["kid"], kid_of(&agent));

    // A token whose payload was altered, and one verified against someone else's JWKS, fail.
    let mut parts: Vec<String> = app.split('.').map(str::to_owned).collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    claims["op"] = json!(operator_id + 1);
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    let forged = parts.join(".");
    let (ok, results) = pyjwt(&published, &[&forged]);
    assert!(!ok);
    assert!(
        results[0]["error"].as_str().unwrap().contains("Signature"),
        "{results:?}"
    );
    let other = Stack::start(Mode::Embedded).await.unwrap();
    let (ok, _) = pyjwt(&jwks(&other).await, &[&app]);
    assert!(!ok, "another deployment's keys must not verify this token");
    other.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn tokens_verify_with_pyjwt_embedded() {
    tokens_verify_with_pyjwt(Mode::Embedded).await;
}

#[tokio::test]
async fn tokens_verify_with_pyjwt_production() {
    tokens_verify_with_pyjwt(Mode::Production).await;
}

/// Lists journeys with `token` until `stop`; returns every status seen that was not 200.
fn keep_calling(
    stack: &Stack,
    token: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<u16>> {
    let (http, url) = (
        stack.http.clone(),
        format!("{}/v3/journeys?status=pending", stack.url),
    );
    tokio::spawn(async move {
        let mut failures = vec![];
        let mut calls = 0;
        while !stop.load(Ordering::Relaxed) || calls == 0 {
            let status = http
                .get(&url)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .status();
            if status != 200 {
                failures.push(status.as_u16());
            }
            calls += 1;
        }
        failures
    })
}

async fn status_of(stack: &Stack, path: &str, triple: &HeaderMap) -> (u16, Value) {
    let response = stack
        .request(Method::GET, path)
        .headers(triple.clone())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn rotation_while_requests_flow(mode: Mode) {
    let stack = Stack::start(mode).await.unwrap();
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let (_, op_admin) = stack.operator_with_admin(&admin).await.unwrap();
    let app = stack.application_token(&op_admin).await.unwrap();
    let first = kid_of(&app);
    let (status, keys) = status_of(&stack, "/admin/keys", &admin).await;
    assert_eq!(status, 200);
    assert_eq!(keys["signing"], first.as_str());

    // An operator admin may not rotate keys.
    let refused = stack
        .request(Method::POST, "/admin/keys/rotate")
        .headers(op_admin.clone())
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    let stop = Arc::new(AtomicBool::new(false));
    let flow = keep_calling(&stack, app.clone(), stop.clone());

    // Routine rotation with a 3 s overlap.
    let rotated = stack
        .request(Method::POST, "/admin/keys/rotate")
        .headers(admin.clone())
        .json(&json!({"overlap_seconds": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), 201);
    let rotated: Value = rotated.json().await.unwrap();
    let second = rotated["kid"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_eq!(rotated["retiring"][0]["kid"], first.as_str());
    assert_eq!(rotated["retiring"][0]["live_applications"], 1);

    // The new key signs at once and the gateway learns it on first sight.
    let admin2 = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    assert_eq!(kid_of(&agent_token(&admin2)), second);
    assert_eq!(status_of(&stack, "/admin/keys", &admin2).await.0, 200);
    // During the overlap the old agent token still works; both keys are published.
    assert_eq!(status_of(&stack, "/admin/keys", &admin).await.0, 200);
    let both = kids(&jwks(&stack).await);
    assert!(both.contains(&first) && both.contains(&second), "{both:?}");

    // After it, the old agent token is refused; the old key stays published for the live
    // application, whose token keeps working.
    let retired = stack
        .eventually(Duration::from_secs(10), || async {
            status_of(&stack, "/admin/keys", &admin).await.0 == 401
        })
        .await;
    assert!(
        retired,
        "the agent token signed by the retired key is refused"
    );
    let (_, body) = status_of(&stack, "/admin/keys", &admin).await;
    assert_eq!(body["error"]["data"], "invalid_token");
    assert!(kids(&jwks(&stack).await).contains(&first));
    stop.store(true, Ordering::Relaxed);
    let failures = flow.await.unwrap();
    assert!(
        failures.is_empty(),
        "calls failed during rotation: {failures:?}"
    );

    // Emergency rotation: the old keys go now, applications included.
    let rotated = stack
        .request(Method::POST, "/admin/keys/rotate")
        .headers(admin2.clone())
        .json(&json!({"overlap_seconds": 0, "keep_for_applications": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), 201);
    let app_refused = stack
        .eventually(Duration::from_secs(10), || async {
            let response = stack
                .request(Method::GET, "/v3/journeys?status=pending")
                .bearer_auth(&app)
                .send()
                .await
                .unwrap();
            response.status() == 401
        })
        .await;
    assert!(
        app_refused,
        "an emergency rotation retires application keys too"
    );
    assert_eq!(kids(&jwks(&stack).await).len(), 1);
    let admin3 = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    assert_eq!(status_of(&stack, "/admin/keys", &admin3).await.0, 200);
    let (_, listed) = status_of(&stack, "/admin/keys", &admin3).await;
    assert_eq!(listed["keys"].as_array().unwrap().len(), 3);
    stack.stop().await;
}

#[tokio::test]
async fn rotation_while_requests_flow_embedded() {
    rotation_while_requests_flow(Mode::Embedded).await;
}

#[tokio::test]
async fn rotation_while_requests_flow_production() {
    rotation_while_requests_flow(Mode::Production).await;
}
