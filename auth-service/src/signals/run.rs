//! The minute loop: one replica of auth-service evaluates each minute (the one that claims
//! it), raises what the rules find, quarantines when a rule is set to, and every replica
//! reports the open signals in its metrics.

use super::{Rule, Thresholds, credential_rules, operator_rules};
use crate::publisher::Publisher;
use crate::store::{Audit, BlacklistRow, Named, Raised, Store, StoreError};
use blacklist::Kind;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Settings `signals`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignalSettings {
    /// Evaluates the rules (off: no new signals; the API still lists the old ones).
    pub enabled: bool,
    /// Seconds between two evaluations (each period is evaluated once across replicas).
    pub every_secs: u64,
    pub thresholds: Thresholds,
    /// Automatic quarantine, per rule name: seconds the credential is blacklisted for when
    /// that rule opens a signal (reason `auto: <rule>`). None by default. The rules about an
    /// operator (`guessing`, `off_hours`) never quarantine: staff decide.
    pub quarantine: BTreeMap<Rule, u64>,
}

impl Default for SignalSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            every_secs: 60,
            thresholds: Thresholds::default(),
            quarantine: BTreeMap::new(),
        }
    }
}

/// `auth_signals_open{rule}`, `auth_signals_raised_total{rule}`,
/// `auth_signals_quarantined_total{rule}`.
#[derive(Clone)]
pub struct SignalMetrics {
    open: IntGaugeVec,
    raised: IntCounterVec,
    quarantined: IntCounterVec,
}

impl SignalMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let open = IntGaugeVec::new(
            Opts::new(
                "auth_signals_open",
                "Signals open (not yet looked at), by rule",
            ),
            &["rule"],
        )?;
        let raised = IntCounterVec::new(
            Opts::new(
                "auth_signals_raised_total",
                "Signals opened by this replica's evaluations, by rule",
            ),
            &["rule"],
        )?;
        let quarantined = IntCounterVec::new(
            Opts::new(
                "auth_signals_quarantined_total",
                "Credentials blacklisted automatically by a rule set to quarantine, by rule",
            ),
            &["rule"],
        )?;
        for rule in Rule::ALL {
            open.with_label_values(&[rule.as_str()]);
            raised.with_label_values(&[rule.as_str()]);
            quarantined.with_label_values(&[rule.as_str()]);
        }
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(raised.clone()))?;
        registry.register(Box::new(quarantined.clone()))?;
        Ok(Self {
            open,
            raised,
            quarantined,
        })
    }
}

/// What one evaluation did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Evaluated {
    /// Another replica evaluates this minute.
    pub skipped: bool,
    pub opened: Vec<(Rule, String)>,
    pub updated: usize,
}

/// Evaluates the rules.
pub struct Watch {
    pub store: Store,
    pub publisher: Arc<Publisher>,
    pub settings: SignalSettings,
    pub metrics: SignalMetrics,
}

impl Watch {
    /// Evaluates the period (`every_secs`) `now` falls in, unless another replica did.
    pub async fn evaluate(&self, now: i64) -> Result<Evaluated, StoreError> {
        let every = i64::try_from(self.settings.every_secs.max(1)).unwrap_or(60);
        if !self
            .store
            .claim_signal_run(now - now.rem_euclid(every))
            .await?
        {
            return Ok(Evaluated {
                skipped: true,
                ..Evaluated::default()
            });
        }
        let t = &self.settings.thresholds;
        let window = i64::from(t.window_minutes.max(1)) * 60;
        let inputs = self.store.signal_inputs(now, window).await?;
        let mut done = Evaluated::default();
        let mut fired: Vec<(Rule, Named, Option<i64>, serde_json::Value)> = Vec::new();
        for (named, (operator, w, b)) in &inputs.credentials {
            for (rule, evidence) in credential_rules(w, b, t) {
                fired.push((rule, named.clone(), *operator, evidence));
            }
        }
        for (operator, o) in &inputs.operators {
            for (rule, evidence) in operator_rules(o, t) {
                let named = ("operator".to_owned(), operator.to_string());
                fired.push((rule, named, Some(*operator), evidence));
            }
        }
        for (rule, named, operator, evidence) in fired {
            match self
                .store
                .raise_signal(rule, &named, operator, &evidence, now)
                .await?
            {
                Raised::Opened(id) => {
                    self.metrics
                        .raised
                        .with_label_values(&[rule.as_str()])
                        .inc();
                    tracing::warn!(rule = rule.as_str(), subject = named.0, %id, "signal opened");
                    // Quarantine takes a credential out, never a whole operator: anyone who
                    // knows one access key could otherwise set off `guessing` against it.
                    if let Some(&secs) = self.settings.quarantine.get(&rule)
                        && named.0 != "operator"
                    {
                        self.quarantine(&id, rule, &named, secs, now).await?;
                    }
                    done.opened.push((rule, id));
                }
                Raised::Updated(_) => done.updated += 1,
                Raised::Suppressed => {}
            }
        }
        Ok(done)
    }

