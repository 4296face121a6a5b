//! The terms of use that look at other stored journeys, at their boundaries, on a controlled
//! clock: per-person daily trips on Europe/Paris days (clocks-forward and clocks-back days
//! included),
//! trips of one couple closer than 30 minutes, and what does not count.

use crate::helpers::{
    StoreKind, TestApp, at, journey_between, operator, spawn_app_at, status_and_json,
};
use auth_token::Principal;
use chrono::{DateTime, TimeDelta, Utc};
use registry::clock::ManualClock;
use reqwest::Method;
use serde_json::{Value, json};

on_both_stores!(
    fifth_trip_of_a_paris_day_is_refused_and_the_next_day_starts_afresh,
    a_journey_joining_a_counted_trip_is_not_a_new_trip,
    canceled_and_refused_journeys_do_not_count,
    trips_of_one_couple_must_be_thirty_minutes_apart,
    the_longest_accepted_journey_is_still_too_close_to_the_next,
    close_trips_across_paris_midnight_are_seen_from_either_day,
    keys_sharing_their_first_64_bits_are_different_people,
    send_deadline_and_distance_boundaries,
    simultaneous_trips_cannot_slip_under_the_daily_limit,
    on_the_25_hour_day_both_late_hours_count_as_one_paris_day,
);

/// Sends a journey of `trip` between `people`, returning the status code and the labels of a 422.
async fn send(
    app: &TestApp,
    who: &Principal,
    id: &str,
    trip: &str,
    people: (char, char),
    (start, end): (DateTime<Utc>, DateTime<Utc>),
) -> (u16, Value) {
    let body = journey_between(id, trip, people, start, end);
    let (status, body) = status_and_json(app.post_journey(who, &body).await).await;
    let labels = body["error"]["data"]["terms_violation_labels"].clone();
    (status, labels)
}

fn span(start: &str, minutes: i64) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = at(start);
    (start, start + TimeDelta::minutes(minutes))
}

/// Person `a` on one Paris day and around it: a trip the evening before (`eve`, 5 minutes),
/// four trips of 20 minutes on the day (each accepted), then, with the clock at `late_now`,
/// a fifth that day (refused, and stored as such) and one the day after (accepted); both
/// 10 minutes long.
struct ParisDay<'a> {
    eve: &'a str,
    trips: [(&'a str, (char, char)); 4],
    late_now: &'a str,
    fifth: &'a str,
    next_day: &'a str,
}

impl ParisDay<'_> {
    async fn check(&self, app: &TestApp, clock: &ManualClock, op: &Principal) {
        let (code, labels) = send(app, op, "eve", "t0", ('a', '1'), span(self.eve, 5)).await;
        assert_eq!(code, 201, "the eve: {labels}");
        for (n, (start, people)) in self.trips.into_iter().enumerate() {
            let (trip, id) = (format!("t{}", n + 1), format!("d{n}"));
            let (code, labels) = send(app, op, &id, &trip, people, span(start, 20)).await;
            assert_eq!(code, 201, "trip {n}: {labels}");
        }
        clock.set(at(self.late_now));
        let (code, labels) = send(app, op, "fifth", "t5", ('a', '6'), span(self.fifth, 10)).await;
        assert_eq!((code, labels), (422, json!(["too_many_trips_by_day"])));
        assert_eq!(app.status_of(op, "fifth").await, "terms_violation_error");
        let (code, labels) = send(app, op, "next", "t6", ('a', '7'), span(self.next_day, 10)).await;
        assert_eq!(code, 201, "the next day: {labels}");
    }
}

