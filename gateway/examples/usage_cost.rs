//! What recording one request in the usage records costs, alone: `Recorder::record` for a
//! realistic mix (a few hundred credentials, each from one or two networks, two outcomes),
//! then what one flush's `take` costs. Compare with the gateway's CPU per request
//! (docs/performance.md). Run: `cargo run --release -p gateway --example usage_cost`.

use auth_token::CredentialKind;
use gateway::usage::{Recorder, Seen};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

fn main() {
    let ids: Vec<String> = (0..300)
        .map(|i| format!("3f2b5c9e-1c1d-4c1e-9a8b-{i:012}"))
        .collect();
    let recorder = Recorder::new(2);
    let now_ms = 1_800_000_000_000_i64;
    let requests = 5_000_000u64;
    let mut taken = 0usize;
    let mut take_secs = 0.0;
    let start = Instant::now();
    for n in 0..requests {
        let i = (n.wrapping_mul(2_654_435_761) % ids.len() as u64) as usize;
        let client = IpAddr::V4(Ipv4Addr::new(203, 0, (i % 2) as u8, 7));
        let seen = Seen {
            kind: CredentialKind::Application,
            id: &ids[i],
            operator_id: Some(i as i64 / 3),
            class: "journeys_write",
            outcome: if n % 50 == 0 { "409" } else { "2xx" },
            client,
            user_agent: Some("operator-backend/4.2"),
            bytes_in: 1600,
            bytes_out: 180,
            // 27 000 requests a second: a flush every 5 s takes 135 000 requests.
            at_ms: now_ms + (n as i64) / 27,
        };
        recorder.record((n % 2) as usize, black_box(&seen));
        if n % 135_000 == 134_999 {
            let t = Instant::now();
            let rows = recorder.take();
            take_secs += t.elapsed().as_secs_f64();
            taken += rows.usage.len() + rows.networks.len() + rows.last_used.len();
        }
    }
    let total = start.elapsed().as_secs_f64();
    let record_ns = (total - take_secs) * 1e9 / requests as f64;
    let take_ns = take_secs * 1e9 / requests as f64;
    println!(
        "record: {record_ns:.0} ns per request; take: {take_ns:.1} ns per request ({taken} rows in {} flushes)",
        requests / 135_000
    );
}