    /// Blacklists the credential of signal `id` for `secs`, reason `auto: <rule>`, audited.
    async fn quarantine(
        &self,
        id: &str,
        rule: Rule,
        named: &Named,
        secs: u64,
        now: i64,
    ) -> Result<(), StoreError> {
        let Some(row) = blacklist_row(
            named,
            &format!("auto: {}", rule.as_str()),
            "auth-service",
            chrono::DateTime::from_timestamp(now + i64::try_from(secs).unwrap_or(i64::MAX / 2), 0),
        ) else {
            return Ok(());
        };
        let audit = Audit {
            actor: "auth-service".into(),
            role: None,
            action: "signal.quarantine",
            target: format!("signal:{id}"),
            detail: serde_json::json!({"blacklist": row.id, "rule": rule.as_str(),
                                       "expires_at": row.expires_at}),
        };
        let note = format!("auto: {}", rule.as_str());
        let done = self
            .store
            .set_signal_state(id, true, "blacklisted", Some(&note), Some(&row), audit, now)
            .await?;
        if done {
            self.metrics
                .quarantined
                .with_label_values(&[rule.as_str()])
                .inc();
            tracing::warn!(rule = rule.as_str(), %id, "credential quarantined");
            if let Ok(kind) = row.target_kind.parse::<Kind>()
                && let Err(e) = self.publisher.publish_target(kind, &row.target_value).await
            {
                tracing::error!(error = %e, "quarantine not published yet; the copy is rewritten");
            }
        }
        Ok(())
    }

    /// Brings `auth_signals_open` up to date.
    pub async fn report(&self) -> Result<(), StoreError> {
        let open: BTreeMap<String, i64> = self
            .store
            .open_signals_by_rule()
            .await?
            .into_iter()
            .collect();
        for rule in Rule::ALL {
            let n = open.get(rule.as_str()).copied().unwrap_or(0);
            self.metrics.open.with_label_values(&[rule.as_str()]).set(n);
        }
        Ok(())
    }

    /// Evaluates every `every_secs` until `stopped` turns true.
    pub async fn run(self, mut stopped: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_secs(self.settings.every_secs.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped.wait_for(|s| *s) => return,
            }
            if self.settings.enabled
                && let Err(e) = self.evaluate(chrono::Utc::now().timestamp()).await
            {
                tracing::warn!(error = %e, "signal evaluation failed; next minute");
            }
            if let Err(e) = self.report().await {
                tracing::warn!(error = %e, "open signals not counted");
            }
        }
    }
}

/// The blacklist entry that refuses the credential `named`: an application, an API
/// credential, a user, or an operator (the rules about an operator).
pub fn blacklist_row(
    named: &Named,
    reason: &str,
    by: &str,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
) -> Option<BlacklistRow> {
    let (subject, id) = named;
    let (kind, target) = match subject.as_str() {
        "application" => ("application", Kind::Application),
        "api_credential" => ("credential", Kind::Credential),
        "user" => ("user", Kind::User),
        "operator" => ("operator", Kind::Operator),
        _ => return None,
    };
    Some(BlacklistRow {
        id: uuid::Uuid::new_v4(),
        kind: kind.into(),
        value: id.clone(),
        target_kind: target.as_str().into(),
        target_value: id.clone(),
        reason: reason.to_owned(),
        created_by: by.to_owned(),
        created_at: chrono::Utc::now(),
        expires_at,
    })
}