async fn fifth_trip_of_a_paris_day_is_refused_and_the_next_day_starts_afresh(kind: StoreKind) {
    // 31 March 2024: clocks go forward in Paris, the day lasts 23 hours
    // (2024-03-30T23:00Z .. 2024-03-31T22:00Z).
    let (app, clock) = spawn_app_at(kind, at("2024-03-31T21:00:00Z")).await;
    let op = operator(1);
    ParisDay {
        // 23:55 on 30 March in Paris: another day.
        eve: "2024-03-30T22:55:00Z",
        // Four trips on 31 March, the driver once as a passenger.
        trips: [
            ("2024-03-30T23:05:00Z", ('a', '2')),
            ("2024-03-31T05:00:00Z", ('3', 'a')),
            ("2024-03-31T10:00:00Z", ('a', '4')),
            ("2024-03-31T15:00:00Z", ('a', '5')),
        ],
        // 00:30 on 1 April, Paris time.
        late_now: "2024-03-31T22:30:00Z",
        // 23:40 CEST on 31 March: a fifth trip that day.
        fifth: "2024-03-31T21:40:00Z",
        // 00:05 CEST on 1 April (22:05Z, which a fixed UTC+1 offset would put on 31 March).
        next_day: "2024-03-31T22:05:00Z",
    }
    .check(&app, &clock, &op)
    .await;
    // Another operator's journeys are not counted (that is inter-operator fraud detection).
    let (code, labels) = send(
        &app,
        &operator(2),
        "other-op",
        "t5",
        ('a', '6'),
        span("2024-03-31T21:00:00Z", 5),
    )
    .await;
    assert_eq!(code, 201, "{labels}");
}

async fn on_the_25_hour_day_both_late_hours_count_as_one_paris_day(kind: StoreKind) {
    // 25 October 2026: clocks go back in Paris, the day lasts 25 hours
    // (2026-10-24T22:00Z .. 2026-10-25T23:00Z). Now is 22:00 CET on the 25th, within 24 h of
    // every start before the late ones.
    let (app, clock) = spawn_app_at(kind, at("2026-10-25T21:00:00Z")).await;
    ParisDay {
        // 23:50 CEST on 24 October: the day before.
        eve: "2026-10-24T21:50:00Z",
        // 00:10 CEST (UTC+2), 02:30 CEST and 02:30 CET (the hour lived twice), 12:00 CET.
        trips: [
            ("2026-10-24T22:10:00Z", ('a', '2')),
            ("2026-10-25T00:30:00Z", ('a', '3')),
            ("2026-10-25T01:30:00Z", ('a', '4')),
            ("2026-10-25T11:00:00Z", ('a', '5')),
        ],
        late_now: "2026-10-25T23:30:00Z",
        // 23:40 CET on 25 October (22:40Z, which a fixed UTC+2 offset would put on the 26th).
        fifth: "2026-10-25T22:40:00Z",
        // 00:05 CET on 26 October.
        next_day: "2026-10-25T23:05:00Z",
    }
    .check(&app, &clock, &operator(1))
    .await;
}

async fn a_journey_joining_a_counted_trip_is_not_a_new_trip(kind: StoreKind) {
    let (app, _clock) = spawn_app_at(kind, at("2026-06-10T20:00:00Z")).await;
    let op = operator(1);
    for n in 0..4 {
        let start = format!("2026-06-10T{:02}:00:00Z", 8 + 2 * n);
        let (code, labels) = send(
            &app,
            &op,
            &format!("j{n}"),
            &format!("t{n}"),
            ('a', '1'),
            span(&start, 30),
        )
        .await;
        assert_eq!(code, 201, "{n}: {labels}");
    }
    // A second passenger of trip t3: the driver still has four trips that day.
    let (code, labels) = send(
        &app,
        &op,
        "j3-bis",
        "t3",
        ('a', '2'),
        span("2026-06-10T14:00:00Z", 30),
    )
    .await;
    assert_eq!(code, 201, "{labels}");
    // The passenger of the busy driver is checked on their own count: '2' has one trip.
    let (code, labels) = send(
        &app,
        &op,
        "j5",
        "t5",
        ('2', 'b'),
        span("2026-06-10T17:00:00Z", 30),
    )
    .await;
    assert_eq!(code, 201, "{labels}");
    // But any fifth trip involving the driver is refused, whichever role it plays.
    let (code, labels) = send(
        &app,
        &op,
        "j6",
        "t6",
        ('c', 'a'),
        span("2026-06-10T18:00:00Z", 30),
    )
    .await;
    assert_eq!((code, labels), (422, json!(["too_many_trips_by_day"])));
}

