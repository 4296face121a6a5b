//! The lifecycle job runner on a controlled clock: checks at 24 h, final status at 48 h,
//! anomalies, fraud across operators, normalisation, a runner that dies mid-way, and two
//! runners on one database.

use crate::helpers::{
    StoreKind, TestApp, at, journey_between, operator, spawn_app_at, status_and_json,
};
use chrono::{DateTime, TimeDelta, Utc};
use registry::store::lifecycle::JobOutcome;
use reqwest::Method;
use serde_json::{Value, json};

on_both_stores!(
    checks_run_at_24_hours_and_the_status_is_final_at_48,
    fraud_across_operators_is_found_and_the_48_hour_pass_sees_late_journeys,
    a_fifth_trip_of_the_day_across_operators_is_fraud,
    anomalies_flag_the_later_journey_and_implausible_ones,
    journeys_outside_france_are_normalisation_errors,
    canceled_journeys_are_left_alone,
    a_dead_runners_jobs_are_replayed_once_its_lease_runs_out,
    two_runners_share_the_work_without_doing_any_twice,
    job_metrics_show_depth_lag_and_completions,
);

mod postgres_only {
    #[tokio::test]
    async fn a_failing_job_is_retried_with_backoff_and_its_work_rolled_back() {
        super::a_failing_job_is_retried_with_backoff_and_its_work_rolled_back().await;
    }
}

/// Early in June: May's funding call (due on the 6th) stays out of the counts.
const START: &str = "2026-06-03T08:00:00Z";

/// A journey of `trip` between identity keys `driver` and `passenger` (any 64 hex digits)
/// from `start` for `minutes`.
fn journey_of(
    id: &str,
    (driver, passenger): (&str, &str),
    start: DateTime<Utc>,
    minutes: i64,
) -> Value {
    let mut j = journey_between(
        id,
        &format!("trip-{id}"),
        ('a', 'b'),
        start,
        start + TimeDelta::minutes(minutes),
    );
    j["driver"]["identity"]["identity_key"] = json!(key(driver));
    j["passenger"]["identity"]["identity_key"] = json!(key(passenger));
    j
}

/// `name` as an identity key: its hex digits repeated to 64.
fn key(name: &str) -> String {
    name.repeat(64).chars().take(64).collect()
}

async fn send(app: &TestApp, operator_id: i64, body: &Value) {
    let response = app.post_journey(&operator(operator_id), body).await;
    assert_eq!(
        response.status(),
        201,
        "{}",
        response.text().await.unwrap_or_default()
    );
}

async fn status(app: &TestApp, operator_id: i64, id: &str) -> Value {
    let (code, body) =
        status_and_json(app.journey_status(&operator(operator_id), id, "").await).await;
    assert_eq!(code, 200, "{body}");
    body
}

async fn checks_run_at_24_hours_and_the_status_is_final_at_48(kind: StoreKind) {
    let start = at(START);
    let (app, clock) = spawn_app_at(kind, start + TimeDelta::hours(1)).await;
    send(&app, 1, &journey_of("j1", ("a", "b"), start, 30)).await;
    assert_eq!(app.runner.run_due().await.unwrap(), 0);
    clock.set(start + TimeDelta::hours(24) - TimeDelta::milliseconds(1));
    assert_eq!(app.runner.run_due().await.unwrap(), 0, "not yet due");
    assert_eq!(status(&app, 1, "j1").await["status"], "pending");
    clock.set(start + TimeDelta::hours(24));
    assert_eq!(
        app.runner.run_due().await.unwrap(),
        1,
        "the checks, at 24 h exactly"
    );
    let body = status(&app, 1, "j1").await;
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["fraud_error_labels"], json!([]));
    assert_eq!(body["anomaly_error_details"], json!([]));
    // The final pass waits for 48 h.
    clock.set(start + TimeDelta::hours(48) - TimeDelta::milliseconds(1));
    assert_eq!(app.runner.run_due().await.unwrap(), 0);
    clock.set(start + TimeDelta::hours(48));
    assert_eq!(app.runner.run_due().await.unwrap(), 1, "the final pass");
    assert_eq!(status(&app, 1, "j1").await["status"], "ok");
    // Nothing is left to do, however often the runner passes.
    clock.set(start + TimeDelta::hours(60));
    assert_eq!(app.runner.run_due().await.unwrap(), 0);
}

