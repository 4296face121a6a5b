//! Signals: what the rules read from the usage records, and the signals they raise.

use super::{Audit, BlacklistRow, INSERT_AUDIT, Store, StoreError};
use crate::signals::{
    Baseline, OperatorWindow, Rule, Window, is_guess_refusal, is_junk, let_through,
};
use chrono::Utc;
use rpc_service::on_db;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

const WEEK: i64 = 7 * 86_400;

/// A credential as the signals name it: its kind (or `operator`) and id.
pub type Named = (String, String);

/// What the rules read at one minute.
#[derive(Debug, Default)]
pub struct Inputs {
    /// Credentials used in the window, with their operator.
    pub credentials: BTreeMap<Named, (Option<i64>, Window, Baseline)>,
    pub operators: BTreeMap<i64, OperatorWindow>,
}

#[derive(sqlx::FromRow)]
struct WindowRow {
    subject: String,
    credential: String,
    operator_id: Option<i64>,
    class: String,
    outcome: String,
    requests: i64,
}

#[derive(sqlx::FromRow)]
struct CountRow {
    subject: String,
    credential: String,
    n: i64,
}

#[derive(sqlx::FromRow)]
struct OperatorHours {
    operator_id: i64,
    total: i64,
    this_hour: i64,
    first: i64,
}

/// Operators with less history than this have no usual hours yet (`off_hours` stays quiet).
const OFF_HOURS_HISTORY_SECS: i64 = 3 * WEEK;

#[derive(sqlx::FromRow)]
struct OperatorCount {
    operator_id: i64,
    n: i64,
}

/// A signal, as listed.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct SignalRow {
    pub id: String,
    pub rule: String,
    pub subject: String,
    pub credential: String,
    pub operator_id: Option<i64>,
    /// The rule's numbers and window (docs/security.md, "Signals").
    #[serde(serialize_with = "as_json")]
    #[schema(value_type = Object)]
    pub evidence: String,
    #[serde(serialize_with = "super::usage::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub first_seen: i64,
    #[serde(serialize_with = "super::usage::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last_seen: i64,
    pub state: String,
    pub note: Option<String>,
    pub updated_by: Option<String>,
    #[serde(serialize_with = "super::usage::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

fn as_json<S: serde::Serializer>(text: &str, out: S) -> Result<S::Ok, S::Error> {
    let value: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    value.serialize(out)
}

/// Which signals to list.
#[derive(Debug, Default, Clone)]
pub struct SignalFilter {
    pub state: Option<String>,
    pub rule: Option<String>,
    pub operator_id: Option<i64>,
    pub limit: i64,
}

/// What raising a signal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Raised {
    /// A new open signal, with its id.
    Opened(String),
    /// The open (or acknowledged) one was brought up to date.
    Updated(String),
    /// Dismissed or blacklisted lately: not raised again for a day.
    Suppressed,
}

/// How long a dismissal or a blacklisting keeps the same rule quiet about the same
/// credential.
const DISMISSAL_QUIET_SECS: i64 = 86_400;

impl Store {
    /// Claims the evaluation of instant `tick` (a multiple of the evaluation period) for this
    /// replica: true for the one replica that evaluates it.
    pub async fn claim_signal_run(&self, tick: i64) -> Result<bool, StoreError> {
        let sql = "INSERT INTO signal_runs (period_start) VALUES ($1) \
                   ON CONFLICT (period_start) DO NOTHING";
        let forget = "DELETE FROM signal_runs WHERE period_start < $1";
        let claimed = on_db!(&self.db, |pool| {
            let claimed = sqlx::query(sql)
                .bind(tick)
                .execute(pool)
                .await?
                .rows_affected()
                == 1;
            sqlx::query(forget)
                .bind(tick - 86_400)
                .execute(pool)
                .await?;
            Ok::<bool, sqlx::Error>(claimed)
        })?;
        Ok(claimed)
    }

