//! What the gateway's integration tests share: an upstream whose behaviour the test
//! switches, free ports, and the gateway's JSON-RPC error shape.
#![allow(dead_code, reason = "each test binary uses its own part")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A public route forwarded to auth-service: no token needed.
pub const SIGN_IN: &str = "/api/v1/auth/sign_in";

/// A port free right now.
pub fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// An upstream answering `200 ok` to every request (after reading its body), or after
/// three seconds when `slow` is set.
pub struct Upstream {
    pub slow: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let slow = Arc::new(AtomicBool::new(false));
        let flag = slow.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, flag.clone()));
            }
        });
        Self { slow, task }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves requests on one connection until it closes.
async fn serve(mut conn: TcpStream, slow: Arc<AtomicBool>) {
    let mut buf = Vec::new();
    loop {
        let Some(end) = read_until(&mut conn, &mut buf, b"\r\n\r\n").await else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        buf.drain(..end + 4);
        if head.contains("transfer-encoding: chunked") {
            let Some(end) = read_until(&mut conn, &mut buf, b"0\r\n\r\n").await else {
                return;
            };
            buf.drain(..end + 5);
        } else if let Some(length) = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|n| n.trim().parse::<usize>().ok())
        {
            while buf.len() < length {
                let mut chunk = [0u8; 8192];
                match conn.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            buf.drain(..length);
        }
        if slow.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        let answer =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        if conn.write_all(answer).await.is_err() {
            return;
        }
    }
}

/// Reads until `pattern` is in `buf`; its position, or `None` when the peer closed.
async fn read_until(conn: &mut TcpStream, buf: &mut Vec<u8>, pattern: &[u8]) -> Option<usize> {
    loop {
        if let Some(at) = buf.windows(pattern.len()).position(|w| w == pattern) {
            return Some(at);
        }
        let mut chunk = [0u8; 8192];
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The gateway's reason code, after checking the error body's shape.
pub async fn reason(response: reqwest::Response, status: u16, rpc_code: i64) -> String {
    assert_eq!(response.status().as_u16(), status);
    let header = response.headers()["x-gateway-error"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["jsonrpc"], "2.0");
    assert_eq!(body["error"]["code"], rpc_code, "{body}");
    assert_eq!(body["error"]["data"], header.as_str(), "{body}");
    header
}
