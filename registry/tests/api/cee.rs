//! CEE applications on both stores: register (short and long), the 404/400/409 rules at their
//! boundaries, find, delete, simulate, the token and the public key.

use crate::helpers::{
    StoreKind, TestApp, at, journey_between, operator, registry_user, siret_of, spawn_app_at,
    status_and_json,
};
use base64::Engine;
use chrono::TimeDelta;
use registry::clock::ManualClock;
use reqwest::Method;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::sha2::Sha512;
use rsa::signature::Verifier;
use serde_json::{Value, json};

on_both_stores!(
    short_registration_returns_201_with_a_verifiable_token_and_find_returns_it,
    ineligible_or_unknown_journeys_are_not_found,
    a_claimed_journey_and_a_person_in_cool_down_get_409,
    conflict_bodies_reveal_details_only_to_the_same_operator,
    long_registration_dates_are_checked,
    deleted_applications_are_gone_and_no_longer_block,
    simulate_answers_200_or_409,
    bad_input_gets_400_and_callers_without_operator_or_siret_get_403,
    concurrent_registrations_of_one_person_create_exactly_one,
);

const JOURNEY_START: &str = "2024-03-01T08:00:00Z";
const JOURNEY_END: &str = "2024-03-01T09:00:00Z";

/// A registry whose clock stands just after [`JOURNEY_END`].
async fn app(kind: StoreKind) -> (TestApp, ManualClock) {
    spawn_app_at(kind, at("2024-03-01T09:30:00Z")).await
}

/// Sends a journey of operator 1 between `couple` from [`JOURNEY_START`] to [`JOURNEY_END`],
/// with `change`. Every driver's `phone_trunc` is `+336010203`.
async fn send_journey(
    app: &TestApp,
    id: &str,
    couple: (char, char),
    change: impl FnOnce(&mut Value),
) {
    let mut body = journey_between(id, id, couple, at(JOURNEY_START), at(JOURNEY_END));
    change(&mut body);
    let (status, body) = status_and_json(app.post_journey(&operator(1), &body).await).await;
    assert_eq!(status, 201, "{body}");
}

fn short(journey_id: &str, key: char, licence: &str) -> Value {
    json!({
        "journey_type": "short",
        "identity_key": key.to_string().repeat(64),
        "driving_license": licence,
        "last_name_trunc": "DUP",
        "operator_journey_id": journey_id,
        "application_timestamp": "2024-03-01T10:00:00Z",
    })
}

fn long(datetime: &str, key: char, licence: &str, phone_trunc: &str) -> Value {
    json!({
        "journey_type": "long",
        "identity_key": key.to_string().repeat(64),
        "driving_license": licence,
        "last_name_trunc": "MAR",
        "phone_trunc": phone_trunc,
        "datetime": datetime,
        "application_timestamp": "2024-03-01T10:00:00Z",
    })
}

async fn register(app: &TestApp, operator_id: i64, body: &Value) -> (u16, Value) {
    let response = app
        .call(
            Method::POST,
            "/v3/policies/cee",
            &operator(operator_id),
            Some(body),
        )
        .await;
    status_and_json(response).await
}

fn verify(public_pem: &str, message: &str, token: &str) -> bool {
    let key = rsa::RsaPublicKey::from_public_key_pem(public_pem).expect("public key PEM");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .expect("base64 token");
    let signature = Signature::try_from(bytes.as_slice()).expect("signature");
    VerifyingKey::<Sha512>::new(key)
        .verify(message.as_bytes(), &signature)
        .is_ok()
}

async fn short_registration_returns_201_with_a_verifiable_token_and_find_returns_it(
    kind: StoreKind,
) {
    let (app, clock) = app(kind).await;
    send_journey(&app, "j1", ('a', 'b'), |_| {}).await;
    clock.set(at(JOURNEY_END) + TimeDelta::days(7));
    let (status, body) = register(&app, 1, &short("j1", 'a', "051227308989")).await;
    assert_eq!(status, 201, "{body}");
    let uuid = body["uuid"].as_str().expect("uuid").to_owned();
    let token = body["token"].as_str().expect("token").to_owned();
    assert_eq!(body["datetime"], "2024-03-01T09:00:00.000Z");
    assert_eq!(body["status"], "pending");
    assert!(body["journey_id"].is_i64(), "{body}");

    let response = app
        .call(
            Method::GET,
            "/v3/policies/cee/public-key",
            &operator(1),
            None,
        )
        .await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-pem-file");
    let pem = response.text().await.unwrap();
    let message = format!(
        "{}/short/051227308989/2024-03-01T09:00:00.000Z",
        siret_of(1)
    );
    assert!(verify(&pem, &message, &token), "token verifies");
    assert!(!verify(&pem, &message.replace("short", "long"), &token));

    let path = format!("/v3.3/policies/cee/{uuid}");
    let (status, found) =
        status_and_json(app.call(Method::GET, &path, &operator(1), None).await).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found, body);
    let response = app.call(Method::GET, &path, &operator(2), None).await;
    assert_eq!(response.status().as_u16(), 404, "another operator's");
}

