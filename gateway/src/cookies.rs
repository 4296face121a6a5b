//! The browser session cookies as the gateway reads and writes them (CONTRACT §3.3): plain
//! functions over `Cookie` header values. What the cookies mean is in
//! [`auth_token::session`]; checking a session token is [`crate::authorize`]'s business.

use auth_token::session::{SESSAUTH_COOKIE, SESSID_COOKIE};

/// The values of cookie `name` in `Cookie` header values, in the order sent.
pub fn values<'a>(
    headers: impl IntoIterator<Item = &'a str>,
    name: &'a str,
) -> impl Iterator<Item = &'a str> {
    headers
        .into_iter()
        .flat_map(|header| header.split(';'))
        .filter_map(move |pair| {
            let (n, v) = pair.split_once('=')?;
            (n.trim() == name).then(|| v.trim().trim_matches('"'))
        })
}

/// The session cookies' names on this gateway. Reached over TLS (`secure`: the public
/// address is not loopback, or `cookie_secure` is set) they are `__Host-sessid` and
/// `__Host-sessauth`, and `Secure`: a browser accepts a `__Host-` cookie only from this very
/// host, over TLS, for the whole site, so a sibling subdomain or a plain-HTTP page cannot
/// plant one (cookie tossing, session fixation). On loopback they are plain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Names {
    pub sessid: &'static str,
    pub sessauth: &'static str,
    pub secure: bool,
}

/// The `__Host-` prefix (RFC 6265bis §4.1.3.2).
const HOST_PREFIX: &str = "__Host-";

impl Names {
    pub fn new(secure: bool) -> Self {
        if secure {
            Self {
                sessid: "__Host-sessid",
                sessauth: "__Host-sessauth",
                secure,
            }
        } else {
            Self {
                sessid: SESSID_COOKIE,
                sessauth: SESSAUTH_COOKIE,
                secure,
            }
        }
    }

    /// auth-service's `Set-Cookie` for `sessauth` under this gateway's name and `Secure`;
    /// `None` for any other cookie, or when the names are plain (nothing to change).
    pub fn outgoing(&self, set_cookie: &str) -> Option<String> {
        if !self.secure {
            return None;
        }
        let rest = set_cookie
            .strip_prefix(SESSAUTH_COOKIE)?
            .strip_prefix('=')?;
        let secure = if rest.to_ascii_lowercase().contains("; secure") {
            ""
        } else {
            "; Secure"
        };
        Some(format!("{}={rest}{secure}", self.sessauth))
    }
}

/// `Set-Cookie` for a new session id: for the whole site, out of scripts' reach, not sent on
/// cross-site subrequests or posts, and only over TLS when the names are `secure`.
pub fn set_sessid(names: Names, sessid: &str) -> String {
    let secure = if names.secure { "; Secure" } else { "" };
    format!(
        "{}={sessid}; Path=/; HttpOnly; SameSite=Lax{secure}",
        names.sessid
    )
}

/// The `Cookie` header to forward: the client's cookies minus the session ones, so upstreams
/// never see a credential (they get the session as a hash in the assertion). `None` when
/// nothing is left.
pub fn forwarded<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let kept: Vec<&str> = headers
        .into_iter()
        .flat_map(|header| header.split(';'))
        .map(str::trim)
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(n, _)| n).trim();
            let name = name.strip_prefix(HOST_PREFIX).unwrap_or(name);
            !pair.is_empty() && name != SESSID_COOKIE && name != SESSAUTH_COOKIE
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_found_in_any_cookie_header_in_order() {
        let headers = ["theme=dark; sessid=abc", "sessauth=\"t.o.k\";sessid=def"];
        let ids: Vec<&str> = values(headers, "sessid").collect();
        assert_eq!(ids, ["abc", "def"]);
        assert_eq!(values(headers, "sessauth").next(), Some("t.o.k"));
        assert_eq!(values(headers, "session").next(), None);
        assert_eq!(values(["sessid"], "sessid").next(), None);
        assert_eq!(values([""], "sessid").next(), None);
    }

    #[test]
    fn the_sessid_cookie_is_http_only_and_lax_and_host_only_and_secure_over_tls() {
        assert_eq!(
            set_sessid(Names::new(false), "abc"),
            "sessid=abc; Path=/; HttpOnly; SameSite=Lax"
        );
        assert_eq!(
            set_sessid(Names::new(true), "abc"),
            "__Host-sessid=abc; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
    }

    #[test]
    fn auth_services_sessauth_takes_the_gateways_name_over_tls() {
        let line = "sessauth=t.o.k; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax";
        assert_eq!(Names::new(false).outgoing(line), None);
        assert_eq!(
            Names::new(true).outgoing(line).as_deref(),
            Some("__Host-sessauth=t.o.k; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax; Secure")
        );
        assert_eq!(
            Names::new(true)
                .outgoing(&format!("{line}; Secure"))
                .as_deref(),
            Some("__Host-sessauth=t.o.k; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax; Secure")
        );
        assert_eq!(Names::new(true).outgoing("theme=dark; Path=/"), None);
        assert_eq!(Names::new(true).outgoing("sessauthx=1"), None);
    }

    #[test]
    fn session_cookies_are_not_forwarded() {
        let cases: &[(&[&str], Option<&str>)] = &[
            (&["sessid=a; sessauth=b"], None),
            (
                &["__Host-sessid=a; __Host-sessauth=b; __Host-theme=1"],
                Some("__Host-theme=1"),
            ),
            (
                &["theme=dark; sessid=a", "sessauth=b; lang=fr"],
                Some("theme=dark; lang=fr"),
            ),
            (&["theme=dark"], Some("theme=dark")),
            (&[" ; "], None),
        ];
        for (headers, expected) in cases {
            assert_eq!(
                forwarded(headers.iter().copied()).as_deref(),
                *expected,
                "{headers:?}"
            );
        }
    }
}
