//! Listing, updating and canceling journeys, on a controlled clock.

use crate::helpers::{
    StoreKind, at, journey_between, operator, registry_user, spawn_app_at, status_and_json,
};
use chrono::TimeDelta;
use reqwest::Method;
use serde_json::{Value, json};

on_both_stores!(
    listing_is_newest_first_filtered_and_paged,
    listing_refuses_bad_queries,
    registry_roles_list_every_operator,
    update_within_24_hours_re_runs_validation_and_terms,
    update_is_refused_late_canceled_foreign_or_invalid,
    cancel_is_repeatable_and_scoped_to_the_operator,
);

fn ids(body: &Value) -> Vec<&str> {
    body.as_array()
        .expect("an array")
        .iter()
        .map(|j| j["operator_journey_id"].as_str().expect("id"))
        .collect()
}

async fn listing_is_newest_first_filtered_and_paged(kind: StoreKind) {
    let now = at("2026-06-10T20:00:00Z");
    let (app, clock) = spawn_app_at(kind, now).await;
    let op = operator(1);
    // Three journeys sent as they happen over three days, the last one today.
    for (n, day) in [8, 9, 10].into_iter().enumerate() {
        clock.set(at(&format!("2026-06-{day:02}T19:00:00Z")));
        let start = at(&format!("2026-06-{day:02}T08:00:00Z"));
        let body = journey_between(
            &format!("j{day}"),
            &format!("t{n}"),
            ('a', 'b'),
            start,
            start + TimeDelta::minutes(30),
        );
        assert_eq!(app.post_journey(&op, &body).await.status(), 201);
    }
    clock.set(now);
    let list = |query: &'static str| {
        let app = &app;
        let op = &op;
        async move {
            status_and_json(
                app.call(Method::GET, &format!("/v3/journeys?{query}"), op, None)
                    .await,
            )
            .await
        }
    };
    let (code, body) = list("status=pending").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        ids(&body),
        ["j10", "j9", "j8"],
        "newest first, today included"
    );
    assert_eq!(body[0]["status"], "pending");
    assert_eq!(body[0]["start"], "2026-06-10T08:00:00.000Z");
    assert!(
        body[0]["journey_id"]
            .as_str()
            .is_some_and(|id| id.parse::<i64>().is_ok())
    );

    let (_, body) = list("status=pending&limit=1&offset=1").await;
    assert_eq!(ids(&body), ["j9"]);
    let (_, body) =
        list("status=pending&start=2026-06-09T00:00:00Z&end=2026-06-10T00:00:00Z").await;
    assert_eq!(ids(&body), ["j9"], "start included, end excluded");

    let cancel = app
        .call(
            Method::POST,
            "/v3/journeys/j9/cancel",
            &op,
            Some(&json!({"code": "X"})),
        )
        .await;
    assert_eq!(cancel.status(), 200);
    let (_, body) = list("status=canceled").await;
    assert_eq!(ids(&body), ["j9"]);
    let (_, body) = list("status=pending").await;
    assert_eq!(ids(&body), ["j10", "j8"]);
    let (_, body) = list("status=ok").await;
    assert_eq!(body, json!([]));
    let (_, body) = list("status=validation_error").await;
    assert_eq!(body, json!([]), "never produced from stored parts");

    // Another operator sees none of them.
    let (code, body) = status_and_json(
        app.call(
            Method::GET,
            "/v3/journeys?status=pending",
            &operator(2),
            None,
        )
        .await,
    )
    .await;
    assert_eq!((code, body), (200, json!([])));
    // And may not ask for them.
    let (code, _) = status_and_json(
        app.call(
            Method::GET,
            "/v3/journeys?status=pending&operator_id=1",
            &operator(2),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(code, 404);
}

async fn listing_refuses_bad_queries(kind: StoreKind) {
    let now = at("2026-06-10T20:00:00Z");
    let (app, _clock) = spawn_app_at(kind, now).await;
    let cases = [
        ("", ": must have required property 'status'"),
        (
            "status=expired",
            "/status: must be equal to one of the allowed values",
        ),
        (
            "status=ok&limit=1001",
            "/limit: must be an integer from 0 to 1000",
        ),
        (
            "status=ok&limit=-1",
            "/limit: must be an integer from 0 to 1000",
        ),
        (
            "status=ok&offset=x",
            "/offset: must be an integer from 0 to 9223372036854775807",
        ),
        (
            "status=ok&start=yesterday",
            "/start: must match format \"date-time\"",
        ),
        (
            "status=ok&start=2026-03-01T00:00:00Z",
            "/start: must be after 2026-03-12T20:00:00.000Z",
        ),
        (
            "status=ok&start=2026-06-10T00:00:00Z&end=2026-06-09T00:00:00Z",
            "/start: must be before /end",
        ),
        (
            "status=ok&colour=red",
            ": must NOT have additional properties ('colour')",
        ),
        ("status=ok&status=pending", "/status: must not be repeated"),
    ];
    for (query, message) in cases {
        let (code, body) = status_and_json(
            app.call(
                Method::GET,
                &format!("/v3/journeys?{query}"),
                &operator(1),
                None,
            )
            .await,
        )
        .await;
        assert_eq!(code, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], -32602, "{query}");
        assert!(
            body["error"]["data"]
                .as_array()
                .is_some_and(|d| d.contains(&json!(message))),
            "{query}: {body}"
        );
    }
    let (code, body) = status_and_json(
        app.call(
            Method::GET,
            "/v3/journeys?status=ok&limit=1000",
            &operator(1),
            None,
        )
        .await,
    )
    .await;
    assert_eq!((code, body), (200, json!([])));
}

