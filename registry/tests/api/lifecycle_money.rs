//! Campaigns, incentives at 48 h, exports and the funding call of the 6th, on a controlled
//! clock.

use crate::helpers::{
    StoreKind, TestApp, at, journey_between, operator, registry_admin, registry_user, spawn_app_at,
    status_and_json,
};
use chrono::{DateTime, TimeDelta, Utc};
use registry::store::lifecycle::JobOutcome;
use reqwest::Method;
use serde_json::{Value, json};

on_both_stores!(
    campaigns_are_created_and_listed_by_registry_admins_only,
    incentives_are_computed_at_48_hours_within_caps_and_budget,
    funding_calls_are_issued_on_the_6th_and_keep_journeys_canceled_afterwards,
    exports_list_the_period_without_canceled_journeys,
    a_funding_call_held_by_a_dead_runner_is_issued_once_its_lease_runs_out,
);

fn campaign() -> Value {
    json!({
        "name": "Covoiturage 2026",
        "start": "2026-05-01T00:00:00+02:00",
        "end": "2026-12-31T23:59:59+01:00",
        "operator_classes": ["C"],
        "amount_per_km": 10,
        "min_distance": 2_000,
        "max_distance": 50_000,
    })
}

async fn create_campaign(app: &TestApp, body: &Value) -> Value {
    let (code, created) = status_and_json(
        app.call(
            Method::POST,
            "/admin/campaigns",
            &registry_admin(),
            Some(body),
        )
        .await,
    )
    .await;
    assert_eq!(code, 201, "{created}");
    created
}

/// A 12 km journey of `operator_id` between two people of its own (keys from `n`).
async fn send(app: &TestApp, operator_id: i64, id: &str, n: u32, start: DateTime<Utc>) {
    let mut body = journey_between(
        id,
        &format!("t-{id}"),
        ('a', 'b'),
        start,
        start + TimeDelta::minutes(30),
    );
    body["driver"]["identity"]["identity_key"] = json!(format!("{n:064x}"));
    body["passenger"]["identity"]["identity_key"] = json!(format!("{:064x}", n + 1_000));
    let response = app.post_journey(&operator(operator_id), &body).await;
    assert_eq!(
        response.status(),
        201,
        "{}",
        response.text().await.unwrap_or_default()
    );
}

async fn cancel(app: &TestApp, operator_id: i64, id: &str) {
    let response = app
        .call(
            Method::POST,
            &format!("/v3/journeys/{id}/cancel"),
            &operator(operator_id),
            Some(&json!({"code": "X"})),
        )
        .await;
    assert_eq!(response.status(), 200);
}

async fn status(app: &TestApp, operator_id: i64, id: &str) -> Value {
    let (code, body) =
        status_and_json(app.journey_status(&operator(operator_id), id, "").await).await;
    assert_eq!(code, 200, "{body}");
    body
}

