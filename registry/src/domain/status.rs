//! The journey status model (rpc-behaviour §7): three stored parts, one public status.
//!
//! Acquisition, fraud and anomaly are recorded independently; [`JourneyStatus::compute`] folds
//! them into the public enum with the reference's priority order.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// What happened to the journey on the way in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcquisitionStatus {
    Received,
    Updated,
    Processed,
    Failed,
    Canceled,
    /// Deprecated by the reference; read as a terms violation.
    Expired,
    TermsViolationError,
    /// The 24 h checks could not normalise it (geography, coordinates, time).
    NormalizationError,
}

/// Outcome of an asynchronous check (fraud or anomaly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    Pending,
    Passed,
    Failed,
}

/// The public status of a journey, as the reference's `status` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JourneyStatus {
    AcquisitionError,
    ValidationError,
    NormalizationError,
    TermsViolationError,
    FraudError,
    AnomalyError,
    Ok,
    Canceled,
    Pending,
    Unknown,
}

impl AcquisitionStatus {
    const ALL: [AcquisitionStatus; 8] = [
        AcquisitionStatus::Received,
        AcquisitionStatus::Updated,
        AcquisitionStatus::Processed,
        AcquisitionStatus::Failed,
        AcquisitionStatus::Canceled,
        AcquisitionStatus::Expired,
        AcquisitionStatus::TermsViolationError,
        AcquisitionStatus::NormalizationError,
    ];

    /// The storage spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AcquisitionStatus::Received => "received",
            AcquisitionStatus::Updated => "updated",
            AcquisitionStatus::Processed => "processed",
            AcquisitionStatus::Failed => "failed",
            AcquisitionStatus::Canceled => "canceled",
            AcquisitionStatus::Expired => "expired",
            AcquisitionStatus::TermsViolationError => "terms_violation_error",
            AcquisitionStatus::NormalizationError => "normalization_error",
        }
    }

    /// The status stored as `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// Whether a journey in this state counts toward the terms limits of later journeys:
    /// canceled and refused journeys do not (CONTRACT §7).
    pub fn counts_toward_terms(self) -> bool {
        !matches!(
            self,
            AcquisitionStatus::Canceled
                | AcquisitionStatus::Expired
                | AcquisitionStatus::TermsViolationError
        )
    }

    /// The stored values that do not count toward the terms limits, for SQL `NOT IN` lists.
    pub fn not_counting_toward_terms() -> impl Iterator<Item = AcquisitionStatus> {
        Self::ALL.into_iter().filter(|a| !a.counts_toward_terms())
    }
}

impl CheckStatus {
    /// The storage spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Pending => "pending",
            CheckStatus::Passed => "passed",
            CheckStatus::Failed => "failed",
        }
    }

    /// The status stored as `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        [
            CheckStatus::Pending,
            CheckStatus::Passed,
            CheckStatus::Failed,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

impl JourneyStatus {
    /// Every public status, in the reference's enum order.
    pub const ALL: [JourneyStatus; 10] = [
        JourneyStatus::FraudError,
        JourneyStatus::AnomalyError,
        JourneyStatus::ValidationError,
        JourneyStatus::AcquisitionError,
        JourneyStatus::NormalizationError,
        JourneyStatus::Ok,
        JourneyStatus::Canceled,
        JourneyStatus::Pending,
        JourneyStatus::Unknown,
        JourneyStatus::TermsViolationError,
    ];

    /// The status spelled `s` on the wire, if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|j| j.as_str() == s)
    }

    /// Every stored (acquisition, fraud, anomaly) triple whose public status is `self`: the
    /// exact inverse of [`JourneyStatus::compute`], so a listing filtered on a status finds
    /// the journeys the status route reports with it. Empty for statuses never computed from
    /// stored parts (`validation_error`, `unknown`).
    pub fn stored_parts(self) -> Vec<(AcquisitionStatus, CheckStatus, CheckStatus)> {
        let checks = [
            CheckStatus::Pending,
            CheckStatus::Passed,
            CheckStatus::Failed,
        ];
        let mut parts = Vec::new();
        for acquisition in AcquisitionStatus::ALL {
            for fraud in checks {
                for anomaly in checks {
                    if Self::compute(Some(acquisition), fraud, anomaly) == self {
                        parts.push((acquisition, fraud, anomaly));
                    }
                }
            }
        }
        parts
    }

    /// The reference's `castToStatusEnum`, first matching rule wins.
    pub fn compute(
        acquisition: Option<AcquisitionStatus>,
        fraud: CheckStatus,
        anomaly: CheckStatus,
    ) -> Self {
        use AcquisitionStatus as A;
        match acquisition {
            None => JourneyStatus::Unknown,
            Some(A::Canceled) => JourneyStatus::Canceled,
            Some(A::Expired | A::TermsViolationError) => JourneyStatus::TermsViolationError,
            Some(A::Failed) => JourneyStatus::AcquisitionError,
            Some(A::NormalizationError) => JourneyStatus::NormalizationError,
            Some(A::Processed)
                if fraud == CheckStatus::Passed && anomaly == CheckStatus::Passed =>
            {
                JourneyStatus::Ok
            }
            Some(_) if fraud == CheckStatus::Failed => JourneyStatus::FraudError,
            Some(_) if anomaly == CheckStatus::Failed => JourneyStatus::AnomalyError,
            Some(_) => JourneyStatus::Pending,
        }
    }

    /// What the lifecycle checks can give a journey they look at.
    pub const CHECKED: [JourneyStatus; 4] = [
        JourneyStatus::Ok,
        JourneyStatus::FraudError,
        JourneyStatus::AnomalyError,
        JourneyStatus::NormalizationError,
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            JourneyStatus::AcquisitionError => "acquisition_error",
            JourneyStatus::ValidationError => "validation_error",
            JourneyStatus::NormalizationError => "normalization_error",
            JourneyStatus::TermsViolationError => "terms_violation_error",
            JourneyStatus::FraudError => "fraud_error",
            JourneyStatus::AnomalyError => "anomaly_error",
            JourneyStatus::Ok => "ok",
            JourneyStatus::Canceled => "canceled",
            JourneyStatus::Pending => "pending",
            JourneyStatus::Unknown => "unknown",
        }
    }
}

