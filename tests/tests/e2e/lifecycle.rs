//! The journey lifecycle end to end through the gateway, once per mode, with the registry on
//! a clock the test moves (its job runner polls every 20 ms): a registry admin defines a
//! campaign; an operator's application sends a journey; at 48 h its status is final with the
//! campaign's incentive; the export lists it; the funding call appears on the 6th of the
//! following month at midnight, Paris time; weeks later, the reference's asynchronous export
//! of the journey's days is built into a zip holding the same CSV.

use chrono::{Duration, SecondsFormat, Utc};
use registry::clock::ManualClock;
use registry::domain::lifecycle::Month;
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::Arc;
use tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Mode, Stack, journey};

#[tokio::test]
async fn lifecycle_through_the_gateway_embedded() {
    scenario(Mode::Embedded).await;
}

#[tokio::test]
async fn lifecycle_through_the_gateway_production() {
    scenario(Mode::Production).await;
}

async fn scenario(mode: Mode) {
    let now = Utc::now();
    let clock = ManualClock::at(now);
    let stack = Stack::start_at(mode, Some(Arc::new(clock.clone())))
        .await
        .expect("stack starts");
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let iso = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let campaign = json!({
        "name": "E2E", "start": iso(now - Duration::days(30)), "end": iso(now + Duration::days(365)),
        "operator_classes": ["C"], "amount_per_km": 10, "min_distance": 2000, "max_distance": 50000,
    });
    let created = stack
        .request(Method::POST, "/admin/campaigns")
        .headers(admin.clone())
        .json(&campaign)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let (operator_id, op_admin) = stack.operator_with_admin(&admin).await.unwrap();
    let token = stack.application_token(&op_admin).await.unwrap();
    // Operator staff may not see campaigns.
    let refused = stack
        .request(Method::GET, "/admin/campaigns")
        .headers(op_admin.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(
        refused.headers()["x-gateway-error"],
        "insufficient_permissions"
    );

    let sent = stack
        .request(Method::POST, "/v3/journeys")
        .bearer_auth(&token)
        .json(&journey("e2e-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 201);
    let get = |path: String| {
        let (stack, token) = (&stack, &token);
        async move {
            let response = stack
                .request(Method::GET, &path)
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let code = response.status().as_u16();
            (code, response.text().await.unwrap())
        }
    };
    let status = || async {
        let (_, body) = get("/v3/journeys/e2e-1".into()).await;
        serde_json::from_str::<Value>(&body).unwrap()
    };
    assert_eq!(status().await["status"], "pending");

    // 48 h later the status is final and the campaign pays 12 km at 10 cents.
    clock.set(now + Duration::hours(48));
    let final_status = stack
        .eventually(std::time::Duration::from_secs(10), || async {
            status().await["incentives"][0]["amount"] == 120
        })
        .await;
    assert!(final_status, "{}", status().await);
    assert_eq!(status().await["status"], "ok");

    let period = format!(
        "start={}&end={}",
        iso(now - Duration::days(1)),
        iso(now + Duration::days(1))
    );
    let (code, csv) = get(format!("/v3/exports/journeys?{period}")).await;
    assert_eq!(code, 200, "{csv}");
    assert!(
        csv.lines()
            .nth(1)
            .is_some_and(|l| l.contains(",e2e-1,") && l.ends_with(",ok,120")),
        "{csv}"
    );

    let month = Month::of(now - Duration::hours(1));
    let call_path = format!("/v3/funding-calls?month={month}");
    assert_eq!(get(call_path.clone()).await.0, 404, "not issued yet");
    clock.set(month.funding_call_at());
    let issued = stack
        .eventually(std::time::Duration::from_secs(10), || async {
            get(call_path.clone()).await.0 == 200
        })
        .await;
    assert!(issued, "the funding call is issued on the 6th");
    let (_, call) = get(call_path).await;
    let call: Value = serde_json::from_str(&call).unwrap();
    assert_eq!(call["calls"][0]["operator_id"], operator_id);
    assert_eq!(
        call["calls"][0]["journeys"][0]["operator_journey_id"],
        "e2e-1"
    );
    assert_eq!(call["calls"][0]["amount"], 120);

    // The asynchronous export wants periods ended five days ago.
    clock.set(now + Duration::days(40));
    let asked = stack
        .request(Method::POST, "/v3/exports")
        .bearer_auth(&token)
        .json(&json!({
            "tz": "Europe/Paris",
            "start_at": iso(now - Duration::days(1)),
            "end_at": iso(now + Duration::days(1)),
            "operator_id": [],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), 201);
    let asked: Value = asked.json().await.unwrap();
    assert_eq!(asked["target"], "operator");
    let export = format!("/v3/exports/{}", asked["uuid"].as_str().unwrap());
    let built = stack
        .eventually(std::time::Duration::from_secs(10), || async {
            get(export.clone()).await.1.contains("\"success\"")
        })
        .await;
    assert!(built, "{}", get(export.clone()).await.1);
    let zipped = stack
        .request(Method::GET, &format!("{export}/download"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(zipped.status(), 200);
    assert_eq!(zipped.headers()["content-type"], "application/zip");
    let bytes = zipped.bytes().await.unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut zipped_csv = String::new();
    std::io::Read::read_to_string(&mut archive.by_index(0).unwrap(), &mut zipped_csv).unwrap();
    assert_eq!(zipped_csv, csv, "the synchronous export's lines");
    stack.stop().await;
}
