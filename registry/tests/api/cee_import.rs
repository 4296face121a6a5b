//! The CEE imports on both stores: an operator's history (specific applications) stored once
//! per operator and person, each conflict reported item by item; identity keys set once on
//! the caller's own applications; whole bodies refused with every violation; and the history's
//! cool-downs as registrations and simulations meet them.

use crate::helpers::{
    StoreKind, TestApp, at, journey_between, operator, postgres_connection, registry_user,
    spawn_app_at, status_and_json,
};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::Duration;

on_both_stores!(
    imports_store_each_operation_once_per_operator_and_report_conflicts_item_by_item,
    import_bodies_that_are_not_1_to_1000_valid_operations_get_400,
    identity_imports_set_a_key_once_on_the_callers_own_applications,
    imported_history_blocks_registrations_and_simulations_within_its_cool_down,
);

mod postgres_only {
    #[tokio::test]
    async fn an_import_waits_for_a_registration_of_the_same_person() {
        super::an_import_waits_for_a_registration_of_the_same_person().await
    }
}

const IMPORT: &str = "/v3/policies/cee/import";
const IDENTITY: &str = "/v3.3/policies/cee/import/identity";
const SIMULATE: &str = "/v3/policies/cee/simulate";

/// A registry whose clock stands on 2024-03-09, after the test journeys' delay.
async fn app(kind: StoreKind) -> TestApp {
    spawn_app_at(kind, at("2024-03-09T00:00:00Z")).await.0
}

fn operation(journey_type: &str, name: &str, phone: &str, datetime: &str) -> Value {
    json!({"journey_type": journey_type, "last_name_trunc": name, "phone_trunc": phone,
           "datetime": datetime})
}

fn key(c: char) -> String {
    c.to_string().repeat(64)
}

async fn post(app: &TestApp, path: &str, operator_id: i64, body: &Value) -> (u16, Value) {
    status_and_json(
        app.call(Method::POST, path, &operator(operator_id), Some(body))
            .await,
    )
    .await
}

/// Simulates `journey_type` for `person` (merged into a name and phone) as `operator_id`:
/// the status and the body (`Null` when empty).
async fn simulate(app: &TestApp, operator_id: i64, person: Value) -> (u16, Value) {
    let response = app
        .call(
            Method::POST,
            SIMULATE,
            &operator(operator_id),
            Some(&person),
        )
        .await;
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn long_registration(
    datetime: &str,
    key_char: char,
    licence: &str,
    name: &str,
    phone: &str,
) -> Value {
    json!({"journey_type": "long", "identity_key": key(key_char), "driving_license": licence,
           "last_name_trunc": name, "phone_trunc": phone, "datetime": datetime,
           "application_timestamp": "2024-03-08T10:00:00Z"})
}

async fn imports_store_each_operation_once_per_operator_and_report_conflicts_item_by_item(
    kind: StoreKind,
) {
    let app = app(kind).await;
    let first = operation("long", "TO ", "+336010203", "2016-01-01T00:00:00Z");
    // The same operation written otherwise: a national phone, another offset.
    let again = operation("long", "TO ", "06 01 02 03", "2016-01-01T01:00:00+01:00");
    let short = operation("short", "TO ", "+336010203", "2021-06-01T00:00:00Z");
    let other = operation("long", "DUP", "+336999999", "2017-01-01T00:00:00Z");
    let conflict = json!({"journey_type": "long", "last_name_trunc": "TO ",
                          "phone_trunc": "+336010203", "datetime": "2016-01-01T00:00:00.000Z",
                          "error": "Conflict"});

    let (status, body) = post(&app, IMPORT, 1, &json!([first, again, short])).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body,
        json!({"imported": 2, "failed": 1, "failed_details": [conflict]}),
        "a duplicate within the batch"
    );
    let (status, body) = post(&app, IMPORT, 1, &json!([other, first])).await;
    assert_eq!(
        (status, body),
        (
            201,
            json!({"imported": 1, "failed": 1, "failed_details": [conflict]})
        ),
        "a duplicate of an earlier import"
    );
    let earlier = operation("long", "TO ", "+336010203", "2015-06-01T00:00:00Z");
    let (status, body) = post(&app, IMPORT, 2, &json!([earlier])).await;
    assert_eq!(
        (status, body),
        (
            201,
            json!({"imported": 1, "failed": 0, "failed_details": []})
        ),
        "another operator's history is its own"
    );

    // Stored as an application without token: found, deleted, importable again.
    let person = json!({"journey_type": "long", "last_name_trunc": "TO ",
                        "phone_trunc": "+336010203"});
    let (status, blocking) = simulate(&app, 1, person.clone()).await;
    assert_eq!(status, 409, "{blocking}");
    assert_eq!(blocking["datetime"], "2016-01-01T00:00:00.000Z");
    let path = format!(
        "/v3/policies/cee/{}",
        blocking["uuid"].as_str().expect("uuid")
    );
    let (status, found) =
        status_and_json(app.call(Method::GET, &path, &operator(1), None).await).await;
    assert_eq!((status, &found), (200, &blocking));
    let response = app.call(Method::DELETE, &path, &operator(1), None).await;
    assert_eq!(response.status().as_u16(), 204);
    let (status, body) = post(&app, IMPORT, 1, &json!([first])).await;
    assert_eq!((status, body["imported"].clone()), (201, json!(1)));
}