async fn canceled_and_refused_journeys_do_not_count(kind: StoreKind) {
    let (app, _clock) = spawn_app_at(kind, at("2026-06-10T20:00:00Z")).await;
    let op = operator(1);
    for n in 0..4 {
        let start = format!("2026-06-10T{:02}:00:00Z", 8 + 2 * n);
        let (code, _) = send(
            &app,
            &op,
            &format!("j{n}"),
            &format!("t{n}"),
            ('a', '1'),
            span(&start, 30),
        )
        .await;
        assert_eq!(code, 201);
    }
    let (code, _) = send(
        &app,
        &op,
        "j4",
        "t4",
        ('a', '2'),
        span("2026-06-10T17:00:00Z", 30),
    )
    .await;
    assert_eq!(code, 422, "a fifth trip");
    // Refused journeys do not count: a sixth attempt is refused for the same four trips only.
    let cancel = app
        .call(
            Method::POST,
            "/v3/journeys/j0/cancel",
            &op,
            Some(&json!({"code": "FRAUD"})),
        )
        .await;
    assert_eq!(cancel.status(), 200);
    let (code, labels) = send(
        &app,
        &op,
        "j5",
        "t5",
        ('a', '3'),
        span("2026-06-10T18:00:00Z", 30),
    )
    .await;
    assert_eq!(code, 201, "the canceled trip no longer counts: {labels}");
    let (code, labels) = send(
        &app,
        &op,
        "j6",
        "t6",
        ('a', '4'),
        span("2026-06-10T19:00:00Z", 30),
    )
    .await;
    assert_eq!((code, labels), (422, json!(["too_many_trips_by_day"])));
}

async fn trips_of_one_couple_must_be_thirty_minutes_apart(kind: StoreKind) {
    let (app, _clock) = spawn_app_at(kind, at("2026-06-10T20:00:00Z")).await;
    let op = operator(1);
    let (code, _) = send(
        &app,
        &op,
        "x",
        "tx",
        ('a', 'b'),
        span("2026-06-10T10:00:00Z", 30),
    )
    .await;
    assert_eq!(code, 201);
    // Starts exactly 30 minutes after x ends: allowed.
    let (code, labels) = send(
        &app,
        &op,
        "y",
        "ty",
        ('a', 'b'),
        span("2026-06-10T11:00:00Z", 20),
    )
    .await;
    assert_eq!(code, 201, "{labels}");
    // Starts 29 minutes after y ends: too close.
    let (code, labels) = send(
        &app,
        &op,
        "z",
        "tz",
        ('a', 'b'),
        span("2026-06-10T11:49:00Z", 10),
    )
    .await;
    assert_eq!((code, labels), (422, json!(["too_close_trips"])));
    // Ends 29 minutes before x starts, roles swapped: too close.
    let (code, labels) = send(
        &app,
        &op,
        "w",
        "tw",
        ('b', 'a'),
        span("2026-06-10T09:01:00Z", 30),
    )
    .await;
    assert_eq!((code, labels), (422, json!(["too_close_trips"])));
    // Ends exactly 30 minutes before x starts: allowed.
    let (code, labels) = send(
        &app,
        &op,
        "v",
        "tv",
        ('b', 'a'),
        span("2026-06-10T08:30:00Z", 60),
    )
    .await;
    assert_eq!(code, 201, "{labels}");
    // Around x entirely: too close.
    let (code, labels) = send(
        &app,
        &op,
        "u",
        "tu",
        ('a', 'b'),
        span("2026-06-10T09:50:00Z", 50),
    )
    .await;
    assert_eq!((code, labels), (422, json!(["too_close_trips"])));
    // Same trip as x (another leg the operator splits): not another trip.
    let (code, labels) = send(
        &app,
        &op,
        "x2",
        "tx",
        ('a', 'b'),
        span("2026-06-10T10:10:00Z", 10),
    )
    .await;
    assert_eq!(code, 201, "{labels}");
    // Another couple at the same time: not concerned.
    let (code, labels) = send(
        &app,
        &op,
        "other",
        "to",
        ('a', 'c'),
        span("2026-06-10T10:05:00Z", 10),
    )
    .await;
    assert_eq!(code, 201, "{labels}");
}

