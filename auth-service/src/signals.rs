//! Signals: the rules that read the usage records every minute and name a credential whose
//! use looks abnormal. Each rule is a plain function of what the records say ([`Window`],
//! [`Baseline`], [`OperatorWindow`]) and its [`Thresholds`]; it answers the evidence when it
//! fires. Defaults are argued in docs/security.md, "Signals".
//!
//! What runs them, stores the signals and quarantines is [`crate::store`] (SQL) and
//! [`run`] (the minute loop); nothing else here does I/O.

mod run;

pub use run::{Evaluated, SignalMetrics, SignalSettings, Watch, blacklist_row};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The rules, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Requests far above the credential's own baseline for this hour of the week (or above
    /// a fixed ceiling for a credential without one).
    RateOverBaseline,
    /// Many more client networks than the credential's baseline (a token copied to many
    /// machines).
    ManyNetworks,
    /// A revoked or blacklisted credential still being tried.
    RevokedStillTried,
    /// Many refusals (401, 403) across an operator's credentials: someone guessing.
    Guessing,
    /// A high share of journeys refused as junk, duplicates or breaches (400, 409, 422).
    JunkJourneys,
    /// Journeys pushed far outside the operator's usual hours.
    OffHours,
}

impl Rule {
    pub const ALL: [Rule; 6] = [
        Rule::RateOverBaseline,
        Rule::ManyNetworks,
        Rule::RevokedStillTried,
        Rule::Guessing,
        Rule::JunkJourneys,
        Rule::OffHours,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::RateOverBaseline => "rate_over_baseline",
            Rule::ManyNetworks => "many_networks",
            Rule::RevokedStillTried => "revoked_still_tried",
            Rule::Guessing => "guessing",
            Rule::JunkJourneys => "junk_journeys",
            Rule::OffHours => "off_hours",
        }
    }

    pub fn parse(text: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// The thresholds of every rule (settings `signals.thresholds`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Minutes every rule but `many_networks` and `off_hours` looks back over.
    pub window_minutes: u32,
    /// `rate_over_baseline`: requests in the window above this many times the baseline...
    pub rate_factor: f64,
    /// ...and above this many (a quiet credential doubling from 3 to 6 is no signal).
    pub rate_min_requests: u64,
    /// `rate_over_baseline` for a credential with no week of history: requests in the window.
    pub new_credential_ceiling: u64,
    /// `many_networks`: distinct client networks this hour above this many times the most
    /// seen in an hour over the last week...
    pub networks_factor: f64,
    /// ...and at least this many.
    pub networks_min: u64,
    /// `revoked_still_tried`: attempts in the window.
    pub revoked_min_attempts: u64,
    /// `guessing`: refusals (401, 403) across an operator's credentials in the window.
    pub guessing_min_refusals: u64,
    /// `junk_journeys`: share of journey writes refused with 400, 409 or 422...
    pub junk_share: f64,
    /// ...out of at least this many journey writes in the window.
    pub junk_min_requests: u64,
    /// `off_hours`: journeys pushed in the last hour at an hour of the day that held less
    /// than this share of the operator's journeys over the last four weeks...
    pub off_hours_share: f64,
    /// ...when at least this many were pushed.
    pub off_hours_min_requests: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            window_minutes: 10,
            rate_factor: 5.0,
            rate_min_requests: 300,
            new_credential_ceiling: 3000,
            networks_factor: 3.0,
            networks_min: 8,
            revoked_min_attempts: 5,
            guessing_min_refusals: 50,
            junk_share: 0.5,
            junk_min_requests: 20,
            off_hours_share: 0.01,
            off_hours_min_requests: 100,
        }
    }
}