async fn import_bodies_that_are_not_1_to_1000_valid_operations_get_400(kind: StoreKind) {
    let app = app(kind).await;
    let nth = |n: usize| {
        let name: String = [b'A' + (n / 100) as u8, b'A', b'A']
            .iter()
            .map(|&b| b as char)
            .collect();
        operation(
            "short",
            &name,
            &format!("+3361234{:02}", n % 100),
            "2021-06-01T00:00:00Z",
        )
    };
    let refused = |body: Value| {
        let app = &app;
        async move {
            let (status, answer) = post(app, IMPORT, 1, &body).await;
            assert_eq!(status, 400, "{answer}");
            assert_eq!(answer["error"]["code"], -32602, "{answer}");
            answer["error"]["data"].clone()
        }
    };
    assert_eq!(
        refused(json!([])).await,
        json!([": must NOT have fewer than 1 items"])
    );
    let too_many: Vec<Value> = (0..1001).map(nth).collect();
    assert_eq!(
        refused(json!(too_many)).await,
        json!([": must NOT have more than 1000 items"])
    );
    assert_eq!(refused(nth(0)).await, json!([": must be array"]));
    // One bad item refuses the batch: nothing of it is stored.
    let mut bad = nth(3);
    bad["phone_trunc"] = json!("00000000");
    bad["surprise"] = json!(true);
    assert_eq!(
        refused(json!([nth(0), nth(1), nth(2), bad])).await,
        json!([
            "/3: must NOT have additional properties ('surprise')",
            "/3/phone_trunc: must match format \"phonetrunc\""
        ])
    );
    let (status, body) = post(&app, IMPORT, 1, &json!([nth(0), nth(1), nth(2)])).await;
    assert_eq!(
        (status, body["imported"].clone()),
        (201, json!(3)),
        "{body}"
    );

    // Not JSON at all: said so, in the registry's words.
    let response = app
        .request(Method::POST, IMPORT, Some(&operator(1)))
        .header("content-type", "application/json")
        .body("[{\"journey_type\": short}]")
        .send()
        .await
        .expect("sent");
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        json!({"code": -32700, "message": "Parse error",
               "data": [": must be valid JSON (line 1, column 19)"]})
    );

    // 1000 is allowed (the three above conflict).
    let most: Vec<Value> = (0..1000).map(nth).collect();
    let (status, body) = post(&app, IMPORT, 1, &json!(most)).await;
    assert_eq!(
        (status, &body["imported"], &body["failed"]),
        (201, &json!(997), &json!(3))
    );

    let (status, body) = status_and_json(
        app.call(
            Method::POST,
            IMPORT,
            &registry_user(),
            Some(&json!([nth(0)])),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, &body["error"]["data"]),
        (403, &json!("operator_required"))
    );
    let response = app
        .request(Method::POST, IMPORT, None)
        .json(&json!([nth(0)]))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 401);
}

