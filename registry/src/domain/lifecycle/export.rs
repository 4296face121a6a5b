//! The reference's asynchronous export (`POST /{v}/exports`, CONTRACT §7, docs/lifecycle.md):
//! what a request may ask for, and the states an export goes through. Plain functions of the
//! body and of `now`; the store records the export, the job runner builds its file.

use crate::domain::schema::{Checker, Field};
use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde_json::Value;
use std::str::FromStr;

/// How far back an export may start: the reference's three years (`APP_EXPORT_MIN_START`),
/// counted from the start of that Paris day.
pub const MIN_START_AGO: TimeDelta = TimeDelta::days(3 * 365);

/// How recent an export's end may be: five days ago (`APP_EXPORT_MAX_END`), to the end of
/// that Paris day. Journeys younger than that may still change (checks, cancellations).
pub const MAX_END_AGO: TimeDelta = TimeDelta::days(5);

/// Most operators one export names (the published schema's `maxItems`).
pub const MAX_OPERATORS: usize = 128;

/// Most recipients one export is mailed to (the published schema's `maxItems`).
pub const MAX_RECIPIENTS: usize = 24;

/// The time zone an export gets when the body names none (the reference's default).
pub const DEFAULT_TZ: &str = "Europe/Paris";

const SERIAL_MAX: i64 = 2_147_483_647;
const GEO_SELECTOR_KEYS: [&str; 6] = ["arr", "com", "epci", "aom", "reg", "dep"];

/// A valid export request, before the caller's scope is applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRequest {
    /// IANA time zone the request was made in (recorded; the file's times are UTC).
    pub tz: Tz,
    /// Journeys starting at or after this instant...
    pub start: DateTime<Utc>,
    /// ...and before this one.
    pub end: DateTime<Utc>,
    /// Operators named by the body; `None` when it names none (operator callers may omit it).
    pub operator_ids: Option<Vec<i64>>,
    /// Addresses to mail when the file is ready. Personal data: never logged.
    pub recipients: Vec<String>,
}

/// Where an export is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportStatus {
    /// Recorded, its job not started.
    Pending,
    /// A runner is building its file.
    Running,
    /// The file is ready to download until it expires.
    Success,
    /// The file could not be built; there is nothing to download.
    Failure,
    /// The file was deleted after its retention period.
    Expired,
}

impl ExportStatus {
    pub const ALL: [ExportStatus; 5] = [
        ExportStatus::Pending,
        ExportStatus::Running,
        ExportStatus::Success,
        ExportStatus::Failure,
        ExportStatus::Expired,
    ];

    /// The stored and answered spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ExportStatus::Pending => "pending",
            ExportStatus::Running => "running",
            ExportStatus::Success => "success",
            ExportStatus::Failure => "failure",
            ExportStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }
}

/// Who an export is for, as the reference answers it: `operator` when an operator's user or
/// application asked, `opendata` for the registry's staff (the reference's third target,
/// `territory`, has no caller here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportTarget {
    Operator,
    Opendata,
}

impl ExportTarget {
    pub fn as_str(self) -> &'static str {
        match self {
            ExportTarget::Operator => "operator",
            ExportTarget::Opendata => "opendata",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [ExportTarget::Operator, ExportTarget::Opendata]
            .into_iter()
            .find(|target| target.as_str() == s)
    }
}

/// The earliest start and latest end an export asked at `now` may have:
/// `[start of the Paris day 3 years ago, end of the Paris day 5 days ago]`.
pub fn export_bounds(now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let (min_start, _) = crate::domain::paris_day(now - MIN_START_AGO);
    let (_, max_end) = crate::domain::paris_day(now - MAX_END_AGO);
    (min_start, max_end)
}

