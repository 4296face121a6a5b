//! `POST /internal/usage`: a gateway replica's usage batch ([`auth_token::usage`]).
//!
//! Only the gateway's own assertion ([`Principal::gateway`]) is taken; the gateway never
//! routes this path for a client, and any other principal gets the 404 of an unknown path.

use super::session::internal;
use super::{State, Who, no_content, run};
use auth_token::Principal;
use auth_token::usage::Batch;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use rpc_service::RpcError;
use warp::reply::Response;
use warp::{Filter, Rejection};

/// A batch is at most [`auth_token::usage::MAX_ROWS_PER_BATCH`] rows of a few hundred bytes.
const BODY_LIMIT: u64 = 2 * 1024 * 1024;

/// Batches taken, by outcome, and rows applied.
#[derive(Clone)]
pub(super) struct UsageMetrics {
    applied: IntCounter,
    repeated: IntCounter,
    rows: IntCounter,
}

impl UsageMetrics {
    /// The counters, registered in `registry` (a registry that has them already keeps
    /// its own, and these count unseen: said in the log).
    pub(super) fn new(registry: &Registry) -> Self {
        let batches = IntCounterVec::new(
            Opts::new(
                "auth_usage_batches_total",
                "Usage batches from gateway replicas, by outcome (applied; repeated: applied \
                 before, sent again after a lost answer)",
            ),
            &["outcome"],
        )
        .expect("a valid metric");
        let rows = IntCounter::new(
            "auth_usage_rows_total",
            "Usage rows applied from gateway replicas' batches",
        )
        .expect("a valid metric");
        for metric in [
            Box::new(batches.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(rows.clone()),
        ] {
            if let Err(e) = registry.register(metric) {
                tracing::error!(error = %e, "usage metrics not registered");
            }
        }
        Self {
            applied: batches.with_label_values(&["applied"]),
            repeated: batches.with_label_values(&["repeated"]),
            rows,
        }
    }
}

pub(super) fn routes(
    state: State,
    who: Who,
    metrics: UsageMetrics,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("internal" / "usage")
        .and(warp::post())
        .and(who)
        .and(rpc_service::body::object::<Batch>(BODY_LIMIT))
        .and_then(move |p, batch| run(take(state.clone(), metrics.clone(), p, batch)))
}

async fn take(
    state: State,
    metrics: UsageMetrics,
    p: Principal,
    batch: Batch,
) -> Result<Response, RpcError> {
    if !p.is_gateway() {
        return Err(RpcError::not_found());
    }
    let applied = state
        .0
        .store
        .apply_usage(&batch, chrono::Utc::now().timestamp())
        .await
        .map_err(internal)?;
    if applied {
        metrics.applied.inc();
        metrics.rows.inc_by(batch.rows() as u64);
    } else {
        metrics.repeated.inc();
    }
    Ok(no_content())
}
