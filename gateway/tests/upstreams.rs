//! An upstream as several replicas: a replica that goes away between two health checks
//! costs no request (the connection it refuses is tried on another replica), and the
//! requests spread over the replicas that answer.

mod support;

use gateway::settings::Targets;
use std::sync::atomic::Ordering;
use support::{SIGN_IN, Upstream, free_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_gone_between_two_health_checks_costs_no_request() {
    let (a, b) = (free_port(), free_port());
    let first = Upstream::start(a).await;
    let second = Upstream::start(b).await;
    // Checked once at start, then not for ten minutes: only the refused connections can
    // tell the gateway that a replica is gone.
    let gw = support::gateway(a, |s| {
        s.auth_service = Targets::from_iter([a, b]);
        s.balancing.health_check_ms = 600_000;
    })
    .await;
    let http = reqwest::Client::new();
    let sign_in = || http.post(format!("{}{SIGN_IN}", gw.url)).body("{}").send();

    for _ in 0..10 {
        assert_eq!(sign_in().await.unwrap().status(), 200);
    }
    let (to_first, to_second) = (
        first.received.load(Ordering::Relaxed),
        second.received.load(Ordering::Relaxed),
    );
    assert!(
        to_first > 0 && to_second > 0,
        "round robin: {to_first} and {to_second}"
    );

    // Gone as a killed process is: its port refuses connections, and the ones the gateway
    // keeps alive to it are closed (a request already sent on one when the replica dies is
    // lost with it: a 502, and a POST is not retried).
    second.kill().await;
    for n in 0..20 {
        let status = sign_in().await.unwrap().status();
        assert_eq!(status, 200, "request {n} after a replica went away");
    }
    assert_eq!(first.received.load(Ordering::Relaxed), to_first + 20);
}
