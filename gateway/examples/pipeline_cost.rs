//! What each step the contract asks of a forwarded request costs, alone, in this process:
//! the steps of the benchmark's `GET` and `POST /v3/journeys` with an application token,
//! each called as the pipeline calls it, on one thread, warm (the token cached, the rate
//! limiter's lease taken, the series resolved). Best of five rounds of 200 000 calls each.
//! Compare the sum with `bare_proxy`'s CPU per request (`TARGETS="gateway bare bare_assert"
//! scripts/bench/wakeups.sh`): issue 24 gives the pipeline 8 % of it (docs/performance.md).
//!
//!     cargo run --release -p gateway --example pipeline_cost

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use auth_token::{AssertionKey, Claims, CredentialKind, KeySet, Principal, Role, SigningKey};
use blacklist::{BlacklistSet, Entry, Kind};
use gateway::authorize::{Outcome, Presented, authorize};
use gateway::metrics::Metrics;
use gateway::ratelimit::{Limiter, Limits, MemoryCounter, RouteClass, Subject};
use gateway::routes::route;
use gateway::token_cache::{Cached, TokenCache};
use gateway::usage::{Recorder, Seen};
use jsonwebtoken::jwk::JwkSet;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CALLS: u32 = 200_000;
const ROUNDS: usize = 5;

/// The best of [`ROUNDS`] rounds of `step` called [`CALLS`] times, in ns per call.
fn best(mut step: impl FnMut(u32)) -> f64 {
    (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for n in 0..CALLS {
                step(n);
            }
            start.elapsed().as_secs_f64() * 1e9 / f64::from(CALLS)
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let now = gateway::unix_now();
    let (signing, _) = SigningKey::generate().expect("an Ed25519 key");
    let keys = Arc::new(KeySet::from_jwks(&JwkSet {
        keys: vec![signing.jwk()],
    }));
    let token = signing
        .sign(&Claims {
            jti: "5e0c4a52-6a0f-4d0c-9b55-0a1f3c2d4e5f".into(),
            kind: CredentialKind::Application,
            sub: "8f7d0c1e-2b3a-4c5d-8e9f-0a1b2c3d4e5f".into(),
            op: Some(42),
            role: Role::OperatorApplication,
            iat: now - 3_600,
            exp: None,
            client: None,
            uid: None,
            sid: None,
            csrf: None,
            siret: None,
        })
        .expect("a token");
    let authorization = format!("Bearer {token}");
    let metrics = Metrics::new().expect("the metrics");
    let cache = TokenCache::segmented(10_000, 2);
    // A loaded blacklist of a few hundred revoked tokens, its feed followed.
    let blacklist = BlacklistSet::new();
    blacklist.replace((0..300).map(|i| Entry::new(Kind::Jti, format!("revoked-{i}"))));
    blacklist.set_feed_up(true);
    blacklist.mark_synced(now);
    let cached = Cached {
        cache: &cache,
        segment: 0,
        keys: &keys,
        counted: &metrics.verifications,
    };
    let get = http::Method::GET;
    let matched = route(&get, "/v3/journeys").expect("the route");

    // The route and the credential: the token looked up in the cache (a hit), the
    // blacklist's checks, the route's credential kinds and the role's permission.
    let principal = match authorize(
        &matched,
        Presented::from_headers(Some(&authorization), None, None, None),
        &cached,
        &blacklist,
        now,
    ) {
        Outcome::Allowed(principal) => principal,
        other => panic!("the benchmark's token is refused: {other:?}"),
    };
    let credential = best(|_| {
        let matched = route(&get, black_box("/v3/journeys")).expect("the route");
        let presented = Presented::from_headers(Some(black_box(&authorization)), None, None, None);
        black_box(authorize(&matched, presented, &cached, &blacklist, now));
    });

    // The rate limit: the operator's counter, its lease already taken.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let limits = Limits {
        classes: [(RouteClass::JourneysRead, 1_000_000_000)].into(),
        ..Limits::default()
    };
    let limiter = Limiter::new(limits, Arc::new(MemoryCounter::default()));
    let client = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
    let class = RouteClass::of(matched.template, "GET").expect("a rate-limited route");
    let subject = || {
        Subject::of(
            class,
            false,
            principal.operator_id,
            Some(&principal.id),
            client,
        )
    };
    let unix = u64::try_from(now).expect("a positive clock");
    runtime.block_on(limiter.check(class, &subject(), unix));
    let rate_limit = runtime.block_on(async {
        let mut total = f64::INFINITY;
        for _ in 0..ROUNDS {
            let start = Instant::now();
            for _ in 0..CALLS {
                black_box(limiter.check(class, &subject(), unix).await);
            }
            total = total.min(start.elapsed().as_secs_f64() * 1e9 / f64::from(CALLS));
        }
        total
    });

    // The assertion bound to the request, for a principal prepared once (the gateway keeps
    // them per thread), and a POST's body digest.
    let assertion = AssertionKey::new(&[7; 32]).expect("a 32-byte secret");
    let asserted = Principal {
        token_id: Some("5e0c4a52-6a0f-4d0c-9b55-0a1f3c2d4e5f".into()),
        ..principal.clone()
    };
    let prepared = assertion.prepare(&asserted);
    let request = auth_token::Request {
        method: "GET",
        path: "/v3/journeys",
        query: "",
        body: None,
    };
    let rid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
    let sign = best(|_| {
        black_box(assertion.sign_prepared(&prepared, "registry", black_box(&request), rid, now));
    });
    let journey = include_bytes!("../../scripts/bench/journey.json");
    let digest = best(|_| {
        black_box(auth_token::body_digest(black_box(journey)));
    });

    // The usage record and the request's series (count and duration).
    let recorder = Recorder::new(2);
    let record = best(|n| {
        recorder.record(
            0,
            black_box(&Seen {
                kind: CredentialKind::Application,
                id: &principal.id,
                operator_id: principal.operator_id,
                class: class.as_str(),
                outcome: "2xx",
                client,
                user_agent: Some("wrk"),
                bytes_in: 120,
                bytes_out: 180,
                at_ms: now * 1_000 + i64::from(n / 30),
            }),
        );
    });
    let series = metrics.request_series();
    let count = best(|_| {
        series.record(
            matched.template,
            "GET",
            "200",
            black_box(Duration::from_micros(300)),
        );
    });

    let rows = [
        ("route and credential (a cached token)", credential),
        ("rate limit (the operator's counter)", rate_limit),
        ("assertion, GET (principal prepared)", sign),
        ("body digest, POST (1.6 KB journey)", digest),
        ("usage record", record),
        ("request series (count, duration)", count),
    ];
    for (step, ns) in rows {
        println!("{step:40} {ns:7.0} ns");
    }
    let get_sum = credential + rate_limit + sign + record + count;
    println!("{:40} {get_sum:7.0} ns", "sum, GET");
    println!("{:40} {:7.0} ns", "sum, POST", get_sum + digest);
}
