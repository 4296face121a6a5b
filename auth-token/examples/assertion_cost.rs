//! What the gateway's identity assertion costs per request on this CPU (issue 24), signed
//! whole or from its principal's part prepared once (what the gateway does), against the
//! floor of what the contract asks of it: an HMAC-SHA256 over a token of the same length,
//! and for a POST the SHA-256 of its body.
//! callgrind cannot say it: under valgrind the SHA extensions are hidden and sha2 takes its
//! portable code, about ten times slower than the CPU's.
//!
//!   cargo run --release -p auth-token --example assertion_cost

use auth_token::assertion::{AssertionKey, Principal, Request, body_digest};
use auth_token::claims::CredentialKind;
use auth_token::roles::Role;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::hint::black_box;
use std::time::Instant;

const ROUNDS: u32 = 200_000;

fn per_call(label: &str, mut f: impl FnMut() -> usize) -> f64 {
    let mut sink = 0usize;
    for _ in 0..ROUNDS / 10 {
        sink = sink.wrapping_add(f());
    }
    let mut best = f64::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        for _ in 0..ROUNDS {
            sink = sink.wrapping_add(f());
        }
        best = best.min(started.elapsed().as_nanos() as f64 / f64::from(ROUNDS));
    }
    black_box(sink);
    println!("{label:<58} {best:>7.0} ns");
    best
}

fn main() {
    let secret = [7u8; 32];
    let key = AssertionKey::new(&secret).expect("a 32-byte secret");
    // An application token's principal, as `gateway::authorize` makes it.
    let principal = Principal {
        kind: Some(CredentialKind::Application),
        id: "4f1d2c3b-9a8e-4d7c-b6a5-0f1e2d3c4b5a".into(),
        operator_id: Some(42),
        role: Some(Role::OperatorApplication),
        token_id: Some("0b5b4c6e-6f0a-4a3b-9c8d-7e6f5a4b3c2d".into()),
        session: Some("Qm9yZWFsaXMgYm9yZWFsaXMgYm9yZWFs".into()),
        ..Principal::anonymous()
    };
    let digest = body_digest(&[b'{'; 1500]);
    let get = Request {
        method: "GET",
        path: "/v3/journeys",
        query: "status=ok&start=2026-12-01T00:00:00Z",
        body: None,
    };
    let post = Request {
        method: "POST",
        path: "/v3/journeys",
        query: "",
        body: digest.as_deref(),
    };
    let rid = "8d1e0c4f5a6b7c8d9e0f1a2b3c4d5e6f";
    println!(
        "sha2 on this CPU: {} ({ROUNDS} calls a round, best of 5)",
        if std::arch::is_x86_feature_detected!("sha") {
            "SHA extensions"
        } else {
            "portable"
        }
    );
    let token = key.sign_new(&principal, "registry", &get, rid, 1_800_000_000);
    println!("token: {} bytes", token.len());
    let sign = per_call("sign_new, GET (JSON, base64, HMAC, jti)", || {
        key.sign_new(black_box(&principal), "registry", black_box(&get), rid, 1)
            .len()
    });
    per_call("sign_new, POST with a body digest", || {
        key.sign_new(black_box(&principal), "registry", black_box(&post), rid, 1)
            .len()
    });
    let prepared = key.prepare(&principal);
    per_call(
        "sign_prepared, GET (the principal's part prepared once)",
        || {
            key.sign_prepared(black_box(&prepared), "registry", black_box(&get), rid, 1)
                .len()
        },
    );
    let signing_input = &token.as_bytes()[..token.rfind('.').unwrap_or(0)];
    // Keyed once, cloned per call, as `AssertionKey` does.
    let keyed = Hmac::<Sha256>::new_from_slice(&secret).expect("any key length");
    let hmac = per_call("HMAC-SHA256 of the same signing input (the floor)", || {
        let mut mac = keyed.clone();
        mac.update(black_box(signing_input));
        mac.finalize().into_bytes()[0] as usize
    });
    let claims = vec![b'a'; (token.len() - 36 - 44) * 3 / 4];
    let base64 = per_call("base64url of the claims' length (base64 crate)", || {
        let mut out = String::with_capacity(640);
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode_string(black_box(&claims), &mut out);
        out.len()
    });
    let body = vec![b'{'; 1500];
    per_call(
        "the body digest of a 1.5 KB journey (SHA-256, base64)",
        || body_digest(black_box(&body)).map_or(0, |d| d.len()),
    );
    let jti = per_call("128 random bits (the jti)", || {
        black_box(rand::random::<[u8; 16]>())[0] as usize
    });
    println!(
        "the rest (JSON, allocation): {:.0} ns",
        sign - hmac - jti - base64
    );
}
