//! Phone numbers of drivers and passengers, normalised to E.164 (CONTRACT §7).
//!
//! Operators send numbers as people type them: `06 12 34 56 78`, `+33 (0)6…`, `0033…`,
//! `+32 470…`. [`Phone::parse`] accepts any number that libphonenumber's metadata deems valid,
//! reading national formats as French (rpc-behaviour §6 "phone"), and keeps only its E.164 form.
//! [`PhoneTrunc`] is the same number without its last two digits, for operators that do not
//! hold the full one. Length limits of the payload schema are checked by the validator, not here.
//!
//! Both types print as `<redacted>` in `Debug`: phone numbers never reach the logs.

use phonenumber::{Mode, country};
use std::fmt;

/// A valid phone number in E.164 form (`+33612345678`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Phone(String);

/// A valid phone number in E.164 form, without its last two digits (`+336123456`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PhoneTrunc(String);

impl Phone {
    /// The E.164 form of `s` when it is a valid number, national formats being French.
    ///
    /// Digits may be grouped with spaces, dots, dashes, slashes and parentheses; anything else
    /// (commas, letters, extensions, `tel:` URIs) is refused rather than guessed at.
    pub fn parse(s: &str) -> Option<Self> {
        let typed = s
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '.' | '-' | '/' | '(' | ')' | '+'));
        if !typed {
            return None;
        }
        let number = phonenumber::parse(Some(country::Id::FR), s).ok()?;
        (number.extension().is_none() && phonenumber::is_valid(&number))
            .then(|| Self(number.format().mode(Mode::E164).to_string()))
    }

    /// The number in E.164 form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PhoneTrunc {
    /// The truncated E.164 form of `s` when `s` followed by `00` is a valid [`Phone`].
    pub fn parse(s: &str) -> Option<Self> {
        let full = Phone::parse(&format!("{s}00"))?.0;
        full.strip_suffix("00").map(|trunc| Self(trunc.to_owned()))
    }

    /// The number in E.164 form, without its last two digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Phone(<redacted>)")
    }
}

impl fmt::Debug for PhoneTrunc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PhoneTrunc(<redacted>)")
    }
}
