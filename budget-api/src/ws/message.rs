//! What goes over the WebSocket: the envelope `{"type", "topic", "payload", "timestamp"}` both ways,
//! and the updates each batch of log events turns into.

use std::collections::BTreeMap;

use budget_events::event::Event;
use budget_events::store::policies::{self, PolicyRow, WindowAccount};
use budget_events::store::Cursor;
use budget_events::{Money, RecordedEvent};
use budget_projections::alerts::AlertRow;
use chrono::Utc;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use budget_events::money::json_number as number;
use uuid::Uuid;

use crate::routes::allocations::AllocationView;

pub const BUDGET_EVENTS: &str = "budget_events";
pub const BUDGET_ALERTS: &str = "budget_alerts";
pub const ALLOCATION_UPDATES: &str = "allocation_updates";
pub const PRICE_UPDATES: &str = "price_updates";
/// One `usage_update` per batch of the log that records or re-prices usage, whatever policy it falls
/// under: what a view of spend over time (the dashboard's chart) refreshes on.
pub const USAGE_UPDATES: &str = "usage_updates";
pub const TOPICS: [&str; 5] = [BUDGET_EVENTS, BUDGET_ALERTS, ALLOCATION_UPDATES, PRICE_UPDATES, USAGE_UPDATES];

/// The envelope, both ways.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub payload: Value,
    #[serde(default)]
    pub timestamp: Option<String>,
    /// The log position the message reflects (server → client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
}

impl Envelope {
    pub fn new(kind: &str, topic: Option<&str>, payload: Value, position: Option<i64>) -> Envelope {
        Envelope {
            kind: kind.into(),
            topic: topic.map(String::from),
            payload,
            timestamp: Some(Utc::now().to_rfc3339()),
            position,
        }
    }

    pub fn error(reason: impl Into<String>) -> Envelope {
        Envelope::new("error", None, json!({ "reason": reason.into() }), None)
    }

    pub fn text(&self) -> String {
        serde_json::to_string(self).expect("envelopes serialize")
    }
}

/// Where an update comes from, so that a client replaying `?since=` never gets one twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Log(Cursor),
    Alert(i64),
}

/// One message for every client subscribed to its topic, serialized once.
#[derive(Debug, Clone)]
pub struct Update {
    pub topic: &'static str,
    pub origin: Origin,
    pub text: String,
}

impl Update {
    fn new(topic: &'static str, kind: &str, payload: Value, origin: Origin, position: i64) -> Update {
        Update { topic, origin, text: Envelope::new(kind, Some(topic), payload, Some(position)).text() }
    }
}