    /// What the rules read at `now`: the window of `window_secs` before it, each used
    /// credential's baseline, each operator's refusals and hours.
    pub async fn signal_inputs(&self, now: i64, window_secs: i64) -> Result<Inputs, StoreError> {
        let mut inputs = Inputs::default();
        let rows: Vec<WindowRow> = on_db!(&self.db, |pool| sqlx::query_as(
            "SELECT subject, credential, MAX(operator_id) AS operator_id, class, outcome, \
             CAST(SUM(requests) AS BIGINT) AS requests FROM credential_usage \
             WHERE span = 60 AND bucket >= $1 AND bucket < $2 \
             GROUP BY subject, credential, class, outcome"
        )
        .bind(now - window_secs)
        .bind(now)
        .fetch_all(pool)
        .await)?;
        for row in rows {
            let n = u64::try_from(row.requests).unwrap_or(0);
            let (operator, window, _) = inputs
                .credentials
                .entry((row.subject, row.credential))
                .or_default();
            *operator = operator.or(row.operator_id);
            // Refused credentials have their own rules; the rate rule reads what was let
            // through the credential check.
            if let_through(&row.outcome) {
                window.requests += n;
            }
            *window.outcomes.entry(row.outcome.clone()).or_default() += n;
            if row.class == "journeys_write" {
                window.journey_writes += n;
                if is_junk(&row.outcome) {
                    window.junk_writes += n;
                }
            }
            if let Some(op) = row.operator_id
                && is_guess_refusal(&row.outcome)
            {
                inputs.operators.entry(op).or_default().refusals += n;
            }
        }
        if inputs.credentials.is_empty() {
            return Ok(inputs);
        }
        // Networks: distinct in the last hour; the most in one hour over the week before.
        let hour = |t: i64| t - t.rem_euclid(3600);
        let networks = |from: i64, to: i64| {
            let sql = "SELECT subject, credential, COUNT(DISTINCT network) AS n \
                       FROM credential_networks WHERE hour >= $1 AND hour < $2 \
                       GROUP BY subject, credential";
            async move {
                Ok::<Vec<CountRow>, StoreError>(on_db!(&self.db, |pool| sqlx::query_as(sql)
                    .bind(from)
                    .bind(to)
                    .fetch_all(pool)
                    .await)?)
            }
        };
        for row in networks(hour(now), now + 1).await? {
            if let Some((_, window, _)) = inputs.credentials.get_mut(&(row.subject, row.credential))
            {
                window.networks = u64::try_from(row.n).unwrap_or(0);
            }
        }
        let busiest: Vec<CountRow> = on_db!(&self.db, |pool| sqlx::query_as(
            "SELECT subject, credential, MAX(n) AS n FROM (SELECT subject, credential, hour, \
             COUNT(*) AS n FROM credential_networks WHERE hour >= $1 AND hour < $2 \
             GROUP BY subject, credential, hour) per_hour GROUP BY subject, credential"
        )
        .bind(hour(now) - WEEK)
        .bind(hour(now))
        .fetch_all(pool)
        .await)?;
        for row in busiest {
            if let Some((_, _, baseline)) =
                inputs.credentials.get_mut(&(row.subject, row.credential))
            {
                baseline.networks_per_hour = Some(u64::try_from(row.n).unwrap_or(0));
            }
        }
        // Rate: the same hour of the week, one to four weeks back, minutes or hours alike.
        let mut totals: HashMap<Named, Vec<i64>> = HashMap::new();
        // The clock hour, so minutes and the hours they were rolled up into count alike.
        for weeks in 1..=4 {
            let start = hour(now - weeks * WEEK);
            let rows: Vec<WindowRow> = on_db!(&self.db, |pool| sqlx::query_as(
                "SELECT subject, credential, MAX(operator_id) AS operator_id, class, outcome, \
                 CAST(SUM(requests) AS BIGINT) AS requests FROM credential_usage \
                 WHERE bucket >= $1 AND bucket < $2 GROUP BY subject, credential, class, outcome"
            )
            .bind(start)
            .bind(start + 3600)
            .fetch_all(pool)
            .await)?;
            let mut week: HashMap<Named, i64> = HashMap::new();
            for row in rows.into_iter().filter(|r| let_through(&r.outcome)) {
                *week.entry((row.subject, row.credential)).or_default() += row.requests;
            }
            for (named, n) in week.into_iter().filter(|(_, n)| *n > 0) {
                totals.entry(named).or_default().push(n);
            }
        }
        for (named, hours) in totals {
            if let Some((_, _, baseline)) = inputs.credentials.get_mut(&named) {
                baseline.weeks = hours.len() as u32;
                let mean_hour = hours.iter().sum::<i64>() as f64 / hours.len() as f64;
                baseline.window_requests = mean_hour * window_secs as f64 / 3600.0;
            }
        }
        // Operators: journeys pushed in the last hour, and their hours of the day.
        let pushed: Vec<OperatorCount> = on_db!(&self.db, |pool| sqlx::query_as(
            "SELECT operator_id, CAST(SUM(requests) AS BIGINT) AS n FROM credential_usage \
             WHERE class = 'journeys_write' AND outcome = '2xx' AND span = 60 \
             AND bucket >= $1 AND bucket < $2 AND operator_id IS NOT NULL GROUP BY operator_id"
        )
        .bind(now - 3600)
        .bind(now)
        .fetch_all(pool)
        .await)?;
        if pushed.is_empty() {
            return Ok(inputs);
        }
        let hours: Vec<OperatorHours> = on_db!(&self.db, |pool| sqlx::query_as(
            "SELECT operator_id, CAST(SUM(requests) AS BIGINT) AS total, \
             CAST(SUM(CASE WHEN (bucket % 86400) / 3600 = $3 THEN requests ELSE 0 END) \
             AS BIGINT) AS this_hour, MIN(bucket) AS first FROM credential_usage \
             WHERE class = 'journeys_write' AND outcome = '2xx' \
             AND bucket >= $1 AND bucket < $2 AND operator_id IS NOT NULL GROUP BY operator_id"
        )
        .bind(now - 3600 - 4 * WEEK)
        .bind(now - 3600)
        .bind((now - 1800).rem_euclid(86_400) / 3600)
        .fetch_all(pool)
        .await)?;
        for row in pushed {
            inputs
                .operators
                .entry(row.operator_id)
                .or_default()
                .journeys_last_hour = u64::try_from(row.n).unwrap_or(0);
        }
        for row in hours
            .into_iter()
            .filter(|h| h.first <= now - OFF_HOURS_HISTORY_SECS)
        {
            let o = inputs.operators.entry(row.operator_id).or_default();
            o.journeys_four_weeks = u64::try_from(row.total).unwrap_or(0);
            o.journeys_this_hour_of_day = u64::try_from(row.this_hour).unwrap_or(0);
        }
        Ok(inputs)
    }

