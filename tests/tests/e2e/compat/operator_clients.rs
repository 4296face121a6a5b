//! What the reference's own operator clients send and assert (its `api/e2e` suite and the
//! payloads its factory makes), run against our stack on both stores: credentials the way
//! its client manages them, journeys on every served version, the answers' shapes.
//! Written here from the reference's published behaviour; no code of it is copied.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Mode, Stack};

/// The reference client's call: a JSON body or none, the answer's status, headers and JSON.
async fn call(
    stack: &Stack,
    method: Method,
    path: &str,
    auth: Auth<'_>,
    body: Option<Value>,
) -> (StatusCode, HeaderMap, Value) {
    let mut request = stack.request(method, path);
    request = match auth {
        Auth::Agent(headers) => request.headers(headers.clone()),
        Auth::Bearer(token) => request.bearer_auth(token),
        Auth::None => request,
    };
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("sent");
    let (status, headers) = (response.status(), response.headers().clone());
    let text = response.text().await.expect("body");
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    Agent(&'a HeaderMap),
    Bearer(&'a str),
    None,
}

/// `^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$`, the reference suite's `regex_datetime`.
fn is_iso_with_milliseconds(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() == 24
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23)
        && b[23] == b'Z'
}

fn hex(rng: &mut StdRng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b"0123456789abcdef"[rng.gen_range(0..16)]))
        .collect()
}

/// A French number as the reference's factory makes them: any of the nine-digit ranges,
/// assigned today or not, written in international style.
fn phone(rng: &mut StdRng) -> String {
    let national: String = (0..8)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect();
    format!("+33{}{national}", rng.gen_range(1..10))
}

/// A journey as the reference's payload factory builds it: a uuid id, identities with a
/// `phone_trunc` only, 1 to 3 incentives, coordinates anywhere, datetimes in JavaScript's
/// `toISOString()` (milliseconds), and the variants operators send.
fn reference_journey(rng: &mut StdRng, variant: usize) -> Value {
    let now = chrono::Utc::now();
    let start = now - chrono::Duration::minutes(rng.gen_range(61..120));
    let end = start + chrono::Duration::minutes(rng.gen_range(1..=60));
    let iso =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let identity = |rng: &mut StdRng| {
        let phone = phone(rng);
        json!({
            "identity_key": hex(rng, 64),
            "operator_user_id": uuid::Uuid::new_v4().to_string(),
            "phone_trunc": &phone[..phone.len() - 2],
        })
    };
    let incentives: Vec<Value> = (0..rng.gen_range(1..=3))
        .map(|index| json!({"index": index, "amount": rng.gen_range(0..=1000), "siret": "12345678900011"}))
        .collect();
    let class = ["A", "B", "C"][rng.gen_range(0..3)];
    let mut journey = json!({
        "operator_journey_id": uuid::Uuid::new_v4().to_string(),
        "operator_trip_id": uuid::Uuid::new_v4().to_string(),
        "operator_class": class,
        "incentives": incentives,
        "start": {"datetime": iso(start), "lat": rng.gen_range(-90.0..90.0f64), "lon": rng.gen_range(-180.0..180.0f64)},
        "end": {"datetime": iso(end), "lat": rng.gen_range(-90.0..90.0f64), "lon": rng.gen_range(-180.0..180.0f64)},
        "distance": rng.gen_range(2_000..=100_000),
        "driver": {"identity": identity(rng), "revenue": rng.gen_range(0..=1000)},
        "passenger": {
            "identity": identity(rng),
            "payments": [],
            "contribution": rng.gen_range(0..=1000),
            "seats": rng.gen_range(1..=4),
        },
    });
    match variant % 5 {
        // Legacy operators still send incentive_counterparts (accepted, ignored).
        0 => {
            journey["incentive_counterparts"] =
                json!([{"index": 0, "siret": "12345678900011", "amount": 10}])
        }
        // over_18 explicitly unknown.
        1 => {
            journey["passenger"]["identity"]["over_18"] = Value::Null;
            journey["driver"]["identity"]["over_18"] = json!(true);
        }
        // Datetimes without milliseconds, with an offset.
        2 => {
            let paris = chrono::FixedOffset::east_opt(3600).expect("offset");
            journey["start"]["datetime"] = json!(
                start
                    .with_timezone(&paris)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
            );
            journey["end"]["datetime"] = json!(
                end.with_timezone(&paris)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
            );
        }
        // A full phone beside the truncated one, typed as people type it; a travel pass.
        3 => {
            journey["driver"]["identity"]["phone"] = json!("06 12 34 56 78");
            journey["passenger"]["identity"]["travel_pass"] =
                json!({"name": "navigo", "user_id": uuid::Uuid::new_v4().to_string()});
        }
        _ => {}
    }
    journey
}

