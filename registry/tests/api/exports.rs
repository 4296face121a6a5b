//! The reference's asynchronous export (`POST /{v}/exports`): recorded with its job, built
//! into a zip by the runner, downloaded, mailed, expired; and the synchronous CSV route's
//! behaviour when a row cannot be read mid-stream. On a controlled clock.

use crate::helpers::{
    StoreKind, TestApp, at, journey_between, operator, registry_user, spawn_app_at,
    spawn_app_at_mailing, status_and_json,
};
use crate::smtp_sink::SmtpSink;
use auth_token::Principal;
use chrono::{DateTime, TimeDelta, Utc};
use registry::MailSettings;
use registry::clock::ManualClock;
use registry::store::lifecycle::JobOutcome;
use reqwest::Method;
use serde_json::{Value, json};
use std::io::Read;

on_both_stores!(
    an_export_is_recorded_then_built_zipped_and_downloaded,
    bad_export_requests_are_refused_with_every_problem,
    registry_staff_export_every_operator_or_those_they_name,
    an_export_expires_after_seven_days,
    an_export_whose_rows_fail_mid_stream_is_a_failure_without_a_file,
    a_synchronous_export_whose_rows_fail_is_cut_short_never_complete,
    recipients_are_mailed_once_the_export_is_built,
    an_export_held_by_a_dead_runner_is_built_once_by_another,
);

/// When the seeded journeys start.
const JOURNEYS: &str = "2026-05-20T06:00:00Z";
/// When exports are asked for: May is over by more than five days.
const ASKED_AT: &str = "2026-06-10T12:00:00Z";
/// May in Paris.
const MAY: &str = "start=2026-04-30T22:00:00Z&end=2026-05-31T22:00:00Z";

/// A registry holding, in May: operator 1's `a,"quoted"`, `=formula` and a canceled
/// `dropped`, and operator 2's `theirs`, all past their final checks; the clock at
/// [`ASKED_AT`].
async fn seeded(kind: StoreKind, mail: Option<MailSettings>) -> (TestApp, ManualClock) {
    let start = at(JOURNEYS);
    let (app, clock) = match mail {
        None => spawn_app_at(kind, start + TimeDelta::hours(3)).await,
        Some(mail) => spawn_app_at_mailing(kind, start + TimeDelta::hours(3), mail).await,
    };
    send(&app, 1, "a,\"quoted\"", 1, start).await;
    send(&app, 1, "=formula", 2, start + TimeDelta::hours(1)).await;
    send(&app, 1, "dropped", 3, start + TimeDelta::hours(2)).await;
    send(&app, 2, "theirs", 4, start).await;
    let cancel = app
        .call(
            Method::POST,
            "/v3/journeys/dropped/cancel",
            &operator(1),
            Some(&json!({"code": "X"})),
        )
        .await;
    assert_eq!(cancel.status(), 200);
    clock.set(start + TimeDelta::hours(49));
    app.runner.run_due().await.unwrap();
    clock.set(at(ASKED_AT));
    (app, clock)
}

/// A 12 km journey of `operator_id` between two people of its own (keys from `n`).
async fn send(app: &TestApp, operator_id: i64, id: &str, n: u32, start: DateTime<Utc>) {
    let mut body = journey_between(
        id,
        &format!("t-{n}"),
        ('a', 'b'),
        start,
        start + TimeDelta::minutes(30),
    );
    body["driver"]["identity"]["identity_key"] = json!(format!("{n:064x}"));
    body["passenger"]["identity"]["identity_key"] = json!(format!("{:064x}", n + 1_000));
    let response = app.post_journey(&operator(operator_id), &body).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
}

/// The body of an export of May for `operator_id`, mailed to `recipients`.
fn may(operator_id: Value, recipients: Value) -> Value {
    json!({
        "tz": "Europe/Paris",
        "start_at": "2026-05-01T00:00:00+02:00",
        "end_at": "2026-06-01T00:00:00+02:00",
        "operator_id": operator_id,
        "recipients": recipients,
    })
}