/// What one credential did in the window (and this hour, for networks).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    /// Requests let through the credential check (a revoked credential's attempts are
    /// counted in `outcomes` only).
    pub requests: u64,
    /// Requests by outcome (`2xx`, `409`, `revoked_token`, ...).
    pub outcomes: BTreeMap<String, u64>,
    /// Journey writes (route class `journeys_write`) and, of them, those answered 400, 409
    /// or 422.
    pub journey_writes: u64,
    pub junk_writes: u64,
    /// Distinct client networks this clock hour (since its start).
    pub networks: u64,
}

impl Window {
    fn outcome(&self, label: &str) -> u64 {
        self.outcomes.get(label).copied().unwrap_or(0)
    }

    /// 422 answers, whatever terms label the registry named.
    fn terms_refusals(&self) -> u64 {
        self.outcomes
            .iter()
            .filter(|(k, _)| *k == "422" || k.starts_with("422:"))
            .map(|(_, n)| n)
            .sum()
    }
}

/// The credential's history for comparison.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Baseline {
    /// Weeks (of the last four) in which the credential was used at this hour of the week.
    pub weeks: u32,
    /// Mean requests per window at this hour of the week, over those weeks.
    pub window_requests: f64,
    /// Most distinct networks in one clock hour over the week before this one; `None`
    /// without any.
    pub networks_per_hour: Option<u64>,
}

/// What every credential of one operator did in the window, and the operator's hours.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OperatorWindow {
    /// 401 and 403 refusals of its credentials (the gateway's and the upstreams').
    pub refusals: u64,
    /// Journeys pushed in the last hour.
    pub journeys_last_hour: u64,
    /// Journeys pushed at this hour of the day over the last four weeks, and in all.
    pub journeys_this_hour_of_day: u64,
    pub journeys_four_weeks: u64,
}

/// `rate_over_baseline`.
pub fn rate_over_baseline(w: &Window, b: &Baseline, t: &Thresholds) -> Option<Value> {
    if b.weeks == 0 {
        return (w.requests > t.new_credential_ceiling).then(|| {
            json!({"requests": w.requests, "window_minutes": t.window_minutes,
                   "baseline": null, "ceiling": t.new_credential_ceiling})
        });
    }
    let limit = (b.window_requests * t.rate_factor).max(t.rate_min_requests as f64);
    (w.requests as f64 > limit).then(|| {
        json!({"requests": w.requests, "window_minutes": t.window_minutes,
               "baseline": round(b.window_requests), "baseline_weeks": b.weeks,
               "factor": round(w.requests as f64 / b.window_requests.max(1.0))})
    })
}

/// `many_networks`.
pub fn many_networks(w: &Window, b: &Baseline, t: &Thresholds) -> Option<Value> {
    let usual = b.networks_per_hour.unwrap_or(0);
    let limit = ((usual as f64) * t.networks_factor).max(t.networks_min as f64);
    (w.networks as f64 > limit).then(|| {
        json!({"networks_this_hour": w.networks, "usual_most_per_hour": b.networks_per_hour,
               "limit": round(limit)})
    })
}

/// `revoked_still_tried`.
pub fn revoked_still_tried(w: &Window, t: &Thresholds) -> Option<Value> {
    let attempts = w.outcome("revoked_token");
    (attempts >= t.revoked_min_attempts)
        .then(|| json!({"attempts": attempts, "window_minutes": t.window_minutes}))
}

/// `junk_journeys`.
pub fn junk_journeys(w: &Window, t: &Thresholds) -> Option<Value> {
    if w.journey_writes < t.junk_min_requests {
        return None;
    }
    let share = w.junk_writes as f64 / w.journey_writes as f64;
    (share >= t.junk_share).then(|| {
        json!({"journey_writes": w.journey_writes, "refused": w.junk_writes,
               "share": round(share), "by_status": {
                   "400": w.outcome("400"), "409": w.outcome("409"), "422": w.terms_refusals()},
               "window_minutes": t.window_minutes})
    })
}

/// `guessing`.
pub fn guessing(o: &OperatorWindow, t: &Thresholds) -> Option<Value> {
    (o.refusals >= t.guessing_min_refusals)
        .then(|| json!({"refusals": o.refusals, "window_minutes": t.window_minutes}))
}