    /// Raises `rule`'s signal about `named` at `now`: updates the active one (open or
    /// acknowledged) with this evidence, or opens one, unless such a signal was dismissed or
    /// blacklisted within a day.
    pub async fn raise_signal(
        &self,
        rule: Rule,
        named: &Named,
        operator_id: Option<i64>,
        evidence: &serde_json::Value,
        now: i64,
    ) -> Result<Raised, StoreError> {
        let (subject, credential) = named;
        let evidence = evidence.to_string();
        on_db!(&self.db, |pool| {
            let mut tx = pool.begin().await?;
            let active: Option<(String,)> = sqlx::query_as(
                "SELECT id FROM signals WHERE rule = $1 AND subject = $2 AND credential = $3 \
                 AND state IN ('open', 'acknowledged')",
            )
            .bind(rule.as_str())
            .bind(subject)
            .bind(credential)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((id,)) = active {
                sqlx::query("UPDATE signals SET evidence = $1, last_seen = $2 WHERE id = $3")
                    .bind(&evidence)
                    .bind(now)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                return Ok(Raised::Updated(id));
            }
            let quiet: Option<(String,)> = sqlx::query_as(
                "SELECT id FROM signals WHERE rule = $1 AND subject = $2 AND credential = $3 \
                 AND state IN ('dismissed', 'blacklisted') AND updated_at > $4",
            )
            .bind(rule.as_str())
            .bind(subject)
            .bind(credential)
            .bind(now - DISMISSAL_QUIET_SECS)
            .fetch_optional(&mut *tx)
            .await?;
            if quiet.is_some() {
                return Ok(Raised::Suppressed);
            }
            let id = uuid::Uuid::new_v4().to_string();
            // Another replica may have opened it since the look above (its period ended as
            // this one began): then this updates that one.
            let (kept,): (String,) = sqlx::query_as(
                "INSERT INTO signals (id, rule, subject, credential, operator_id, evidence, \
                 first_seen, last_seen, state, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7, 'open', $7) \
                 ON CONFLICT (rule, subject, credential) \
                 WHERE state IN ('open', 'acknowledged') \
                 DO UPDATE SET evidence = excluded.evidence, last_seen = excluded.last_seen \
                 RETURNING id",
            )
            .bind(&id)
            .bind(rule.as_str())
            .bind(subject)
            .bind(credential)
            .bind(operator_id)
            .bind(&evidence)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(if kept == id {
                Raised::Opened(id)
            } else {
                Raised::Updated(kept)
            })
        })
    }

