//! The PROXY protocol header (HAProxy's; version 1 text or version 2 binary) that a TCP
//! balancer in front of the HTTPS port writes before the client's TLS bytes: the only way
//! such a balancer can name the client, since it cannot add a header to an encrypted
//! request. Read only from peers the settings trust to send it (`tls.proxy_protocol` and
//! `trusted_proxies`): from anyone else those bytes would be a client choosing its own
//! address.

use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest};
use ppp::{HeaderResult, PartialResult, v1, v2};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::io::AsRawFd;
use tokio::io::AsyncReadExt;

/// The longest header read: a version 1 line is at most 107 bytes, a version 2 header 16
/// bytes and its addresses and extensions (TLVs, which are skipped).
pub const MAX_HEADER_BYTES: usize = 4096;

/// Why a connection that had to start with a header is closed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("the connection closed before its PROXY header ended")]
    Closed,
    #[error("no valid PROXY header")]
    Invalid,
    #[error("a PROXY header longer than {MAX_HEADER_BYTES} bytes")]
    TooLong,
}

/// What a complete header says: its length in bytes, and the client's address (`None` for
/// `UNKNOWN`, `LOCAL` or a Unix socket: the balancer's own connection, e.g. a health check).
pub fn parse(bytes: &[u8]) -> Result<Option<(usize, Option<SocketAddr>)>, HeaderError> {
    let header = HeaderResult::parse(bytes);
    if header.is_incomplete() {
        return if bytes.len() >= MAX_HEADER_BYTES {
            Err(HeaderError::TooLong)
        } else {
            Ok(None)
        };
    }
    match header {
        HeaderResult::V1(Ok(h)) => {
            let client = match h.addresses {
                v1::Addresses::Tcp4(a) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                v1::Addresses::Tcp6(a) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                v1::Addresses::Unknown => None,
            };
            Ok(Some((h.header.len(), client)))
        }
        HeaderResult::V2(Ok(h)) => {
            let client = match (h.command, h.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                _ => None,
            };
            Ok(Some((h.len(), client)))
        }
        HeaderResult::V1(Err(_)) | HeaderResult::V2(Err(_)) => Err(HeaderError::Invalid),
    }
}

/// Reads the header off `stream`, puts back what followed it (the client's first TLS
/// bytes), and makes the client's address the connection's peer address, which is what
/// every later step reads (the per-address limits, `X-Forwarded-For` upstream).
pub async fn accept(stream: &mut L4Stream) -> Result<(), HeaderError> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    let (length, client) = loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| HeaderError::Closed)?;
        if n == 0 {
            return Err(HeaderError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(found) = parse(&buf)? {
            break found;
        }
    };
    stream.rewind(&buf[length..]);
    // A header naming no client (`UNKNOWN`, `LOCAL`: the balancer's own check, or a client
    // it cannot name) leaves the peer unspecified, never the balancer: its connection must
    // not be taken for the trusted balancer's, whose `X-Forwarded-For` would be believed.
    let client = client.unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
    let digest = SocketDigest::from_raw_fd(stream.as_raw_fd());
    let _ = digest.peer_addr.set(Some(PingoraAddr::Inet(client)));
    stream.set_socket_digest(digest);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_1_and_2_headers_name_the_client_and_their_length() {
        let line = b"PROXY TCP4 203.0.113.9 10.0.0.2 51234 443\r\n";
        let mut bytes = line.to_vec();
        bytes.extend_from_slice(b"\x16\x03\x01");
        let (length, client) = parse(&bytes).unwrap().unwrap();
        assert_eq!(length, line.len());
        assert_eq!(client, Some("203.0.113.9:51234".parse().unwrap()));

        let six = b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 443\r\n";
        let (length, client) = parse(six).unwrap().unwrap();
        assert_eq!(length, six.len());
        assert_eq!(client, Some("[2001:db8::7]:4000".parse().unwrap()));

        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap(), Some((15, None)));

        // Version 2, PROXY over TCP/IPv4: 198.51.100.4:1234 -> 10.0.0.2:443.
        let mut two = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        two.extend([
            0x21, 0x11, 0, 12, 198, 51, 100, 4, 10, 0, 0, 2, 0x04, 0xd2, 0x01, 0xbb,
        ]);
        let (length, client) = parse(&[two.as_slice(), b"rest"].concat()).unwrap().unwrap();
        assert_eq!(length, two.len());
        assert_eq!(client, Some("198.51.100.4:1234".parse().unwrap()));
    }

    #[test]
    fn partial_headers_wait_and_anything_else_is_refused() {
        assert_eq!(parse(b"PROXY TCP4 203.0.113.9"), Ok(None));
        assert_eq!(parse(b"\r\n\r\n\0\r\n"), Ok(None));
        // A client's TLS hello, or plain HTTP, where the header should be.
        assert_eq!(
            parse(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
            Err(HeaderError::Invalid)
        );
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"),
            Err(HeaderError::Invalid)
        );
        assert_eq!(
            parse(b"PROXY TCP4 not-an-address 10.0.0.2 1 2\r\n"),
            Err(HeaderError::Invalid)
        );
        // A header that never ends is cut.
        let endless = [b"PROXY TCP4 ".as_slice(), &[b'1'; MAX_HEADER_BYTES]].concat();
        assert!(parse(&endless).is_err());
    }
}
