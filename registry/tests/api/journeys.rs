//! Journey creation and status, on both stores.

use crate::helpers::{StoreKind, journey, operator, registry_user, spawn_app, status_and_json};
use auth_token::ASSERTION_HEADER;
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

on_both_stores!(
    create_returns_201_and_status_is_pending,
    create_returns_409_when_id_already_used,
    concurrent_submissions_of_one_id_create_exactly_one_journey,
    another_operators_journey_is_not_found,
    requests_without_gateway_assertion_get_401,
    a_captured_assertion_serves_its_own_request_once,
    invalid_payload_returns_400_listing_every_violation,
    short_distance_is_stored_as_terms_violation_and_answered_422,
    legacy_alias_and_served_versions_create_journeys,
    health_and_metrics_are_served,
);

fn new_id() -> String {
    Uuid::new_v4().to_string()
}

async fn create_returns_201_and_status_is_pending(kind: StoreKind) {
    let app = spawn_app(kind).await;
    let id = new_id();
    let (status, body) = status_and_json(app.post_journey(&operator(1), &journey(&id)).await).await;
    assert_eq!(status, 201, "{body}");
    let created_at = body["result"]["data"]["created_at"]
        .as_str()
        .expect("created_at")
        .to_owned();
    assert_eq!(
        body,
        json!({"jsonrpc": "2.0", "id": 1,
               "result": {"meta": null, "data": {"operator_journey_id": id, "created_at": created_at}}})
    );
    assert_eq!(
        created_at.len(),
        "2026-11-22T14:00:00.123Z".len(),
        "{created_at}"
    );
    assert!(created_at.ends_with('Z'));

    let (status, body) = status_and_json(app.journey_status(&operator(1), &id, "").await).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["journey_id"]
            .as_str()
            .is_some_and(|j| j.parse::<i64>().is_ok()),
        "{body}"
    );
    assert_eq!(
        body,
        json!({"operator_journey_id": id, "status": "pending", "created_at": created_at,
               "journey_id": body["journey_id"], "fraud_error_labels": [],
               "anomaly_error_details": [], "terms_violation_details": [], "incentives": []})
    );
}

async fn create_returns_409_when_id_already_used(kind: StoreKind) {
    let app = spawn_app(kind).await;
    let id = new_id();
    let (_, first) = status_and_json(app.post_journey(&operator(1), &journey(&id)).await).await;
    let created_at = first["result"]["data"]["created_at"]
        .as_str()
        .expect("created_at");

    let (status, body) = status_and_json(app.post_journey(&operator(1), &journey(&id)).await).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body,
        json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32509, "message": "Conflict",
               "data": format!("Carpool already registered at {created_at}")}})
    );
    // Another operator may use the same id.
    let response = app.post_journey(&operator(2), &journey(&id)).await;
    assert_eq!(response.status().as_u16(), 201);
}

async fn concurrent_submissions_of_one_id_create_exactly_one_journey(kind: StoreKind) {
    let app = std::sync::Arc::new(spawn_app(kind).await);
    let payload = journey(&new_id());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (app, payload) = (app.clone(), payload.clone());
        tasks.spawn(async move {
            app.post_journey(&operator(1), &payload)
                .await
                .status()
                .as_u16()
        });
    }
    let mut statuses = tasks.join_all().await;
    statuses.sort_unstable();
    assert_eq!(statuses, vec![201, 409, 409, 409, 409, 409, 409, 409]);
}

async fn another_operators_journey_is_not_found(kind: StoreKind) {
    let app = spawn_app(kind).await;
    let id = new_id();
    app.post_journey(&operator(1), &journey(&id)).await;
    let not_found =
        json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32504, "message": "Not found"}});

    let (status, body) = status_and_json(app.journey_status(&operator(2), &id, "").await).await;
    assert_eq!((status, body), (404, not_found.clone()));
    let (status, _) = status_and_json(
        app.journey_status(&operator(2), &id, "?operator_id=1")
            .await,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = status_and_json(app.journey_status(&operator(1), "unknown", "").await).await;
    assert_eq!(status, 404);

    // Registry staff name the operator.
    let (status, body) = status_and_json(
        app.journey_status(&registry_user(), &id, "?operator_id=1")
            .await,
    )
    .await;
    assert_eq!((status, body["status"].clone()), (200, json!("pending")));
    let (status, _) = status_and_json(
        app.journey_status(&registry_user(), &id, "?operator_id=2")
            .await,
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = status_and_json(app.journey_status(&registry_user(), &id, "").await).await;
    assert_eq!(status, 400, "{body}");
}

async fn requests_without_gateway_assertion_get_401(kind: StoreKind) {
    let app = spawn_app(kind).await;
    let response = app
        .request(Method::POST, "/v3/journeys", None)
        .json(&journey(&new_id()))
        .send()
        .await
        .expect("sent");
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], -32501);
    assert_eq!(body["error"]["data"], "missing_gateway_assertion");

    // An assertion made for another request is refused too.
    let signed = app
        .request(Method::GET, "/v3/journeys/other", Some(&operator(1)))
        .build()
        .expect("built");
    let response = reqwest::Client::new()
        .get(format!("{}/v3/journeys/mine", app.address))
        .header("x-rpc-identity", signed.headers()["x-rpc-identity"].clone())
        .send()
        .await
        .expect("sent");
    let (status, body) = status_and_json(response).await;
    assert_eq!(
        (status, body["error"]["data"].clone()),
        (401, json!("invalid_gateway_assertion"))
    );
}