async fn create(app: &TestApp, who: &Principal, body: &Value) -> (u16, Value) {
    status_and_json(app.call(Method::POST, "/v3/exports", who, Some(body)).await).await
}

/// Creates an export and answers its uuid.
async fn created(app: &TestApp, who: &Principal, body: &Value) -> String {
    let (code, answer) = create(app, who, body).await;
    assert_eq!(code, 201, "{answer}");
    answer["uuid"].as_str().expect("a uuid").to_owned()
}

async fn status(app: &TestApp, who: &Principal, uuid: &str) -> (u16, Value) {
    status_and_json(
        app.call(Method::GET, &format!("/v3/exports/{uuid}"), who, None)
            .await,
    )
    .await
}

async fn download(app: &TestApp, who: &Principal, uuid: &str) -> reqwest::Response {
    app.call(
        Method::GET,
        &format!("/v3/exports/{uuid}/download"),
        who,
        None,
    )
    .await
}

/// The name and text of the only entry of a zip.
fn unzip(bytes: &[u8]) -> (String, String) {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip");
    assert_eq!(archive.len(), 1, "one entry");
    let mut entry = archive.by_index(0).unwrap();
    assert_eq!(entry.compression(), zip::CompressionMethod::Deflated);
    let mut text = String::new();
    entry.read_to_string(&mut text).unwrap();
    (entry.name().expect("a UTF-8 name").into_owned(), text)
}