/// `off_hours`: needs the operator's journeys of the last four weeks (the store gives none
/// for an operator with less than three weeks of them) to say what is usual.
pub fn off_hours(o: &OperatorWindow, t: &Thresholds) -> Option<Value> {
    if o.journeys_four_weeks == 0 || o.journeys_last_hour < t.off_hours_min_requests {
        return None;
    }
    let share = o.journeys_this_hour_of_day as f64 / o.journeys_four_weeks as f64;
    (share < t.off_hours_share).then(|| {
        json!({"journeys_last_hour": o.journeys_last_hour,
               "usual_share_of_this_hour": round(share),
               "journeys_four_weeks": o.journeys_four_weeks})
    })
}

/// Every credential rule that fires for `w`.
pub fn credential_rules(w: &Window, b: &Baseline, t: &Thresholds) -> Vec<(Rule, Value)> {
    [
        (Rule::RateOverBaseline, rate_over_baseline(w, b, t)),
        (Rule::ManyNetworks, many_networks(w, b, t)),
        (Rule::RevokedStillTried, revoked_still_tried(w, t)),
        (Rule::JunkJourneys, junk_journeys(w, t)),
    ]
    .into_iter()
    .filter_map(|(rule, evidence)| Some((rule, evidence?)))
    .collect()
}