/// Someone who captured an assertion on its way to the registry (issue 26, finding 4) sends
/// it again, with another journey in the body, or with another query string: each is refused,
/// and only the journey the gateway asserted is stored.
async fn a_captured_assertion_serves_its_own_request_once(kind: StoreKind) {
    let app = spawn_app(kind).await;
    let id = new_id();
    let body = serde_json::to_vec(&journey(&id)).unwrap();
    let captured = app
        .request(Method::POST, "/v3/journeys", Some(&operator(1)))
        .header("content-type", "application/json")
        .body(body.clone())
        .build()
        .expect("built");
    let assertion = captured.headers()[ASSERTION_HEADER].clone();
    let replay = |body: Vec<u8>, query: &str| {
        reqwest::Client::new()
            .post(format!("{}/v3/journeys{query}", app.address))
            .header(ASSERTION_HEADER, assertion.clone())
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let refused = |response: reqwest::Response| async {
        let (status, body) = status_and_json(response).await;
        (
            status,
            body["error"]["data"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };

    // Before the genuine request arrives: another body, or the same body with a query.
    let forged = new_id();
    let response = replay(serde_json::to_vec(&journey(&forged)).unwrap(), "")
        .await
        .expect("sent");
    assert_eq!(
        refused(response).await,
        (401, "invalid_gateway_assertion".into())
    );
    let response = replay(body.clone(), "?dry=1").await.expect("sent");
    assert_eq!(
        refused(response).await,
        (401, "invalid_gateway_assertion".into())
    );

    let genuine = reqwest::Client::new()
        .execute(captured)
        .await
        .expect("sent");
    assert_eq!(genuine.status(), 201);
    // The very same request again: the assertion was used.
    let response = replay(body, "").await.expect("sent");
    assert_eq!(
        refused(response).await,
        (401, "replayed_gateway_assertion".into())
    );

    app.status_of(&operator(1), &id).await;
    let (status, _) = status_and_json(app.journey_status(&operator(1), &forged, "").await).await;
    assert_eq!(status, 404, "the forged journey was not stored");
}

async fn invalid_payload_returns_400_listing_every_violation(kind: StoreKind) {
    let app = spawn_app(kind).await;
    let mut payload = journey(&new_id());
    payload["distance"] = json!(0);
    payload["operator_class"] = json!("Z");
    payload["driver"]["identity"]["identity_key"] = json!("NOT-HEX");
    payload["surprise"] = json!(true);
    let (status, body) = status_and_json(app.post_journey(&operator(1), &payload).await).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], -32602);
    assert_eq!(body["error"]["message"], "Invalid params");
    let violations = body["error"]["data"]
        .as_array()
        .expect("array of violations");
    for expected in [
        "/distance: must be >= 1",
        "/operator_class: must be equal to one of the allowed values",
        "/driver/identity/identity_key: must match pattern \"^[a-f0-9]{64}$\"",
        ": must NOT have additional properties ('surprise')",
    ] {
        assert!(
            violations.contains(&json!(expected)),
            "{expected} not in {violations:?}"
        );
    }

    let response = app
        .request(Method::POST, "/v3/journeys", Some(&operator(1)))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("sent");
    let (status, body) = status_and_json(response).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!(-32700))
    );

    let (status, body) = status_and_json(
        app.post_journey(&registry_user(), &journey(&new_id()))
            .await,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (403, json!(-32503))
    );
}

async fn short_distance_is_stored_as_terms_violation_and_answered_422(kind: StoreKind) {
    let app = spawn_app(kind).await;
    let id = new_id();
    let mut payload = journey(&id);
    payload["distance"] = json!(1_999);
    let (status, body) = status_and_json(app.post_journey(&operator(1), &payload).await).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body,
        json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32422,
               "message": "Unprocessable Request",
               "data": {"terms_violation_labels": ["distance_too_short"]}}})
    );

    let (status, body) = status_and_json(app.journey_status(&operator(1), &id, "").await).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "terms_violation_error");
    assert_eq!(
        body["terms_violation_details"],
        json!(["distance_too_short"])
    );

    // Refused journeys still hold their id.
    let response = app.post_journey(&operator(1), &journey(&id)).await;
    assert_eq!(response.status().as_u16(), 409);
}

async fn legacy_alias_and_served_versions_create_journeys(kind: StoreKind) {
    let app = spawn_app(kind).await;
    for path in ["/journeys/push", "/v3.2/journeys", "/v3.3/journeys"] {
        let response = app
            .post_journey_at(path, &operator(1), &journey(&new_id()))
            .await;
        assert_eq!(response.status().as_u16(), 201, "{path}");
    }
    let response = app
        .post_journey_at("/v4/journeys", &operator(1), &journey(&new_id()))
        .await;
    let (status, body) = status_and_json(response).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!(-32504))
    );
}

async fn health_and_metrics_are_served(kind: StoreKind) {
    let app = spawn_app(kind).await;
    app.post_journey(&operator(1), &journey(&new_id())).await;
    let (status, body) = status_and_json(app.get("/health").await).await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    let metrics = app.get("/metrics").await.text().await.expect("text");
    assert!(
        metrics.contains("registry_journeys_received_total{outcome=\"created\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("registry_journeys_received_total{outcome=\"conflict\"} 0"));
    assert!(
        metrics.contains("route=\"/{version}/journeys\""),
        "{metrics}"
    );
}