async fn campaigns_are_created_and_listed_by_registry_admins_only(kind: StoreKind) {
    let (app, _clock) = spawn_app_at(kind, at("2026-05-01T12:00:00Z")).await;
    let mut body = campaign();
    body["area"] = json!({"type": "Polygon", "coordinates": [[[2.0, 48.5], [2.8, 48.5], [2.8, 49.1], [2.0, 49.1], [2.0, 48.5]]]});
    body["budget"] = json!(1_000_000);
    let created = create_campaign(&app, &body).await;
    assert!(created["id"].as_i64().is_some(), "{created}");
    assert_eq!(created["start"], "2026-04-30T22:00:00.000Z");
    assert_eq!(created["operator_classes"], json!(["C"]));
    assert_eq!(created["budget"], 1_000_000);
    assert_eq!(created["area"]["type"], "Polygon");
    let (code, listed) = status_and_json(
        app.call(Method::GET, "/admin/campaigns", &registry_admin(), None)
            .await,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(listed, json!([created]));
    // Bad bodies get every problem; other roles are refused.
    let (code, refused) = status_and_json(
        app.call(
            Method::POST,
            "/admin/campaigns",
            &registry_admin(),
            Some(&json!({"name": "x", "amount_per_km": "ten"})),
        )
        .await,
    )
    .await;
    assert_eq!(code, 400, "{refused}");
    assert!(
        refused["error"]["data"]
            .as_array()
            .is_some_and(|e| e.contains(&json!(
                "/amount_per_km: must be a non-negative integer in range"
            ))),
        "{refused}"
    );
    for who in [operator(1), registry_user()] {
        let response = app
            .call(Method::POST, "/admin/campaigns", &who, Some(&campaign()))
            .await;
        assert_eq!(response.status(), 403);
        let response = app.call(Method::GET, "/admin/campaigns", &who, None).await;
        assert_eq!(response.status(), 403);
    }
}

async fn incentives_are_computed_at_48_hours_within_caps_and_budget(kind: StoreKind) {
    let start = at("2026-05-20T06:00:00Z");
    let (app, clock) = spawn_app_at(kind, start + TimeDelta::hours(1)).await;
    let mut capped = campaign();
    capped["max_per_person_per_day"] = json!(200);
    capped["budget"] = json!(300);
    let id = create_campaign(&app, &capped).await["id"].clone();
    clock.set(start + TimeDelta::hours(12));
    // Driver 1 drives twice that day; driver 2 once. 12 km pays 120 cents.
    send(&app, 1, "d1-morning", 1, start).await;
    send(&app, 1, "d1-evening", 1, start + TimeDelta::hours(10)).await;
    send(&app, 1, "d2", 2, start + TimeDelta::hours(11)).await;
    clock.set(start + TimeDelta::hours(47));
    app.runner.run_due().await.unwrap();
    assert_eq!(
        status(&app, 1, "d1-morning").await["incentives"],
        json!([]),
        "not before 48 h"
    );
    clock.set(start + TimeDelta::hours(48));
    app.runner.run_due().await.unwrap();
    let paid = |body: Value| body["incentives"].clone();
    assert_eq!(
        paid(status(&app, 1, "d1-morning").await),
        json!([{"campaign_id": id, "campaign_name": "Covoiturage 2026", "amount": 120}])
    );
    clock.set(start + TimeDelta::hours(59));
    app.runner.run_due().await.unwrap();
    // The day cap leaves 80 for the evening; the budget leaves 100 for driver 2.
    assert_eq!(paid(status(&app, 1, "d1-evening").await)[0]["amount"], 80);
    assert_eq!(paid(status(&app, 1, "d2").await)[0]["amount"], 100);
}

async fn funding_calls_are_issued_on_the_6th_and_keep_journeys_canceled_afterwards(
    kind: StoreKind,
) {
    let start = at("2026-05-20T06:00:00Z");
    let (app, clock) = spawn_app_at(kind, start + TimeDelta::hours(1)).await;
    create_campaign(&app, &campaign()).await;
    send(&app, 1, "kept", 1, start).await;
    send(&app, 1, "canceled-before", 2, start).await;
    send(&app, 1, "canceled-after", 3, start).await;
    send(&app, 2, "other-operator", 4, start).await;
    clock.set(start + TimeDelta::hours(48));
    app.runner.run_due().await.unwrap();
    cancel(&app, 1, "canceled-before").await;
    let call = |operator_id: i64| {
        let app = &app;
        async move {
            status_and_json(
                app.call(
                    Method::GET,
                    "/v3/funding-calls?month=2026-05",
                    &operator(operator_id),
                    None,
                )
                .await,
            )
            .await
        }
    };
    // 6 June 2026, 00:00 in Paris is 22:00 UTC on the 5th.
    clock.set(at("2026-06-05T21:59:59.999Z"));
    app.runner.run_due().await.unwrap();
    assert_eq!(call(1).await.0, 404, "not issued before the 6th");
    clock.set(at("2026-06-05T22:00:00Z"));
    app.runner.run_due().await.unwrap();
    let (code, body) = call(1).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["month"], "2026-05");
    assert_eq!(body["issued_at"], "2026-06-05T22:00:00.000Z");
    let ids = |body: &Value| -> Vec<String> {
        body["calls"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["journeys"].as_array().unwrap().clone())
            .map(|j| j["operator_journey_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&body), ["kept", "canceled-after"]);
    assert_eq!(body["calls"][0]["operator_id"], 1);
    assert_eq!(body["calls"][0]["amount"], 240);
    // Canceled after the call: it stays in the call, but leaves the exports.
    cancel(&app, 1, "canceled-after").await;
    app.runner.run_due().await.unwrap();
    assert_eq!(ids(&call(1).await.1), ["kept", "canceled-after"]);
    // Each operator sees its own lines; registry staff see them all.
    assert_eq!(ids(&call(2).await.1), ["other-operator"]);
    let (_, all) = status_and_json(
        app.call(
            Method::GET,
            "/v3/funding-calls?month=2026-05",
            &registry_user(),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(ids(&all), ["kept", "canceled-after", "other-operator"]);
    let (code, _) = status_and_json(
        app.call(
            Method::GET,
            "/v3/funding-calls?month=2026-05&operator_id=2",
            &operator(1),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(code, 404, "another operator's call");
    let (code, bad) = status_and_json(
        app.call(
            Method::GET,
            "/v3/funding-calls?month=2026-5",
            &operator(1),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(code, 400, "{bad}");
    let export = app
        .call(
            Method::GET,
            "/v3/exports/journeys?start=2026-05-01T00:00:00Z&end=2026-06-01T00:00:00Z",
            &operator(1),
            None,
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(export.contains(",kept,"), "{export}");
    assert!(!export.contains("canceled"), "{export}");
}

async fn exports_list_the_period_without_canceled_journeys(kind: StoreKind) {
    let start = at("2026-05-20T06:00:00Z");
    let (app, clock) = spawn_app_at(kind, start + TimeDelta::hours(1)).await;
    create_campaign(&app, &campaign()).await;
    clock.set(start + TimeDelta::hours(3));
    send(&app, 1, "a,\"quoted\"", 1, start).await;
    send(&app, 1, "=formula", 2, start + TimeDelta::hours(1)).await;
    send(&app, 1, "dropped", 3, start + TimeDelta::hours(2)).await;
    send(&app, 2, "theirs", 4, start).await;
    cancel(&app, 1, "dropped").await;
    clock.set(start + TimeDelta::hours(49));
    app.runner.run_due().await.unwrap();
    let export = |query: &str, who| {
        let app = &app;
        let path = format!("/v3/exports/journeys?{query}");
        async move {
            let response = app.call(Method::GET, &path, &who, None).await;
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, content_type, response.text().await.unwrap())
        }
    };
    let period = "start=2026-05-20T00:00:00Z&end=2026-05-21T00:00:00Z";
    let (code, content_type, csv) = export(period, operator(1)).await;
    assert_eq!(code, 200, "{csv}");
    assert_eq!(content_type.as_deref(), Some("text/csv; charset=utf-8"));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "journey_id,operator_id,operator_journey_id,operator_trip_id,operator_class,\
         start_datetime,start_lat,start_lon,end_datetime,end_lat,end_lon,distance,status,incentive"
    );
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(
        lines[1].starts_with("1,1,\"a,\"\"quoted\"\"\","),
        "{}",
        lines[1]
    );
    assert!(lines[1].ends_with(",12000,ok,120"), "{}", lines[1]);
    assert!(lines[2].contains(",'=formula,"), "{}", lines[2]);
    // Registry staff export everyone's, or one operator's.
    let (_, _, all) = export(period, registry_user()).await;
    assert_eq!(all.lines().count(), 4, "{all}");
    let (_, _, theirs) = export(&format!("{period}&operator_id=2"), registry_user()).await;
    assert!(
        theirs.contains(",theirs,") && theirs.lines().count() == 2,
        "{theirs}"
    );
    // Outside the period, nothing; bad queries, 400; another operator's, 404.
    let (_, _, empty) = export(
        "start=2026-05-22T00:00:00Z&end=2026-05-23T00:00:00Z",
        operator(1),
    )
    .await;
    assert_eq!(empty.lines().count(), 1);
    assert_eq!(
        export("start=2026-05-22T00:00:00Z", operator(1)).await.0,
        400
    );
    assert_eq!(
        export("start=yesterday&end=2026-05-23T00:00:00Z", operator(1))
            .await
            .0,
        400
    );
    assert_eq!(
        export(&format!("{period}&colour=blue"), operator(1))
            .await
            .0,
        400
    );
    assert_eq!(
        export(&format!("{period}&operator_id=2"), operator(1))
            .await
            .0,
        404
    );
}

/// The funding call of the 6th, claimed by a runner that dies before issuing it: no call
/// while its lease holds, then exactly one, issued by another runner; the dead runner, back,
/// cannot issue it again.
async fn a_funding_call_held_by_a_dead_runner_is_issued_once_its_lease_runs_out(kind: StoreKind) {
    let start = at("2026-05-20T06:00:00Z");
    let (app, clock) = spawn_app_at(kind, start + TimeDelta::hours(1)).await;
    create_campaign(&app, &campaign()).await;
    send(&app, 1, "kept", 1, start).await;
    clock.set(start + TimeDelta::hours(48));
    app.runner.run_due().await.unwrap();
    let call = || async {
        status_and_json(
            app.call(
                Method::GET,
                "/v3/funding-calls?month=2026-05",
                &operator(1),
                None,
            )
            .await,
        )
        .await
    };
    // 6 June, 00:00 in Paris.
    clock.set(at("2026-06-05T22:00:00Z"));
    let dead = app.runner.another();
    let claimed = dead.claim().await.unwrap();
    assert_eq!(claimed.len(), 1, "the funding call is the only job due");
    assert_eq!(app.runner.run_due().await.unwrap(), 0, "held by the lease");
    assert_eq!(call().await.0, 404);
    clock.advance(TimeDelta::minutes(5));
    assert_eq!(app.runner.run_due().await.unwrap(), 1, "replayed");
    let (code, issued) = call().await;
    assert_eq!(code, 200, "{issued}");
    // Dated the 6th, whenever it ran.
    assert_eq!(issued["issued_at"], "2026-06-05T22:00:00.000Z");
    // One journey's incentive (the test above pays 240 for two).
    assert_eq!(issued["calls"][0]["amount"], 120);
    assert_eq!(issued["calls"][0]["journeys"].as_array().unwrap().len(), 1);
    // The dead runner comes back: its claim is no longer its own, and nothing changes.
    assert_eq!(
        dead.execute(&claimed[0]).await.unwrap(),
        JobOutcome::Superseded
    );
    assert_eq!(app.runner.run_due().await.unwrap(), 0);
    assert_eq!(call().await.1, issued);
}