async fn operator_clients(mode: Mode) {
    let stack = Stack::start(mode).await.expect("stack starts");
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let (op, op_admin) = stack.operator_with_admin(&admin).await.unwrap();
    let (other, _) = stack.operator_with_admin(&admin).await.unwrap();
    let credentials = "/v3/auth/credentials";
    let agent = Auth::Agent(&op_admin);

    // ---- 004-credentials-happy: create, authenticate, read, delete ----
    let (status, _, created) = call(
        &stack,
        Method::POST,
        credentials,
        agent,
        Some(json!({"operator_id": op})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (access_key, secret_key) = (
        created["access_key"].as_str().unwrap().to_owned(),
        created["secret_key"].as_str().unwrap().to_owned(),
    );
    let keys = json!({"access_key": access_key, "secret_key": secret_key});
    let (status, _, body) = call(
        &stack,
        Method::POST,
        "/v3/auth/access_token",
        Auth::None,
        Some(keys.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    assert!(
        token.starts_with("ey") && token.split('.').count() == 3,
        "{token}"
    );
    let (status, _, listed) = call(
        &stack,
        Method::GET,
        &format!("{credentials}?operator_id={op}"),
        agent,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let first = &listed[0];
    assert_eq!(
        (first["operator_id"].as_i64(), first["role"].as_str()),
        (Some(op), Some("operator.application"))
    );
    assert!(first["token_id"].is_string());

    // ---- 005-credentials-hacky ----
    for body in [
        json!({"operator_id": other}),
        json!({}),
        json!({"operator_id": "wrong"}),
    ] {
        let (status, _, answer) =
            call(&stack, Method::POST, credentials, agent, Some(body.clone())).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}: {answer}");
    }
    let (status, ..) = call(
        &stack,
        Method::GET,
        &format!("{credentials}?operator_id={other}"),
        agent,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, ..) = call(
        &stack,
        Method::DELETE,
        &format!("{credentials}?operator_id={other}&token_id=token_id"),
        agent,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let missing = 999_999;
    let as_admin = Auth::Agent(&admin);
    let (status, ..) = call(
        &stack,
        Method::POST,
        credentials,
        as_admin,
        Some(json!({"operator_id": missing})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, ..) = call(
        &stack,
        Method::GET,
        &format!("{credentials}?operator_id={missing}"),
        as_admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, ..) = call(
        &stack,
        Method::DELETE,
        &format!("{credentials}?operator_id={missing}&token_id=token_id"),
        as_admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, ..) = call(
        &stack,
        Method::POST,
        credentials,
        as_admin,
        Some(json!({"operator_id": op})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "a registry admin creates for any operator"
    );

    // ---- 001-happy-path and 003-dex-authn: journeys on every served version ----
    let mut rng = StdRng::seed_from_u64(3_3);
    let bearer = Auth::Bearer(&token);
    for (n, version) in ["v3", "v3.2", "v3.3"].iter().cycle().take(15).enumerate() {
        let journey = reference_journey(&mut rng, n);
        let (status, headers, body) = call(
            &stack,
            Method::POST,
            &format!("/{version}/journeys"),
            bearer,
            Some(journey.clone()),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "{version}: {body}\n{journey:#}"
        );
        let data = &body["result"]["data"];
        assert_eq!(
            (body["jsonrpc"].as_str(), body["id"].as_i64()),
            (Some("2.0"), Some(1))
        );
        assert!(body["result"]["meta"].is_null());
        assert_eq!(data["operator_journey_id"], journey["operator_journey_id"]);
        let created_at = data["created_at"].as_str().expect("created_at");
        assert!(is_iso_with_milliseconds(created_at), "{created_at}");
        assert!(
            headers.get("set-cookie").is_none(),
            "{version}: no Set-Cookie for an operator's server"
        );
    }
    for version in ["v3.1", "v4"] {
        let (status, _, body) = call(
            &stack,
            Method::POST,
            &format!("/{version}/journeys"),
            bearer,
            Some(reference_journey(&mut rng, 4)),
        )
        .await;
        // The reference's code answers 404; its published pipeline, which we follow, 422.
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{version}: {body}"
        );
    }

    // The journeys of the issue: phones the full metadata calls unassigned.
    let mut journey = reference_journey(&mut rng, 4);
    journey["driver"]["identity"]["phone_trunc"] = json!("+336908182");
    journey["passenger"]["identity"]["phone_trunc"] = json!("+334059086");
    journey["passenger"]["identity"]["phone"] = json!("04 05 90 86 12");
    let (status, _, body) = call(&stack, Method::POST, "/v3/journeys", bearer, Some(journey)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Neither phone nor phone_trunc: the reference's 400, its code and its sentence.
    for (who, sentence) in [
        (
            "driver",
            "driver.identity should have a phone or phone_trunc",
        ),
        (
            "passenger",
            "passenger.identity should have a phone or phone_trunc",
        ),
    ] {
        let mut journey = reference_journey(&mut rng, 4);
        journey[who]["identity"]
            .as_object_mut()
            .unwrap()
            .remove("phone_trunc");
        let (status, _, body) =
            call(&stack, Method::POST, "/v3/journeys", bearer, Some(journey)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(
            body["error"],
            json!({"code": -32600, "message": "Invalid Request", "data": sentence})
        );
    }

    // Not JSON, and a mistyped field: our words, never the parser's.
    let r = stack
        .request(Method::POST, "/v3/journeys")
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"operator_journey_id\":")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (
            body["error"]["code"].as_i64(),
            body["error"]["message"].as_str()
        ),
        (Some(-32700), Some("Parse error"))
    );
    let text = body["error"]["data"].to_string();
    assert!(
        text.contains(": must be valid JSON") && !text.contains("EOF"),
        "{text}"
    );
    let mut mistyped = reference_journey(&mut rng, 4);
    mistyped["distance"] = json!("wrong");
    let (status, _, body) =
        call(&stack, Method::POST, "/v3/journeys", bearer, Some(mistyped)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["data"], json!(["/distance: must be integer"]));

    // ---- Deleted credentials can no longer obtain a token ----
    let (status, ..) = call(
        &stack,
        Method::DELETE,
        &format!("{credentials}?operator_id={op}&token_id={access_key}"),
        agent,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, body) = call(
        &stack,
        Method::POST,
        "/v3/auth/access_token",
        Auth::None,
        Some(keys),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (_, _, listed) = call(
        &stack,
        Method::GET,
        &format!("{credentials}?operator_id={op}"),
        agent,
        None,
    )
    .await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["token_id"] != access_key.as_str())
    );

    stack.stop().await;
}

#[tokio::test]
async fn the_references_operator_clients_work_unchanged_embedded() {
    operator_clients(Mode::Embedded).await;
}

#[tokio::test]
async fn the_references_operator_clients_work_unchanged_production() {
    operator_clients(Mode::Production).await;
}