/// What the registry knows about one stored journey's processing.
#[derive(Debug, Clone, PartialEq)]
pub struct JourneyState {
    /// The operator's id for the journey.
    pub operator_journey_id: String,
    /// The registry's sequential id (exposed as a string).
    pub journey_id: i64,
    /// When the registry received it.
    pub created_at: DateTime<Utc>,
    /// `None` when the stored value is not one this version knows.
    pub acquisition: Option<AcquisitionStatus>,
    /// Fraud detection outcome.
    pub fraud: CheckStatus,
    /// Anomaly detection outcome.
    pub anomaly: CheckStatus,
    /// Terms-of-use labels recorded at creation.
    pub terms_violation_labels: Vec<String>,
    /// Fraud labels, empty unless fraud was found.
    pub fraud_error_labels: Vec<String>,
    /// Anomaly labels with their details, empty unless an anomaly was found.
    pub anomaly_error_details: Vec<Value>,
}

impl JourneyState {
    /// The public status.
    pub fn status(&self) -> JourneyStatus {
        JourneyStatus::compute(self.acquisition, self.fraud, self.anomaly)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AcquisitionStatus as A;
    use CheckStatus::{Failed as F, Passed as P, Pending as W};

    #[test]
    fn public_status_follows_the_reference_priority_order() {
        let cases = [
            (None, F, F, JourneyStatus::Unknown),
            (Some(A::Canceled), F, F, JourneyStatus::Canceled),
            (Some(A::Expired), P, P, JourneyStatus::TermsViolationError),
            (
                Some(A::TermsViolationError),
                F,
                F,
                JourneyStatus::TermsViolationError,
            ),
            (Some(A::Failed), F, F, JourneyStatus::AcquisitionError),
            (Some(A::Processed), P, P, JourneyStatus::Ok),
            (Some(A::Processed), F, F, JourneyStatus::FraudError),
            (Some(A::Received), F, P, JourneyStatus::FraudError),
            (Some(A::Processed), P, F, JourneyStatus::AnomalyError),
            (Some(A::Received), P, P, JourneyStatus::Pending),
            (Some(A::Received), W, W, JourneyStatus::Pending),
            (
                Some(A::NormalizationError),
                F,
                F,
                JourneyStatus::NormalizationError,
            ),
            (Some(A::Updated), W, P, JourneyStatus::Pending),
            (Some(A::Processed), P, W, JourneyStatus::Pending),
        ];
        for (acquisition, fraud, anomaly, expected) in cases {
            assert_eq!(
                JourneyStatus::compute(acquisition, fraud, anomaly),
                expected,
                "{acquisition:?} {fraud:?} {anomaly:?}"
            );
        }
    }

    #[test]
    fn stored_parts_invert_compute() {
        let mut seen = 0;
        for status in JourneyStatus::ALL {
            for (a, f, n) in status.stored_parts() {
                assert_eq!(JourneyStatus::compute(Some(a), f, n), status);
                seen += 1;
            }
        }
        // Every stored triple belongs to exactly one status.
        assert_eq!(seen, AcquisitionStatus::ALL.len() * 3 * 3);
        assert_eq!(JourneyStatus::Ok.stored_parts(), vec![(A::Processed, P, P)]);
        assert!(JourneyStatus::ValidationError.stored_parts().is_empty());
        assert_eq!(JourneyStatus::NormalizationError.stored_parts().len(), 9);
        assert!(JourneyStatus::Unknown.stored_parts().is_empty());
    }

    #[test]
    fn canceled_and_refused_journeys_do_not_count_toward_terms() {
        let not_counting: Vec<_> = AcquisitionStatus::not_counting_toward_terms().collect();
        assert_eq!(
            not_counting,
            vec![A::Canceled, A::Expired, A::TermsViolationError]
        );
        for a in [
            A::Received,
            A::Updated,
            A::Processed,
            A::Failed,
            A::NormalizationError,
        ] {
            assert!(a.counts_toward_terms(), "{a:?}");
        }
    }

    #[test]
    fn stored_spellings_round_trip() {
        for j in JourneyStatus::ALL {
            assert_eq!(JourneyStatus::parse(j.as_str()), Some(j));
        }
        assert_eq!(JourneyStatus::parse("expired"), None);
        for a in AcquisitionStatus::ALL {
            assert_eq!(AcquisitionStatus::parse(a.as_str()), Some(a));
        }
        for c in [W, P, F] {
            assert_eq!(CheckStatus::parse(c.as_str()), Some(c));
        }
        assert_eq!(AcquisitionStatus::parse("lost"), None);
    }
}
