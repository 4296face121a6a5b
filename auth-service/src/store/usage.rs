//! Usage records: the gateway replicas' batches applied once each, last-used times, and the
//! upkeep that rolls minutes up to hours and forgets what is past retention.

use super::{Store, StoreError};
use auth_token::usage::{Batch, Subject};
use rpc_service::on_db;
use serde::Serialize;
use std::collections::HashMap;

/// The last request of a credential, as shown beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct LastUsed {
    /// Unix milliseconds in the store; RFC 3339 in answers, like every other time.
    #[serde(rename = "at", serialize_with = "rfc3339_ms")]
    #[schema(value_type = String, format = DateTime)]
    pub at_ms: i64,
    /// The client network (`203.0.113.0/24`, `2001:db8:1::/48`).
    pub network: String,
    pub user_agent: Option<String>,
}

#[derive(sqlx::FromRow)]
struct LastUsedOf {
    credential: String,
    #[sqlx(flatten)]
    last: LastUsed,
}

/// Retention of the usage records, in seconds before `now`.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Minutes older than this are rolled up to hours.
    pub minutes_kept_secs: i64,
    /// Anything older than this is deleted.
    pub kept_secs: i64,
    /// Applied batch ids older than this are forgotten (a batch sent again later would be
    /// counted twice; gateways give up on a batch long before).
    pub batches_kept_secs: i64,
}

/// What an upkeep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Upkeep {
    pub minutes_rolled_up: u64,
    pub rows_deleted: u64,
}