async fn identity_imports_set_a_key_once_on_the_callers_own_applications(kind: StoreKind) {
    let app = app(kind).await;
    let mine = operation("long", "TO ", "+336010203", "2017-01-01T00:00:00Z");
    let theirs = operation("long", "TO ", "+336010203", "2016-01-01T00:00:00Z");
    let short = operation("short", "DUP", "+336999999", "2022-01-01T00:00:00Z");
    let by_name = json!({"journey_type": "long", "last_name_trunc": "TO ",
                         "phone_trunc": "+336010203"});
    assert_eq!(post(&app, IMPORT, 2, &json!([theirs])).await.0, 201);
    let (_, theirs_found) = simulate(&app, 2, by_name.clone()).await;
    let their_uuid = theirs_found["uuid"]
        .as_str()
        .expect("their uuid")
        .to_owned();
    assert_eq!(post(&app, IMPORT, 1, &json!([mine, short])).await.0, 201);
    let (status, registered) = post(
        &app,
        "/v3/policies/cee",
        1,
        &long_registration(
            "2024-02-01T00:00:00Z",
            'c',
            "051227308989",
            "MAR",
            "+336555555",
        ),
    )
    .await;
    assert_eq!(status, 201, "{registered}");
    let (_, blocking) = simulate(&app, 1, by_name.clone()).await;
    let my_uuid = blocking["uuid"].as_str().expect("my uuid").to_owned();

    let standardized = |uuid: &str, k: char| {
        json!({"cee_application_type": "standardized", "cee_application_uuid": uuid,
               "identity_key": key(k)})
    };
    let specific = |operation: &Value, k: char| {
        let mut item = operation.clone();
        item["cee_application_type"] = json!("specific");
        item["identity_key"] = json!(key(k));
        item
    };
    let not_found = |mut item: Value| {
        item["error"] = json!("Not found");
        item
    };
    let unknown = "0b7c1f2e-3d4a-4b5c-8d6e-7f8091a2b3c4";
    let registered_uuid = registered["uuid"].as_str().expect("uuid");
    let mut short_item = specific(&short, 'b');
    // The date does not select: there is one such application at most.
    short_item["datetime"] = json!("2022-06-01T00:00:00Z");
    let items = json!([
        standardized(&my_uuid, 'a'),
        specific(&mine, 'e'),
        short_item,
        specific(
            &operation("short", "TO ", "+336010203", "2022-01-01T00:00:00Z"),
            'f'
        ),
        standardized(unknown, 'f'),
        standardized(registered_uuid, 'f'),
    ]);
    let (status, body) = post(&app, IDENTITY, 1, &items).await;
    assert_eq!(status, 200, "{body}");
    let mut mine_again = specific(&mine, 'e');
    mine_again["datetime"] = json!("2017-01-01T00:00:00.000Z");
    let mut absent = specific(
        &operation("short", "TO ", "+336010203", "2022-01-01T00:00:00Z"),
        'f',
    );
    absent["datetime"] = json!("2022-01-01T00:00:00.000Z");
    assert_eq!(
        body,
        json!({"imported": 2, "failed": 4, "failed_details": [
            not_found(mine_again),
            not_found(absent),
            not_found(standardized(unknown, 'f')),
            not_found(standardized(registered_uuid, 'f')),
        ]}),
        "a key is set once; a registration has one already"
    );

    // My application is now found by its key...
    let by_key = json!({"journey_type": "long", "last_name_trunc": "ZZZ",
                        "phone_trunc": "+336777777", "identity_key": key('a')});
    let (status, body) = simulate(&app, 1, by_key).await;
    assert_eq!(
        (status, body),
        (
            409,
            json!({"uuid": my_uuid, "datetime": "2017-01-01T00:00:00.000Z"})
        )
    );
    // ...and still by name and phone (CONTRACT §8: they match whatever the key), the most
    // recent of the two, which is another operator's for operator 2.
    let (status, found) = simulate(&app, 2, by_name.clone()).await;
    assert_eq!(
        (status, found),
        (409, json!({"datetime": "2017-01-01T00:00:00.000Z"}))
    );
    // Operator 1 cannot give it a key, by uuid or by operation.
    let (status, body) = post(
        &app,
        IDENTITY,
        1,
        &json!([standardized(&their_uuid, 'd'), specific(&theirs, 'd')]),
    )
    .await;
    assert_eq!(
        (status, &body["imported"], &body["failed"]),
        (200, &json!(0), &json!(2)),
        "{body}"
    );
    // Untouched: their new key finds nothing yet.
    let by_their_new_key = json!({"journey_type": "long", "last_name_trunc": "ZZZ",
                                  "phone_trunc": "+336777777", "identity_key": key('d')});
    assert_eq!(simulate(&app, 2, by_their_new_key.clone()).await.0, 200);
    // Operator 2 can.
    let (status, body) = post(&app, IDENTITY, 2, &json!([specific(&theirs, 'd')])).await;
    assert_eq!((status, &body["imported"]), (200, &json!(1)), "{body}");
    assert_eq!(simulate(&app, 2, by_their_new_key).await.0, 409);

    // Bodies are validated whole, as the import's.
    let mut bad = standardized(unknown, 'a');
    bad["phone_trunc"] = json!("+336010203");
    for (body, expected) in [
        (json!([]), json!([": must NOT have fewer than 1 items"])),
        (
            json!([standardized(unknown, 'a'), bad]),
            json!(["/1: must NOT have additional properties ('phone_trunc')"]),
        ),
        (json!({}), json!([": must be array"])),
    ] {
        let (status, answer) = post(&app, IDENTITY, 1, &body).await;
        assert_eq!(
            (status, &answer["error"]["data"]),
            (400, &expected),
            "{body}"
        );
    }
}

