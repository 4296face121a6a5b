//! CEE applications end to end through the gateway, once per mode: an application token
//! (which carries its operator's SIRET) registers a short-distance claim on an old journey and
//! a long-distance one; the token is verified by openssl against the public key the gateway
//! serves to anyone; two simultaneous claims of one person give exactly one 201; find, simulate
//! and delete; the operator's history imported, given an identity key, and blocking its person.

use chrono::{Duration, SecondsFormat, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Mode, Stack, journey};

/// `openssl dgst -sha512 -verify pub.pem -signature sig.bin data`: an RSA implementation
/// independent of ours.
fn openssl_verifies(public_pem: &str, message: &str, token_base64: &str) -> bool {
    use base64::Engine;
    let dir = std::env::temp_dir().join(format!("cee-openssl-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let signature = base64::engine::general_purpose::STANDARD
        .decode(token_base64)
        .expect("token is base64");
    std::fs::write(dir.join("pub.pem"), public_pem).unwrap();
    std::fs::write(dir.join("sig.bin"), signature).unwrap();
    std::fs::write(dir.join("data"), message).unwrap();
    let output = std::process::Command::new("openssl")
        .current_dir(&dir)
        .args([
            "dgst",
            "-sha512",
            "-verify",
            "pub.pem",
            "-signature",
            "sig.bin",
            "data",
        ])
        .output()
        .expect("openssl runs");
    std::fs::remove_dir_all(&dir).unwrap();
    output.status.success() && String::from_utf8_lossy(&output.stdout).contains("Verified OK")
}

async fn cee_api(mode: Mode) {
    let stack = Stack::start(mode).await.expect("stack starts");
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let (operator_id, op_admin) = stack.operator_with_admin(&admin).await.unwrap();
    let token = stack.application_token(&op_admin).await.unwrap();
    let operators: Value = stack
        .request(Method::GET, "/admin/operators")
        .headers(admin.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let siret = operators
        .as_array()
        .and_then(|all| all.iter().find(|o| o["id"] == operator_id))
        .and_then(|o| o["siret"].as_str())
        .expect("the operator's SIRET")
        .to_owned();

    let call = |method: Method, path: &str, body: Option<Value>| {
        let request = stack.request(method, path).bearer_auth(&token);
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        async move {
            let response = request.send().await.expect("sent");
            let status = response.status();
            let text = response.text().await.expect("body");
            (
                status,
                serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
            )
        }
    };

    // A journey that ended 8 days ago (stored, late for the terms, still claimable).
    let mut old = journey("cee1");
    let at = |days: i64, minutes: i64| {
        (Utc::now() - Duration::days(days) - Duration::minutes(minutes))
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    };
    let (start, end) = (at(8, 60), at(8, 30));
    old["start"]["datetime"] = json!(start);
    old["end"]["datetime"] = json!(end);
    let (status, body) = call(Method::POST, "/v3/journeys", Some(old)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let short = json!({"journey_type": "short", "identity_key": "c".repeat(64),
        "driving_license": "051227308989", "last_name_trunc": "DUP",
        "operator_journey_id": "cee1", "application_timestamp": at(0, 5)});
    let (status, created) = call(Method::POST, "/v3/policies/cee", Some(short)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["datetime"], json!(end));

    // The public key is public: no credential.
    let response = stack
        .request(Method::GET, "/v3/policies/cee/public-key")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let pem = response.text().await.unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    let message = format!("{siret}/short/051227308989/{end}");
    let signed = created["token"].as_str().expect("token");
    assert!(openssl_verifies(&pem, &message, signed), "openssl verifies");
    assert!(!openssl_verifies(
        &pem,
        &message.replace("short", "long"),
        signed
    ));

    let path = format!("/v3/policies/cee/{}", created["uuid"].as_str().unwrap());
    let (status, found) = call(Method::GET, &path, None).await;
    assert_eq!((status, &found), (StatusCode::OK, &created));

    // Two simultaneous long-distance claims of one person: exactly one 201.
    let long = |key: char| {
        json!({"journey_type": "long", "identity_key": key.to_string().repeat(64),
               "driving_license": "99-X23836", "last_name_trunc": "TO ",
               "phone_trunc": "+336010203", "datetime": at(30, 0),
               "application_timestamp": at(0, 5)})
    };
    let (a, b) = tokio::join!(
        call(Method::POST, "/v3/policies/cee", Some(long('d'))),
        call(Method::POST, "/v3.3/policies/cee", Some(long('e'))),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::CREATED, StatusCode::CONFLICT],
        "{a:?} {b:?}"
    );
    let winner = if a.0 == StatusCode::CREATED {
        &a.1
    } else {
        &b.1
    };
    let loser = if a.0 == StatusCode::CREATED {
        &b.1
    } else {
        &a.1
    };
    assert_eq!(loser["uuid"], winner["uuid"]);

    // By the licence both claims share (name and phone alone find only keyless history).
    let simulation = json!({"journey_type": "long", "last_name_trunc": "TO ",
                            "phone_trunc": "+336010203", "driving_license": "99-X23836"});
    let (status, body) = call(Method::POST, "/v3/policies/cee/simulate", Some(simulation)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // The operator's history, then an identity key for it, with the same application token.
    let operation = json!({"journey_type": "long", "last_name_trunc": "HIS",
                           "phone_trunc": "+336777777", "datetime": at(1000, 0)});
    let (status, body) = call(
        Method::POST,
        "/v3/policies/cee/import",
        Some(json!([operation, operation])),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!((&body["imported"], &body["failed"]), (&json!(1), &json!(1)));
    assert_eq!(body["failed_details"][0]["error"], "Conflict");
    let mut identity = operation.clone();
    identity["cee_application_type"] = json!("specific");
    identity["identity_key"] = json!("f".repeat(64));
    let (status, body) = call(
        Method::POST,
        "/v3.3/policies/cee/import/identity",
        Some(json!([identity])),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"imported": 1, "failed": 0, "failed_details": []})
        )
    );
    let by_key = json!({"journey_type": "long", "last_name_trunc": "ZZZ",
                        "phone_trunc": "+336888888", "identity_key": "f".repeat(64)});
    let (status, body) = call(Method::POST, "/v3/policies/cee/simulate", Some(by_key)).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "the history blocks its person: {body}"
    );
    assert_eq!(body["datetime"], operation["datetime"]);

    let (status, _) = call(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = call(Method::GET, "/v3/policies/cee/nope", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    stack.stop().await;
}

#[tokio::test]
async fn cee_api_embedded() {
    cee_api(Mode::Embedded).await;
}

#[tokio::test]
async fn cee_api_production() {
    cee_api(Mode::Production).await;
}
