//! `GET /api/status`: every active policy's current window — used, reserved, limit, percent,
//! remaining, state and when it resets — read from the enforcement accounts, which are exact and
//! current (they are written in the same transaction as the usage).

use budget_events::ErrorCode;
use std::collections::HashMap;

use actix_web::{get, web, HttpResponse};
use budget_events::decide::{window_state, Fill, WindowState};
use budget_events::domain::policy::{Account, PolicyPeriod};
use budget_events::money::{decimal_json, optional_decimal_json};
use budget_events::store::policies::{self, PolicyRow, WindowAccount};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::query::Query;
use crate::routes::policies::{PolicyFilter, PolicyView};
use crate::state::AppState;

/// Windows listed per per-session or per-task policy.
const RECENT_WINDOWS: i64 = 10;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    #[param(schema_with = budget_events::openapi::optional_policy_period)]
    pub period: Option<String>,
    pub provider: Option<String>,
    pub component: Option<String>,
    pub tier: Option<String>,
    pub budget_id: Option<uuid::Uuid>,
    /// Show the windows that contained this time (RFC 3339) instead of the current ones.
    pub at: Option<DateTime<Utc>>,
    /// Recompute from the log as it stood at this time: the policies and limits then, the usage and
    /// reservations recorded by then (the windows containing that time). Not in the future (`at` shows a
    /// window to come).
    pub as_of: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WindowStatus {
    #[serde(flatten)]
    pub policy: PolicyView,
    /// The window's key: its start (calendar periods), `session:ID` or `task:ID`.
    pub window: String,
    pub window_start: Option<DateTime<Utc>>,
    pub window_end: Option<DateTime<Utc>>,
    /// When the window resets (its end); none for per-session and per-task windows.
    pub resets_at: Option<DateTime<Utc>>,
    #[serde(with = "decimal_json")]
    #[schema(value_type = f64)]
    pub used_cost: Decimal,
    pub used_tokens: i64,
    #[serde(with = "decimal_json")]
    #[schema(value_type = f64)]
    pub reserved_cost: Decimal,
    pub reserved_tokens: i64,
    pub records: i64,
    /// used / limit in percent (what was spent), the larger of cost and tokens.
    #[serde(with = "optional_decimal_json")]
    #[schema(value_type = Option<f64>)]
    pub percent: Option<Decimal>,
    /// (used + reserved) / limit in percent: what the state and admission look at.
    #[serde(with = "optional_decimal_json")]
    #[schema(value_type = Option<f64>)]
    pub committed_percent: Option<Decimal>,
    #[serde(with = "optional_decimal_json")]
    #[schema(value_type = Option<f64>)]
    pub remaining_cost: Option<Decimal>,
    pub remaining_tokens: Option<i64>,
    /// ok, warning (≥ warning_threshold), critical (≥ action_threshold) or exceeded (used + reserved
    /// beyond the limit).
    #[schema(value_type = String)]
    pub state: WindowState,
    /// Cost at the window's end if spending goes on at the rate so far (current calendar windows).
    #[serde(with = "optional_decimal_json")]
    #[schema(value_type = Option<f64>)]
    pub forecast_cost: Option<Decimal>,
    /// The time `forecast_cost` takes the rate over: the window's start, or the hour of the log's first
    /// usage when the log began inside the window (a deployment younger than it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_since: Option<DateTime<Utc>>,
    /// Calendar periods: the start of the window the policy was created in. Its opening balance
    /// counted that window whole, so it and every later window are exact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracked_since: Option<DateTime<Utc>>,
    /// Set when the window ended before `tracked_since`: the policy did not exist then, so its figures
    /// are not a measurement (`GET /api/usage` has the spend of any period).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatusResponse {
    pub at: DateTime<Utc>,
    pub windows: Vec<WindowStatus>,
    /// Per-session and per-task policies that match but have no window yet: each session or task
    /// gets its own window with its first call or reservation.
    #[serde(default)]
    pub waiting: Vec<PolicyView>,
    /// Per-session and per-task policies with more windows than the most recent ones listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_windows: Vec<MoreWindows>,
}

/// A per-session or per-task policy's windows: `shown` listed (the most recent), of `total`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MoreWindows {
    pub policy_id: uuid::Uuid,
    pub shown: usize,
    pub total: i64,
}

impl StatusResponse {
    /// The windows of `rows`, and those of `rows` that have none yet.
    pub fn new(at: DateTime<Utc>, rows: &[PolicyRow], windows: Vec<WindowStatus>) -> Self {
        let waiting = rows
            .iter()
            .filter(|r| !windows.iter().any(|w| w.policy.policy_id == r.policy.id))
            .map(PolicyView::of)
            .collect();
        StatusResponse { at, windows, waiting, more_windows: Vec::new() }
    }

