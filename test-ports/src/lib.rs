//! Listening ports for tests whose servers cannot report the port they bound (pingora,
//! child processes): the test picks a port, then the server binds it.
//!
//! A port the kernel hands out for `127.0.0.1:0` comes from its ephemeral range, the range
//! every outgoing connection takes its local port from too. Between the pick and the server's
//! bind, a connection of a concurrent test (some open thousands) could take it. The ports
//! here come from below that range (Linux's default is 32768-60999), where only another
//! pick can land, and each test process walks them from its own offset.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};

/// The ports handed out: `FIRST..FIRST + SPAN`, below the ephemeral range.
const FIRST: u32 = 20_000;
const SPAN: u32 = 12_000;

/// A port of 127.0.0.1 that no one listens on right now, for a server about to bind it.
///
/// # Panics
/// When every port of the range is bound.
pub fn free_port() -> SocketAddr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Concurrent test processes start far apart (by pid), and each walks on from there.
    let offset = std::process::id().wrapping_mul(7_919) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(FIRST + (offset + n) % SPAN).expect("below 65536");
        // Bound and released at once: only a check that no one listens there now.
        if let Ok(listener) = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            && let Ok(addr) = listener.local_addr()
        {
            return addr;
        }
    }
    panic!("every port from {FIRST} to {} is bound", FIRST + SPAN - 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_free_and_below_the_ephemeral_range() {
        let ports: Vec<SocketAddr> = (0..50).map(|_| free_port()).collect();
        let mut distinct = ports.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), ports.len());
        for addr in &ports {
            assert!((20_000..32_000).contains(&addr.port()), "{addr}");
            assert!(addr.ip().is_loopback());
        }
        // A port someone listens on is skipped.
        let held = TcpListener::bind(free_port()).unwrap();
        let taken = held.local_addr().unwrap();
        for _ in 0..100 {
            assert_ne!(free_port(), taken);
        }
    }
}