async fn registry_roles_list_every_operator(kind: StoreKind) {
    let now = at("2026-06-10T20:00:00Z");
    let (app, _clock) = spawn_app_at(kind, now).await;
    for (op, hour) in [(1, 8), (2, 9)] {
        let start = at(&format!("2026-06-10T{hour:02}:00:00Z"));
        let body = journey_between(
            &format!("op{op}"),
            "t",
            ('a', 'b'),
            start,
            start + TimeDelta::minutes(20),
        );
        assert_eq!(app.post_journey(&operator(op), &body).await.status(), 201);
    }
    let staff = registry_user();
    let (code, body) = status_and_json(
        app.call(Method::GET, "/v3/journeys?status=pending", &staff, None)
            .await,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(ids(&body), ["op2", "op1"]);
    assert_eq!(body[0]["operator_id"], 2);
    let (_, body) = status_and_json(
        app.call(
            Method::GET,
            "/v3/journeys?status=pending&operator_id=1",
            &staff,
            None,
        )
        .await,
    )
    .await;
    assert_eq!(ids(&body), ["op1"]);
}

fn patch_body(distance: i64) -> Value {
    json!({
        "operator_trip_id": "trip-2",
        "operator_class": "B",
        "incentives": [{"index": 0, "amount": 50, "siret": "11000101300017"}],
        "start": {"datetime": "2026-06-10T09:00:00Z", "lat": 45.76, "lon": 4.83},
        "end": {"datetime": "2026-06-10T09:45:00Z", "lat": 45.78, "lon": 4.9},
        "distance": distance,
    })
}

async fn update_within_24_hours_re_runs_validation_and_terms(kind: StoreKind) {
    let (app, clock) = spawn_app_at(kind, at("2026-06-10T10:00:00Z")).await;
    let op = operator(1);
    let start = at("2026-06-10T08:00:00Z");
    let body = journey_between("j", "t", ('a', 'b'), start, start + TimeDelta::minutes(30));
    assert_eq!(app.post_journey(&op, &body).await.status(), 201);

    // Updated with a distance below the minimum: stored as a terms violation, 422.
    clock.set(at("2026-06-10T11:00:00Z"));
    let (code, answer) = status_and_json(
        app.call(
            Method::PATCH,
            "/v3/journeys/j",
            &op,
            Some(&patch_body(1_500)),
        )
        .await,
    )
    .await;
    assert_eq!(code, 422, "{answer}");
    assert_eq!(
        answer["error"]["data"],
        json!({"terms_violation_labels": ["distance_too_short"]})
    );
    assert_eq!(app.status_of(&op, "j").await, "terms_violation_error");

    // Fixed (through the POST alias) just before 24 h after the stored start: 200, empty body,
    // pending again, the new start listed.
    clock.set(at("2026-06-11T09:00:00Z"));
    let response = app
        .call(
            Method::POST,
            "/v3.3/journeys/j",
            &op,
            Some(&patch_body(6_000)),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), "");
    let (code, status) = status_and_json(app.journey_status(&op, "j", "").await).await;
    assert_eq!(code, 200);
    assert_eq!(status["status"], "pending");
    assert_eq!(status["terms_violation_details"], json!([]));
    let (_, listed) = status_and_json(
        app.call(Method::GET, "/v3/journeys?status=pending", &op, None)
            .await,
    )
    .await;
    assert_eq!(listed[0]["start"], "2026-06-10T09:00:00.000Z");
}