/// Every operator rule that fires for `o`.
pub fn operator_rules(o: &OperatorWindow, t: &Thresholds) -> Vec<(Rule, Value)> {
    [
        (Rule::Guessing, guessing(o, t)),
        (Rule::OffHours, off_hours(o, t)),
    ]
    .into_iter()
    .filter_map(|(rule, evidence)| Some((rule, evidence?)))
    .collect()
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Outcomes that count as refusals for `guessing`: the gateway's credential refusals, the
/// upstreams' 401 and 403, and a wrong secret for a live API credential (`bad_secret`,
/// recorded by auth-service). A revoked credential has its own rule.
pub fn is_guess_refusal(outcome: &str) -> bool {
    matches!(
        outcome,
        "401"
            | "403"
            | "token_not_accepted_here"
            | "insufficient_permissions"
            | "csrf_failed"
            | "bad_secret"
    )
}

/// Whether a request with this outcome got through the credential check (what the rate rule
/// counts): not a refused credential, not a gateway that could not check.
pub fn let_through(outcome: &str) -> bool {
    !is_guess_refusal(outcome) && !matches!(outcome, "revoked_token" | "blacklist_unavailable")
}

/// Outcomes of a journey write that count as junk for `junk_journeys`.
pub fn is_junk(outcome: &str) -> bool {
    matches!(outcome, "400" | "409" | "422") || outcome.starts_with("422:")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(requests: u64, outcomes: &[(&str, u64)]) -> Window {
        Window {
            requests,
            outcomes: outcomes.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ..Window::default()
        }
    }

    fn baseline(weeks: u32, window_requests: f64) -> Baseline {
        Baseline {
            weeks,
            window_requests,
            networks_per_hour: Some(2),
        }
    }

    #[test]
    fn rate_over_baseline_fires_far_above_the_usual_and_for_new_credentials_above_a_ceiling() {
        let t = Thresholds::default();
        let cases = [
            ("usual", 120, baseline(4, 100.0), false),
            ("five times, but few", 250, baseline(4, 40.0), false),
            ("five times and many", 2001, baseline(4, 400.0), true),
            ("just at five times", 2000, baseline(4, 400.0), false),
            ("quiet credential bursting", 301, baseline(1, 10.0), true),
            ("new, under the ceiling", 2999, baseline(0, 0.0), false),
            ("new, over the ceiling", 3001, baseline(0, 0.0), true),
        ];
        for (name, requests, b, fires) in cases {
            let got = rate_over_baseline(&window(requests, &[]), &b, &t);
            assert_eq!(got.is_some(), fires, "{name}: {got:?}");
        }
        let evidence = rate_over_baseline(&window(2001, &[]), &baseline(4, 400.0), &t).unwrap();
        assert_eq!(evidence["baseline"], 400.0);
        assert_eq!(evidence["requests"], 2001);
    }

    #[test]
    fn many_networks_fires_for_a_token_copied_to_many_machines() {
        let t = Thresholds::default();
        let with = |networks, usual| {
            let w = Window {
                networks,
                ..Window::default()
            };
            let b = Baseline {
                networks_per_hour: usual,
                ..Baseline::default()
            };
            many_networks(&w, &b, &t).is_some()
        };
        assert!(!with(2, Some(2)), "as usual");
        assert!(!with(8, Some(1)), "at the floor");
        assert!(with(9, Some(1)), "past the floor");
        assert!(!with(20, Some(7)), "under three times a busy usual");
        assert!(with(22, Some(7)), "past three times");
        assert!(with(9, None), "no history: the floor");
    }

    #[test]
    fn a_revoked_credential_tried_again_and_again_fires() {
        let t = Thresholds::default();
        assert!(revoked_still_tried(&window(4, &[("revoked_token", 4)]), &t).is_none());
        let got = revoked_still_tried(&window(5, &[("revoked_token", 5)]), &t).unwrap();
        assert_eq!(got["attempts"], 5);
    }

    #[test]
    fn junk_journeys_fires_on_a_high_share_of_refused_writes() {
        let t = Thresholds::default();
        let writes = |writes, junk| Window {
            journey_writes: writes,
            junk_writes: junk,
            ..window(writes, &[("409", junk)])
        };
        assert!(junk_journeys(&writes(19, 19), &t).is_none(), "too few");
        assert!(junk_journeys(&writes(100, 49), &t).is_none(), "under half");
        let got = junk_journeys(&writes(100, 50), &t).unwrap();
        assert_eq!(
            (got["share"].as_f64(), &got["by_status"]["409"]),
            (Some(0.5), &json!(50))
        );
    }

    #[test]
    fn guessing_and_off_hours_read_the_operator() {
        let t = Thresholds::default();
        let o = |refusals, last_hour, this_hour, four_weeks| OperatorWindow {
            refusals,
            journeys_last_hour: last_hour,
            journeys_this_hour_of_day: this_hour,
            journeys_four_weeks: four_weeks,
        };
        assert!(guessing(&o(49, 0, 0, 0), &t).is_none());
        assert!(guessing(&o(50, 0, 0, 0), &t).is_some());
        // 3 a.m.: 0.5 % of four weeks' journeys usually; 150 pushed in the last hour.
        assert!(off_hours(&o(0, 150, 500, 100_000), &t).is_some());
        assert!(off_hours(&o(0, 99, 500, 100_000), &t).is_none(), "few");
        assert!(
            off_hours(&o(0, 150, 5_000, 100_000), &t).is_none(),
            "a usual hour"
        );
        assert!(off_hours(&o(0, 150, 0, 0), &t).is_none(), "no history");
        let fired: Vec<_> = operator_rules(&o(60, 150, 0, 100_000), &t)
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        assert_eq!(fired, [Rule::Guessing, Rule::OffHours]);
    }

    #[test]
    fn rules_have_stable_names() {
        for rule in Rule::ALL {
            assert_eq!(Rule::parse(rule.as_str()), Some(rule));
            let json = serde_json::to_value(rule).unwrap();
            assert_eq!(json, rule.as_str());
        }
        assert!(is_guess_refusal("403") && !is_guess_refusal("revoked_token"));
        assert!(let_through("2xx") && let_through("409") && let_through("rate_limited"));
        assert!(!let_through("revoked_token") && !let_through("bad_secret") && !let_through("403"));
        assert!(is_junk("422") && is_junk("422:too_close_trips") && !is_junk("2xx"));
    }
}
