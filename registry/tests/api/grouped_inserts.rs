//! Group commit of journey inserts (PostgreSQL, `ingest.batch_max` > 1): journeys arriving
//! while the batch writer is busy share one transaction, and each is answered as it would
//! be alone. On SQLite the settings change nothing and the same answers are expected.

use crate::helpers::{
    StoreKind, TestApp, at, journey, journey_between, operator, postgres_connection,
    spawn_app_at_grouping, spawn_app_grouping, status_and_json,
};
use chrono::{DateTime, TimeDelta, Utc};
use registry::IngestSettings;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

on_both_stores!(
    duplicates_sharing_a_batch_give_one_201_and_409s,
    a_journey_the_database_refuses_fails_alone,
);

mod postgres_only {
    #[tokio::test]
    async fn terms_decisions_in_one_batch_match_one_by_one() {
        super::terms_decisions_in_one_batch_match_one_by_one().await;
    }

    #[tokio::test]
    async fn a_failed_commit_fails_every_journey_of_the_batch() {
        super::a_failed_commit_fails_every_journey_of_the_batch().await;
    }
}

/// One batch writer, so that journeys sent together wait for it and share a transaction.
fn one_writer() -> IngestSettings {
    IngestSettings {
        batch_max: 64,
        batch_writers: 1,
    }
}

/// The count and the sum of `registry_journey_insert_batch_size`: transactions of the
/// grouped path, and journeys they carried.
async fn batches(app: &TestApp) -> (u64, u64) {
    (
        app.metric("registry_journey_insert_batch_size_count").await,
        app.metric("registry_journey_insert_batch_size_sum").await,
    )
}

async fn duplicates_sharing_a_batch_give_one_201_and_409s(kind: StoreKind) {
    let app = Arc::new(spawn_app_grouping(kind, one_writer()).await);
    let duplicate = Uuid::new_v4().to_string();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..24 {
        let app = app.clone();
        let id = if n % 3 == 0 {
            duplicate.clone()
        } else {
            Uuid::new_v4().to_string()
        };
        let is_duplicate = id == duplicate;
        tasks.spawn(async move {
            let (code, body) =
                status_and_json(app.post_journey(&operator(1), &journey(&id)).await).await;
            (is_duplicate, id, code, body)
        });
    }
    let mut duplicates = Vec::new();
    let mut created_at = None;
    for (is_duplicate, id, code, body) in tasks.join_all().await {
        if is_duplicate {
            duplicates.push(code);
            if code == 201 {
                created_at = body["result"]["data"]["created_at"]
                    .as_str()
                    .map(str::to_owned);
            }
        } else {
            assert_eq!(code, 201, "{body}");
            assert_eq!(app.status_of(&operator(1), &id).await, "pending");
        }
    }
    duplicates.sort_unstable();
    assert_eq!(duplicates, [201, 409, 409, 409, 409, 409, 409, 409]);
    // The 409s name the time of the journey that was stored.
    let (code, body) =
        status_and_json(app.post_journey(&operator(1), &journey(&duplicate)).await).await;
    assert_eq!(code, 409);
    let created_at = created_at.expect("the 201's created_at");
    assert!(
        body["error"]["data"]
            .as_str()
            .unwrap_or_default()
            .contains(&created_at),
        "{body} names {created_at}"
    );
    if let StoreKind::Postgres = kind {
        let (transactions, journeys) = batches(&app).await;
        assert_eq!(journeys, 25);
        assert!(
            transactions < 24,
            "no batch formed: {transactions} transactions"
        );
    }
}

async fn a_journey_the_database_refuses_fails_alone(kind: StoreKind) {
    // PostgreSQL refuses a NUL character in text and jsonb; validation lets it through.
    let mut bad = journey(&Uuid::new_v4().to_string());
    bad["driver"]["identity"]["operator_user_id"] = json!("user\u{0}");
    let alone = spawn_app_grouping(kind, one_writer()).await;
    let (alone_code, _) = status_and_json(alone.post_journey(&operator(1), &bad).await).await;

    let app = Arc::new(spawn_app_grouping(kind, one_writer()).await);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..16 {
        let app = app.clone();
        let body = if n == 5 {
            bad.clone()
        } else {
            journey(&Uuid::new_v4().to_string())
        };
        tasks.spawn(async move {
            let (code, answer) = status_and_json(app.post_journey(&operator(1), &body).await).await;
            (n, code, answer)
        });
    }
    for (n, code, answer) in tasks.join_all().await {
        if n == 5 {
            assert_eq!(code, alone_code, "{answer}");
        } else {
            assert_eq!(code, 201, "{answer}");
        }
    }
}