async fn fraud_across_operators_is_found_and_the_48_hour_pass_sees_late_journeys(kind: StoreKind) {
    let start = at(START);
    let (app, clock) = spawn_app_at(kind, start + TimeDelta::hours(1)).await;
    // Operator 1's journey is checked at 24 h, before operator 2 declares the same couple
    // (roles swapped) ten minutes later, within its own 24 h.
    send(&app, 1, &journey_of("a1", ("a", "b"), start, 30)).await;
    clock.set(start + TimeDelta::hours(24));
    app.runner.run_due().await.unwrap();
    assert_eq!(status(&app, 1, "a1").await["status"], "ok");
    clock.set(start + TimeDelta::hours(24) + TimeDelta::minutes(5));
    send(
        &app,
        2,
        &journey_of("b1", ("b", "a"), start + TimeDelta::minutes(10), 30),
    )
    .await;
    // Operator 2's is checked at its own 24 h and sees operator 1's.
    clock.set(start + TimeDelta::hours(24) + TimeDelta::minutes(10));
    app.runner.run_due().await.unwrap();
    let b1 = status(&app, 2, "b1").await;
    assert_eq!(b1["status"], "fraud_error", "{b1}");
    assert_eq!(
        b1["fraud_error_labels"],
        json!([{"label": "interoperator_overlap"}])
    );
    // Operator 1's final pass at 48 h sees it too; then the status no longer moves.
    clock.set(start + TimeDelta::hours(48));
    app.runner.run_due().await.unwrap();
    let a1 = status(&app, 1, "a1").await;
    assert_eq!(a1["status"], "fraud_error", "{a1}");
    assert_eq!(
        a1["fraud_error_labels"],
        json!([{"label": "interoperator_overlap"}])
    );
    // A journey of the same couple with operator 2, 20 minutes after the first ended: too
    // close. (Operator 2's own terms let it through: it is more than 30 min after b1.)
    clock.set(start + TimeDelta::hours(49));
    let later = start + TimeDelta::hours(26);
    send(&app, 2, &journey_of("b2", ("a", "b"), later, 30)).await;
    send(
        &app,
        1,
        &journey_of("a2", ("a", "b"), later + TimeDelta::minutes(50), 30),
    )
    .await;
    clock.set(later + TimeDelta::hours(25));
    app.runner.run_due().await.unwrap();
    let a2 = status(&app, 1, "a2").await;
    assert_eq!(
        a2["fraud_error_labels"],
        json!([{"label": "interoperator_too_close_trips"}]),
        "{a2}"
    );
    assert_eq!(status(&app, 2, "b2").await["status"], "fraud_error");
}

async fn a_fifth_trip_of_the_day_across_operators_is_fraud(kind: StoreKind) {
    let start = at(START);
    let (app, clock) = spawn_app_at(kind, start + TimeDelta::hours(12)).await;
    // Driver "a" has two trips with operator 1 and two with operator 2 that day (each within
    // its operator's terms), then a fifth with operator 1.
    let trips = [
        (1, "m1", 0),
        (2, "n1", 2),
        (1, "m2", 4),
        (2, "n2", 6),
        (1, "m3", 8),
    ];
    for (n, (operator_id, id, hours)) in trips.into_iter().enumerate() {
        let passenger = format!("{}", n + 1);
        let body = journey_of(id, ("a", &passenger), start + TimeDelta::hours(hours), 30);
        send(&app, operator_id, &body).await;
    }
    clock.set(start + TimeDelta::hours(33));
    assert_eq!(app.runner.run_due().await.unwrap(), 5);
    for (operator_id, id, _) in &trips[..4] {
        assert_eq!(status(&app, *operator_id, id).await["status"], "ok", "{id}");
    }
    let fifth = status(&app, 1, "m3").await;
    assert_eq!(fifth["status"], "fraud_error", "{fifth}");
    assert_eq!(
        fifth["fraud_error_labels"],
        json!([{"label": "interoperator_too_many_trips_by_day"}])
    );
}