/// The couple count reads a person's journeys from `max_counting_duration` (24 h 05) before its
/// window: the longest journey the terms accept, sent at the last moment, is still seen.
async fn the_longest_accepted_journey_is_still_too_close_to_the_next(kind: StoreKind) {
    let now = at("2026-06-10T20:00:00Z");
    let (app, clock) = spawn_app_at(kind, now).await;
    let op = operator(1);
    // Started 24 h ago, ends 5 minutes from now (the clock skew allowed): 24 h 05 long.
    let longest = span("2026-06-09T20:00:00Z", 24 * 60 + 5);
    let (code, labels) = send(&app, &op, "long", "tl", ('a', 'b'), longest).await;
    assert_eq!(code, 201, "{labels}");
    // The same couple 29 minutes after it ended, sent once it is over.
    let next = span("2026-06-10T20:34:00Z", 10);
    clock.set(next.1);
    let (code, labels) = send(&app, &op, "next", "tn", ('b', 'a'), next).await;
    assert_eq!((code, labels), (422, json!(["too_close_trips"])));
}

/// A couple's trips 20 minutes apart on either side of Paris midnight (22:00 UTC in June):
/// the count reads past the end of the journey's day, and before its start.
async fn close_trips_across_paris_midnight_are_seen_from_either_day(kind: StoreKind) {
    let (app, _clock) = spawn_app_at(kind, at("2026-06-11T00:00:00Z")).await;
    let op = operator(1);
    // A trip accepted, then the couple's next one, refused.
    let cases = [
        // 00:05-00:25 Paris on 11 June, then 23:30-23:45 on 10 June, sent later.
        [
            ("after", "ta", ('a', 'b'), span("2026-06-10T22:05:00Z", 20)),
            ("before", "tb", ('b', 'a'), span("2026-06-10T21:30:00Z", 15)),
        ],
        // 23:30-23:50 Paris on 10 June, then 00:10 on 11 June.
        [
            ("eve", "te", ('c', 'd'), span("2026-06-10T21:30:00Z", 20)),
            ("dawn", "td", ('d', 'c'), span("2026-06-10T22:10:00Z", 10)),
        ],
    ];
    for [accepted, refused] in cases {
        let (id, trip, people, when) = accepted;
        let (code, labels) = send(&app, &op, id, trip, people, when).await;
        assert_eq!(code, 201, "{id}: {labels}");
        let (id, trip, people, when) = refused;
        let (code, labels) = send(&app, &op, id, trip, people, when).await;
        assert_eq!((code, labels), (422, json!(["too_close_trips"])), "{id}");
    }
}