/// The synchronous export of May, as `who`.
async fn csv_of_may(app: &TestApp, who: &Principal, query: &str) -> String {
    let response = app
        .call(
            Method::GET,
            &format!("/v3/exports/journeys?{MAY}{query}"),
            who,
            None,
        )
        .await;
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

async fn an_export_is_recorded_then_built_zipped_and_downloaded(kind: StoreKind) {
    let (app, _clock) = seeded(kind, None).await;
    let op = operator(1);
    // An operator naming another operator gets its own journeys, as in the reference.
    let (code, answer) = create(&app, &op, &may(json!([2]), json!([]))).await;
    assert_eq!(code, 201, "{answer}");
    let uuid = answer["uuid"].as_str().expect("a uuid").to_owned();
    assert!(uuid::Uuid::parse_str(&uuid).is_ok(), "{uuid}");
    assert_eq!(
        answer,
        json!({
            "uuid": uuid,
            "target": "operator",
            "status": "pending",
            "start_at": "2026-04-30T22:00:00.000Z",
            "end_at": "2026-05-31T22:00:00.000Z",
        })
    );
    let (code, pending) = status(&app, &op, &uuid).await;
    assert_eq!(code, 200, "{pending}");
    assert_eq!(pending["status"], "pending");
    assert_eq!(
        pending["operator_id"],
        json!([1]),
        "forced to its own operator"
    );
    assert_eq!(
        download(&app, &op, &uuid).await.status(),
        404,
        "not built yet"
    );

    app.runner.run_due().await.unwrap();
    let (_, built) = status(&app, &op, &uuid).await;
    assert_eq!(built["status"], "success", "{built}");
    assert_eq!(built["rows"], 2);
    assert_eq!(built["completed_at"], "2026-06-10T12:00:00.000Z");
    assert_eq!(built["expires_at"], "2026-06-17T12:00:00.000Z");

    let response = download(&app, &op, &uuid).await;
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(header("content-type").as_deref(), Some("application/zip"));
    assert_eq!(
        header("content-disposition"),
        Some(format!("attachment; filename=\"export-{uuid}.zip\""))
    );
    let (name, csv) = unzip(&response.bytes().await.unwrap());
    assert_eq!(name, format!("export-{uuid}.csv"));
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert_eq!(lines.len(), 4, "header, two journeys, end: {csv}");
    assert!(lines[1].starts_with("1,1,\"a,\"\"quoted\"\"\","), "{csv}");
    assert!(lines[2].contains(",'=formula,"), "{csv}");
    assert!(!csv.contains("dropped") && !csv.contains("theirs"), "{csv}");
    // The same bytes as the synchronous export of the same journeys.
    assert_eq!(csv, csv_of_may(&app, &op, "").await);
    assert_eq!(app.export_files(), [format!("{uuid}-1.zip")]);

    // Another operator sees neither the export nor its file; registry staff see both.
    let other = operator(2);
    assert_eq!(status(&app, &other, &uuid).await.0, 404);
    assert_eq!(download(&app, &other, &uuid).await.status(), 404);
    assert_eq!(status(&app, &registry_user(), &uuid).await.0, 200);
    assert_eq!(download(&app, &registry_user(), &uuid).await.status(), 200);
    // Unknown and malformed ids are not found either.
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_eq!(status(&app, &op, &unknown).await.0, 404);
    assert_eq!(status(&app, &op, "not-a-uuid").await.0, 404);
}

async fn bad_export_requests_are_refused_with_every_problem(kind: StoreKind) {
    let (app, _clock) = spawn_app_at(kind, at(ASKED_AT)).await;
    let with = |changes: Value| {
        let mut body = may(json!([1]), json!(["ops@example.org"]));
        for (key, value) in changes.as_object().unwrap() {
            if value.is_null() {
                body.as_object_mut().unwrap().remove(key);
            } else {
                body[key] = value.clone();
            }
        }
        body
    };
    let cases = [
        (json!([1]), ": must be object"),
        (
            with(json!({"start_at": null})),
            ": must have required property 'start_at'",
        ),
        (
            with(json!({"colour": "blue"})),
            ": must NOT have additional properties ('colour')",
        ),
        (
            with(json!({"tz": "Europe/Atlantis"})),
            "/tz: must be equal to one of the allowed values",
        ),
        (
            with(json!({"start_at": "yesterday"})),
            "/start_at: must match format \"date-time\"",
        ),
        (
            with(json!({"start_at": "2023-06-10T21:59:59Z"})),
            "/start_at: must be >= 2023-06-10T22:00:00.000Z",
        ),
        (
            with(json!({"end_at": "2026-06-07T00:00:00+02:00"})),
            "/end_at: must be <= 2026-06-05T22:00:00.000Z",
        ),
        (
            with(json!({"start_at": "2026-06-01T00:00:00+02:00"})),
            "/start_at: must be before /end_at",
        ),
        (
            with(json!({"operator_id": ["one"]})),
            "/operator_id/0: must be integer",
        ),
        (
            with(json!({"recipients": ["not an address"]})),
            "/recipients/0: must match format \"email\"",
        ),
        (
            with(json!({"recipients": vec!["a@example.org"; 25]})),
            "/recipients: must NOT have more than 24 items",
        ),
        (
            with(json!({"geo_selector": {"com": ["75056"]}})),
            "/geo_selector/com: selecting journeys by territory is not supported by this \
             registry",
        ),
    ];
    for (body, message) in cases {
        let (code, answer) = create(&app, &operator(1), &body).await;
        assert_eq!(code, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], -32602, "{body}");
        assert!(
            answer["error"]["data"]
                .as_array()
                .is_some_and(|d| d.contains(&json!(message))),
            "{body}: {answer}"
        );
    }
    // Registry staff must say which operators ([] for all); operators need not.
    let no_operator = with(json!({"operator_id": null}));
    let (code, answer) = create(&app, &registry_user(), &no_operator).await;
    assert_eq!(code, 400, "{answer}");
    assert_eq!(
        answer["error"]["data"],
        json!([": must have required property 'operator_id'"])
    );
    assert_eq!(create(&app, &operator(1), &no_operator).await.0, 201);
    // A body that is not JSON is the parse error of every route, not a schema message.
    let response = app
        .request(Method::POST, "/v3/exports", Some(&operator(1)))
        .header("content-type", "application/json")
        .body("{\"tz\":")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

async fn registry_staff_export_every_operator_or_those_they_name(kind: StoreKind) {
    let (app, _clock) = seeded(kind, None).await;
    let staff = registry_user();
    let (code, answer) = create(&app, &staff, &may(json!([]), json!([]))).await;
    assert_eq!(code, 201, "{answer}");
    assert_eq!(answer["target"], "opendata");
    let everyone = answer["uuid"].as_str().unwrap().to_owned();
    let theirs = created(&app, &staff, &may(json!([2]), json!([]))).await;
    app.runner.run_due().await.unwrap();

    let csv = |uuid: String| {
        let app = &app;
        let staff = &staff;
        async move {
            let response = download(app, staff, &uuid).await;
            assert_eq!(response.status(), 200);
            unzip(&response.bytes().await.unwrap()).1
        }
    };
    let all = csv(everyone.clone()).await;
    assert_eq!(all.lines().count(), 4, "{all}");
    assert_eq!(all, csv_of_may(&app, &staff, "").await);
    let only = csv(theirs).await;
    assert_eq!(only.lines().count(), 2, "{only}");
    assert!(only.contains(",theirs,"), "{only}");
    assert_eq!(only, csv_of_may(&app, &staff, "&operator_id=2").await);
    // An operator does not see the staff's exports, even of its own journeys.
    assert_eq!(status(&app, &operator(1), &everyone).await.0, 404);
}

async fn an_export_expires_after_seven_days(kind: StoreKind) {
    let (app, clock) = seeded(kind, None).await;
    let op = operator(1);
    let uuid = created(&app, &op, &may(json!([1]), json!([]))).await;
    app.runner.run_due().await.unwrap();
    assert_eq!(app.export_files().len(), 1);

    clock.advance(TimeDelta::days(7) - TimeDelta::seconds(1));
    app.runner.run_due().await.unwrap();
    assert_eq!(status(&app, &op, &uuid).await.1["status"], "success");
    assert_eq!(download(&app, &op, &uuid).await.status(), 200, "still kept");

    clock.advance(TimeDelta::seconds(1));
    // Not downloadable from its expiry on, whenever the sweep runs.
    assert_eq!(download(&app, &op, &uuid).await.status(), 404);
    app.runner.run_due().await.unwrap();
    let (_, expired) = status(&app, &op, &uuid).await;
    assert_eq!(expired["status"], "expired", "{expired}");
    assert_eq!(expired["rows"], 2);
    assert_eq!(download(&app, &op, &uuid).await.status(), 404);
    assert!(app.export_files().is_empty(), "{:?}", app.export_files());
}

async fn an_export_whose_rows_fail_mid_stream_is_a_failure_without_a_file(kind: StoreKind) {
    let (app, _clock) = seeded(kind, None).await;
    // The second journey of the month can no longer be read.
    app.execute_sql(
        "UPDATE journeys SET fraud_status = 'garbled' WHERE operator_journey_id = '=formula'",
    )
    .await;
    let op = operator(1);
    let uuid = created(&app, &op, &may(json!([1]), json!([]))).await;
    app.runner.run_due().await.unwrap();
    let (_, failed) = status(&app, &op, &uuid).await;
    assert_eq!(failed["status"], "failure", "{failed}");
    assert_eq!(failed["error"], "reading the journeys failed", "{failed}");
    assert!(failed.get("rows").is_none(), "{failed}");
    assert_eq!(download(&app, &op, &uuid).await.status(), 404);
    assert!(
        app.export_files().is_empty(),
        "no file, not even a partial one: {:?}",
        app.export_files()
    );
    // Not retried: the job is done.
    assert_eq!(app.runner.run_due().await.unwrap(), 0);
}

async fn a_synchronous_export_whose_rows_fail_is_cut_short_never_complete(kind: StoreKind) {
    let (app, _clock) = seeded(kind, None).await;
    let op = operator(1);
    // A failure after the first line: the answer is cut short.
    app.execute_sql(
        "UPDATE journeys SET fraud_status = 'garbled' WHERE operator_journey_id = '=formula'",
    )
    .await;
    // Whether the head left before the connection was cut depends on timing; either way
    // the client never holds a complete answer.
    let request = app.request(
        Method::GET,
        &format!("/v3/exports/journeys?{MAY}"),
        Some(&op),
    );
    match request.send().await {
        Err(e) => assert!(e.is_request(), "{e}"),
        Ok(response) => {
            assert_eq!(response.status(), 200);
            assert!(
                response.bytes().await.is_err(),
                "an incomplete body, never a short complete one"
            );
        }
    }
    // A failure on the first line: nothing was sent yet, so it is an error status.
    app.execute_sql(
        "UPDATE journeys SET fraud_status = 'garbled' WHERE operator_journey_id = 'a,\"quoted\"'",
    )
    .await;
    let (code, body) = status_and_json(
        app.call(
            Method::GET,
            &format!("/v3/exports/journeys?{MAY}"),
            &op,
            None,
        )
        .await,
    )
    .await;
    assert_eq!(code, 500, "{body}");
    assert_eq!(body["error"]["code"], -32603);
}

async fn recipients_are_mailed_once_the_export_is_built(kind: StoreKind) {
    let sink = SmtpSink::start();
    let mail = MailSettings {
        host: "127.0.0.1".to_owned(),
        port: sink.port,
        from: "Registre <exports@registry.example.test>".to_owned(),
        ..MailSettings::default()
    };
    let (app, _clock) = seeded(kind, Some(mail)).await;
    let op = operator(1);
    let recipients = ["ops@operator.example", "boss@operator.example"];
    let uuid = created(&app, &op, &may(json!([1]), json!(recipients))).await;
    assert!(sink.received().is_empty(), "nothing before the file exists");

    app.runner.run_due().await.unwrap();
    let received = sink.received();
    assert_eq!(received.len(), 2, "one message per recipient");
    for (message, recipient) in received.iter().zip(recipients) {
        assert_eq!(message.recipients, [recipient], "the envelope");
        assert_eq!(message.header("To").as_deref(), Some(recipient));
        assert_eq!(message.mail_from, "exports@registry.example.test");
        let text = message.text();
        assert!(text.contains(&uuid), "{text}");
        assert!(text.contains(": 2 trajets."), "{text}");
        assert!(
            text.contains(&format!(
                "\nhttps://api.example.test/v3/exports/{uuid}/download\n"
            )),
            "{text}"
        );
        assert!(text.contains("jusqu'au 17/06/2026 14:00"), "{text}");
        let others: Vec<_> = recipients.iter().filter(|r| **r != recipient).collect();
        assert!(
            !message.data.contains(*others[0]),
            "no recipient sees another's address"
        );
    }
    // Mailed once: the notice's job is done.
    app.runner.run_due().await.unwrap();
    assert_eq!(sink.received().len(), 2);
}

/// The export job claimed by a runner that dies: built once its lease runs out, by another
/// runner, under a name of its own; the first, back, writes nothing.
async fn an_export_held_by_a_dead_runner_is_built_once_by_another(kind: StoreKind) {
    let (app, clock) = seeded(kind, None).await;
    let op = operator(1);
    let uuid = created(&app, &op, &may(json!([1]), json!([]))).await;
    let dead = app.runner.another();
    let claimed = dead.claim().await.unwrap();
    assert_eq!(claimed.len(), 1, "the export is the only job due");
    app.runner.run_due().await.unwrap();
    assert_eq!(
        status(&app, &op, &uuid).await.1["status"],
        "pending",
        "held by the lease"
    );

    clock.advance(TimeDelta::minutes(5));
    app.runner.run_due().await.unwrap();
    assert_eq!(status(&app, &op, &uuid).await.1["status"], "success");
    assert_eq!(
        dead.execute(&claimed[0]).await.unwrap(),
        JobOutcome::Superseded
    );
    assert_eq!(app.export_files(), [format!("{uuid}-2.zip")]);
    let response = download(&app, &op, &uuid).await;
    assert_eq!(unzip(&response.bytes().await.unwrap()).1.lines().count(), 3);
}