    pub async fn signals(&self, filter: &SignalFilter) -> Result<Vec<SignalRow>, StoreError> {
        let sql = "SELECT id, rule, subject, credential, operator_id, evidence, first_seen, \
                   last_seen, state, note, updated_by, updated_at FROM signals \
                   WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR rule = $2) \
                   AND ($3 IS NULL OR operator_id = $3) \
                   ORDER BY last_seen DESC, id LIMIT $4";
        Ok(on_db!(&self.db, |pool| sqlx::query_as(sql)
            .bind(filter.state.as_deref())
            .bind(filter.rule.as_deref())
            .bind(filter.operator_id)
            .bind(filter.limit)
            .fetch_all(pool)
            .await)?)
    }

    pub async fn signal(&self, id: &str) -> Result<Option<SignalRow>, StoreError> {
        let sql = "SELECT id, rule, subject, credential, operator_id, evidence, first_seen, \
                   last_seen, state, note, updated_by, updated_at FROM signals WHERE id = $1";
        Ok(on_db!(&self.db, |pool| sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(pool)
            .await)?)
    }

    /// Moves signal `id` to `state` (from open, or from acknowledged too when
    /// `from_acknowledged`), with its audit record and, when given, the blacklist entry it
    /// leads to, in one transaction; false when the signal is in no such state.
    #[allow(clippy::too_many_arguments)]
    pub async fn set_signal_state(
        &self,
        id: &str,
        from_acknowledged: bool,
        state: &str,
        note: Option<&str>,
        blacklist: Option<&BlacklistRow>,
        audit: Audit,
        now: i64,
    ) -> Result<bool, StoreError> {
        on_db!(&self.db, |pool| {
            let mut tx = pool.begin().await?;
            let changed = sqlx::query(
                "UPDATE signals SET state = $1, note = COALESCE($2, note), updated_by = $3, \
                 updated_at = $4 WHERE id = $5 \
                 AND (state = 'open' OR ($6 AND state = 'acknowledged'))",
            )
            .bind(state)
            .bind(note)
            .bind(&audit.actor)
            .bind(now)
            .bind(id)
            .bind(from_acknowledged)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !changed {
                tx.rollback().await?;
                return Ok(false);
            }
            if let Some(row) = blacklist {
                insert_blacklist!(tx, row)?;
            }
            audit_in!(tx, audit)?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Open signals by rule.
    pub async fn open_signals_by_rule(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let sql = "SELECT rule, COUNT(*) FROM signals WHERE state = 'open' GROUP BY rule";
        Ok(on_db!(&self.db, |pool| sqlx::query_as(sql)
            .fetch_all(pool)
            .await)?)
    }
}
