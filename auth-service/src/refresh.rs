//! The refresh-token rules of the API-key flow (CONTRACT §3.2): given what the store knows of
//! a presented refresh token, what to answer. No I/O and no clock (`now` is passed in); the
//! store and the HTTP handler carry the verdict out.
//!
//! Every `POST /api/v1/auth/token/` starts a family. Without rotation a refresh token serves
//! until it expires. With the operator's `refresh_rotation` on, each refresh spends the token
//! and hands out the next one of the family; a spent token presented again means two parties
//! hold the family, so the whole family is revoked.

/// Access tokens of the API-key flow live one hour.
pub const ACCESS_TTL_SECS: i64 = 3600;

/// Access tokens of the reference flow (`POST /{v}/auth/access_token`) live five minutes.
pub const REFERENCE_ACCESS_TTL_SECS: i64 = 300;

/// Refresh tokens live one week.
pub const REFRESH_TTL_SECS: i64 = 7 * 24 * 3600;

/// What the store knows of a presented refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Unix seconds.
    pub expires_at: i64,
    /// Already rotated away.
    pub spent: bool,
    /// Its family was revoked (after a reuse).
    pub family_revoked: bool,
    /// The credential it was minted from is revoked or blacklisted.
    pub credential_revoked: bool,
    /// The operator's `refresh_rotation` option.
    pub rotation: bool,
}

/// What to do with a presented refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Mint an access token in the token's family; with `rotate`, also the family's next
    /// refresh token, spending this one.
    Issue {
        rotate: bool,
    },
    /// A spent token came back: revoke the family, then refuse with [`Refusal::Reused`].
    Reuse,
    Refuse(Refusal),
}

/// Why a refresh token is refused (401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Unknown,
    Expired,
    Revoked,
    Reused,
    CredentialRevoked,
}

impl Refusal {
    /// The `error.code` of the answer.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Unknown => "invalid_refresh_token",
            Refusal::Expired => "refresh_expired",
            Refusal::Revoked => "refresh_revoked",
            Refusal::Reused => "refresh_reused",
            Refusal::CredentialRevoked => "credential_revoked",
        }
    }

    /// The `error.message` of the answer.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Unknown => "Unknown refresh token",
            Refusal::Expired => "Refresh token expired",
            Refusal::Revoked => "Refresh token revoked",
            Refusal::Reused => "Refresh token already used: every token of its family is revoked",
            Refusal::CredentialRevoked => "The credential of this refresh token is revoked",
        }
    }
}

/// The verdict on a presented refresh token (`None`: no such token) at `now` (unix seconds).
/// A revoked credential outranks everything; a spent token is reuse even once expired, since
/// its family may still hold live tokens.
pub fn decide(stored: Option<&Stored>, now: i64) -> Verdict {
    let Some(token) = stored else {
        return Verdict::Refuse(Refusal::Unknown);
    };
    if token.credential_revoked {
        Verdict::Refuse(Refusal::CredentialRevoked)
    } else if token.family_revoked {
        Verdict::Refuse(Refusal::Revoked)
    } else if token.spent {
        Verdict::Reuse
    } else if token.expires_at <= now {
        Verdict::Refuse(Refusal::Expired)
    } else {
        Verdict::Issue {
            rotate: token.rotation,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn live() -> Stored {
        Stored {
            expires_at: NOW + 60,
            spent: false,
            family_revoked: false,
            credential_revoked: false,
            rotation: false,
        }
    }

    #[test]
    fn refresh_verdicts_follow_the_rules() {
        let cases: &[(&str, Option<Stored>, Verdict)] = &[
            ("unknown", None, Verdict::Refuse(Refusal::Unknown)),
            ("live", Some(live()), Verdict::Issue { rotate: false }),
            (
                "live, rotation on",
                Some(Stored {
                    rotation: true,
                    ..live()
                }),
                Verdict::Issue { rotate: true },
            ),
            (
                "expires now",
                Some(Stored {
                    expires_at: NOW,
                    ..live()
                }),
                Verdict::Refuse(Refusal::Expired),
            ),
            (
                "expired, rotation on",
                Some(Stored {
                    expires_at: NOW - 1,
                    rotation: true,
                    ..live()
                }),
                Verdict::Refuse(Refusal::Expired),
            ),
            (
                "spent",
                Some(Stored {
                    spent: true,
                    rotation: true,
                    ..live()
                }),
                Verdict::Reuse,
            ),
            (
                "spent, rotation since turned off",
                Some(Stored {
                    spent: true,
                    ..live()
                }),
                Verdict::Reuse,
            ),
            (
                "spent and expired",
                Some(Stored {
                    spent: true,
                    expires_at: NOW - 1,
                    ..live()
                }),
                Verdict::Reuse,
            ),
            (
                "family revoked",
                Some(Stored {
                    family_revoked: true,
                    ..live()
                }),
                Verdict::Refuse(Refusal::Revoked),
            ),
            (
                "spent in a revoked family",
                Some(Stored {
                    family_revoked: true,
                    spent: true,
                    ..live()
                }),
                Verdict::Refuse(Refusal::Revoked),
            ),
            (
                "credential revoked",
                Some(Stored {
                    credential_revoked: true,
                    ..live()
                }),
                Verdict::Refuse(Refusal::CredentialRevoked),
            ),
            (
                "credential revoked, token spent",
                Some(Stored {
                    credential_revoked: true,
                    spent: true,
                    ..live()
                }),
                Verdict::Refuse(Refusal::CredentialRevoked),
            ),
        ];
        for (name, stored, expected) in cases {
            assert_eq!(decide(stored.as_ref(), NOW), *expected, "{name}");
        }
    }

    #[test]
    fn refusal_codes_are_snake_case_and_distinct() {
        let all = [
            Refusal::Unknown,
            Refusal::Expired,
            Refusal::Revoked,
            Refusal::Reused,
            Refusal::CredentialRevoked,
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(|r| r.code()).collect();
        assert_eq!(codes.len(), all.len());
        assert!(
            codes
                .iter()
                .all(|c| c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        );
    }
}