async fn imported_history_blocks_registrations_and_simulations_within_its_cool_down(
    kind: StoreKind,
) {
    let (app, clock) = spawn_app_at(kind, at("2024-03-01T09:30:00Z")).await;
    // Two journeys of DUP ending 2024-03-01T09:00Z, one of them driven by +336999999.
    for (id, couple, phone) in [
        ("j1", ('a', 'b'), "+336010203"),
        ("j2", ('c', 'd'), "+336999999"),
    ] {
        let mut body = journey_between(
            id,
            id,
            couple,
            at("2024-03-01T08:00:00Z"),
            at("2024-03-01T09:00:00Z"),
        );
        body["driver"]["identity"]["phone_trunc"] = json!(phone);
        let (status, answer) = status_and_json(app.post_journey(&operator(1), &body).await).await;
        assert_eq!(status, 201, "{answer}");
    }
    clock.set(at("2024-03-09T00:00:00Z"));
    let history = json!([
        operation("long", "TO ", "+336010203", "2014-01-01T00:00:00Z"),
        operation("long", "MAR", "+336555555", "2016-01-01T00:00:00Z"),
        // Within 3 years of the journey's end, and just over 3 years before it.
        operation("short", "DUP", "+336010203", "2021-06-01T00:00:00Z"),
        operation("short", "DUP", "+336999999", "2021-03-01T08:59:59Z"),
    ]);
    let (status, body) = post(&app, IMPORT, 1, &history).await;
    assert_eq!((status, &body["imported"]), (201, &json!(4)), "{body}");

    // Long distance: 2014 is past the 2015 floor, 2016 within 10 years.
    let (status, body) = post(
        &app,
        "/v3/policies/cee",
        1,
        &long_registration(
            "2024-02-01T00:00:00Z",
            'a',
            "111111111111",
            "TO ",
            "+336010203",
        ),
    )
    .await;
    assert_eq!(status, 201, "2014 ignored: {body}");
    let mar = long_registration(
        "2024-02-01T00:00:00Z",
        'b',
        "222222222222",
        "MAR",
        "+336555555",
    );
    let (status, body) = post(&app, "/v3/policies/cee", 2, &mar).await;
    assert_eq!(
        (status, body),
        (409, json!({"datetime": "2016-01-01T00:00:00.000Z"})),
        "another operator's history"
    );
    let (status, body) = post(&app, "/v3/policies/cee", 1, &mar).await;
    assert_eq!(status, 409);
    assert_eq!(body["datetime"], "2016-01-01T00:00:00.000Z");
    assert!(
        body["uuid"].is_string() && body.get("journey_id").is_none(),
        "{body}"
    );

    // Short distance, by the journey driver's phone.
    let short = |journey: &str, k: char| {
        json!({"journey_type": "short", "identity_key": key(k),
               "driving_license": format!("33333333333{}", k as u8 % 10),
               "last_name_trunc": "DUP", "operator_journey_id": journey,
               "application_timestamp": "2024-03-08T10:00:00Z"})
    };
    let (status, body) = post(&app, "/v3/policies/cee", 1, &short("j1", 'c')).await;
    assert_eq!(
        (status, &body["datetime"]),
        (409, &json!("2021-06-01T00:00:00.000Z"))
    );
    let (status, body) = post(&app, "/v3/policies/cee", 1, &short("j2", 'd')).await;
    assert_eq!(status, 201, "over 3 years: {body}");

    // Once the history has a key, the key finds it too; name and phone still do (CONTRACT
    // §8 matches them whatever the keys).
    let identity = json!([{"cee_application_type": "specific", "identity_key": key('e'),
        "journey_type": "long", "last_name_trunc": "MAR", "phone_trunc": "+336555555",
        "datetime": "2016-01-01T00:00:00Z"}]);
    assert_eq!(post(&app, IDENTITY, 1, &identity).await.1["imported"], 1);
    let (status, _) = post(&app, "/v3/policies/cee", 1, &mar).await;
    assert_eq!(status, 409, "same name and phone, another key");
    let keyed = long_registration(
        "2024-02-01T00:00:00Z",
        'e',
        "444444444444",
        "ZZZ",
        "+336777777",
    );
    let (status, body) = post(&app, "/v3/policies/cee", 2, &keyed).await;
    assert_eq!(
        (status, body),
        (409, json!({"datetime": "2016-01-01T00:00:00.000Z"}))
    );

    // Simulations at 2022-06-01: a short operation before 2020-01-01T00:00+01:00 blocks nothing.
    clock.set(at("2022-06-01T00:00:00Z"));
    let floor = json!([
        operation("short", "AAA", "+336111111", "2019-12-31T22:59:59.999Z"),
        operation("short", "BBB", "+336222222", "2019-12-31T23:00:00Z"),
    ]);
    assert_eq!(post(&app, IMPORT, 1, &floor).await.1["imported"], 2);
    let person = |name: &str, phone: &str| json!({"journey_type": "short", "last_name_trunc": name, "phone_trunc": phone});
    assert_eq!(simulate(&app, 1, person("AAA", "+336111111")).await.0, 200);
    let (status, body) = simulate(&app, 2, person("BBB", "+336222222")).await;
    assert_eq!(
        (status, body),
        (409, json!({"datetime": "2019-12-31T23:00:00.000Z"}))
    );
}