async fn ineligible_or_unknown_journeys_are_not_found(kind: StoreKind) {
    let (app, clock) = app(kind).await;
    let brussels = json!({"datetime": JOURNEY_END, "lat": 50.8503, "lon": 4.3517});
    let geneva = json!({"datetime": JOURNEY_START, "lat": 46.2044, "lon": 6.1432});
    type Change = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Change, u16)> = vec![
        ("d80000", Box::new(|j| j["distance"] = json!(80_000)), 201),
        ("d80001", Box::new(|j| j["distance"] = json!(80_001)), 404),
        (
            "classb",
            Box::new(|j| j["operator_class"] = json!("B")),
            404,
        ),
        (
            "abroad",
            Box::new(move |j| {
                j["start"] = geneva.clone();
                j["end"] = brussels.clone();
            }),
            404,
        ),
        (
            "halfabroad",
            Box::new(|j| {
                j["end"]["lat"] = json!(50.8503);
                j["end"]["lon"] = json!(4.3517);
            }),
            201,
        ),
        (
            "cayenne",
            Box::new(|j| {
                j["start"]["lat"] = json!(4.9372);
                j["start"]["lon"] = json!(-52.326);
                j["end"]["lat"] = json!(4.95);
                j["end"]["lon"] = json!(-52.33);
            }),
            201,
        ),
    ];
    let couples = [
        ('0', '1'),
        ('2', '3'),
        ('4', '5'),
        ('6', '7'),
        ('8', '9'),
        ('c', 'd'),
    ];
    for ((id, change, _), couple) in cases.iter().zip(couples) {
        send_journey(&app, id, couple, change).await;
    }
    // A millisecond short of the delay: not yet.
    clock.set(at(JOURNEY_END) + TimeDelta::days(7) - TimeDelta::milliseconds(1));
    let (status, body) = register(&app, 1, &short("d80000", 'a', "100000000001")).await;
    assert_eq!(status, 404, "too recent: {body}");
    clock.set(at(JOURNEY_END) + TimeDelta::days(7));
    for (n, (id, _, expected)) in cases.iter().enumerate() {
        let body = short(id, 'a', &format!("1000000000{n:02}"));
        let mut body = body;
        body["identity_key"] = json!(format!("{n:064x}"));
        body["last_name_trunc"] = json!(["AAA", "BBB", "CCC", "DDD", "EEE", "FFF"][n]);
        let (status, answer) = register(&app, 1, &body).await;
        assert_eq!(status, *expected, "{id}: {answer}");
    }
    let (status, _) = register(&app, 1, &short("unknown", 'c', "100000000099")).await;
    assert_eq!(status, 404);
    // Another operator cannot claim operator 1's journey.
    let (status, _) = register(&app, 2, &short("d80000", 'c', "100000000098")).await;
    assert_eq!(status, 404);
}