    /// The windows of `rows` at `at` (see [`windows`]), those with none yet, and how many windows
    /// each per-session or per-task policy has when it has more than were listed.
    pub async fn read(
        client: &impl tokio_postgres::GenericClient,
        rows: &[PolicyRow],
        at: DateTime<Utc>,
        current: bool,
    ) -> Result<Self, ApiError> {
        let listed = windows(client, rows, at, current).await?;
        let totals = policies::window_counts(client, &per_window_policies(rows)).await?;
        Ok(StatusResponse::new(at, rows, listed).with_totals(totals))
    }

    /// Notes each per-session or per-task policy with more windows than were listed, from
    /// `totals` (policy id, windows in all).
    fn with_totals(mut self, totals: impl IntoIterator<Item = (uuid::Uuid, i64)>) -> Self {
        for (policy_id, total) in totals {
            let shown = self.windows.iter().filter(|w| w.policy.policy_id == policy_id).count();
            if total > shown as i64 {
                self.more_windows.push(MoreWindows { policy_id, shown, total });
            }
        }
        self
    }
}

/// The per-session and per-task policies among `rows`.
fn per_window_policies(rows: &[PolicyRow]) -> Vec<uuid::Uuid> {
    rows.iter()
        .filter(|r| matches!(r.policy.period, PolicyPeriod::PerSession | PolicyPeriod::PerTask))
        .map(|r| r.policy.id)
        .collect()
}

/// Every active policy's window now (or at `at`).
#[utoipa::path(tag = "policies", params(StatusQuery), responses((status = 200, body = StatusResponse), (status = 400, body = crate::error::ErrorBody)), security(("api_key" = ["read"])))]
#[get("/api/status")]
pub async fn status(state: web::Data<AppState>, query: Query<StatusQuery>) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    if let Some(p) = &q.period {
        p.parse::<PolicyPeriod>().map_err(|e| ApiError::bad_request(ErrorCode::InvalidPeriod, e))?;
    }
    let filter = PolicyFilter {
        budget_id: q.budget_id,
        period: q.period,
        provider: q.provider,
        component: q.component,
        tier: q.tier,
        policy_type: None,
        all: Some(false),
    };
    let now = Utc::now();
    let client = state.pool.get().await?;
    if let Some(as_of) = q.as_of {
        if q.at.is_some() {
            return Err(ApiError::bad_request(ErrorCode::ValidationFailed, "give at or as_of, not both"));
        }
        // A client's clock may run a little ahead of ours (as for a record's timestamp).
        if as_of > now + budget_events::domain::usage::MAX_CLOCK_SKEW {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidParameter,
                format!(
                    "as_of {} is in the future: the log stands as of now; leave as_of out for now, or give at for a window to come",
                    as_of.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                ),
            ));
        }
        let fold = budget_events::audit::fold_log(&**client, Some(as_of), |_, _| {})
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let rows: Vec<PolicyRow> = rows_as_of(&fold).into_iter().filter(|r| filter.keeps(r)).collect();
        let windows = windows_as_of(&rows, &fold, as_of);
        let totals = per_window_policies(&rows)
            .into_iter()
            .map(|id| (id, fold.accounts.keys().filter(|(p, _)| *p == id).count() as i64));
        return Ok(HttpResponse::Ok().json(StatusResponse::new(as_of, &rows, windows).with_totals(totals)));
    }
    let at = q.at.unwrap_or(now);
    let rows: Vec<PolicyRow> = policies::list(&**client).await?.into_iter().filter(|r| filter.keeps(r)).collect();
    Ok(HttpResponse::Ok().json(StatusResponse::read(&**client, &rows, at, at == now).await?))
}

/// The status of each policy's window at `at` (calendar periods) or its recent windows (per session/task).
pub async fn windows(
    client: &impl tokio_postgres::GenericClient,
    rows: &[PolicyRow],
    at: DateTime<Utc>,
    current: bool,
) -> Result<Vec<WindowStatus>, ApiError> {
    let mut keys = Vec::new();
    for row in rows {
        if let Some(w) = row.policy.calendar_window_at(at) {
            keys.push((row.policy.id, w.key));
        }
    }
    let found: HashMap<(uuid::Uuid, String), WindowAccount> = policies::accounts(client, &keys)
        .await?
        .into_iter()
        .map(|a| ((a.policy_id, a.window_key.clone()), a))
        .collect();
    // A current window's pace runs from the log's first usage when that is later than its start.
    let log_from = if current { budget_projections::usage_rollups::first_hour(client).await? } else { None };
    let mut out = Vec::new();
    for row in rows {
        let p = &row.policy;
        match p.period {
            PolicyPeriod::PerSession | PolicyPeriod::PerTask => {
                for account in policies::recent_accounts(client, p.id, RECENT_WINDOWS).await? {
                    out.push(window_status(row, &account, None));
                }
            }
            _ => {
                let w = p.calendar_window_at(at).expect("a calendar policy has a calendar window");
                let account = found.get(&(p.id, w.key.clone())).cloned().unwrap_or(WindowAccount {
                    policy_id: p.id,
                    window_key: w.key,
                    window_start: w.start,
                    window_end: w.end,
                    account: Account::default(),
                });
                out.push(window_status(row, &account, current.then_some((at, log_from))));
            }
        }
    }
    Ok(out)
}