async fn anomalies_flag_the_later_journey_and_implausible_ones(kind: StoreKind) {
    let start = at(START);
    let (app, clock) = spawn_app_at(kind, start + TimeDelta::hours(2)).await;
    // The same passenger with two drivers of one operator, 25 of 30 minutes overlapping.
    send(&app, 1, &journey_of("first", ("a", "b"), start, 30)).await;
    send(
        &app,
        1,
        &journey_of("second", ("c", "b"), start + TimeDelta::minutes(5), 30),
    )
    .await;
    // The same passenger with a third driver, overlapping each of the others less than 70 %
    // (15 and 20 of 30 minutes).
    send(
        &app,
        1,
        &journey_of("third", ("9", "b"), start + TimeDelta::minutes(15), 30),
    )
    .await;
    // 50 km declared for a 6.7 km straight line.
    let mut long = journey_of("detour", ("d", "e"), start, 60);
    long["distance"] = json!(50_000);
    send(&app, 1, &long).await;
    clock.set(start + TimeDelta::hours(25));
    assert_eq!(app.runner.run_due().await.unwrap(), 4);
    assert_eq!(status(&app, 1, "first").await["status"], "ok");
    assert_eq!(status(&app, 1, "third").await["status"], "ok");
    let second = status(&app, 1, "second").await;
    assert_eq!(second["status"], "anomaly_error", "{second}");
    assert_eq!(
        second["anomaly_error_details"],
        json!([{"label": "temporal_overlap_anomaly", "metas": {
            "conflicting_journey_id": "first", "temporal_overlap_duration_ratio": 0.83}}])
    );
    let detour = status(&app, 1, "detour").await;
    assert_eq!(detour["status"], "anomaly_error", "{detour}");
    assert_eq!(
        detour["anomaly_error_details"][0]["label"],
        "distance_duration_anomaly"
    );
    // The statuses the checks gave, as SREs see them.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for (status, count) in [("ok", 2), ("anomaly_error", 2), ("fraud_error", 0)] {
        let line = format!(
            "registry_journeys_checked_total{{pass=\"checks\",status=\"{status}\"}} {count}"
        );
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
}