/// A random identity key (64 hex digits) and its advisory lock, as the registry computes it.
fn person() -> (String, i64) {
    let key = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let lock = u64::from_str_radix(&key[..16], 16).expect("hex") as i64;
    (key, lock)
}

/// A journey of `trip` between two identity keys from `start`, lasting `minutes`.
fn between(
    id: &str,
    trip: &str,
    driver: &str,
    passenger: &str,
    start: DateTime<Utc>,
    minutes: i64,
) -> Value {
    let mut body = journey_between(
        id,
        trip,
        ('0', '0'),
        start,
        start + TimeDelta::minutes(minutes),
    );
    body["driver"]["identity"]["identity_key"] = json!(driver);
    body["passenger"]["identity"]["identity_key"] = json!(passenger);
    body
}

async fn terms_decisions_in_one_batch_match_one_by_one() {
    let now = at("2026-06-10T20:00:00Z");
    let hour = |h: i64| at("2026-06-10T00:00:00Z") + TimeDelta::hours(h);
    let (driver, driver_lock) = person();
    let (other_driver, _) = person();
    let passengers: Vec<String> = (0..7).map(|_| person().0).collect();
    let first = between("j0", "t0", &driver, &passengers[0], hour(6), 20);
    // In this order, one by one: the driver's 2nd, 3rd and 4th trips of the day, a duplicate,
    // a 5th trip (refused), a journey joining the 4th trip (not a new trip), and a couple's
    // two trips 10 minutes apart (the second refused).
    let rest = vec![
        between("j1", "t1", &driver, &passengers[1], hour(7), 20),
        between("j2", "t2", &driver, &passengers[2], hour(8), 20),
        between("j2", "t2", &driver, &passengers[2], hour(8), 20),
        between("j3", "t3", &driver, &passengers[3], hour(9), 20),
        between("j4", "t4", &driver, &passengers[4], hour(10), 20),
        between("j5", "t3", &driver, &passengers[5], hour(9), 20),
        between("j6", "t6", &other_driver, &passengers[6], hour(12), 20),
        between(
            "j7",
            "t7",
            &other_driver,
            &passengers[6],
            hour(12) + TimeDelta::minutes(30),
            10,
        ),
    ];
    let answer = |(code, body): (u16, Value)| {
        (
            code,
            body["error"]["data"]["terms_violation_labels"].clone(),
        )
    };

    // One by one.
    let plain = IngestSettings {
        batch_max: 1,
        ..IngestSettings::default()
    };
    let (alone, _clock) = spawn_app_at_grouping(StoreKind::Postgres, now, plain).await;
    let mut expected = Vec::new();
    for body in std::iter::once(&first).chain(&rest) {
        expected.push(answer(
            status_and_json(alone.post_journey(&operator(1), body).await).await,
        ));
    }
    assert_eq!(batches(&alone).await, (0, 0));
    let codes: Vec<u16> = expected.iter().map(|(code, _)| *code).collect();
    assert_eq!(codes, [201, 201, 201, 409, 201, 422, 201, 201, 422]);
    assert_eq!(expected[5].1, json!(["too_many_trips_by_day"]));
    assert_eq!(expected[8].1, json!(["too_close_trips"]));

    // Grouped: the first journey holds the only writer (its driver's lock is taken here),
    // the others queue up in order behind it and then go in one transaction.
    let (app, _clock) = spawn_app_at_grouping(StoreKind::Postgres, now, one_writer()).await;
    let app = Arc::new(app);
    let bodies = std::iter::once(first).chain(rest).collect();
    let grouped: Vec<_> = send_as_one_batch(&app, driver_lock, bodies)
        .await
        .into_iter()
        .map(answer)
        .collect();
    assert_eq!(grouped, expected);
    assert_eq!(
        batches(&app).await,
        (2, 9),
        "the first alone, then the eight together"
    );
    for (id, status) in [
        ("j4", "terms_violation_error"),
        ("j5", "pending"),
        ("j7", "terms_violation_error"),
    ] {
        assert_eq!(app.status_of(&operator(1), id).await, status, "{id}");
        assert_eq!(alone.status_of(&operator(1), id).await, status, "{id}");
    }
}

