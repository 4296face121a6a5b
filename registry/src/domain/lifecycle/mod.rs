//! The journey lifecycle after acquisition (CONTRACT §7, docs/lifecycle.md): when each
//! stage runs, what the checks decide, what campaigns pay and when funding calls are issued.
//! Plain functions of their inputs and of `now`; the job runner (`crate::jobs`) and the
//! store apply them.
//!
//! - 0–24 h after the start: the operator sends and may fix the journey.
//! - at 24 h: normalisation, anomaly and fraud checks ([`checks`]); status becomes visible.
//! - at 48 h: the checks run once more over everything sent by then, the status becomes
//!   final and incentives are computed on the configured campaigns ([`campaign`]).
//! - on the 6th of the following month, 00:00 Europe/Paris: the month's funding call.

pub mod campaign;
pub mod checks;
pub mod export;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Europe::Paris;
use std::fmt;

/// The checks run this long after the journey's start: the send-and-fix window is over.
pub const CHECKS_AFTER: TimeDelta = TimeDelta::hours(24);

/// The status becomes final, and incentives are computed, this long after the start.
pub const FINAL_AFTER: TimeDelta = TimeDelta::hours(48);

/// The day of the following month on which a month's funding call is issued.
pub const FUNDING_CALL_DAY: u32 = 6;

/// A calendar month in Europe/Paris.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i32,
    month: u32,
}

impl Month {
    /// `YYYY-MM`.
    pub fn parse(s: &str) -> Option<Self> {
        let (y, m) = s.split_once('-')?;
        if y.len() != 4 || m.len() != 2 || !(y.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let (year, month) = (y.parse().ok()?, m.parse().ok()?);
        NaiveDate::from_ymd_opt(year, month, 1).map(|_| Self { year, month })
    }

    /// The Paris month holding `at`.
    pub fn of(at: DateTime<Utc>) -> Self {
        let local = at.with_timezone(&Paris);
        Self {
            year: local.year(),
            month: local.month(),
        }
    }

    /// The month after this one.
    pub fn next(self) -> Self {
        if self.month == 12 {
            Self {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Self {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// The month before this one.
    pub fn previous(self) -> Self {
        if self.month == 1 {
            Self {
                year: self.year - 1,
                month: 12,
            }
        } else {
            Self {
                year: self.year,
                month: self.month - 1,
            }
        }
    }

    /// Local midnight of `day` in this month, in UTC.
    fn at_day(self, day: u32) -> DateTime<Utc> {
        let date = NaiveDate::from_ymd_opt(self.year, self.month, day).unwrap_or(NaiveDate::MIN);
        // Paris changes its clocks at 02:00 or 03:00, never at midnight.
        Paris
            .from_local_datetime(&date.and_time(NaiveTime::MIN))
            .earliest()
            .map_or(DateTime::<Utc>::MIN_UTC, |t| t.with_timezone(&Utc))
    }

    /// The month as the half-open UTC interval `[first midnight, next first midnight)`.
    pub fn bounds(self) -> (DateTime<Utc>, DateTime<Utc>) {
        (self.at_day(1), self.next().at_day(1))
    }

    /// When this month's funding call is issued: the 6th of the next month, 00:00 Paris.
    pub fn funding_call_at(self) -> DateTime<Utc> {
        self.next().at_day(FUNDING_CALL_DAY)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn months_parse_print_and_step() {
        let m = Month::parse("2026-12").unwrap();
        assert_eq!(m.to_string(), "2026-12");
        assert_eq!(m.next().to_string(), "2027-01");
        assert_eq!(Month::parse("2027-01").unwrap().previous(), m);
        for bad in [
            "2026-13",
            "2026-00",
            "26-01",
            "2026-1",
            "2026/01",
            "",
            "2026-01-01",
        ] {
            assert_eq!(Month::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn months_are_paris_months() {
        // 23:30 UTC on the 31st of May is already June in Paris (UTC+2).
        assert_eq!(Month::of(at("2026-05-31T23:30:00Z")).to_string(), "2026-06");
        assert_eq!(Month::of(at("2026-05-31T21:59:59Z")).to_string(), "2026-05");
        let (start, end) = Month::parse("2026-03").unwrap().bounds();
        // Winter time at the start of March, summer time at the start of April.
        assert_eq!(start, at("2026-02-28T23:00:00Z"));
        assert_eq!(end, at("2026-03-31T22:00:00Z"));
    }

    #[test]
    fn funding_calls_are_issued_on_the_6th_at_paris_midnight() {
        let may = Month::parse("2026-05").unwrap();
        assert_eq!(may.funding_call_at(), at("2026-06-05T22:00:00Z"));
        let december = Month::parse("2026-12").unwrap();
        assert_eq!(december.funding_call_at(), at("2027-01-05T23:00:00Z"));
    }
}
