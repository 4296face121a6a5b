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

/// `Set-Cookie` for a new session id: for the whole site, out of scripts' reach, not sent on
/// cross-site subrequests or posts, and only over TLS when `secure`.
pub fn set_sessid(sessid: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{SESSID_COOKIE}={sessid}; Path=/; HttpOnly; SameSite=Lax{secure}")
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
    fn the_sessid_cookie_is_http_only_and_lax_and_secure_when_configured() {
        assert_eq!(
            set_sessid("abc", false),
            "sessid=abc; Path=/; HttpOnly; SameSite=Lax"
        );
        assert_eq!(
            set_sessid("abc", true),
            "sessid=abc; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
    }

    #[test]
    fn session_cookies_are_not_forwarded() {
        let cases: &[(&[&str], Option<&str>)] = &[
            (&["sessid=a; sessauth=b"], None),
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
