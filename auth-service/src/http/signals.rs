//! Signals for security staff (`registry.security`, `registry.admin`): `GET /admin/signals`,
//! `POST /admin/signals/{id}/acknowledge`, `/dismiss` (with a note) and `/blacklist` (through
//! the blacklist, with the signal as its reason); and what one credential did,
//! `GET /admin/usage/{subject}/{id}`. Every action is audited.

use super::session::{internal, publish_target};
use super::{State, Who, audit, json, optional_body, require, run};
use crate::signals::{Rule, blacklist_row};
use crate::store::{SignalFilter, SignalRow};
use auth_token::usage::Subject;
use auth_token::{Permission, Principal};
use blacklist::Kind;
use chrono::{DateTime, Utc};
use rpc_service::RpcError;
use serde::Deserialize;
use serde_json::json as j;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

const STATES: [&str; 4] = ["open", "acknowledged", "dismissed", "blacklisted"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    rule: Option<String>,
    operator_id: Option<i64>,
    limit: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Note {
    note: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Blacklisting {
    /// Added to the entry's reason (which names the signal and its rule).
    reason: Option<String>,
    expires_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageQuery {
    /// Hours back from now (default 24, at most 24 × 90).
    hours: Option<i64>,
}

pub(super) fn routes(
    state: State,
    who: Who,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let (s1, s2, s3, s4) = (state.clone(), state.clone(), state.clone(), state.clone());
    let list = warp::path!("admin" / "signals")
        .and(warp::get())
        .and(who.clone())
        .and(rpc_service::body::query::<ListQuery>())
        .and_then(move |p, q| run(list(s1.clone(), p, q)));
    let acknowledge = warp::path!("admin" / "signals" / String / "acknowledge")
        .and(warp::post())
        .and(who.clone())
        .and(optional_body::<Note>())
        .and_then(move |id, p, n| run(acknowledge(s2.clone(), id, p, n)));
    let dismiss = warp::path!("admin" / "signals" / String / "dismiss")
        .and(warp::post())
        .and(who.clone())
        .and(optional_body::<Note>())
        .and_then(move |id, p, n| run(dismiss(s3.clone(), id, p, n)));
    let blacklist = warp::path!("admin" / "signals" / String / "blacklist")
        .and(warp::post())
        .and(who.clone())
        .and(optional_body::<Blacklisting>())
        .and_then(move |id, p, b| run(blacklist(s4.clone(), id, p, b)));
    let usage = warp::path!("admin" / "usage" / String / String)
        .and(warp::get())
        .and(who)
        .and(rpc_service::body::query::<UsageQuery>())
        .and_then(move |subject, id, p, q| run(usage(state.clone(), subject, id, p, q)));
    list.or(acknowledge)
        .unify()
        .or(dismiss)
        .unify()
        .or(blacklist)
        .unify()
        .or(usage)
        .unify()
}

async fn list(state: State, p: Principal, q: ListQuery) -> Result<Response, RpcError> {
    require(&p, Permission::Blacklist)?;
    let mut errors = Vec::new();
    if q.state.as_deref().is_some_and(|s| !STATES.contains(&s)) {
        errors.push(format!("/state: must be one of {}", STATES.join(", ")));
    }
    if q.rule.as_deref().is_some_and(|r| Rule::parse(r).is_none()) {
        let names: Vec<_> = Rule::ALL.iter().map(|r| r.as_str()).collect();
        errors.push(format!("/rule: must be one of {}", names.join(", ")));
    }
    if !errors.is_empty() {
        return Err(RpcError::invalid_params(errors));
    }
    let filter = SignalFilter {
        state: q.state,
        rule: q.rule,
        operator_id: q.operator_id,
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    let rows = state.0.store.signals(&filter).await.map_err(internal)?;
    Ok(json(StatusCode::OK, &rows))
}

/// The signal, or 404.
async fn found(state: &State, id: &str) -> Result<SignalRow, RpcError> {
    state
        .0
        .store
        .signal(id)
        .await
        .map_err(internal)?
        .ok_or_else(RpcError::not_found)
}

/// A note of at most 1024 characters, trimmed; `None` when blank.
fn note(text: Option<String>) -> Result<Option<String>, RpcError> {
    free_text(text, "note")
}

/// The free text of the body's field `field`, at most 1024 characters, trimmed; `None`
/// when blank. A refusal names that field.
fn free_text(text: Option<String>, field: &str) -> Result<Option<String>, RpcError> {
    let text = text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
    if text.as_ref().is_some_and(|t| t.chars().count() > 1024) {
        return Err(RpcError::invalid_params(vec![format!(
            "/{field}: at most 1024 characters"
        )]));
    }
    Ok(text)
}

/// Moves the signal, audited; 409 `signal_not_active` when it is past that state.
async fn transition(
    state: &State,
    p: &Principal,
    id: &str,
    from_acknowledged: bool,
    to: &str,
    note: Option<&str>,
    entry: Option<&crate::store::BlacklistRow>,
) -> Result<SignalRow, RpcError> {
    let signal = found(state, id).await?;
    let record = audit(
        p,
        match to {
            "acknowledged" => "signal.acknowledge",
            "dismissed" => "signal.dismiss",
            _ => "signal.blacklist",
        },
        format!("signal:{id}"),
        j!({"rule": signal.rule, "subject": signal.subject, "credential": signal.credential,
            "note": note, "blacklist": entry.map(|e| e.id)}),
    );
    let moved = state
        .0
        .store
        .set_signal_state(
            id,
            from_acknowledged,
            to,
            note,
            entry,
            record,
            Utc::now().timestamp(),
        )
        .await
        .map_err(internal)?;
    if !moved {
        return Err(RpcError::conflict("signal_not_active"));
    }
    found(state, id).await
}

async fn acknowledge(
    state: State,
    id: String,
    p: Principal,
    n: Note,
) -> Result<Response, RpcError> {
    require(&p, Permission::Blacklist)?;
    let note = note(n.note)?;
    let row = transition(
        &state,
        &p,
        &id,
        false,
        "acknowledged",
        note.as_deref(),
        None,
    )
    .await?;
    Ok(json(StatusCode::OK, &row))
}

async fn dismiss(state: State, id: String, p: Principal, n: Note) -> Result<Response, RpcError> {
    require(&p, Permission::Blacklist)?;
    let Some(note) = note(n.note)? else {
        return Err(RpcError::invalid_params(vec![
            ": must have required property 'note'".to_string(),
        ]));
    };
    let row = transition(&state, &p, &id, true, "dismissed", Some(&note), None).await?;
    Ok(json(StatusCode::OK, &row))
}

async fn blacklist(
    state: State,
    id: String,
    p: Principal,
    b: Blacklisting,
) -> Result<Response, RpcError> {
    require(&p, Permission::Blacklist)?;
    if b.expires_at.is_some_and(|t| t <= Utc::now()) {
        return Err(RpcError::invalid_params(vec![
            "/expires_at: must be in the future".to_string(),
        ]));
    }
    let extra = free_text(b.reason, "reason")?;
    let signal = found(&state, &id).await?;
    let mut reason = format!("signal {id}: {}", signal.rule);
    if let Some(extra) = &extra {
        reason = format!("{reason}: {extra}");
    }
    let named = (signal.subject.clone(), signal.credential.clone());
    let Some(entry) = blacklist_row(&named, &reason, &p.id, b.expires_at) else {
        return Err(RpcError::conflict("signal_not_blacklistable"));
    };
    let row = transition(
        &state,
        &p,
        &id,
        true,
        "blacklisted",
        extra.as_deref(),
        Some(&entry),
    )
    .await?;
    if let Ok(kind) = entry.target_kind.parse::<Kind>() {
        publish_target(&state, kind, &entry.target_value).await?;
    }
    Ok(json(StatusCode::OK, &row))
}

/// Per minute (hours kept as hours), by class and outcome, with the networks and last use.
async fn usage(
    state: State,
    subject: String,
    id: String,
    p: Principal,
    q: UsageQuery,
) -> Result<Response, RpcError> {
    require(&p, Permission::Blacklist)?;
    let Some(subject) = Subject::parse(&subject) else {
        return Err(RpcError::not_found());
    };
    let hours = q.hours.unwrap_or(24).clamp(1, 24 * 90);
    let now = Utc::now().timestamp();
    let store = &state.0.store;
    let buckets = store
        .usage_of(subject, &id, now - hours * 3600, now + 60)
        .await
        .map_err(internal)?;
    let networks = store
        .networks_of(subject, &id, now - hours * 3600)
        .await
        .map_err(internal)?;
    let last_used = store.last_used_of(subject, &id).await.map_err(internal)?;
    Ok(json(
        StatusCode::OK,
        &j!({"subject": subject, "id": id, "hours": hours, "buckets": buckets,
            "networks": networks, "last_used": last_used}),
    ))
}