async fn update_is_refused_late_canceled_foreign_or_invalid(kind: StoreKind) {
    let (app, clock) = spawn_app_at(kind, at("2026-06-10T10:00:00Z")).await;
    let op = operator(1);
    for (id, passenger) in [("late", 'b'), ("canceled", 'c')] {
        let start = at("2026-06-10T09:00:00Z");
        let body = journey_between(
            id,
            id,
            ('a', passenger),
            start,
            start + TimeDelta::minutes(10),
        );
        assert_eq!(app.post_journey(&op, &body).await.status(), 201);
    }
    let patch = |id: &str, who, body: Value| {
        let app = &app;
        let path = format!("/v3/journeys/{id}");
        async move { status_and_json(app.call(Method::PATCH, &path, who, Some(&body)).await).await }
    };

    let mut invalid = patch_body(6_000);
    invalid["driver"] = json!({"revenue": 1});
    let (code, body) = patch("late", &op, invalid).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["error"]["data"]
            .as_array()
            .is_some_and(|d| !d.is_empty()),
        "{body}"
    );

    let other = operator(2);
    let (code, _) = patch("late", &other, patch_body(6_000)).await;
    assert_eq!(code, 404, "another operator's journey");
    let (code, _) = patch("missing", &op, patch_body(6_000)).await;
    assert_eq!(code, 404);

    let cancel = app
        .call(
            Method::POST,
            "/v3/journeys/canceled/cancel",
            &op,
            Some(&json!({"code": ""})),
        )
        .await;
    assert_eq!(cancel.status(), 200);
    let (code, body) = patch("canceled", &op, patch_body(6_000)).await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(app.status_of(&op, "canceled").await, "canceled");

    clock.set(at("2026-06-11T09:00:00.001Z"));
    let (code, body) = patch("late", &op, patch_body(6_000)).await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["error"]["code"], -32509);
}

async fn cancel_is_repeatable_and_scoped_to_the_operator(kind: StoreKind) {
    let (app, _clock) = spawn_app_at(kind, at("2026-06-10T10:00:00Z")).await;
    let op = operator(1);
    let start = at("2026-06-10T09:00:00Z");
    let body = journey_between("j", "t", ('a', 'b'), start, start + TimeDelta::minutes(10));
    assert_eq!(app.post_journey(&op, &body).await.status(), 201);
    let cancel = |who, body: Value| {
        let app = &app;
        async move {
            status_and_json(
                app.call(Method::POST, "/v3/journeys/j/cancel", who, Some(&body))
                    .await,
            )
            .await
        }
    };
    let bad = [
        (json!({}), ": must have required property 'code'"),
        (
            json!({"code": "a".repeat(33)}),
            "/code: must match pattern \"^[0-9A-Za-z_-]{0,32}$\"",
        ),
        (
            json!({"code": "ok", "message": "m".repeat(513)}),
            "/message: must NOT have more than 512 characters",
        ),
        (
            json!({"code": "ok", "why": "x"}),
            ": must NOT have additional properties",
        ),
    ];
    for (body, message) in bad {
        let (code, answer) = cancel(&op, body.clone()).await;
        assert_eq!(code, 400, "{body}: {answer}");
        let data = answer["error"]["data"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            data.iter()
                .any(|d| d.as_str().is_some_and(|d| d.starts_with(message))),
            "{body}: {answer}"
        );
    }
    let other = operator(2);
    let (code, _) = cancel(&other, json!({"code": "FRAUD"})).await;
    assert_eq!(code, 404);
    assert_eq!(app.status_of(&op, "j").await, "pending");

    for message in [
        json!({"code": "FRAUD", "message": "driver not found"}),
        json!({"code": "AGAIN"}),
    ] {
        let (code, answer) = cancel(&op, message).await;
        assert_eq!((code, answer), (200, json!({"jsonrpc": "2.0", "id": 1})));
    }
    assert_eq!(app.status_of(&op, "j").await, "canceled");
}