async fn journeys_outside_france_are_normalisation_errors(kind: StoreKind) {
    let start = at(START);
    let (app, clock) = spawn_app_at(kind, start + TimeDelta::hours(1)).await;
    // Geneva to Lausanne.
    let mut swiss = journey_of("swiss", ("a", "b"), start, 50);
    swiss["start"]["lat"] = json!(46.2044);
    swiss["start"]["lon"] = json!(6.1432);
    swiss["end"]["lat"] = json!(46.5197);
    swiss["end"]["lon"] = json!(6.6323);
    swiss["distance"] = json!(62_000);
    send(&app, 1, &swiss).await;
    clock.set(start + TimeDelta::hours(24));
    app.runner.run_due().await.unwrap();
    assert_eq!(
        status(&app, 1, "swiss").await["status"],
        "normalization_error"
    );
    let (code, listed) = status_and_json(
        app.call(
            Method::GET,
            "/v3/journeys?status=normalization_error&start=2026-06-03T00:00:00Z",
            &operator(1),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(code, 200, "{listed}");
    assert_eq!(listed[0]["operator_journey_id"], "swiss");
}

async fn canceled_journeys_are_left_alone(kind: StoreKind) {
    let start = at(START);
    let (app, clock) = spawn_app_at(kind, start + TimeDelta::hours(1)).await;
    send(&app, 1, &journey_of("gone", ("a", "b"), start, 30)).await;
    let cancel = app
        .call(
            Method::POST,
            "/v3/journeys/gone/cancel",
            &operator(1),
            Some(&json!({"code": "FRAUD"})),
        )
        .await;
    assert_eq!(cancel.status(), 200);
    clock.set(start + TimeDelta::hours(48));
    app.runner.run_due().await.unwrap();
    assert_eq!(status(&app, 1, "gone").await["status"], "canceled");
}

async fn a_dead_runners_jobs_are_replayed_once_its_lease_runs_out(kind: StoreKind) {
    let start = at(START);
    let (app, clock) = spawn_app_at(kind, start + TimeDelta::hours(1)).await;
    for n in 0..3 {
        let body = journey_of(
            &format!("j{n}"),
            (&format!("{n}a"), &format!("{n}b")),
            start,
            30,
        );
        send(&app, 1, &body).await;
    }
    clock.set(start + TimeDelta::hours(24));
    // A runner claims the checks and dies before doing them.
    let dead = app.runner.another();
    let claimed = dead.claim().await.unwrap();
    assert_eq!(claimed.len(), 3);
    // Its lease (5 minutes) holds them: another runner finds nothing to do.
    assert_eq!(app.runner.run_due().await.unwrap(), 0);
    assert_eq!(status(&app, 1, "j0").await["status"], "pending");
    clock.advance(TimeDelta::minutes(5));
    assert_eq!(app.runner.run_due().await.unwrap(), 3, "replayed");
    for n in 0..3 {
        assert_eq!(status(&app, 1, &format!("j{n}")).await["status"], "ok");
    }
    // Should the dead runner come back, its claims are no longer its own.
    for job in &claimed {
        assert_eq!(dead.execute(job).await.unwrap(), JobOutcome::Superseded);
    }
}

async fn two_runners_share_the_work_without_doing_any_twice(kind: StoreKind) {
    let start = at(START);
    let (app, clock) = spawn_app_at(kind, start + TimeDelta::hours(1)).await;
    let replica = app.replica().await;
    const JOURNEYS: usize = 40;
    for n in 0..JOURNEYS {
        let (driver, passenger) = (format!("{n:02}a"), format!("{n:02}b"));
        let body = journey_of(&format!("j{n}"), (&driver, &passenger), start, 30);
        send(&app, 1, &body).await;
    }
    clock.set(start + TimeDelta::hours(24));
    // Each replica's runner, twice over, all at once, claiming three jobs at a time so that
    // they compete for the same rows many times over.
    let runners = [
        app.runner.clone(),
        replica.runner.clone(),
        app.runner.another(),
        replica.runner.another(),
    ]
    .map(|r| r.with_batch(3));
    let [a, b, c, d] = &runners;
    let (a, b, c, d) = tokio::join!(a.run_due(), b.run_due(), c.run_due(), d.run_due());
    let done = [a.unwrap(), b.unwrap(), c.unwrap(), d.unwrap()];
    // Every journey's checks, each done exactly once. On PostgreSQL the runners claim side
    // by side (SKIP LOCKED), so not all by one runner; SQLite has one writer at a time, and
    // one runner may well take every claim.
    assert_eq!(done.iter().sum::<usize>(), JOURNEYS, "{done:?}");
    if let StoreKind::Postgres = kind {
        assert!(
            done.iter().filter(|&&n| n > 0).count() >= 2,
            "the work was shared: {done:?}"
        );
    }
    for n in 0..JOURNEYS {
        assert_eq!(status(&app, 1, &format!("j{n}")).await["status"], "ok");
    }
    clock.set(start + TimeDelta::hours(48));
    let (a, b) = tokio::join!(app.runner.run_due(), replica.runner.run_due());
    assert_eq!(a.unwrap() + b.unwrap(), JOURNEYS);
}

async fn job_metrics_show_depth_lag_and_completions(kind: StoreKind) {
    let start = at(START);
    let (app, clock) = spawn_app_at(kind, start + TimeDelta::hours(1)).await;
    send(&app, 1, &journey_of("m1", ("a", "b"), start, 30)).await;
    send(&app, 1, &journey_of("m2", ("c", "d"), start, 30)).await;
    clock.set(start + TimeDelta::hours(24) + TimeDelta::seconds(90));
    // A runner that claims and dies leaves the queue as it was: two due, 90 s late.
    let dead = app.runner.another();
    dead.claim().await.unwrap();
    dead.run_due().await.unwrap();
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("registry_jobs_queue_depth 2"), "{metrics}");
    assert!(
        metrics.contains("registry_jobs_lag_seconds 90"),
        "{metrics}"
    );
    clock.advance(TimeDelta::minutes(5));
    app.runner.run_due().await.unwrap();
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("registry_jobs_queue_depth 0"), "{metrics}");
    assert!(
        metrics.contains("registry_jobs_completed_total{kind=\"journey_checks\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("registry_jobs_failures_total{kind=\"journey_checks\"} 0"));
    assert!(
        metrics.contains("registry_journeys_checked_total{pass=\"checks\",status=\"ok\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("registry_journeys_checked_total{pass=\"final\",status=\"anomaly_error\"} 0")
    );
}

/// The job's `(attempts, run_at, last_error, done)` row in `schema`.
async fn job_row(
    conn: &mut sqlx::PgConnection,
    schema: &str,
    subject: &str,
) -> (i32, DateTime<Utc>, Option<String>, bool) {
    let sql = format!(
        "SELECT attempts, run_at, last_error, done_at IS NOT NULL FROM \"{schema}\".jobs \
         WHERE kind = 'journey_checks' AND subject = $1"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(subject)
        .fetch_one(conn)
        .await
        .expect("the journey's checks job")
}

/// The journey's checks fail in the database (a trigger refuses the status update while a
/// flag is set, as a crash in the middle of the job's transaction would lose it): the job is
/// retried 10 s, then 20 s later, the journey is left as it was, every failure is counted,
/// and once the database accepts it the job completes, once.
async fn a_failing_job_is_retried_with_backoff_and_its_work_rolled_back() {
    let start = at(START);
    let (app, clock) = spawn_app_at(StoreKind::Postgres, start + TimeDelta::hours(1)).await;
    let schema = app.pg_schema().expect("a schema").to_owned();
    send(&app, 1, &journey_of("f1", ("a", "b"), start, 30)).await;
    let journey_id: String = {
        let body = status(&app, 1, "f1").await;
        body["journey_id"].as_str().expect("journey_id").to_owned()
    };
    let mut admin = crate::helpers::postgres_connection().await;
    for statement in [
        format!("SET search_path TO \"{schema}\""),
        "CREATE TABLE refuse_updates (on_purpose BOOLEAN)".to_owned(),
        "INSERT INTO refuse_updates VALUES (true)".to_owned(),
        "CREATE FUNCTION refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         IF EXISTS (SELECT 1 FROM refuse_updates) THEN RAISE EXCEPTION 'refused on purpose'; \
         END IF; RETURN NEW; END $$"
            .to_owned(),
        "CREATE TRIGGER refuse_update BEFORE UPDATE ON journeys \
         FOR EACH ROW EXECUTE FUNCTION refuse_update()"
            .to_owned(),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut admin)
            .await
            .expect("trigger set up");
    }
    let failures = async |app: &TestApp| {
        app.metric("registry_jobs_failures_total{kind=\"journey_checks\"}")
            .await
    };

    let due = start + TimeDelta::hours(24);
    clock.set(due);
    assert_eq!(app.runner.run_due().await.unwrap(), 0, "the job failed");
    let (attempts, run_at, error, done) = job_row(&mut admin, &schema, &journey_id).await;
    assert_eq!(
        (attempts, run_at, done),
        (1, due + TimeDelta::seconds(10), false)
    );
    assert!(error.unwrap_or_default().contains("refused on purpose"));
    assert_eq!(failures(&app).await, 1);
    assert_eq!(status(&app, 1, "f1").await["status"], "pending");

    clock.set(due + TimeDelta::seconds(9));
    assert_eq!(app.runner.run_due().await.unwrap(), 0);
    assert_eq!(failures(&app).await, 1, "not retried before its time");
    clock.set(due + TimeDelta::seconds(10));
    assert_eq!(app.runner.run_due().await.unwrap(), 0);
    let (attempts, run_at, _, _) = job_row(&mut admin, &schema, &journey_id).await;
    assert_eq!(
        (attempts, run_at),
        (2, due + TimeDelta::seconds(30)),
        "twice as long the second time"
    );
    assert_eq!(failures(&app).await, 2);

    sqlx::raw_sql("DELETE FROM refuse_updates")
        .execute(&mut admin)
        .await
        .expect("flag cleared");
    clock.set(due + TimeDelta::seconds(30));
    assert_eq!(app.runner.run_due().await.unwrap(), 1);
    assert_eq!(status(&app, 1, "f1").await["status"], "ok");
    let (_, _, _, done) = job_row(&mut admin, &schema, &journey_id).await;
    assert!(done);
    assert_eq!(app.runner.run_due().await.unwrap(), 0, "done once");
    assert_eq!(failures(&app).await, 2);
}