impl Store {
    /// Applies `batch` once: false (and nothing written) when it was applied before. Rows are
    /// written in key order, so two replicas applying overlapping batches wait for each other
    /// instead of deadlocking.
    pub async fn apply_usage(&self, batch: &Batch, now: i64) -> Result<bool, StoreError> {
        let mut usage: Vec<_> = batch.usage.iter().collect();
        usage.sort_by(|a, b| {
            (a.subject.as_str(), &a.id, a.minute, &a.class, &a.outcome).cmp(&(
                b.subject.as_str(),
                &b.id,
                b.minute,
                &b.class,
                &b.outcome,
            ))
        });
        let mut networks: Vec<_> = batch.networks.iter().collect();
        networks.sort_by(|a, b| {
            (a.subject.as_str(), &a.id, a.hour, &a.network).cmp(&(
                b.subject.as_str(),
                &b.id,
                b.hour,
                &b.network,
            ))
        });
        let mut last: Vec<_> = batch.last_used.iter().collect();
        last.sort_by(|a, b| (a.subject.as_str(), &a.id).cmp(&(b.subject.as_str(), &b.id)));
        let seq = i64::try_from(batch.seq).unwrap_or(i64::MAX);
        on_db!(&self.db, |pool| {
            let mut tx = pool.begin().await?;
            let fresh = sqlx::query(
                "INSERT INTO usage_batches (replica, seq, received_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (replica, seq) DO NOTHING",
            )
            .bind(&batch.replica)
            .bind(seq)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !fresh {
                tx.rollback().await?;
                return Ok(false);
            }
            for row in usage {
                sqlx::query(
                    "INSERT INTO credential_usage (subject, credential, operator_id, span, \
                     bucket, class, outcome, requests, bytes_in, bytes_out) \
                     VALUES ($1, $2, $3, 60, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (subject, credential, span, bucket, class, outcome) DO UPDATE \
                     SET requests = credential_usage.requests + excluded.requests, \
                     bytes_in = credential_usage.bytes_in + excluded.bytes_in, \
                     bytes_out = credential_usage.bytes_out + excluded.bytes_out, \
                     operator_id = COALESCE(excluded.operator_id, credential_usage.operator_id)",
                )
                .bind(row.subject.as_str())
                .bind(&row.id)
                .bind(row.operator_id)
                .bind(row.minute)
                .bind(&row.class)
                .bind(&row.outcome)
                .bind(saturate(row.requests))
                .bind(saturate(row.bytes_in))
                .bind(saturate(row.bytes_out))
                .execute(&mut *tx)
                .await?;
            }
            for row in networks {
                sqlx::query(
                    "INSERT INTO credential_networks (subject, credential, hour, network, \
                     requests) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (subject, credential, hour, network) DO UPDATE \
                     SET requests = credential_networks.requests + excluded.requests",
                )
                .bind(row.subject.as_str())
                .bind(&row.id)
                .bind(row.hour)
                .bind(&row.network)
                .bind(saturate(row.requests))
                .execute(&mut *tx)
                .await?;
            }
            for row in last {
                sqlx::query(
                    "INSERT INTO credential_last_used (subject, credential, operator_id, at_ms, \
                     network, user_agent) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (subject, credential) DO UPDATE \
                     SET at_ms = excluded.at_ms, network = excluded.network, \
                     user_agent = excluded.user_agent, \
                     operator_id = COALESCE(excluded.operator_id, credential_last_used.operator_id) \
                     WHERE excluded.at_ms >= credential_last_used.at_ms",
                )
                .bind(row.subject.as_str())
                .bind(&row.id)
                .bind(row.operator_id)
                .bind(row.at_ms)
                .bind(&row.network)
                .bind(row.user_agent.as_deref().map(cut_user_agent))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Counts one request refused by auth-service itself for a known credential (a wrong
    /// secret for a live API credential, a blacklisted one presented): the gateway saw an
    /// anonymous request and cannot name it. `at` is unix seconds.
    pub async fn record_refusal(
        &self,
        subject: Subject,
        credential: &str,
        operator_id: Option<i64>,
        class: &str,
        outcome: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO credential_usage (subject, credential, operator_id, span, bucket, \
                   class, outcome, requests, bytes_in, bytes_out) \
                   VALUES ($1, $2, $3, 60, $4, $5, $6, 1, 0, 0) \
                   ON CONFLICT (subject, credential, span, bucket, class, outcome) DO UPDATE \
                   SET requests = credential_usage.requests + 1";
        on_db!(&self.db, |pool| sqlx::query(sql)
            .bind(subject.as_str())
            .bind(credential)
            .bind(operator_id)
            .bind(at - at.rem_euclid(60))
            .bind(class)
            .bind(outcome)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// The last use of every credential of `subject` (of one operator, or all), by id.
    pub async fn last_used(
        &self,
        subject: Subject,
        operator_id: Option<i64>,
    ) -> Result<HashMap<String, LastUsed>, StoreError> {
        let all = "SELECT credential, at_ms, network, user_agent FROM credential_last_used \
                   WHERE subject = $1";
        let one = "SELECT credential, at_ms, network, user_agent FROM credential_last_used \
                   WHERE subject = $1 AND operator_id = $2";
        let rows: Vec<LastUsedOf> = on_db!(&self.db, |pool| match operator_id {
            Some(id) => {
                sqlx::query_as(one)
                    .bind(subject.as_str())
                    .bind(id)
                    .fetch_all(pool)
                    .await
            }
            None => {
                sqlx::query_as(all)
                    .bind(subject.as_str())
                    .fetch_all(pool)
                    .await
            }
        })?;
        Ok(rows.into_iter().map(|r| (r.credential, r.last)).collect())
    }

    /// The last use of one credential.
    pub async fn last_used_of(
        &self,
        subject: Subject,
        credential: &str,
    ) -> Result<Option<LastUsed>, StoreError> {
        let sql = "SELECT at_ms, network, user_agent FROM credential_last_used \
                   WHERE subject = $1 AND credential = $2";
        Ok(on_db!(&self.db, |pool| sqlx::query_as(sql)
            .bind(subject.as_str())
            .bind(credential)
            .fetch_optional(pool)
            .await)?)
    }

    /// The client networks one credential was used from since `from`, busiest first.
    pub async fn networks_of(
        &self,
        subject: Subject,
        credential: &str,
        from: i64,
    ) -> Result<Vec<NetworkSeen>, StoreError> {
        let sql = "SELECT network, CAST(SUM(requests) AS BIGINT) AS requests, \
                   MIN(hour) AS first_hour, MAX(hour) AS last_hour FROM credential_networks \
                   WHERE subject = $1 AND credential = $2 AND hour >= $3 \
                   GROUP BY network ORDER BY requests DESC, network LIMIT 500";
        Ok(on_db!(&self.db, |pool| sqlx::query_as(sql)
            .bind(subject.as_str())
            .bind(credential)
            .bind(from - from.rem_euclid(3600))
            .fetch_all(pool)
            .await)?)
    }

    /// Requests per outcome of one credential over `[from, to)`, per minute or hour bucket,
    /// whichever is stored.
    pub async fn usage_of(
        &self,
        subject: Subject,
        credential: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<UsageBucket>, StoreError> {
        let sql = "SELECT span, bucket, class, outcome, requests, bytes_in, bytes_out \
                   FROM credential_usage WHERE subject = $1 AND credential = $2 \
                   AND bucket >= $3 AND bucket < $4 ORDER BY bucket, class, outcome";
        Ok(on_db!(&self.db, |pool| sqlx::query_as(sql)
            .bind(subject.as_str())
            .bind(credential)
            .bind(from)
            .bind(to)
            .fetch_all(pool)
            .await)?)
    }

    /// Rolls minutes older than the retention's up to hours, deletes what is past it. One
    /// replica at a time (the upkeep row is updated first, in the same transaction).
    pub async fn usage_upkeep(&self, now: i64, keep: Retention) -> Result<Upkeep, StoreError> {
        let hour_cut = |secs: i64| {
            let t = now - secs;
            t - t.rem_euclid(3600)
        };
        let minutes_before = hour_cut(keep.minutes_kept_secs);
        let kept_after = hour_cut(keep.kept_secs);
        let batches_after = now - keep.batches_kept_secs;
        let postgres = matches!(self.db, rpc_service::db::Database::Postgres(_));
        on_db!(&self.db, |pool| {
            let mut tx = pool.begin().await?;
            if postgres {
                // The roll-up and the deletion see one snapshot: a minute row written between
                // them is neither rolled up nor deleted (it is the next upkeep's), and one
                // changed between them fails this upkeep, which runs again later. SQLite has
                // one writer: this transaction holds it from its first write.
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("UPDATE usage_upkeep SET ran_at = $1 WHERE id = 1")
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let rolled = sqlx::query(
                "INSERT INTO credential_usage (subject, credential, operator_id, span, bucket, \
                 class, outcome, requests, bytes_in, bytes_out) \
                 SELECT subject, credential, MAX(operator_id), 3600, bucket - bucket % 3600, \
                 class, outcome, SUM(requests), SUM(bytes_in), SUM(bytes_out) \
                 FROM credential_usage WHERE span = 60 AND bucket < $1 \
                 GROUP BY subject, credential, bucket - bucket % 3600, class, outcome \
                 ON CONFLICT (subject, credential, span, bucket, class, outcome) DO UPDATE \
                 SET requests = credential_usage.requests + excluded.requests, \
                 bytes_in = credential_usage.bytes_in + excluded.bytes_in, \
                 bytes_out = credential_usage.bytes_out + excluded.bytes_out",
            )
            .bind(minutes_before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            // The minutes just rolled up are not lost: not counted as deleted.
            sqlx::query("DELETE FROM credential_usage WHERE span = 60 AND bucket < $1")
                .bind(minutes_before)
                .execute(&mut *tx)
                .await?;
            let mut deleted = 0;
            for (sql, before) in [
                ("DELETE FROM credential_usage WHERE bucket < $1", kept_after),
                (
                    "DELETE FROM credential_networks WHERE hour < $1",
                    kept_after,
                ),
                (
                    "DELETE FROM credential_last_used WHERE at_ms < $1",
                    kept_after.saturating_mul(1000),
                ),
                (
                    "DELETE FROM usage_batches WHERE received_at < $1",
                    batches_after,
                ),
            ] {
                deleted += sqlx::query(sql)
                    .bind(before)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            tx.commit().await?;
            Ok(Upkeep {
                minutes_rolled_up: rolled,
                rows_deleted: deleted,
            })
        })
    }
}

/// A client network one credential was used from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct NetworkSeen {
    pub network: String,
    pub requests: i64,
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub first_hour: i64,
    #[serde(serialize_with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last_hour: i64,
}

/// Requests of one credential in one bucket, route class and outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct UsageBucket {
    /// 60 (a minute) or 3600 (an hour, rolled up).
    pub span: i32,
    /// The bucket's first second (unix).
    pub bucket: i64,
    pub class: String,
    pub outcome: String,
    pub requests: i64,
    pub bytes_in: i64,
    pub bytes_out: i64,
}

/// A user agent of at most 256 bytes (the gateway cuts them so; a batch from elsewhere
/// cannot store more).
fn cut_user_agent(agent: &str) -> &str {
    let mut end = agent.len().min(256);
    while !agent.is_char_boundary(end) {
        end -= 1;
    }
    &agent[..end]
}

/// Counts are unsigned on the wire and signed in SQL.
fn saturate(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn rfc3339_ms<S: serde::Serializer>(at_ms: &i64, out: S) -> Result<S::Ok, S::Error> {
    match chrono::DateTime::from_timestamp_millis(*at_ms) {
        Some(at) => at.serialize(out),
        None => out.serialize_none(),
    }
}

pub(super) fn rfc3339<S: serde::Serializer>(at: &i64, out: S) -> Result<S::Ok, S::Error> {
    match chrono::DateTime::from_timestamp(*at, 0) {
        Some(at) => at.serialize(out),
        None => out.serialize_none(),
    }
}
