//! Usage records (issue 21): every gateway replica counts what each credential does, per
//! minute, and sends it to auth-service off the request path; the last use of each
//! application token and API credential is shown beside it.

use auth_token::usage::{Batch, LastUsedRow, Subject, USAGE_PATH, UsageRow};
use auth_token::{ASSERTION_HEADER, Assertion, AssertionKey, Principal};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;
use tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Mode, Options, Stack, call, journey};

const AGENT: &str = "operator-backend/4.2 (usage test)";

fn options(gateways: usize) -> Options {
    Options {
        gateways,
        gateway_settings: Some(|s| s.usage.flush_secs = 1),
        ..Options::default()
    }
}

async fn list(stack: &Stack, path: &str, by: &HeaderMap) -> Vec<Value> {
    let (_, answer) = call(stack, Method::GET, path, by, None).await;
    answer.as_array().cloned().unwrap_or_default()
}

/// Requests of `credential` in auth-service's records, by outcome.
async fn recorded(
    store: &auth_service::store::Store,
    subject: Subject,
    credential: &str,
) -> Vec<(String, String, i64)> {
    let now = chrono::Utc::now().timestamp();
    let mut by: std::collections::BTreeMap<(String, String), i64> = Default::default();
    for bucket in store
        .usage_of(subject, credential, now - 3600, now + 3600)
        .await
        .unwrap()
    {
        *by.entry((bucket.class, bucket.outcome)).or_default() += bucket.requests;
    }
    by.into_iter().map(|((c, o), n)| (c, o, n)).collect()
}