async fn a_claimed_journey_and_a_person_in_cool_down_get_409(kind: StoreKind) {
    let (app, clock) = app(kind).await;
    send_journey(&app, "j1", ('a', 'b'), |_| {}).await;
    send_journey(&app, "j2", ('c', 'd'), |j| {
        j["operator_trip_id"] = json!("t2");
        j["start"]["datetime"] = json!("2024-03-01T09:10:00Z");
        j["end"]["datetime"] = json!("2024-03-01T09:20:00Z");
    })
    .await;
    clock.set(at("2024-03-09T00:00:00Z"));
    let (status, first) = register(&app, 1, &short("j1", 'a', "051227308989")).await;
    assert_eq!(status, 201, "{first}");
    let expected = json!({"uuid": first["uuid"], "datetime": first["datetime"],
                          "journey_id": first["journey_id"], "status": "pending"});
    // The same journey, by someone else entirely.
    let mut other = short("j1", 'e', "999999999999");
    other["last_name_trunc"] = json!("ZZZ");
    let (status, body) = register(&app, 1, &other).await;
    assert_eq!((status, &body), (409, &expected));
    // The same person on another journey, by each key: identity key, licence, name + phone
    // (the phone is the journey driver's).
    for (key, licence, name) in [
        ('a', "111111111111", "ZZZ"),
        ('e', "051227308989", "ZZZ"),
        ('e', "222222222222", "DUP"),
    ] {
        let mut body = short("j2", key, licence);
        body["last_name_trunc"] = json!(name);
        let (status, answer) = register(&app, 1, &body).await;
        assert_eq!(
            (status, &answer),
            (409, &expected),
            "{key} {licence} {name}"
        );
    }
    // A long-distance claim is another cool-down.
    let (status, body) = register(
        &app,
        1,
        &long("2024-03-01T00:00:00Z", 'a', "051227308989", "+336010203"),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

async fn conflict_bodies_reveal_details_only_to_the_same_operator(kind: StoreKind) {
    let (app, clock) = app(kind).await;
    clock.set(at("2028-01-01T00:00:00Z"));
    let first = long("2024-02-01T00:00:00Z", 'a', "051227308989", "+336010203");
    let (status, created) = register(&app, 1, &first).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created.as_object().map(|o| o.len()),
        Some(3),
        "long: uuid, datetime, token: {created}"
    );
    let again = long("2027-06-01T00:00:00Z", 'a', "333333333333", "+336999999");
    let (status, body) = register(&app, 2, &again).await;
    assert_eq!(status, 409);
    assert_eq!(body, json!({"datetime": "2024-02-01T00:00:00.000Z"}));
    let (status, body) = register(&app, 1, &again).await;
    assert_eq!(status, 409);
    assert_eq!(
        body,
        json!({"uuid": created["uuid"], "datetime": "2024-02-01T00:00:00.000Z"})
    );
}

async fn long_registration_dates_are_checked(kind: StoreKind) {
    let (app, clock) = app(kind).await;
    clock.set(at("2024-03-08T00:00:00Z"));
    let cases = [
        (
            "2024-03-01T00:00:00.001Z",
            400,
            "/datetime: Date should be before 7 days from now",
        ),
        (
            "2023-12-31T23:59:59.999Z",
            400,
            "/datetime: Date should be between 2024-01-01T00:00:00.000Z and 2027-12-31T23:59:59.000Z",
        ),
        ("2024-01-01T00:00:00Z", 201, ""),
    ];
    for (n, (datetime, expected, message)) in cases.into_iter().enumerate() {
        let body = long(
            datetime,
            char::from(b'0' + n as u8),
            &format!("4{n:011}"),
            &format!("+3361234{n:02}"),
        );
        let mut body = body;
        body["last_name_trunc"] = json!(["AAA", "BBB", "CCC"][n]);
        let (status, answer) = register(&app, 1, &body).await;
        assert_eq!(status, expected, "{datetime}: {answer}");
        if expected == 400 {
            assert_eq!(answer["error"]["data"], json!([message]));
        }
    }
    let mut future = long("2024-01-02T00:00:00Z", 'f', "500000000000", "+336123456");
    future["application_timestamp"] = json!("2024-03-08T00:06:00Z");
    let (status, answer) = register(&app, 1, &future).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer["error"]["data"],
        json!(["/application_timestamp: Date should be before 0 days from now"])
    );
}

async fn deleted_applications_are_gone_and_no_longer_block(kind: StoreKind) {
    let (app, clock) = app(kind).await;
    send_journey(&app, "j1", ('a', 'b'), |_| {}).await;
    clock.set(at("2024-03-09T00:00:00Z"));
    let (_, first) = register(&app, 1, &short("j1", 'a', "051227308989")).await;
    let path = format!("/v3/policies/cee/{}", first["uuid"].as_str().unwrap());
    let (one, two) = (operator(1), operator(2));
    let delete = |principal| app.call(Method::DELETE, &path, principal, None);
    assert_eq!(delete(&two).await.status().as_u16(), 404);
    let response = delete(&one).await;
    assert_eq!(response.status().as_u16(), 204);
    assert_eq!(response.text().await.unwrap(), "");
    assert_eq!(delete(&one).await.status().as_u16(), 404);
    let found = app.call(Method::GET, &path, &operator(1), None).await;
    assert_eq!(found.status().as_u16(), 404);
    // The journey and the person are free again.
    let (status, second) = register(&app, 1, &short("j1", 'a', "051227308989")).await;
    assert_eq!(status, 201, "{second}");
    assert_ne!(second["uuid"], first["uuid"]);
}