/// Sends `bodies` in this order while the only writer is held by the first of them, a
/// journey of the driver whose lock `held_driver_lock` the test takes: the others queue
/// behind it and go together once the lock is released. Each step waits for what it needs
/// to see (the writer blocked on the lock, then each journey in the queue), so the batch is
/// the same however slow the machine. Answers in the order sent.
async fn send_as_one_batch(
    app: &Arc<TestApp>,
    held_driver_lock: i64,
    bodies: Vec<Value>,
) -> Vec<(u16, Value)> {
    let mut holder = postgres_connection().await;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(held_driver_lock)
        .execute(&mut holder)
        .await
        .expect("lock");
    let send = |body: Value| {
        let app = app.clone();
        tokio::spawn(
            async move { status_and_json(app.post_journey(&operator(1), &body).await).await },
        )
    };
    let mut bodies = bodies.into_iter();
    let mut sends = vec![send(bodies.next().expect("a first journey"))];
    // pg_locks shows a bigint advisory key as its two halves.
    let key = held_driver_lock as u64;
    let (high, low) = ((key >> 32) as i64, (key & 0xffff_ffff) as i64);
    let mut observer = postgres_connection().await;
    eventually("the writer waits for the held lock", async || {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
             AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1",
        )
        .bind(high)
        .bind(low)
        .fetch_one(&mut observer)
        .await
        .expect("pg_locks")
            == 1
    })
    .await;
    for (queued, body) in bodies.enumerate() {
        sends.push(send(body));
        eventually("the journey is queued", async || {
            app.metric("registry_journey_insert_queue_length").await == queued as u64 + 1
        })
        .await;
    }
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(held_driver_lock)
        .execute(&mut holder)
        .await
        .expect("unlock");
    let mut answers = Vec::new();
    for send in sends {
        answers.push(send.await.expect("task"));
    }
    answers
}

/// Polls `check` every 10 ms until it holds; a test that waits 20 s has failed.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn a_failed_commit_fails_every_journey_of_the_batch() {
    let app = Arc::new(spawn_app_grouping(StoreKind::Postgres, one_writer()).await);
    // A deferred constraint that fails at COMMIT when the journey "poison" is in it.
    let mut admin = postgres_connection().await;
    let schema = app.pg_schema().expect("a PostgreSQL schema");
    for statement in [
        format!("SET search_path TO \"{schema}\""),
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         IF NEW.operator_journey_id = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF; \
         RETURN NULL; END $$"
            .to_owned(),
        "CREATE CONSTRAINT TRIGGER refuse_poison AFTER INSERT ON journeys \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_poison()"
            .to_owned(),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut admin)
            .await
            .expect("trigger set up");
    }
    let now = Utc::now() - TimeDelta::hours(2);
    let (driver, driver_lock) = person();
    let mut bodies = vec![between("first", "t0", &driver, &person().0, now, 20)];
    for id in ["ok-1", "poison", "ok-2"] {
        bodies.push(between(id, id, &person().0, &person().0, now, 20));
    }
    let answers = send_as_one_batch(&app, driver_lock, bodies).await;
    let codes: Vec<u16> = answers.iter().map(|(code, _)| *code).collect();
    assert_eq!(codes, [201, 500, 500, 500], "{answers:?}");
    assert_eq!(
        batches(&app).await,
        (2, 4),
        "the first alone, then three together"
    );
    for id in ["ok-1", "poison", "ok-2"] {
        let response = app.journey_status(&operator(1), id, "").await;
        assert_eq!(response.status().as_u16(), 404, "{id} is not stored");
    }
    assert_eq!(app.status_of(&operator(1), "first").await, "pending");
}
