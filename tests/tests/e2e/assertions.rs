//! The identity assertion between the gateway and the upstreams (issue 26, findings 3 and 4).
//!
//! - Each upstream has its own assertion secret: an attacker holding the registry's (a
//!   compromised registry) cannot make auth-service believe anything, and the other way round.
//! - An assertion is bound to its request's body, so the gateway reads a body before it
//!   forwards it: a bulk import larger than pingora's 64 KiB retry buffer, sent with a length
//!   or chunked, and a client that waits for `100 Continue` before its body, still go through.
//!
//! Replays and another body or query under a captured assertion are attacked at the registry
//! itself (`registry/tests/api/journeys.rs`).

use auth_token::{ASSERTION_HEADER, Assertion, AssertionKey, Principal, Role};
use chrono::Utc;
use reqwest::Method;
use serde_json::{Value, json};
use std::net::SocketAddr;
use tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Mode, Stack};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET {path}` sent straight to `upstream` with an assertion for `audience`, signed with
/// `secret`, naming a registry admin.
async fn straight_to(
    upstream: SocketAddr,
    audience: &str,
    secret: &str,
    path: &str,
) -> (u16, Value) {
    let principal = Principal {
        kind: Some(auth_token::CredentialKind::Session),
        id: "1".into(),
        role: Some(Role::RegistryAdmin),
        ..Principal::anonymous()
    };
    let request = auth_token::Request {
        method: "GET",
        path,
        query: "",
        body: None,
    };
    let assertion = Assertion::new(
        principal,
        audience,
        &request,
        "attack",
        Utc::now().timestamp(),
    );
    let token = AssertionKey::new(secret.as_bytes())
        .unwrap()
        .sign(&assertion);
    let response = reqwest::Client::new()
        .get(format!("http://{upstream}{path}"))
        .header(ASSERTION_HEADER, token)
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn each_upstream_trusts_only_its_own_secret(mode: Mode) {
    let stack = Stack::start(mode).await.expect("stack starts");
    let secrets = &stack.assertion_secrets;
    let (auth, registry) = (secrets.auth_service.expose(), secrets.registry.expose());

    // The registry's secret, speaking to auth-service as a registry admin: refused.
    let (status, body) = straight_to(
        stack.auth_addr,
        "auth-service",
        registry,
        "/admin/operators",
    )
    .await;
    assert_eq!(
        (status, &body["error"]["data"]),
        (401, &json!("invalid_gateway_assertion"))
    );
    // And auth-service's, speaking to the registry.
    let (status, body) = straight_to(stack.registry_addr, "registry", auth, "/v3/journeys").await;
    assert_eq!(
        (status, &body["error"]["data"]),
        (401, &json!("invalid_gateway_assertion"))
    );

    // Each with its own secret gets past the assertion (the refusals above are about the
    // secret; what comes after depends on the route).
    for (upstream, audience, secret, path) in [
        (stack.auth_addr, "auth-service", auth, "/admin/operators"),
        (stack.registry_addr, "registry", registry, "/v3/journeys"),
    ] {
        let (status, body) = straight_to(upstream, audience, secret, path).await;
        let data = body["error"]["data"].as_str().unwrap_or_default();
        assert!(!data.contains("gateway_assertion"), "{status} {body}");
    }
}

#[tokio::test]
async fn each_upstream_trusts_only_its_own_secret_embedded() {
    each_upstream_trusts_only_its_own_secret(Mode::Embedded).await;
}

#[tokio::test]
async fn each_upstream_trusts_only_its_own_secret_production() {
    each_upstream_trusts_only_its_own_secret(Mode::Production).await;
}

/// `n` distinct specific operations: about 110 bytes each in JSON.
fn operations(n: usize, name: &str) -> Value {
    let items: Vec<Value> = (0..n)
        .map(|i| {
            json!({"journey_type": "long", "last_name_trunc": name,
                   "phone_trunc": format!("+336{i:06}"), "datetime": "2021-01-01T00:00:00Z"})
        })
        .collect();
    Value::Array(items)
}

/// One HTTP/1.1 exchange on a new connection: `head` (request line and headers, without the
/// blank line), then `body` once the gateway says `100 Continue` if `expect` is set. The
/// answer's status and JSON body.
async fn raw_exchange(addr: &str, head: &str, body: &[u8], expect: bool) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(b"\r\n").await.unwrap();
    if expect {
        // A client that waits for leave to send its body (curl does for bodies over 1 KiB).
        let mut interim = [0; 25];
        tokio::time::timeout(
            std::time::Duration::from_secs(20),
            stream.read_exact(&mut interim),
        )
        .await
        .expect("the gateway says 100 Continue without waiting for the body")
        .unwrap();
        assert!(
            interim.starts_with(b"HTTP/1.1 100 Continue\r\n"),
            "{}",
            String::from_utf8_lossy(&interim)
        );
    }
    stream.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    let answer = answer.trim_start_matches("\r\n");
    let status = answer[9..12].parse().expect("a status");
    let (_, payload) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let payload = if answer
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(payload)
    } else {
        payload.to_owned()
    };
    (
        status,
        serde_json::from_str(&payload).unwrap_or(Value::Null),
    )
}

fn dechunk(mut chunked: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = chunked.split_once("\r\n").expect("a chunk size");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        chunked = &rest[size + 2..];
    }
}

fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in body.chunks(16 * 1024) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

async fn bodies_of_every_size_and_framing_are_forwarded(mode: Mode) {
    let stack = Stack::start(mode).await.expect("stack starts");
    let admin = stack.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.unwrap();
    let (_, op_admin) = stack.operator_with_admin(&admin).await.unwrap();
    let token = stack.application_token(&op_admin).await.unwrap();
    let addr = stack.url.trim_start_matches("http://").to_owned();
    let head = |length: &str, extra: &str| {
        format!(
            "POST /v3/policies/cee/import HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
             content-type: application/json\r\nconnection: close\r\n{length}{extra}"
        )
    };

    // Through reqwest: 1000 operations, some 110 KB, past the 64 KiB pingora keeps.
    let big = operations(1000, "BIG");
    assert!(serde_json::to_vec(&big).unwrap().len() > 64 * 1024);
    let response = stack
        .request(Method::POST, "/v3/policies/cee/import")
        .bearer_auth(&token)
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        (&answer["imported"], &answer["failed"]),
        (&json!(1000), &json!(0))
    );

    let cases = [
        // (name, operations, chunked, expect 100-continue)
        ("SMA", 10, false, false),
        ("SMC", 10, true, false),
        ("LGC", 1000, true, false),
        ("SME", 10, false, true),
        ("LGE", 1000, false, true),
    ];
    for (name, n, is_chunked, expect) in cases {
        let body = serde_json::to_vec(&operations(n, name)).unwrap();
        let (framing, sent) = if is_chunked {
            ("transfer-encoding: chunked\r\n".to_owned(), chunked(&body))
        } else {
            (format!("content-length: {}\r\n", body.len()), body)
        };
        let extra = if expect {
            "expect: 100-continue\r\n"
        } else {
            ""
        };
        let (status, answer) = raw_exchange(&addr, &head(&framing, extra), &sent, expect).await;
        assert_eq!(status, 201, "{name}: {answer}");
        assert_eq!(answer["imported"], json!(n), "{name}: {answer}");
    }
}

#[tokio::test]
async fn bodies_of_every_size_and_framing_are_forwarded_embedded() {
    bodies_of_every_size_and_framing_are_forwarded(Mode::Embedded).await;
}

#[tokio::test]
async fn bodies_of_every_size_and_framing_are_forwarded_production() {
    bodies_of_every_size_and_framing_are_forwarded(Mode::Production).await;
}