/// The policies as the log defined them at the fold's end, with whether their budgets were archived.
fn rows_as_of(fold: &budget_events::audit::LogFold) -> Vec<PolicyRow> {
    fold.policies
        .values()
        .map(|set| {
            let policy = budget_events::domain::policy::Policy::from_event(set);
            let (name, active) = fold.budgets.get(&set.budget_id).cloned().unwrap_or_else(|| ("?".into(), true));
            let created_at = fold.created.get(&set.policy_id).copied().unwrap_or(DateTime::<Utc>::MIN_UTC);
            PolicyRow { policy, budget_name: name, budget_active: active, created_at, updated_at: created_at }
        })
        .collect()
}

/// Like [`windows`], with the accounts of a fold of the log instead of the stored ones.
fn windows_as_of(rows: &[PolicyRow], fold: &budget_events::audit::LogFold, at: DateTime<Utc>) -> Vec<WindowStatus> {
    let mut out = Vec::new();
    for row in rows {
        let p = &row.policy;
        match p.period {
            PolicyPeriod::PerSession | PolicyPeriod::PerTask => {
                let mine: Vec<_> = fold.accounts.iter().filter(|((id, _), _)| *id == p.id).collect();
                for ((_, key), account) in mine.into_iter().rev().take(RECENT_WINDOWS as usize) {
                    let w = WindowAccount {
                        policy_id: p.id,
                        window_key: key.clone(),
                        window_start: None,
                        window_end: None,
                        account: *account,
                    };
                    out.push(window_status(row, &w, None));
                }
            }
            _ => {
                let window = p.calendar_window_at(at).expect("a calendar policy has a calendar window");
                let account = fold.accounts.get(&(p.id, window.key.clone())).copied().unwrap_or_default();
                let w = WindowAccount {
                    policy_id: p.id,
                    window_key: window.key,
                    window_start: window.start,
                    window_end: window.end,
                    account,
                };
                out.push(window_status(row, &w, None));
            }
        }
    }
    out
}

/// A window's status; `now`, for the current window of a calendar period, is the time and the hour of
/// the log's first usage, which its forecast's rate runs from when later than the window's start.
pub fn window_status(
    row: &PolicyRow,
    w: &WindowAccount,
    now: Option<(DateTime<Utc>, Option<DateTime<Utc>>)>,
) -> WindowStatus {
    let p = &row.policy;
    let a = &w.account;
    let (used_cost, used_tokens) = a.held();
    let fill = Fill::of(p, a);
    let state = window_state(p, a);
    let (forecast_cost, rate_since) = match (now, w.window_start, w.window_end) {
        (Some((now, log_from)), Some(start), Some(end)) if now > start => {
            let since = log_from.map_or(start, |first| first.clamp(start, now));
            let elapsed = Decimal::from((now - since).num_seconds().max(60));
            let length = Decimal::from((end - since).num_seconds());
            // What was spent before the log began is not in it: the window's spend from `since` on,
            // at its rate to the end.
            (Some((a.posted_cost * length / elapsed).round_dp(6)), Some(since))
        }
        _ => (None, None),
    };
    let tracked_since = p.calendar_window_at(row.created_at).and_then(|w| w.start);
    let note = match (tracked_since, w.window_end) {
        (Some(since), Some(end)) if end <= since => Some(format!(
            "not tracked before {}: the policy did not exist yet",
            since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )),
        _ => None,
    };
    WindowStatus {
        policy: PolicyView::of(row),
        window: w.window_key.clone(),
        window_start: w.window_start,
        window_end: w.window_end,
        resets_at: w.window_end,
        used_cost: a.posted_cost,
        used_tokens: a.posted_tokens,
        reserved_cost: a.pending_cost,
        reserved_tokens: a.pending_tokens,
        records: a.records,
        percent: fill.used().map(|f| (f * Decimal::ONE_HUNDRED).round_dp(2)),
        committed_percent: fill.committed().map(|f| (f * Decimal::ONE_HUNDRED).round_dp(2)),
        remaining_cost: p.cost_limit.map(|l| (l.amount() - used_cost).max(Decimal::ZERO)),
        remaining_tokens: p.token_limit.map(|l| (l - used_tokens).max(0)),
        state,
        forecast_cost,
        rate_since,
        tracked_since,
        note,
    }
}
