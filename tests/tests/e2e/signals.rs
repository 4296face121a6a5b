//! Signals (issue 21), end to end: real requests through two gateway replicas, their usage
//! records flushed to auth-service, the rules evaluated every second (the thresholds made
//! small, the history of past weeks written into the records as it would have been), and
//! security staff acting on what is raised.

use auth_service::signals::{Rule, Thresholds};
use auth_token::usage::{Batch, Subject, UsageRow};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Mode, Options, Stack, call, journey};

const WEEK: i64 = 7 * 86_400;

fn options() -> Options {
    Options {
        gateways: 2,
        gateway_settings: Some(|s| {
            s.usage.flush_secs = 1;
            // The test speaks as a balancer naming its clients.
            s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        }),
        auth_settings: Some(|s| {
            s.signals.every_secs = 1;
            s.signals.thresholds = Thresholds {
                rate_min_requests: 20,
                new_credential_ceiling: 30,
                networks_min: 3,
                revoked_min_attempts: 3,
                guessing_min_refusals: 5,
                junk_min_requests: 10,
                off_hours_min_requests: 5,
                ..Thresholds::default()
            };
            s.signals.quarantine.insert(Rule::JunkJourneys, 600);
        }),
        ..Options::default()
    }
}

/// A new application of the operator: its token and uuid.
async fn application(stack: &Stack, op_admin: &HeaderMap, name: &str) -> (String, String) {
    let (status, created) = call(
        stack,
        Method::POST,
        "/applications",
        op_admin,
        Some(json!({ "name": name })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    (
        created["token"].as_str().unwrap().to_owned(),
        created["application"]["uuid"].as_str().unwrap().to_owned(),
    )
}

async fn push(
    stack: &Stack,
    replica: usize,
    token: &str,
    body: &Value,
    client: &str,
) -> StatusCode {
    stack
        .request_to(replica, Method::POST, "/v3/journeys")
        .bearer_auth(token)
        .header("x-forwarded-for", client)
        .json(body)
        .send()
        .await
        .unwrap()
        .status()
}

/// What `check` finds, polled until it finds something or `within` passes.
async fn poll<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(found) = check().await {
            return Some(found);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The signal of `rule` about `credential` in `state`, once there (within two minutes).
async fn signal_in(
    stack: &Stack,
    admin: &HeaderMap,
    rule: &str,
    state: &str,
    credential: &str,
) -> Value {
    let path = format!("/admin/signals?state={state}&rule={rule}");
    poll(Duration::from_secs(120), || async {
        let (_, signals) = call(stack, Method::GET, &path, admin, None).await;
        signals
            .as_array()?
            .iter()
            .find(|s| s["credential"] == credential)
            .cloned()
    })
    .await
    .unwrap_or_else(|| panic!("{rule} about {credential} is {state}"))
}

/// The open signal of `rule` about `credential`, once raised (within two minutes).
async fn raised(stack: &Stack, admin: &HeaderMap, rule: &str, credential: &str) -> Value {
    signal_in(stack, admin, rule, "open", credential).await
}

/// The usage a credential would have had, written as gateway batches would have.
async fn history(store: &auth_service::store::Store, rows: Vec<UsageRow>, seq: u64) {
    let batch = Batch {
        replica: format!("history-{}", uuid::Uuid::new_v4()),
        seq,
        usage: rows,
        ..Batch::default()
    };
    assert!(store.apply_usage(&batch, 0).await.unwrap());
}

fn row(id: &str, operator: i64, minute: i64, outcome: &str, requests: u64) -> UsageRow {
    UsageRow {
        subject: Subject::Application,
        id: id.into(),
        operator_id: Some(operator),
        minute: minute - minute.rem_euclid(60),
        class: "journeys_write".into(),
        outcome: outcome.into(),
        requests,
        bytes_in: 0,
        bytes_out: 0,
    }
}

async fn signals_are_raised_and_acted_on(mode: Mode) {
    let stack = Stack::start_with(mode, options())
        .await
        .expect("stack starts");
    let store = auth_service::open_store(stack.auth_database())
        .await
        .unwrap();
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let (operator, op_admin) = stack.operator_with_admin(&admin).await.unwrap();
    let now = chrono::Utc::now().timestamp();

    // A token replayed from many networks (a balancer in front names each client).
    let (copied, copied_id) = application(&stack, &op_admin, "copied").await;
    for n in 0..5 {
        let client = format!("198.51.{n}.7");
        let status = push(
            &stack,
            n % 2,
            &copied,
            &journey(&format!("copied-{n}")),
            &client,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let signal = raised(&stack, &admin, "many_networks", &copied_id).await;
    assert_eq!(signal["subject"], "application");
    assert_eq!(signal["operator_id"], operator);
    assert_eq!(signal["evidence"]["networks_this_hour"], 5, "{signal}");

    // A burst far over its own baseline for this hour of the week: it pushed about ten
    // journeys an hour at this time in each of the last four weeks.
    let (bursting, bursting_id) = application(&stack, &op_admin, "bursting").await;
    let past: Vec<_> = (1..=4)
        .map(|weeks| row(&bursting_id, operator, now - weeks * WEEK, "2xx", 10))
        .collect();
    history(&store, past, 1).await;
    for n in 0..25 {
        let status = push(
            &stack,
            n % 2,
            &bursting,
            &journey(&format!("burst-{n}")),
            "203.0.113.9",
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let signal = raised(&stack, &admin, "rate_over_baseline", &bursting_id).await;
    assert_eq!(signal["evidence"]["baseline_weeks"], 4, "{signal}");
    assert!(
        signal["evidence"]["requests"].as_u64().unwrap() >= 21,
        "{signal}"
    );

    // A revoked token still tried.
    let (revoked, revoked_id) = application(&stack, &op_admin, "revoked").await;
    let (status, _) = call(
        &stack,
        Method::DELETE,
        &format!("/applications/{revoked_id}"),
        &op_admin,
        None,
    )
    .await;
    assert_eq!(status, 204);
    for n in 0..4 {
        let refused = poll(Duration::from_secs(5), || async {
            let status = push(
                &stack,
                n % 2,
                &revoked,
                &journey("after-revocation"),
                "203.0.113.9",
            )
            .await;
            (status == StatusCode::UNAUTHORIZED).then_some(())
        })
        .await;
        assert!(refused.is_some(), "the revoked token is refused");
    }
    raised(&stack, &admin, "revoked_still_tried", &revoked_id).await;

    // Someone guessing: an operator user knocking at staff routes (403 each).
    let user = stack
        .user_with_role(&admin, operator, "operator.user")
        .await
        .unwrap();
    for _ in 0..6 {
        let (status, _) = call(&stack, Method::GET, "/admin/operators", &user, None).await;
        assert_eq!(status, 403);
    }
    raised(&stack, &admin, "guessing", &operator.to_string()).await;

    // A flood of fabricated journeys: every one refused; the rule is set to quarantine.
    let (junk, junk_id) = application(&stack, &op_admin, "junk").await;
    for n in 0..12 {
        let mut fabricated = journey(&format!("junk-{n}"));
        fabricated["distance"] = json!(-5);
        let status = push(&stack, n % 2, &junk, &fabricated, "203.0.113.9").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    let junk_signal = signal_in(&stack, &admin, "junk_journeys", "blacklisted", &junk_id).await;
    assert_eq!(junk_signal["note"], "auto: junk_journeys");
    let (_, entries) = call(&stack, Method::GET, "/admin/blacklist", &admin, None).await;
    let entry = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["value"] == junk_id.as_str())
        .expect("a quarantine entry");
    assert_eq!(entry["reason"], "auto: junk_journeys");
    assert!(!entry["expires_at"].is_null(), "a quarantine expires");
    let off = stack
        .eventually(Duration::from_secs(2), || async {
            push(&stack, 1, &junk, &journey("junk-after"), "203.0.113.9").await
                == StatusCode::UNAUTHORIZED
        })
        .await;
    assert!(off, "the quarantined token is refused");

    // Staff act: acknowledge; dismiss needs a note; blacklist refuses the credential on every
    // replica within a second.
    let id = signal["id"].as_str().unwrap();
    let (status, acknowledged) = call(
        &stack,
        Method::POST,
        &format!("/admin/signals/{id}/acknowledge"),
        &admin,
        None,
    )
    .await;
    assert_eq!(
        (status, &acknowledged["state"]),
        (200, &json!("acknowledged"))
    );
    let (status, again) = call(
        &stack,
        Method::POST,
        &format!("/admin/signals/{id}/acknowledge"),
        &admin,
        None,
    )
    .await;
    assert_eq!(
        (status, &again["error"]["data"]),
        (409, &json!("signal_not_active"))
    );
    let (status, _) = call(
        &stack,
        Method::POST,
        &format!("/admin/signals/{id}/blacklist"),
        &op_admin,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 403, "operators cannot act on signals");
    // A refusal names the field it is about.
    let (status, long) = call(
        &stack,
        Method::POST,
        &format!("/admin/signals/{id}/blacklist"),
        &admin,
        Some(json!({"reason": "x".repeat(1025)})),
    )
    .await;
    assert_eq!(
        (status, &long["error"]["data"]),
        (400, &json!(["/reason: at most 1024 characters"]))
    );
    let (status, blacklisted) = call(
        &stack,
        Method::POST,
        &format!("/admin/signals/{id}/blacklist"),
        &admin,
        Some(json!({"reason": "burst confirmed with the operator"})),
    )
    .await;
    assert_eq!(
        (status, &blacklisted["state"]),
        (200, &json!("blacklisted")),
        "{blacklisted}"
    );
    let everywhere = stack
        .eventually(Duration::from_secs(1), || async {
            let mut refused = 0;
            for replica in 0..2 {
                let status = push(
                    &stack,
                    replica,
                    &bursting,
                    &journey("burst-after"),
                    "203.0.113.9",
                )
                .await;
                refused += usize::from(status == StatusCode::UNAUTHORIZED);
            }
            refused == 2
        })
        .await;
    assert!(everywhere, "refused on every replica within a second");

    let copied_signal = raised(&stack, &admin, "many_networks", &copied_id).await;
    let copied_signal = copied_signal["id"].as_str().unwrap();
    let dismiss = format!("/admin/signals/{copied_signal}/dismiss");
    let (status, _) = call(&stack, Method::POST, &dismiss, &admin, None).await;
    assert_eq!(status, 400, "a dismissal says why");
    let (status, dismissed) = call(
        &stack,
        Method::POST,
        &dismiss,
        &admin,
        Some(json!({"note": "their NAT pool"})),
    )
    .await;
    assert_eq!(
        (status, &dismissed["state"], &dismissed["note"]),
        (200, &json!("dismissed"), &json!("their NAT pool"))
    );

    // Every action is audited.
    let (_, audit) = call(&stack, Method::GET, "/admin/audit?limit=50", &admin, None).await;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["action"].as_str())
        .collect();
    for action in [
        "signal.acknowledge",
        "signal.blacklist",
        "signal.dismiss",
        "signal.quarantine",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }

    // What the Activity page reads for one credential.
    let (status, usage) = call(
        &stack,
        Method::GET,
        &format!("/admin/usage/application/{copied_id}?hours=24"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["networks"].as_array().unwrap().len(), 5, "{usage}");
    assert_eq!(usage["last_used"]["network"], "198.51.4.0/24");

    // The burst's signal, blacklisted, is no longer open, and the refused attempts since
    // raise no new one (they are the revoked rule's).
    let (_, rate) = call(
        &stack,
        Method::GET,
        "/admin/signals?state=open&rule=rate_over_baseline",
        &admin,
        None,
    )
    .await;
    assert!(
        rate.as_array()
            .unwrap()
            .iter()
            .all(|s| s["credential"] != bursting_id.as_str()),
        "{rate}"
    );
    // auth-service counts what is open, as the API lists it (within its one-second report).
    let metrics_url = format!("http://{}/metrics", stack.auth_addr);
    let agreed = poll(Duration::from_secs(5), || async {
        let metrics = reqwest::get(&metrics_url).await.ok()?.text().await.ok()?;
        for rule in Rule::ALL {
            let path = format!("/admin/signals?state=open&rule={}", rule.as_str());
            let (_, listed) = call(&stack, Method::GET, &path, &admin, None).await;
            let series = format!("auth_signals_open{{rule=\"{}\"}}", rule.as_str());
            if tests::metric(&metrics, &series) != Some(listed.as_array()?.len() as f64) {
                return None;
            }
        }
        Some(metrics)
    })
    .await;
    let metrics = agreed.expect("auth_signals_open agrees with the API");
    // The revoked token's signal is open. The blacklisted token's refusals count as a revoked
    // token's too: when the polling above was refused often enough before every replica
    // knew of the blacklisting (a slow machine), it has one of its own. No other is open.
    let (_, still_tried) = call(
        &stack,
        Method::GET,
        "/admin/signals?state=open&rule=revoked_still_tried",
        &admin,
        None,
    )
    .await;
    let credentials: Vec<&str> = (still_tried.as_array().unwrap().iter())
        .filter_map(|signal| signal["credential"].as_str())
        .collect();
    assert!(credentials.contains(&revoked_id.as_str()), "{still_tried}");
    assert!(
        (credentials.iter()).all(|c| *c == revoked_id || *c == bursting_id),
        "{still_tried}"
    );
    assert_eq!(
        tests::metric(
            &metrics,
            "auth_signals_quarantined_total{rule=\"junk_journeys\"}"
        ),
        Some(1.0)
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn signals_are_raised_and_acted_on_embedded() {
    signals_are_raised_and_acted_on(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn signals_are_raised_and_acted_on_production() {
    signals_are_raised_and_acted_on(Mode::Production).await;
}

/// An operator pushing at an hour of the day it never pushes at (four weeks of history, all
/// twelve hours away from now).
#[tokio::test(flavor = "multi_thread")]
async fn journeys_far_outside_the_usual_hours_are_raised() {
    let stack = Stack::start_with(Mode::Production, options())
        .await
        .expect("stack starts");
    let store = auth_service::open_store(stack.auth_database())
        .await
        .unwrap();
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let (operator, op_admin) = stack.operator_with_admin(&admin).await.unwrap();
    let (token, id) = application(&stack, &op_admin, "night").await;
    let now = chrono::Utc::now().timestamp();
    let past: Vec<_> = (1..=27)
        .map(|days| row(&id, operator, now - days * 86_400 - 12 * 3600, "2xx", 100))
        .collect();
    history(&store, past, 1).await;
    for n in 0..6 {
        let status = push(
            &stack,
            0,
            &token,
            &journey(&format!("night-{n}")),
            "203.0.113.9",
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let signal = raised(&stack, &admin, "off_hours", &operator.to_string()).await;
    assert_eq!(signal["subject"], "operator");
    assert_eq!(signal["evidence"]["journeys_four_weeks"], 2700, "{signal}");
    assert_eq!(signal["evidence"]["usual_share_of_this_hour"], 0.0);
    // Raised again next second: the same signal, brought up to date.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, open) = call(
        &stack,
        Method::GET,
        "/admin/signals?state=open&rule=off_hours",
        &admin,
        None,
    )
    .await;
    let about: Vec<_> = open
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["credential"] == operator.to_string().as_str())
        .collect();
    assert_eq!(about.len(), 1, "one signal, kept up to date: {open}");
    assert_eq!(about[0]["id"], signal["id"]);
    let (status, bad) = call(
        &stack,
        Method::GET,
        "/admin/signals?state=closed",
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 400, "{bad}");
    stack.stop().await;
}