async fn usage_is_recorded_per_credential(mode: Mode) {
    let stack = Stack::start_with(mode, options(2))
        .await
        .expect("stack starts");
    let store = auth_service::open_store(stack.auth_database())
        .await
        .unwrap();
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let (operator_id, op_admin) = stack.operator_with_admin(&admin).await.unwrap();
    let token = stack.application_token(&op_admin).await.unwrap();
    let apps = list(&stack, "/applications", &op_admin).await;
    let app = apps[0]["uuid"].as_str().unwrap().to_owned();
    assert_eq!(
        apps[0]["last_used"],
        Value::Null,
        "never used yet: {apps:?}"
    );

    // Five journeys through each replica, one of them sent twice (409).
    for n in 0..10 {
        let status = stack
            .request_to(n % 2, Method::POST, "/v3/journeys")
            .bearer_auth(&token)
            .header("user-agent", AGENT)
            .json(&journey(&format!("usage-{n}")))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::CREATED);
    }
    let again = stack
        .request_to(1, Method::POST, "/v3/journeys")
        .bearer_auth(&token)
        .header("user-agent", AGENT)
        .json(&journey("usage-3"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(again, StatusCode::CONFLICT);
    // Stored in breach of the terms: the registry's label is the outcome, and the header
    // that carries it to the gateway never reaches the client.
    let mut short = journey("usage-short");
    short["distance"] = serde_json::json!(1_000);
    let breach = stack
        .request_to(0, Method::POST, "/v3/journeys")
        .bearer_auth(&token)
        .header("user-agent", AGENT)
        .json(&short)
        .send()
        .await
        .unwrap();
    assert_eq!(breach.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(breach.headers().get("x-rpc-outcome").is_none());

    let expected = vec![
        ("journeys_write".to_owned(), "2xx".to_owned(), 10),
        ("journeys_write".to_owned(), "409".to_owned(), 1),
        (
            "journeys_write".to_owned(),
            "422:distance_too_short".to_owned(),
            1,
        ),
    ];
    let both_replicas = stack
        .eventually(Duration::from_secs(10), || async {
            recorded(&store, Subject::Application, &app).await == expected
        })
        .await;
    assert!(
        both_replicas,
        "the two replicas' counts add up: {:?}",
        recorded(&store, Subject::Application, &app).await
    );

    // The last use is shown beside the application.
    let apps = list(&stack, "/applications", &op_admin).await;
    let last = &apps[0]["last_used"];
    assert_eq!(last["network"], "127.0.0.0/24", "{apps:?}");
    assert_eq!(last["user_agent"], AGENT);
    let at = chrono::DateTime::parse_from_rfc3339(last["at"].as_str().unwrap()).unwrap();
    assert!((chrono::Utc::now().timestamp() - at.timestamp()).abs() < 60);

    // Revoked, the token is still tried: each attempt is recorded as such.
    let revoked = stack
        .request(Method::DELETE, &format!("/applications/{app}"))
        .headers(op_admin.clone())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(revoked, StatusCode::NO_CONTENT);
    let refused_everywhere = stack
        .eventually(Duration::from_secs(5), || async {
            let mut refused = 0;
            for n in 0..2 {
                let status = stack
                    .request_to(n, Method::POST, "/v3/journeys")
                    .bearer_auth(&token)
                    .json(&journey("usage-after-revocation"))
                    .send()
                    .await
                    .unwrap()
                    .status();
                refused += usize::from(status == StatusCode::UNAUTHORIZED);
            }
            refused == 2
        })
        .await;
    assert!(refused_everywhere);
    let tried = stack
        .eventually(Duration::from_secs(10), || async {
            recorded(&store, Subject::Application, &app)
                .await
                .iter()
                .any(|(_, outcome, n)| outcome == "revoked_token" && *n >= 2)
        })
        .await;
    assert!(
        tried,
        "{:?}",
        recorded(&store, Subject::Application, &app).await
    );

    // An API credential: its access token's use is shown beside the credential.
    let credential = stack.credential(&admin, operator_id).await.unwrap();
    let pair = stack
        .token_pair(credential["api_key"].as_str().unwrap())
        .await
        .unwrap();
    let access = pair["access"].as_str().unwrap();
    let status = stack
        .request(Method::POST, "/v3/journeys")
        .bearer_auth(access)
        .header("user-agent", "api-client/1")
        .json(&journey("usage-api-credential"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::CREATED);
    let key = credential["access_key"].as_str().unwrap().to_owned();
    let path = format!("/v3/auth/credentials?operator_id={operator_id}");
    let shown = stack
        .eventually(Duration::from_secs(10), || async {
            list(&stack, &path, &admin).await.iter().any(|c| {
                c["token_id"] == key.as_str() && c["last_used"]["user_agent"] == "api-client/1"
            })
        })
        .await;
    assert!(shown, "{:?}", list(&stack, &path, &admin).await);

    // A wrong secret for that credential: the gateway saw an anonymous request, auth-service
    // knows whose key it was and records the refusal (the guessing rule reads it).
    let wrong = stack
        .request(Method::POST, "/api/v1/auth/token/")
        .json(&serde_json::json!({"apiKey": format!("{key}.not-the-secret")}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(wrong, StatusCode::UNAUTHORIZED);
    let bad_secret = ("access_token".to_owned(), "bad_secret".to_owned(), 1);
    let heard = stack
        .eventually(Duration::from_secs(5), || async {
            recorded(&store, Subject::ApiCredential, &key)
                .await
                .contains(&bad_secret)
        })
        .await;
    assert!(
        heard,
        "{:?}",
        recorded(&store, Subject::ApiCredential, &key).await
    );

    // People are recorded too (the operator admin's console calls).
    let (_, profile) = call(&stack, Method::GET, "/profile", &op_admin, None).await;
    let user = profile["user"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let seen = stack
        .eventually(Duration::from_secs(10), || async {
            !recorded(&store, Subject::User, &user).await.is_empty()
        })
        .await;
    assert!(seen, "the operator admin ({user}) is in the records");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_is_recorded_per_credential_embedded() {
    usage_is_recorded_per_credential(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_is_recorded_per_credential_production() {
    usage_is_recorded_per_credential(Mode::Production).await;
}

/// auth-service stopped for a while: the gateway keeps its counts and sends them once it is
/// back; none are lost, none counted twice.
#[tokio::test(flavor = "multi_thread")]
async fn usage_waits_for_auth_service_and_loses_nothing() {
    let mut stack = Stack::start_with(Mode::Production, options(1))
        .await
        .expect("stack starts");
    let store = auth_service::open_store(stack.auth_database())
        .await
        .unwrap();
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let (_, op_admin) = stack.operator_with_admin(&admin).await.unwrap();
    let token = stack.application_token(&op_admin).await.unwrap();
    let app = list(&stack, "/applications", &op_admin).await[0]["uuid"]
        .as_str()
        .unwrap()
        .to_owned();

    // auth-service stops; journeys still flow (the gateway checks tokens itself).
    stack.stop_auth_service().await.unwrap();
    for n in 0..6 {
        let status = stack
            .request(Method::POST, "/v3/journeys")
            .bearer_auth(&token)
            .json(&journey(&format!("while-away-{n}")))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::CREATED);
    }
    let held = stack
        .eventually(Duration::from_secs(10), || async {
            let metrics = stack.gateway_metrics(0).await.unwrap_or_default();
            tests::metric(&metrics, "gateway_usage_pending_rows").is_some_and(|v| v > 0.0)
                && tests::metric(&metrics, "gateway_usage_flushes_total{outcome=\"failed\"}")
                    .is_some_and(|v| v > 0.0)
        })
        .await;
    assert!(held, "{}", stack.gateway_metrics(0).await.unwrap());
    assert!(
        recorded(&store, Subject::Application, &app)
            .await
            .is_empty()
    );

    stack.restart_auth_service(|_| {}).await.unwrap();
    let delivered = stack
        .eventually(Duration::from_secs(15), || async {
            recorded(&store, Subject::Application, &app).await
                == vec![("journeys_write".to_owned(), "2xx".to_owned(), 6)]
        })
        .await;
    assert!(
        delivered,
        "{:?}",
        recorded(&store, Subject::Application, &app).await
    );
    let metrics = stack.gateway_metrics(0).await.unwrap();
    assert_eq!(
        tests::metric(&metrics, "gateway_usage_pending_rows"),
        Some(0.0)
    );
    assert_eq!(
        tests::metric(&metrics, "gateway_usage_lost_rows_total"),
        Some(0.0)
    );
    stack.stop().await;
}

fn batch(replica: &str, seq: u64, id: &str, minute: i64, requests: u64) -> Batch {
    Batch {
        replica: replica.into(),
        seq,
        usage: vec![UsageRow {
            subject: Subject::Application,
            id: id.into(),
            operator_id: Some(1),
            minute,
            class: "journeys_write".into(),
            outcome: "2xx".into(),
            requests,
            bytes_in: 100 * requests,
            bytes_out: 10 * requests,
        }],
        networks: vec![],
        last_used: vec![LastUsedRow {
            subject: Subject::Application,
            id: id.into(),
            operator_id: Some(1),
            at_ms: (minute + 30) * 1000,
            network: "203.0.113.0/24".into(),
            user_agent: None,
        }],
    }
}

/// Sends `batch` straight to auth-service under an assertion for `principal` signed with
/// `secret`.
async fn send(stack: &Stack, secret: &str, principal: Principal, batch: &Batch) -> u16 {
    send_body(stack, secret, principal, serde_json::to_vec(batch).unwrap()).await
}

async fn send_body(stack: &Stack, secret: &str, principal: Principal, body: Vec<u8>) -> u16 {
    let digest = auth_token::body_digest(&body);
    let request = auth_token::Request {
        method: "POST",
        path: USAGE_PATH,
        query: "",
        body: digest.as_deref(),
    };
    let assertion = Assertion::new(
        principal,
        "auth-service",
        &request,
        "usage-test",
        chrono::Utc::now().timestamp(),
    );
    let token = AssertionKey::new(secret.as_bytes())
        .unwrap()
        .sign(&assertion);
    reqwest::Client::new()
        .post(format!("http://{}{USAGE_PATH}", stack.auth_addr))
        .header(ASSERTION_HEADER, token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Only the gateway itself sends usage: no client reaches the route through the gateway,
/// and an upstream's assertion for any principal but the gateway's is refused; a batch sent
/// again (its answer lost) is counted once; the upkeep rolls old minutes up to hours and
/// forgets what is past retention, on both databases.
async fn usage_batches(mode: Mode) {
    let stack = Stack::start(mode).await.expect("stack starts");
    let store = auth_service::open_store(stack.auth_database())
        .await
        .unwrap();
    let secret = stack.assertion_secrets.auth_service.expose().clone();
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let now = chrono::Utc::now().timestamp();
    let minute = now - now.rem_euclid(60);
    let forged = batch("forged", 1, "victim-app", minute, 1_000_000);

    // Through the gateway, as a client, with a staff session: the route does not exist.
    let through = stack
        .request(Method::POST, USAGE_PATH)
        .headers(admin.clone())
        .json(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(through.status(), StatusCode::NOT_FOUND);
    assert_eq!(through.headers()["x-gateway-error"], "route_not_found");
    // Straight to auth-service with a valid assertion for a staff member or anonymous.
    let staff = Principal {
        kind: Some(auth_token::CredentialKind::Session),
        id: "1".into(),
        role: Some(auth_token::Role::RegistryAdmin),
        ..Principal::anonymous()
    };
    assert_eq!(send(&stack, &secret, staff, &forged).await, 404);
    assert_eq!(
        send(&stack, &secret, Principal::anonymous(), &forged).await,
        404
    );
    // The registry's secret cannot speak for the gateway to auth-service.
    let registry_secret = stack.assertion_secrets.registry.expose().clone();
    let gateway = Principal::gateway("r1");
    assert_eq!(
        send(&stack, &registry_secret, gateway.clone(), &forged).await,
        401
    );
    assert!(
        recorded(&store, Subject::Application, "victim-app")
            .await
            .is_empty()
    );

    // The gateway's own batch, sent twice: counted once.
    let first = batch("r1", 1, "app-a", minute, 3);
    assert_eq!(send(&stack, &secret, gateway.clone(), &first).await, 204);
    assert_eq!(send(&stack, &secret, gateway.clone(), &first).await, 204);
    let second = batch("r1", 2, "app-a", minute, 4);
    assert_eq!(send(&stack, &secret, gateway.clone(), &second).await, 204);
    assert_eq!(
        recorded(&store, Subject::Application, "app-a").await,
        vec![("journeys_write".to_owned(), "2xx".to_owned(), 7)]
    );
    // Without an assertion: no entry. Malformed: refused for what it is (400; the gateway
    // drops such a batch rather than sending it forever).
    let status = reqwest::Client::new()
        .post(format!("http://{}{USAGE_PATH}", stack.auth_addr))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let malformed = br#"{"replica": 1, "seq": "one"}"#.to_vec();
    assert_eq!(
        send_body(&stack, &secret, gateway.clone(), malformed).await,
        400
    );

    // Upkeep: minutes eight days old become hours, a hundred days old are gone.
    let day = 86_400;
    let hour_start = now - 8 * day - (now - 8 * day).rem_euclid(3600);
    for (seq, (minute, requests)) in [
        (hour_start, 2),
        (hour_start + 60, 3),
        (hour_start + 3540, 5),
        (hour_start - 92 * day, 9),
    ]
    .into_iter()
    .enumerate()
    {
        let old = batch("r-old", seq as u64 + 1, "app-old", minute, requests);
        assert_eq!(send(&stack, &secret, gateway.clone(), &old).await, 204);
    }
    let retention = auth_service::settings::UsageSettings::default().retention();
    let done = store.usage_upkeep(now, retention).await.unwrap();
    assert!(done.rows_deleted >= 1, "{done:?}");
    let kept = store
        .usage_of(Subject::Application, "app-old", 0, now)
        .await
        .unwrap();
    let kept: Vec<_> = kept
        .iter()
        .map(|b| (b.span, b.bucket - hour_start, b.requests, b.bytes_in))
        .collect();
    assert_eq!(kept, [(3600, 0, 10, 1000)], "rolled up into one hour");
    // Today's minutes are untouched.
    assert_eq!(
        recorded(&store, Subject::Application, "app-a").await,
        vec![("journeys_write".to_owned(), "2xx".to_owned(), 7)]
    );
    // A second upkeep adds nothing.
    store.usage_upkeep(now, retention).await.unwrap();
    let again = store
        .usage_of(Subject::Application, "app-old", 0, now)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].requests, 10);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_batches_embedded() {
    usage_batches(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_batches_production() {
    usage_batches(Mode::Production).await;
}