async fn simulate_answers_200_or_409(kind: StoreKind) {
    let (app, clock) = app(kind).await;
    clock.set(at("2024-03-09T00:00:00Z"));
    let simulation = json!({"journey_type": "long", "last_name_trunc": "MAR",
                            "phone_trunc": "+33 6 01 02 03"});
    let simulate = |operator_id| {
        let request = app
            .request(
                Method::POST,
                "/v3/policies/cee/simulate",
                Some(&operator(operator_id)),
            )
            .json(&simulation);
        async move { request.send().await.expect("request sent") }
    };
    let response = simulate(1).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.text().await.unwrap(), "");
    let (status, created) = register(
        &app,
        1,
        &long("2024-02-01T00:00:00Z", 'a', "051227308989", "+336010203"),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let (status, body) = status_and_json(simulate(1).await).await;
    assert_eq!(status, 409);
    assert_eq!(
        body,
        json!({"uuid": created["uuid"], "datetime": "2024-02-01T00:00:00.000Z"})
    );
    let (status, body) = status_and_json(simulate(2).await).await;
    assert_eq!(
        (status, body),
        (409, json!({"datetime": "2024-02-01T00:00:00.000Z"}))
    );
    // Short distance is another cool-down.
    let mut short = simulation.clone();
    short["journey_type"] = json!("short");
    let response = app
        .call(
            Method::POST,
            "/v3/policies/cee/simulate",
            &operator(1),
            Some(&short),
        )
        .await;
    assert_eq!(response.status().as_u16(), 200);
}

async fn bad_input_gets_400_and_callers_without_operator_or_siret_get_403(kind: StoreKind) {
    let (app, _) = app(kind).await;
    let (status, body) = register(
        &app,
        1,
        &json!({"journey_type": "short", "last_name_trunc": "abcd"}),
    )
    .await;
    assert_eq!(status, 400);
    let errors = body["error"]["data"].as_array().expect("violations");
    assert!(errors.len() >= 5, "{body}");
    assert!(errors.contains(&json!(
        "/last_name_trunc: must match pattern \"^[A-Z ]{3}$\""
    )));
    assert_eq!(body["error"]["code"], -32602);

    let raw = app
        .request(Method::POST, "/v3/policies/cee", Some(&operator(1)))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    let text = app
        .request(
            Method::POST,
            "/v3/policies/cee/simulate",
            Some(&operator(1)),
        )
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(text.status().is_client_error());
    let (status, body) = status_and_json(
        app.call(
            Method::GET,
            "/v3/policies/cee/not-a-uuid",
            &operator(1),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["data"],
        json!(["/uuid: must match format \"uuid\""])
    );
    let response = app
        .call(
            Method::DELETE,
            "/v3/policies/cee/not-a-uuid",
            &operator(1),
            None,
        )
        .await;
    assert_eq!(response.status().as_u16(), 400);

    let valid = long("2024-02-01T00:00:00Z", 'a', "051227308989", "+336010203");
    let mut old_token = operator(1);
    old_token.operator_siret = None;
    let (status, body) = status_and_json(
        app.call(Method::POST, "/v3/policies/cee", &old_token, Some(&valid))
            .await,
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["data"], "token_without_siret");
    let (status, body) = status_and_json(
        app.call(
            Method::POST,
            "/v3/policies/cee",
            &registry_user(),
            Some(&valid),
        )
        .await,
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["data"], "operator_required");
    let response = app
        .request(Method::POST, "/v3/policies/cee", None)
        .json(&valid)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
}

async fn concurrent_registrations_of_one_person_create_exactly_one(kind: StoreKind) {
    let (app, clock) = app(kind).await;
    clock.set(at("2024-03-09T00:00:00Z"));
    let sends = (0..8).map(|n| {
        // Same licence, otherwise different people: the licence alone makes them one.
        let body = long(
            "2024-02-01T00:00:00Z",
            char::from(b'0' + n as u8),
            "051227308989",
            &format!("+3361234{n:02}"),
        );
        let app = &app;
        async move { register(app, 1 + n % 2, &body).await.0 }
    });
    let mut statuses = futures_util::future::join_all(sends).await;
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409, 409, 409]);
}