/// The advisory lock a registration of this name and phone takes (`store::cee`).
fn name_phone_lock(name: &str, phone: &str) -> i64 {
    let digest = Sha256::digest(format!("cee/name-phone/{name}/{phone}").as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// While a registration of LCK +336424242 holds its person's lock, an import of that person
/// waits (so the registration cannot decide on a history it did not see), then commits.
/// Advisory locks are shared by every test of the database: this person is this test's only,
/// so no other test's import waits on (and is counted with) the lock held here.
async fn an_import_waits_for_a_registration_of_the_same_person() {
    let app = app(StoreKind::Postgres).await;
    let lock = name_phone_lock("LCK", "+336424242");
    let mut holder = postgres_connection().await;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(lock)
        .execute(&mut holder)
        .await
        .expect("lock");
    let body = json!([
        operation("long", "DUP", "+336999999", "2016-01-01T00:00:00Z"),
        operation("long", "LCK", "+336424242", "2016-01-01T00:00:00Z"),
    ]);
    let import = {
        let request = app
            .request(Method::POST, IMPORT, Some(&operator(1)))
            .json(&body);
        tokio::spawn(async move { request.send().await.expect("sent").status().as_u16() })
    };
    // pg_locks shows a bigint advisory key as its two halves.
    let (high, low) = (
        (lock as u64 >> 32) as i64,
        (lock as u64 & 0xffff_ffff) as i64,
    );
    let mut observer = postgres_connection().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
             AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1",
        )
        .bind(high)
        .bind(low)
        .fetch_one(&mut observer)
        .await
        .expect("pg_locks");
        if waiting == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the import never waited"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !import.is_finished(),
        "answered while the person was locked"
    );
    let person = json!({"journey_type": "long", "last_name_trunc": "DUP",
                        "phone_trunc": "+336999999"});
    assert_eq!(
        simulate(&app, 1, person.clone()).await.0,
        200,
        "nothing of the batch is visible yet"
    );
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(lock)
        .execute(&mut holder)
        .await
        .expect("unlock");
    assert_eq!(import.await.expect("task"), 201);
    assert_eq!(simulate(&app, 1, person).await.0, 409);
}