/// Validates the body of `POST /{v}/exports` received at `now`; `Err` lists every violation
/// as `"<json path>: <message>"`, in the reference's wording.
///
/// As the reference does, a lone operator id or address stands for a one-item array, and a
/// missing `tz` is [`DEFAULT_TZ`]. `operator_id` is required here only when `operator_required`
/// (registry roles); operator callers' exports are scoped to their own operator whatever
/// the body says. `geo_selector` is accepted only empty: this registry has no territory
/// boundaries to select journeys with.
pub fn validate_export_request(
    body: &Value,
    now: DateTime<Utc>,
    operator_required: bool,
) -> Result<ExportRequest, Vec<String>> {
    let mut c = Checker::default();
    let required: &[&str] = if operator_required {
        &["start_at", "end_at", "operator_id"]
    } else {
        &["start_at", "end_at"]
    };
    let optional: &[&str] = if operator_required {
        &["tz", "recipients", "geo_selector"]
    } else {
        &["tz", "recipients", "geo_selector", "operator_id"]
    };
    let root = c.object(Field::root(body), required, optional);
    // The reference's `tz` is an enum of the IANA names.
    let tz = match root.field("tz").value {
        None => DEFAULT_TZ.parse().ok(),
        Some(_) => c.string(&root.field("tz"), 2, 64).and_then(|s| {
            let tz = Tz::from_str(&s).ok();
            if tz.is_none() {
                c.fail("/tz", "must be equal to one of the allowed values");
            }
            tz
        }),
    };
    let start = c.datetime(&root.field("start_at"));
    let end = c.datetime(&root.field("end_at"));
    let operator_ids = root.field("operator_id").value.map(|value| {
        one_or_many(&mut c, root.field("operator_id"), value, MAX_OPERATORS)
            .iter()
            .filter_map(|item| c.integer(item, 1, SERIAL_MAX))
            .collect::<Vec<_>>()
    });
    let recipients: Vec<String> = match root.field("recipients").value {
        None => Vec::new(),
        Some(value) => one_or_many(&mut c, root.field("recipients"), value, MAX_RECIPIENTS)
            .iter()
            .filter_map(|item| {
                c.format(item, 5, 256, "email", |s| {
                    lettre::Address::from_str(s).ok().map(|_| s.to_owned())
                })
            })
            .collect(),
    };
    geo_selector(&mut c, root.field("geo_selector"));

    let (min_start, max_end) = export_bounds(now);
    if let Some(start) = start
        && start < min_start
    {
        c.fail("/start_at", format!("must be >= {}", iso(min_start)));
    }
    if let Some(end) = end
        && end > max_end
    {
        c.fail("/end_at", format!("must be <= {}", iso(max_end)));
    }
    if let (Some(s), Some(e)) = (start, end)
        && s >= e
    {
        c.fail("/start_at", "must be before /end_at");
    }
    c.finish()?;
    match (tz, start, end) {
        (Some(tz), Some(start), Some(end)) => Ok(ExportRequest {
            tz,
            start,
            end,
            operator_ids,
            recipients,
        }),
        _ => Err(vec![": must be an export request".to_owned()]),
    }
}

/// The items of an array, or `value` itself as the only item when it is not an array.
fn one_or_many<'a>(
    c: &mut Checker,
    field: Field<'a>,
    value: &'a Value,
    max_items: usize,
) -> Vec<Field<'a>> {
    if value.is_array() {
        c.array(field, max_items)
    } else {
        vec![field]
    }
}

/// `geo_selector`: an object of the reference's territory code lists, each empty.
fn geo_selector(c: &mut Checker, field: Field<'_>) {
    if field.value.is_none() {
        return;
    }
    let selector = c.object(field, &[], &GEO_SELECTOR_KEYS);
    for key in GEO_SELECTOR_KEYS {
        let list = selector.field(key);
        let path = list.path.clone();
        let codes = c.array(list, usize::MAX);
        for code in &codes {
            c.string(code, 0, usize::MAX);
        }
        if !codes.is_empty() {
            c.fail(
                path,
                "selecting journeys by territory is not supported by this registry",
            );
        }
    }
}

fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    const NOW: &str = "2026-06-10T12:00:00Z";

    fn body() -> Value {
        json!({
            "tz": "Europe/Paris",
            "start_at": "2026-05-01T00:00:00+02:00",
            "end_at": "2026-06-01T00:00:00+02:00",
            "operator_id": [1, 2],
            "recipients": ["ops@example.org"],
        })
    }

    #[test]
    fn a_valid_request_is_read() {
        let r = validate_export_request(&body(), at(NOW), true).expect("valid");
        assert_eq!(r.tz, chrono_tz::Europe::Paris);
        assert_eq!(r.start, at("2026-04-30T22:00:00Z"));
        assert_eq!(r.end, at("2026-05-31T22:00:00Z"));
        assert_eq!(r.operator_ids, Some(vec![1, 2]));
        assert_eq!(r.recipients, ["ops@example.org"]);
    }

    #[test]
    fn lone_values_stand_for_arrays_and_tz_has_a_default() {
        let mut b = body();
        b["operator_id"] = json!(7);
        b["recipients"] = json!("a@example.org");
        b.as_object_mut().unwrap().remove("tz");
        let r = validate_export_request(&b, at(NOW), true).expect("valid");
        assert_eq!(r.operator_ids, Some(vec![7]));
        assert_eq!(r.recipients, ["a@example.org"]);
        assert_eq!(r.tz, chrono_tz::Europe::Paris);
    }

    #[test]
    fn operator_callers_may_leave_operator_id_out() {
        let mut b = body();
        b.as_object_mut().unwrap().remove("operator_id");
        let r = validate_export_request(&b, at(NOW), false).expect("valid");
        assert_eq!(r.operator_ids, None);
        assert_eq!(
            validate_export_request(&b, at(NOW), true).unwrap_err(),
            [": must have required property 'operator_id'"]
        );
    }

    #[test]
    fn bounds_are_paris_days_three_years_back_and_five_days_ago() {
        let (min_start, max_end) = export_bounds(at(NOW));
        // 2023-06-11 (3 × 365 days before, a leap day in between) at Paris midnight.
        assert_eq!(min_start, at("2023-06-10T22:00:00Z"));
        // The end of 2026-06-05 in Paris.
        assert_eq!(max_end, at("2026-06-05T22:00:00Z"));
        let mut b = body();
        b["start_at"] = json!("2023-06-10T22:00:00Z");
        b["end_at"] = json!("2026-06-05T22:00:00Z");
        assert!(
            validate_export_request(&b, at(NOW), true).is_ok(),
            "both bounds included"
        );
    }

    #[test]
    fn every_problem_is_reported_in_the_reference_wording() {
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (json!([]), vec![": must be object"]),
            (
                json!({}),
                vec![
                    ": must have required property 'start_at'",
                    ": must have required property 'end_at'",
                    ": must have required property 'operator_id'",
                ],
            ),
            (
                {
                    let mut b = body();
                    b["colour"] = json!("blue");
                    b
                },
                vec![": must NOT have additional properties ('colour')"],
            ),
            (
                {
                    let mut b = body();
                    b["tz"] = json!("Mars/Olympus");
                    b["start_at"] = json!("yesterday");
                    b["end_at"] = json!(12);
                    b
                },
                vec![
                    "/tz: must be equal to one of the allowed values",
                    "/start_at: must match format \"date-time\"",
                    "/end_at: must be string",
                ],
            ),
            (
                {
                    let mut b = body();
                    b["operator_id"] = json!([0, "x", 2_147_483_648_i64]);
                    b
                },
                vec![
                    "/operator_id/0: must be >= 1",
                    "/operator_id/1: must be integer",
                    "/operator_id/2: must be <= 2147483647",
                ],
            ),
            (
                {
                    let mut b = body();
                    b["operator_id"] = json!((1..=129).collect::<Vec<_>>());
                    b["recipients"] = json!(["not an address", "a@b", 3]);
                    b
                },
                vec![
                    "/operator_id: must NOT have more than 128 items",
                    "/recipients/0: must match format \"email\"",
                    "/recipients/1: must NOT have fewer than 5 characters",
                    "/recipients/2: must be string",
                ],
            ),
            (
                {
                    let mut b = body();
                    b["recipients"] = json!(vec!["a@example.org"; 25]);
                    b
                },
                vec!["/recipients: must NOT have more than 24 items"],
            ),
            (
                {
                    let mut b = body();
                    b["start_at"] = json!("2023-06-10T21:59:59Z");
                    b["end_at"] = json!("2026-06-05T22:00:00.001Z");
                    b
                },
                vec![
                    "/start_at: must be >= 2023-06-10T22:00:00.000Z",
                    "/end_at: must be <= 2026-06-05T22:00:00.000Z",
                ],
            ),
            (
                {
                    let mut b = body();
                    b["start_at"] = json!("2026-05-01T00:00:00Z");
                    b["end_at"] = json!("2026-05-01T00:00:00Z");
                    b
                },
                vec!["/start_at: must be before /end_at"],
            ),
            (
                {
                    let mut b = body();
                    b["geo_selector"] = json!({"aom": ["200067652"], "country": [], "com": [1]});
                    b
                },
                vec![
                    "/geo_selector: must NOT have additional properties ('country')",
                    "/geo_selector/com/0: must be string",
                    "/geo_selector/com: selecting journeys by territory is not supported by \
                     this registry",
                    "/geo_selector/aom: selecting journeys by territory is not supported by \
                     this registry",
                ],
            ),
        ];
        for (body, expected) in cases {
            let errors = validate_export_request(&body, at(NOW), true).unwrap_err();
            assert_eq!(errors, expected, "{body}");
        }
        let mut empty_selector = body();
        empty_selector["geo_selector"] = json!({"aom": [], "com": []});
        assert!(validate_export_request(&empty_selector, at(NOW), true).is_ok());
    }

    #[test]
    fn statuses_and_targets_round_trip() {
        for status in ExportStatus::ALL {
            assert_eq!(ExportStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(ExportStatus::parse("uploading"), None);
        for target in [ExportTarget::Operator, ExportTarget::Opendata] {
            assert_eq!(ExportTarget::parse(target.as_str()), Some(target));
        }
    }
}
