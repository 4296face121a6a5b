//! The journeys API end to end through the gateway, once per mode (SQLite with in-process
//! state; PostgreSQL with Redis): create, duplicate, terms violation, status, list, update,
//! cancel, tenant isolation, and registry staff reading across operators.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Mode, Stack, journey};

async fn journeys_api(mode: Mode) {
    let stack = Stack::start(mode).await.expect("stack starts");
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let (operator_id, op_admin) = stack.operator_with_admin(&admin).await.unwrap();
    let (_, other_admin) = stack.operator_with_admin(&admin).await.unwrap();
    let token = stack.application_token(&op_admin).await.unwrap();
    let other = stack.application_token(&other_admin).await.unwrap();

    let call = |method: Method, path: &str, token: &str, body: Option<Value>| {
        let request = stack.request(method, path).bearer_auth(token);
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

    let (status, _) = call(Method::POST, "/v3/journeys", &token, Some(journey("j1"))).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = call(Method::POST, "/v3/journeys", &token, Some(journey("j1"))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], -32509);

    // Same couple 30 minutes earlier on another trip: too close; stored, 422.
    let mut close = journey("j2");
    close["operator_trip_id"] = json!("trip-2");
    close["distance"] = json!(1_500);
    let (status, body) = call(Method::POST, "/v3.2/journeys", &token, Some(close)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["error"]["data"]["terms_violation_labels"],
        json!(["distance_too_short", "too_close_trips"])
    );

    let (status, body) = call(Method::GET, "/v3/journeys?status=pending", &token, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body[0]["operator_journey_id"], "j1");
    assert_eq!(body.as_array().map(Vec::len), Some(1));
    let (_, body) = call(
        Method::GET,
        "/v3/journeys?status=terms_violation_error",
        &token,
        None,
    )
    .await;
    assert_eq!(body[0]["operator_journey_id"], "j2");

    // The other operator sees nothing and changes nothing.
    let (status, _) = call(Method::GET, "/v3/journeys/j1", &other, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, body) = call(Method::GET, "/v3/journeys?status=pending", &other, None).await;
    assert_eq!(body, json!([]));
    let cancel = json!({"code": "FRAUD", "message": "test"});
    let (status, _) = call(
        Method::POST,
        "/v3/journeys/j1/cancel",
        &other,
        Some(cancel.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Fix j2: back to pending.
    let mut fix = journey("j2");
    for field in ["operator_journey_id", "driver", "passenger"] {
        fix.as_object_mut().unwrap().remove(field);
    }
    fix["operator_trip_id"] = json!("trip-1");
    let (status, body) = call(Method::PATCH, "/v3/journeys/j2", &token, Some(fix)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = call(Method::GET, "/v3/journeys/j2", &token, None).await;
    assert_eq!(body["status"], "pending");

    let (status, body) = call(Method::POST, "/v3/journeys/j1/cancel", &token, Some(cancel)).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"jsonrpc": "2.0", "id": 1}))
    );
    let (_, body) = call(Method::GET, "/v3/journeys/j1", &token, None).await;
    assert_eq!(body["status"], "canceled");

    // Registry staff (signed-in agents) read across operators.
    let listed = stack
        .request(
            Method::GET,
            &format!("/v3/journeys?status=canceled&operator_id={operator_id}"),
        )
        .headers(admin.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    let listed: Value = listed.json().await.unwrap();
    assert_eq!(listed[0]["operator_journey_id"], "j1");
    assert_eq!(listed[0]["operator_id"], operator_id);

    stack.stop().await;
}

#[tokio::test]
async fn journeys_api_embedded() {
    journeys_api(Mode::Embedded).await;
}

#[tokio::test]
async fn journeys_api_production() {
    journeys_api(Mode::Production).await;
}