/// The updates a batch of events makes: a `budget_update` per window whose status changed (as it
/// stands now), an `allocation_update` per allocation touched, a `price_update` per new price.
/// Only the topics `wanted` says are computed: the lookups behind a topic nobody listens to are skipped.
pub async fn updates_for(
    client: &impl tokio_postgres::GenericClient,
    events: &[RecordedEvent],
    wanted: &(dyn Fn(&str) -> bool + Sync),
) -> Result<Vec<Update>, tokio_postgres::Error> {
    // The last event touching each window / allocation: its update carries that event's place.
    let mut windows: BTreeMap<(Uuid, String), RecordedEvent> = BTreeMap::new();
    let mut allocations: BTreeMap<Uuid, RecordedEvent> = BTreeMap::new();
    let mut policies_changed: BTreeMap<Uuid, RecordedEvent> = BTreeMap::new();
    // A renamed or archived budget changes every one of its windows' cards (the name; whether it counts).
    let mut budgets_changed: BTreeMap<Uuid, RecordedEvent> = BTreeMap::new();
    let mut out = Vec::new();
    let (mut recorded, mut repriced, mut last_usage) = (0usize, 0usize, None);
    for e in events {
        match &e.event {
            Event::UsageRecorded(_) => (recorded, last_usage) = (recorded + 1, Some(e)),
            Event::UsageRepriced(_) => (repriced, last_usage) = (repriced + 1, Some(e)),
            _ => {}
        }
        match &e.event {
            Event::UsageRecorded(u) => {
                for p in &u.postings {
                    windows.insert((p.policy_id, p.window.clone()), e.clone());
                }
                if let Some(s) = &u.settlement {
                    allocations.insert(s.allocation_id, e.clone());
                }
            }
            Event::UsageRepriced(c) => {
                for p in &c.postings {
                    windows.insert((p.policy_id, p.window.clone()), e.clone());
                }
            }
            Event::AllocationCreated(a) => {
                for p in &a.reservations {
                    windows.insert((p.policy_id, p.window.clone()), e.clone());
                }
                allocations.insert(a.allocation_id, e.clone());
            }
            Event::AllocationReleased(a) | Event::AllocationExpired(a) => {
                allocations.insert(a.allocation_id, e.clone());
            }
            Event::PolicySet(p) => {
                if let Some(o) = &p.opening {
                    windows.insert((p.policy_id, o.window.clone()), e.clone());
                }
                policies_changed.insert(p.policy_id, e.clone());
            }
            Event::BudgetUpdated(b) if b.name.is_some() => {
                budgets_changed.insert(b.budget_id, e.clone());
            }
            Event::BudgetArchived(b) => {
                budgets_changed.insert(b.budget_id, e.clone());
            }
            Event::PriceSet(p) if wanted(PRICE_UPDATES) => out.push(Update::new(
                PRICE_UPDATES,
                "price_update",
                json!({
                    "provider": p.spec.provider,
                    "model": p.spec.model,
                    "version_id": p.version_id,
                    "update": {
                        "input_cost_per_token": number(p.spec.input_per_token),
                        "output_cost_per_token": number(p.spec.output_per_token),
                        "cached_input_cost_per_token": p.spec.cached_input_per_token.map(number),
                        "source": p.source.as_str(),
                        "effective_from": p.effective_from,
                    },
                    "position": e.position,
                }),
                Origin::Log(Cursor::after(e)),
                e.position,
            )),
            _ => {}
        }
    }
    if let (Some(last), true) = (last_usage, wanted(USAGE_UPDATES)) {
        out.push(Update::new(
            USAGE_UPDATES,
            "usage_update",
            json!({ "records": recorded, "repriced": repriced, "position": last.position }),
            Origin::Log(Cursor::after(last)),
            last.position,
        ));
    }
    if !wanted(BUDGET_EVENTS) {
        windows.clear();
        policies_changed.clear();
        budgets_changed.clear();
    }
    if !wanted(ALLOCATION_UPDATES) && !wanted(BUDGET_EVENTS) {
        allocations.clear();
    }
    if !allocations.is_empty() {
        for (id, e) in &allocations {
            // Released windows change status too.
            if let Some(a) = budget_events::store::allocations::get(client, *id).await? {
                if wanted(BUDGET_EVENTS) {
                    for r in &a.reservations {
                        windows.entry((r.policy_id, r.window.clone())).or_insert_with(|| e.clone());
                    }
                }
                if !wanted(ALLOCATION_UPDATES) {
                    continue;
                }
                let view = AllocationView::from(&a);
                out.push(Update::new(
                    ALLOCATION_UPDATES,
                    "allocation_update",
                    json!({ "allocation_id": id, "allocation": view, "position": e.position }),
                    Origin::Log(Cursor::after(e)),
                    e.position,
                ));
            }
        }
    }
    if windows.is_empty() && policies_changed.is_empty() && budgets_changed.is_empty() {
        return Ok(out);
    }
    let rows = policies::list(client).await?;
    for row in &rows {
        if let Some(e) = budgets_changed.get(&row.policy.budget_id) {
            let latest = policies_changed.get(&row.policy.id).is_some_and(|p| p.position > e.position);
            if !latest {
                policies_changed.insert(row.policy.id, e.clone());
            }
        }
    }
    // A changed policy's current window (its limit or thresholds moved).
    for (id, e) in &policies_changed {
        if let Some(row) = rows.iter().find(|r| r.policy.id == *id) {
            if let Some(w) = row.policy.calendar_window_at(Utc::now()) {
                // The window's update carries the latest event of the batch that touched it: an earlier
                // one (its policy's opening, before a rename in the same batch) would leave a client
                // waiting for the later position.
                let latest = windows.entry((*id, w.key)).or_insert_with(|| e.clone());
                if latest.position < e.position {
                    *latest = e.clone();
                }
            }
        }
    }
    let keys: Vec<(Uuid, String)> = windows.keys().cloned().collect();
    let accounts: BTreeMap<(Uuid, String), WindowAccount> = policies::accounts(client, &keys)
        .await?
        .into_iter()
        .map(|a| ((a.policy_id, a.window_key.clone()), a))
        .collect();
    for ((policy_id, key), e) in &windows {
        let Some(row) = rows.iter().find(|r| r.policy.id == *policy_id) else { continue };
        let account = accounts.get(&(*policy_id, key.clone())).cloned().unwrap_or_else(|| WindowAccount {
            policy_id: *policy_id,
            window_key: key.clone(),
            window_start: None,
            window_end: None,
            account: Default::default(),
        });
        out.push(Update::new(
            BUDGET_EVENTS,
            "budget_update",
            budget_update(row, &account, e.position),
            Origin::Log(Cursor::after(e)),
            e.position,
        ));
    }
    Ok(out)
}

/// The `budget_update` payload of one window.
fn budget_update(row: &PolicyRow, w: &WindowAccount, position: i64) -> Value {
    let p = &row.policy;
    let a = &w.account;
    // The same state and remaining figures as /api/status.
    let status = crate::routes::status::window_status(row, w, None);
    // Fractions of the limit: spent (`*_usage_percentage`), and spent plus reserved (`*_committed_*`).
    let fill = budget_events::decide::Fill::of(p, a);
    let fraction = |f: Option<Decimal>| f.map(|f| number(f.round_dp(6)));
    json!({
        "budget_id": p.budget_id,
        "budget_name": row.budget_name,
        "policy_id": p.id,
        "window": w.window_key,
        "position": position,
        "summary": {
            "period": p.period.to_string(),
            "scope": p.scope.describe(),
            "policy_type": p.policy_type.to_string(),
            "total_cost": number(a.posted_cost),
            "reserved_cost": number(a.pending_cost),
            "cost_limit": p.cost_limit.map(Money::amount).map(number),
            "cost_usage_percentage": fraction(fill.cost_used),
            "cost_committed_percentage": fraction(fill.cost_committed),
            "total_tokens_used": a.posted_tokens,
            "reserved_tokens": a.pending_tokens,
            "token_limit": p.token_limit,
            "token_usage_percentage": fraction(fill.tokens_used),
            "token_committed_percentage": fraction(fill.tokens_committed),
            "remaining_cost": status.remaining_cost.map(number),
            "remaining_tokens": status.remaining_tokens,
            "window_start": w.window_start,
            "window_end": w.window_end,
            "state": status.state,
        }
    })
}

/// An `alert` message for newly raised alerts.
pub fn alert_update(alert: &AlertRow) -> Update {
    Update::new(
        BUDGET_ALERTS,
        "alert",
        json!({ "alerts": [alert], "position": alert.position }),
        Origin::Alert(alert.seq),
        alert.position,
    )
}