/// Two identity keys with the same first 16 hex digits, the part PostgreSQL's person indexes
/// hold (migration 0007), are two people: one's full day and one's couple do not count for
/// the other, whether it drives or rides.
async fn keys_sharing_their_first_64_bits_are_different_people(kind: StoreKind) {
    let (app, _clock) = spawn_app_at(kind, at("2026-06-10T20:00:00Z")).await;
    let op = operator(1);
    let key = |c: char| c.to_string().repeat(64);
    let twin = |k: &str| format!("{}{}", &k[..16], "f".repeat(48));
    let send_keys = |id: &str, (driver, passenger): (&str, &str), start: &str| {
        let start = at(start);
        let mut body = journey_between(id, id, ('0', '0'), start, start + TimeDelta::minutes(20));
        body["driver"]["identity"]["identity_key"] = json!(driver);
        body["passenger"]["identity"]["identity_key"] = json!(passenger);
        let app = &app;
        let op = &op;
        async move {
            let (status, body) = status_and_json(app.post_journey(op, &body).await).await;
            (
                status,
                body["error"]["data"]["terms_violation_labels"].clone(),
            )
        }
    };
    let starts = ["06:00", "08:00", "10:00", "12:00"].map(|t| format!("2026-06-10T{t}:00Z"));
    for (who, person) in [("driver", key('a')), ("passenger", key('b'))] {
        let others: Vec<String> = "1234".chars().map(|c| format!("{who}{c}")).collect();
        let others: Vec<String> = others.iter().map(|o| format!("{:0<64}", hex(o))).collect();
        let couple = |person: &str, other: &str| match who {
            "driver" => (person.to_owned(), other.to_owned()),
            _ => (other.to_owned(), person.to_owned()),
        };
        // The person's day is full: four trips, each with someone else.
        for (n, (start, other)) in starts.iter().zip(&others).enumerate() {
            let (d, p) = couple(&person, other);
            let (code, labels) = send_keys(&format!("{who}-{n}"), (&d, &p), start).await;
            assert_eq!(code, 201, "{who} trip {n}: {labels}");
        }
        // The twin, 10 minutes after the person's first trip with the same other person:
        // neither its fifth trip of the day nor the couple's.
        let (d, p) = couple(&twin(&person), &others[0]);
        let (code, labels) =
            send_keys(&format!("{who}-twin"), (&d, &p), "2026-06-10T06:30:00Z").await;
        assert_eq!(code, 201, "the {who}'s twin: {labels}");
        // The person itself is refused a fifth trip: the counts do see the four.
        let (d, p) = couple(&person, &key('9'));
        let (code, labels) =
            send_keys(&format!("{who}-fifth"), (&d, &p), "2026-06-10T16:00:00Z").await;
        assert_eq!(
            (code, labels),
            (422, json!(["too_many_trips_by_day"])),
            "{who}"
        );
    }
}

/// `s` as lowercase hex.
fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

async fn send_deadline_and_distance_boundaries(kind: StoreKind) {
    let now = at("2026-06-10T20:00:00Z");
    let (app, _clock) = spawn_app_at(kind, now).await;
    let op = operator(1);
    let day = TimeDelta::hours(24);
    let cases = [
        ("on-time", now - day, 2_000, 201, json!(null)),
        (
            "late",
            now - day - TimeDelta::milliseconds(1),
            2_000,
            422,
            json!(["expired"]),
        ),
        (
            "short",
            now - TimeDelta::hours(1),
            1_999,
            422,
            json!(["distance_too_short"]),
        ),
        (
            "late-and-short",
            now - TimeDelta::hours(30),
            500,
            422,
            json!(["expired", "distance_too_short"]),
        ),
    ];
    for (n, (id, start, distance, expected, labels)) in cases.into_iter().enumerate() {
        let mut body = journey_between(
            id,
            &format!("t{n}"),
            ('a', char::from(b'1' + n as u8)),
            start,
            start + TimeDelta::minutes(10),
        );
        body["distance"] = json!(distance);
        let (code, answer) = status_and_json(app.post_journey(&op, &body).await).await;
        assert_eq!(code, expected, "{id}: {answer}");
        assert_eq!(
            answer["error"]["data"]["terms_violation_labels"], labels,
            "{id}"
        );
    }
}

async fn simultaneous_trips_cannot_slip_under_the_daily_limit(kind: StoreKind) {
    let (app, _clock) = spawn_app_at(kind, at("2026-06-10T20:00:00Z")).await;
    let app = std::sync::Arc::new(app);
    let sends = (0..8).map(|n| {
        let app = app.clone();
        tokio::spawn(async move {
            let start = at("2026-06-10T06:00:00Z") + TimeDelta::hours(n);
            let passenger = char::from(b'1' + n as u8);
            send(
                &app,
                &operator(1),
                &format!("j{n}"),
                &format!("t{n}"),
                ('a', passenger),
                (start, start + TimeDelta::minutes(20)),
            )
            .await
        })
    });
    let mut accepted = 0;
    for outcome in futures_util::future::join_all(sends).await {
        match outcome.expect("task") {
            (201, _) => accepted += 1,
            (422, labels) => assert_eq!(labels, json!(["too_many_trips_by_day"])),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(accepted, 4);
}
