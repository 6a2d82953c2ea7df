//! `alerts`: raised by folding the log, never by a "check" call.
//!
//! - a policy window reaching its warning threshold, its action threshold and 100%, cost and tokens
//!   separately (`cost_limit_approaching`, `cost_limit_exceeded`, `token_limit_approaching`,
//!   `token_limit_exceeded`);
//! - refusals of a window (`budget_refused`: one alert per window, counting the refusals);
//! - usage beyond an allocation (`overage`), a model without a price (`unpriced_model`, one per model,
//!   counting its records), and an hour's spend above a multiple of the trailing day's average hour with spend
//!   (`spend_spike`).
//!
//! Each alert's id is a UUIDv5 of what it is about, so a replay, a restart or a second runner finds the
//! same row instead of adding one. Acknowledgements are events (`AlertAcknowledged`), so they survive
//! a rebuild. New alerts get one webhook outbox row per receiver in the same transaction.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use budget_events::display::thousands;
use budget_events::domain::policy::{Policy, PolicyType};
use budget_events::event::{Event, PolicySet};
use budget_events::period::Period;
use budget_events::RecordedEvent;
use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::Transaction;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::projection::{execute, query, query_opt, Projection, ProjectionError};

/// Namespace of alert ids (a fixed random UUID).
const ALERT_NAMESPACE: Uuid = Uuid::from_u128(0x6b1f_54a4_2c0e_4d8e_9f3a_51d2_7c86_e0b1);

/// Hours with spend needed in the trailing day before an hour can be a spike.
pub const SPIKE_MIN_HISTORY_HOURS: usize = 6;

/// Where alerts are delivered, and in which shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub url: String,
    /// `json` (the alert) or `slack` (`{"text": …}`, for Slack-compatible incoming webhooks).
    pub format: &'static str,
}

impl Webhook {
    /// Parses `BUDGET_ALERT_WEBHOOKS`: URLs separated by commas or spaces; `slack:URL` for the Slack format.
    pub fn parse_list(value: &str) -> Result<Vec<Webhook>, String> {
        value
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(|s| {
                let (format, url) = match s.strip_prefix("slack:") {
                    Some(url) => ("slack", url),
                    None => ("json", s),
                };
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(format!(
                        "`{s}` is not an http(s) URL; give URLs separated by commas, or slack:URL for Slack"
                    ));
                }
                Ok(Webhook { url: url.to_string(), format })
            })
            .collect()
    }
}

pub struct Alerts {
    /// An hour's spend above this multiple of the average hour with spend in the 24 before it is a spike.
    pub spike_multiple: Decimal,
    pub webhooks: Vec<Webhook>,
}

impl Default for Alerts {
    fn default() -> Self {
        Alerts { spike_multiple: Decimal::from(3), webhooks: Vec::new() }
    }
}

/// An alert as the fold raises it.
#[derive(Debug, Clone)]
struct Raised {
    alert_id: Uuid,
    position: i64,
    budget_id: Option<Uuid>,
    policy_id: Option<Uuid>,
    severity: &'static str,
    alert_type: &'static str,
    message: String,
    details: Value,
    raised_at: DateTime<Utc>,
    /// Counting alerts (refusals, unpriced records) add their occurrences to an existing row.
    counting: bool,
    occurrences: i64,
}

/// What the fold keeps between events of a batch.
#[derive(Default)]
struct State {
    policies: HashMap<Uuid, PolicySet>,
    budgets: HashMap<Uuid, (String, bool)>,
    windows: BTreeMap<(Uuid, String), (Decimal, i64)>,
    hours: BTreeMap<DateTime<Utc>, Decimal>,
    dirty_policies: BTreeSet<Uuid>,
    dirty_budgets: BTreeSet<Uuid>,
    dirty_windows: BTreeSet<(Uuid, String)>,
    dirty_hours: BTreeSet<DateTime<Utc>>,
    raised: Vec<Raised>,
    /// Threshold alerts already raised in this batch: later events past the same threshold are
    /// skipped before any message is built (the first raise wins anyway).
    raised_ids: std::collections::HashSet<Uuid>,
    /// Policies parsed once per batch.
    parsed: HashMap<Uuid, Policy>,
    acks: Vec<(Uuid, Option<String>, DateTime<Utc>)>,
}

impl Projection for Alerts {
    const NAME: &'static str = "alerts";
    const TABLES: &'static [&'static str] =
        &["alerts", "alert_policies", "alert_budgets", "alert_windows", "alert_hourly_spend"];
    const SIDE_TABLES: &'static [&'static str] = &["alert_outbox"];
    const UNCOMPARED: &'static [&'static str] = &["seq"];

    async fn apply(&self, tx: &Transaction<'_>, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
        let mut state = State::load(tx, events).await?;
        for recorded in events {
            self.fold(&mut state, recorded);
        }
        state.save(tx, &self.webhooks).await
    }
}

impl Alerts {
    fn fold(&self, s: &mut State, r: &RecordedEvent) {
        match &r.event {
            Event::BudgetCreated(b) => {
                s.budgets.insert(b.budget_id, (b.name.clone(), true));
                s.dirty_budgets.insert(b.budget_id);
            }
            Event::BudgetUpdated(b) => {
                if let (Some(name), Some(entry)) = (&b.name, s.budgets.get_mut(&b.budget_id)) {
                    entry.0 = name.clone();
                    s.dirty_budgets.insert(b.budget_id);
                }
            }
            Event::BudgetArchived(b) => {
                if let Some(entry) = s.budgets.get_mut(&b.budget_id) {
                    entry.1 = false;
                    s.dirty_budgets.insert(b.budget_id);
                }
            }
            Event::PolicySet(p) => {
                s.parsed.remove(&p.policy_id);
                s.policies.insert(p.policy_id, p.clone());
                s.dirty_policies.insert(p.policy_id);
                if let Some(o) = &p.opening {
                    // The window opens with what it already held; past a threshold, that raises its alert.
                    let (cost, tokens) = s.windows.get(&(p.policy_id, o.window.clone())).copied().unwrap_or_default();
                    s.post(r, p.policy_id, &o.window, o.posted_cost - cost, o.posted_tokens - tokens);
                } else {
                    // A changed limit: its windows may now stand past thresholds they were under (a
                    // lowered limit), which raises their alerts now rather than at their next record.
                    // The current calendar window, or every window of a per-task or per-session
                    // policy (loaded for this event), among those that have counted something.
                    let current = changed_window(p, r);
                    let windows: Vec<String> = s
                        .windows
                        .keys()
                        .filter(|(id, w)| *id == p.policy_id && current.as_ref().is_none_or(|c| c == w))
                        .map(|(_, w)| w.clone())
                        .collect();
                    for window in windows {
                        s.post(r, p.policy_id, &window, Decimal::ZERO, 0);
                    }
                }
            }
            Event::UsageRecorded(u) => {
                for posting in &u.postings {
                    s.post(r, posting.policy_id, &posting.window, u.cost.amount(), u.total_tokens());
                }
                if let Some(settlement) = u.settlement.as_ref().filter(|st| st.overage_tokens > 0) {
                    let id = alert_id(&format!("overage/{}", settlement.allocation_id));
                    s.raised.push(Raised {
                        alert_id: id,
                        position: r.position,
                        budget_id: None,
                        policy_id: None,
                        severity: "warning",
                        alert_type: "overage",
                        message: format!(
                            "{} used {} tokens beyond its allocation {} for context {} ({}); reserve more for such tasks or release and re-allocate",
                            u.component,
                            thousands(settlement.overage_tokens),
                            settlement.allocation_id,
                            u.context_id.as_ref().map_or("-".to_string(), |c| c.to_string()),
                            // "($0)" beside the tokens read as if they were free: a reservation's estimated
                            // cost can cover more tokens than it reserved.
                            if settlement.overage_cost.amount().is_zero() {
                                "its cost stayed within what it reserved".to_string()
                            } else {
                                format!("and ${} beyond its reserved cost", settlement.overage_cost)
                            },
                        ),
                        details: json!({
                            "allocation_id": settlement.allocation_id,
                            "component": u.component,
                            "context_id": u.context_id,
                            "overage_tokens": settlement.overage_tokens,
                            "overage_cost": settlement.overage_cost,
                            "record_id": u.record_id,
                        }),
                        raised_at: r.recorded_at,
                        counting: false,
                        occurrences: 1,
                    });
                }
                if u.cost_source == budget_events::domain::usage::CostSource::Unpriced {
                    // A price takes effect from a time (now, unless told): the commands name the
                    // record's own time, cut to the second, so that the price and the re-price cover it.
                    let since = u.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                    s.raised.push(Raised {
                        alert_id: alert_id(&format!("unpriced/{}/{}", u.provider, u.model)),
                        position: r.position,
                        budget_id: None,
                        policy_id: None,
                        severity: "warning",
                        alert_type: "unpriced_model",
                        message: format!(
                            "{p}/{m} had no price at {since}, the time of its first unpriced call: its records count tokens but no cost, so cost limits cannot see them; price them with `budget prices set {p} {m} --input … --output … --effective-from {since}`, then `budget prices reprice --provider {p} --model {m} --since {since}`",
                            p = u.provider,
                            m = u.model,
                        ),
                        details: json!({
                            "provider": u.provider,
                            "model": u.model,
                            "first_record_id": u.record_id,
                            "first_record_at": since,
                        }),
                        raised_at: r.recorded_at,
                        counting: true,
                        occurrences: 1,
                    });
                }
                self.spend(s, r, u.occurred_at, u.cost.amount());
            }
            Event::UsageRepriced(c) => {
                for posting in &c.postings {
                    s.post(r, posting.policy_id, &posting.window, c.delta, 0);
                }
                self.spend(s, r, c.occurred_at, c.delta);
            }
            Event::BudgetRefused(refused) => {
                for refusal in &refused.refusals {
                    let budget_id = s.policies.get(&refusal.policy_id).map(|p| p.budget_id);
                    s.raised.push(Raised {
                        alert_id: alert_id(&format!("refused/{}/{}", refusal.policy_id, refusal.window)),
                        position: r.position,
                        budget_id,
                        policy_id: Some(refusal.policy_id),
                        severity: "error",
                        alert_type: "budget_refused",
                        message: format!(
                            "the {} hard limit on {} refused {} (requested ${} / {} tokens; used ${} / {} tokens, reserved ${} / {} tokens) in window {}",
                            refusal.period,
                            refusal.scope,
                            if refused.source == "check" { "a pre-flight check" } else { "a reservation" },
                            refusal.requested_cost,
                            thousands(refusal.requested_tokens),
                            refusal.used_cost,
                            thousands(refusal.used_tokens),
                            refusal.reserved_cost,
                            thousands(refusal.reserved_tokens),
                            refusal.window,
                        ),
                        details: json!({
                            "period": refusal.period,
                            "scope": refusal.scope,
                            "window": refusal.window,
                            "cost_limit": refusal.cost_limit,
                            "token_limit": refusal.token_limit,
                            "resets_at": refusal.resets_at,
                            "component": refused.component,
                        }),
                        raised_at: r.recorded_at,
                        counting: true,
                        occurrences: 1,
                    });
                }
            }
            Event::AlertAcknowledged(a) => s.acks.push((a.alert_id, a.acknowledged_by.clone(), a.acknowledged_at)),
            _ => {}
        }
    }

    /// Adds spend to its UTC hour and raises a spike when the hour passes `spike_multiple` times the
    /// average of the trailing 24 hours that had spend, once at least [`SPIKE_MIN_HISTORY_HOURS`] of
    /// them had. Hours without spend stay out of the average: counted as $0 they made a steady rate a
    /// spike in its seventh hour, and a service busy eight hours a day one every morning.
    ///
    /// Only a record logged within its hour or the next is judged: one sent later (a back-fill of
    /// history, a client that was offline) still counts in its hour, but its trailing day may still be
    /// arriving, and a spike is news about spending now (a ten-day back-fill in random order raised
    /// 64). The times are the log's, so a rebuild raises the same alerts.
    fn spend(&self, s: &mut State, r: &RecordedEvent, at: DateTime<Utc>, cost: Decimal) {
        if cost.is_zero() {
            return;
        }
        let hour = Period::Hourly.start_of(at);
        let now = {
            let h = s.hours.entry(hour).or_default();
            *h += cost;
            *h
        };
        s.dirty_hours.insert(hour);
        if hour < Period::Hourly.start_of(r.recorded_at) - Duration::hours(1) {
            return;
        }
        let history: Vec<Decimal> =
            s.hours.range(hour - Duration::hours(24)..hour).map(|(_, c)| *c).filter(|c| *c > Decimal::ZERO).collect();
        // Too little history to call anything a spike (a first busy hour after a quiet day is not one).
        if history.len() < SPIKE_MIN_HISTORY_HOURS || cost <= Decimal::ZERO {
            return;
        }
        let trailing: Decimal = history.iter().sum();
        let average = trailing / Decimal::from(history.len() as u64);
        if now > average * self.spike_multiple {
            s.raised.push(Raised {
                alert_id: alert_id(&format!("spike/{}", hour.to_rfc3339())),
                position: r.position,
                budget_id: None,
                policy_id: None,
                severity: "warning",
                alert_type: "spend_spike",
                message: format!(
                    "spend in the hour from {} is ${} so far, above {}× the ${} of an average hour with spend in the 24 before it; look at `budget get_usage` for who is spending",
                    hour.format("%Y-%m-%d %H:00 UTC"),
                    now.normalize(),
                    self.spike_multiple,
                    average.round_dp(6).normalize(),
                ),
                details: json!({
                    "hour": hour,
                    "spend": now.normalize().to_string(),
                    "trailing_hourly_average": average.round_dp(10).normalize().to_string(),
                    "multiple": self.spike_multiple.to_string(),
                }),
                raised_at: r.recorded_at,
                counting: false,
                occurrences: 1,
            });
        }
    }
}

impl State {
    /// Loads what the batch's events touch: every policy and budget (few), the posted windows and
    /// the hours the spend lands in with the day before them. The four reads are independent, so they
    /// go to PostgreSQL together (pipelined) instead of one round trip after another.
    async fn load(tx: &Transaction<'_>, events: &[RecordedEvent]) -> Result<State, ProjectionError> {
        let mut s = State::default();
        let mut keys: BTreeSet<(Uuid, String)> = BTreeSet::new();
        // Per-task and per-session policies changed in the batch: all their windows are loaded.
        let mut changed: Vec<Uuid> = Vec::new();
        let mut hours: BTreeSet<DateTime<Utc>> = BTreeSet::new();
        for e in events {
            let (postings, at) = match &e.event {
                Event::UsageRecorded(u) => (&u.postings, u.occurred_at),
                Event::UsageRepriced(c) => (&c.postings, c.occurred_at),
                Event::PolicySet(PolicySet { policy_id, opening: Some(o), .. }) => {
                    keys.insert((*policy_id, o.window.clone()));
                    continue;
                }
                Event::PolicySet(p) => {
                    match changed_window(p, e) {
                        Some(window) => {
                            keys.insert((p.policy_id, window));
                        }
                        None => changed.push(p.policy_id),
                    }
                    continue;
                }
                _ => continue,
            };
            keys.extend(postings.iter().map(|p| (p.policy_id, p.window.clone())));
            hours.insert(Period::Hourly.start_of(at));
        }
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let windows: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
        let span = hours.first().zip(hours.last()).map(|(first, last)| (*first - Duration::hours(24), *last));
        let (policies, budgets, posted, every, spend) = futures_util::try_join!(
            query(tx, "SELECT definition FROM alert_policies", &[]),
            query(tx, "SELECT budget_id, name, active FROM alert_budgets", &[]),
            async {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                query(
                    tx,
                    "SELECT w.policy_id, w.window_key, w.cost, w.tokens FROM alert_windows w
                     JOIN unnest($1::uuid[], $2::text[]) AS k(p, k) ON w.policy_id = k.p AND w.window_key = k.k",
                    &[&ids, &windows],
                )
                .await
            },
            async {
                if changed.is_empty() {
                    return Ok(Vec::new());
                }
                query(
                    tx,
                    "SELECT policy_id, window_key, cost, tokens FROM alert_windows WHERE policy_id = ANY($1)",
                    &[&changed],
                )
                .await
            },
            async {
                let Some((from, to)) = &span else { return Ok(Vec::new()) };
                query(tx, "SELECT hour, cost FROM alert_hourly_spend WHERE hour >= $1 AND hour <= $2", &[from, to])
                    .await
            },
        )?;
        for row in policies {
            let p: PolicySet = serde_json::from_value(row.get("definition")).expect("stored policies decode");
            s.policies.insert(p.policy_id, p);
        }
        for row in budgets {
            s.budgets.insert(row.get("budget_id"), (row.get("name"), row.get("active")));
        }
        for row in posted.into_iter().chain(every) {
            s.windows.insert((row.get("policy_id"), row.get("window_key")), (row.get("cost"), row.get("tokens")));
        }
        for row in spend {
            s.hours.insert(row.get("hour"), row.get("cost"));
        }
        Ok(s)
    }

    /// Posts to a window and raises the thresholds it has reached.
    fn post(&mut self, r: &RecordedEvent, policy_id: Uuid, window: &str, cost: Decimal, tokens: i64) {
        let key = (policy_id, window.to_string());
        let (used_cost, used_tokens) = {
            let w = self.windows.entry(key.clone()).or_default();
            w.0 += cost;
            w.1 += tokens;
            *w
        };
        self.dirty_windows.insert(key);
        let Some(set) = self.policies.get(&policy_id) else { return };
        let budget = self.budgets.get(&set.budget_id);
        if !set.enabled || set.policy_type == PolicyType::Ignore || budget.is_some_and(|b| !b.1) {
            return;
        }
        let policy = self.parsed.entry(policy_id).or_insert_with(|| Policy::from_event(set)).clone();
        let budget_name = budget.map_or("?".to_string(), |b| b.0.clone());
        let metrics = [
            ("cost", policy.cost_limit.map(|l| l.amount()), used_cost),
            ("token", policy.token_limit.map(Decimal::from), Decimal::from(used_tokens)),
        ];
        for (metric, limit, used) in metrics {
            let Some(limit) = limit else { continue };
            // A zero limit ("no spend on this") has no fractions: anything used is past it, once.
            let fraction = (!limit.is_zero()).then(|| used / limit);
            let thresholds = [
                ("warning", policy.warning_threshold, "approaching", "warning"),
                ("action", policy.action_threshold, "approaching", "warning"),
                ("limit", Decimal::ONE, "exceeded", "error"),
            ];
            for (name, threshold, kind, severity) in thresholds {
                let past = match fraction {
                    Some(fraction) => fraction >= threshold,
                    None => name == "limit" && used > Decimal::ZERO,
                };
                if !past {
                    continue;
                }
                let alert_id = alert_id(&format!("{policy_id}/{window}/{metric}/{name}"));
                if !self.raised_ids.insert(alert_id) {
                    continue;
                }
                let alert_type = match (metric, kind) {
                    ("cost", "approaching") => "cost_limit_approaching",
                    ("cost", _) => "cost_limit_exceeded",
                    (_, "approaching") => "token_limit_approaching",
                    _ => "token_limit_exceeded",
                };
                let shown = |d: Decimal| {
                    if metric == "cost" {
                        format!("${}", d.normalize())
                    } else {
                        format!("{} tokens", thousands_dec(d))
                    }
                };
                let percent = fraction.map(|f| (f * Decimal::from(100)).round_dp(1).normalize());
                let message = format!(
                    "{} {} on {} (budget {budget_name}): {} of {} used{} in window {window}, {}",
                    policy.period,
                    if metric == "cost" { "cost" } else { "tokens" },
                    policy.scope.describe(),
                    shown(used),
                    shown(limit),
                    percent.map_or(String::new(), |p| format!(" ({p}%)")),
                    if name == "limit" {
                        format!("the limit is reached ({})", policy.policy_type)
                    } else {
                        format!("past the {name} threshold of {}%", (threshold * Decimal::from(100)).normalize())
                    },
                );
                self.raised.push(Raised {
                    alert_id,
                    position: r.position,
                    budget_id: Some(set.budget_id),
                    policy_id: Some(policy_id),
                    severity,
                    alert_type,
                    message,
                    details: json!({
                        "period": policy.period.to_string(),
                        "scope": policy.scope.describe(),
                        "policy_type": policy.policy_type.to_string(),
                        "window": window,
                        "metric": metric,
                        "threshold": name,
                        "threshold_fraction": threshold.normalize().to_string(),
                        "limit": limit.normalize().to_string(),
                        "used": used.normalize().to_string(),
                        "fraction": fraction.map(|f| f.round_dp(4).normalize().to_string()),
                        "percentage": percent.map(|p| p.to_string()),
                    }),
                    raised_at: r.recorded_at,
                    counting: false,
                    occurrences: 1,
                });
            }
        }
    }

    async fn save(mut self, tx: &Transaction<'_>, webhooks: &[Webhook]) -> Result<(), ProjectionError> {
        for id in &self.dirty_policies {
            let p = &self.policies[id];
            execute(
                tx,
                "INSERT INTO alert_policies (policy_id, definition) VALUES ($1, $2)
                 ON CONFLICT (policy_id) DO UPDATE SET definition = EXCLUDED.definition",
                &[id, &serde_json::to_value(p).expect("policies serialize")],
            )
            .await?;
        }
        for id in &self.dirty_budgets {
            let (name, active) = &self.budgets[id];
            execute(
                tx,
                "INSERT INTO alert_budgets (budget_id, name, active) VALUES ($1, $2, $3)
                 ON CONFLICT (budget_id) DO UPDATE SET name = EXCLUDED.name, active = EXCLUDED.active",
                &[id, name, active],
            )
            .await?;
        }
        if !self.dirty_windows.is_empty() {
            let ids: Vec<Uuid> = self.dirty_windows.iter().map(|k| k.0).collect();
            let keys: Vec<&str> = self.dirty_windows.iter().map(|k| k.1.as_str()).collect();
            let costs: Vec<Decimal> = self.dirty_windows.iter().map(|k| self.windows[k].0).collect();
            let tokens: Vec<i64> = self.dirty_windows.iter().map(|k| self.windows[k].1).collect();
            execute(
                tx,
                "INSERT INTO alert_windows (policy_id, window_key, cost, tokens)
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::numeric[], $4::bigint[])
                 ON CONFLICT (policy_id, window_key) DO UPDATE SET cost = EXCLUDED.cost, tokens = EXCLUDED.tokens",
                &[&ids, &keys, &costs, &tokens],
            )
            .await?;
        }
        if !self.dirty_hours.is_empty() {
            let hours: Vec<DateTime<Utc>> = self.dirty_hours.iter().copied().collect();
            let costs: Vec<Decimal> = hours.iter().map(|h| self.hours[h]).collect();
            execute(
                tx,
                "INSERT INTO alert_hourly_spend (hour, cost) SELECT * FROM unnest($1::timestamptz[], $2::numeric[])
                 ON CONFLICT (hour) DO UPDATE SET cost = EXCLUDED.cost",
                &[&hours, &costs],
            )
            .await?;
        }
        // One row per alert id: the first raise wins; a counting alert adds up its occurrences, and
        // takes a new `seq` so that the WebSocket hub, which follows `seq`, announces its new count.
        let mut merged: Vec<Raised> = Vec::new();
        let mut index: HashMap<Uuid, usize> = HashMap::new();
        for raised in self.raised.drain(..) {
            match index.get(&raised.alert_id) {
                Some(&i) => {
                    if raised.counting {
                        merged[i].occurrences += raised.occurrences;
                    }
                }
                None => {
                    index.insert(raised.alert_id, merged.len());
                    merged.push(raised);
                }
            }
        }
        let mut new = Vec::new();
        for a in &merged {
            // No row back: an existing alert that does not count occurrences was left as it was.
            let inserted: bool = query_opt(
                tx,
                "INSERT INTO alerts (alert_id, position, budget_id, policy_id, severity, alert_type, message, details,
                                         raised_at, occurrences)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT (alert_id) DO UPDATE SET occurrences = alerts.occurrences + EXCLUDED.occurrences,
                             seq = nextval(pg_get_serial_sequence('alerts', 'seq'))
                         WHERE $11
                     RETURNING xmax = 0",
                &[
                    &a.alert_id,
                    &a.position,
                    &a.budget_id,
                    &a.policy_id,
                    &a.severity,
                    &a.alert_type,
                    &a.message,
                    &a.details,
                    &a.raised_at,
                    &a.occurrences,
                    &a.counting,
                ],
            )
            .await?
            .is_some_and(|row| row.get(0));
            if inserted {
                new.push(a);
            }
        }
        for (id, by, at) in &self.acks {
            execute(
                tx,
                "UPDATE alerts SET acknowledged = true, acknowledged_by = $2, acknowledged_at = $3
                 WHERE alert_id = $1 AND NOT acknowledged",
                &[id, by, at],
            )
            .await?;
        }
        for a in new {
            for hook in webhooks {
                execute(
                    tx,
                    "INSERT INTO alert_outbox (alert_id, url, format, payload) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (alert_id, url) DO NOTHING",
                    &[&a.alert_id, &hook.url, &hook.format, &webhook_payload(a, hook.format)],
                )
                .await?;
            }
        }
        Ok(())
    }
}

fn webhook_payload(a: &Raised, format: &str) -> Value {
    if format == "slack" {
        return json!({"text": format!("[{}] {}: {}", a.severity, a.alert_type, a.message)});
    }
    json!({
        "alert_id": a.alert_id,
        "type": a.alert_type,
        "severity": a.severity,
        "message": a.message,
        "details": a.details,
        "budget_id": a.budget_id,
        "policy_id": a.policy_id,
        "timestamp": a.raised_at,
        "position": a.position,
    })
}

/// The id of the alert about `what` (stable across replays and processes).
/// The calendar window a policy set without an opening balance (a change of a policy that was
/// already counting) is in when it is logged; none for a per-task or per-session policy, whose every
/// window is looked at instead.
fn changed_window(p: &PolicySet, r: &RecordedEvent) -> Option<String> {
    Policy::from_event(p).calendar_window_at(r.recorded_at).map(|w| w.key)
}

pub fn alert_id(what: &str) -> Uuid {
    Uuid::new_v5(&ALERT_NAMESPACE, what.as_bytes())
}

fn thousands_dec(d: Decimal) -> String {
    use rust_decimal::prelude::ToPrimitive;
    d.to_i64().map_or_else(|| d.to_string(), thousands)
}

/// One alert as the API shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AlertRow {
    pub id: Uuid,
    pub budget_id: Option<Uuid>,
    pub policy_id: Option<Uuid>,
    pub severity: String,
    #[serde(rename = "type")]
    pub alert_type: String,
    pub message: String,
    pub details: Value,
    pub timestamp: DateTime<Utc>,
    pub occurrences: i64,
    pub acknowledged: bool,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// Log position of the event that raised it.
    pub position: i64,
    /// Insertion order (for tailing).
    #[serde(skip)]
    pub seq: i64,
}

const ALERT_COLUMNS: &str = "alert_id, budget_id, policy_id, severity, alert_type, message, details, raised_at,
    occurrences, acknowledged, acknowledged_by, acknowledged_at, position, seq";

fn alert_row(r: &tokio_postgres::Row) -> AlertRow {
    AlertRow {
        id: r.get("alert_id"),
        budget_id: r.get("budget_id"),
        policy_id: r.get("policy_id"),
        severity: r.get("severity"),
        alert_type: r.get("alert_type"),
        message: r.get("message"),
        details: r.get("details"),
        timestamp: r.get("raised_at"),
        occurrences: r.get("occurrences"),
        acknowledged: r.get("acknowledged"),
        acknowledged_by: r.get("acknowledged_by"),
        acknowledged_at: r.get("acknowledged_at"),
        position: r.get("position"),
        seq: r.get("seq"),
    }
}

/// Which alerts to list (newest first).
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub severity: Option<String>,
    pub alert_type: Option<String>,
    pub budget_id: Option<Uuid>,
    /// `Some(false)`: open ones only (the default of the API); `None`: all.
    pub acknowledged: Option<bool>,
    pub limit: i64,
    pub offset: i64,
}

pub async fn list(client: &impl GenericClient, f: &AlertFilter) -> Result<Vec<AlertRow>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT {ALERT_COLUMNS} FROM alerts
                 WHERE ($1::text IS NULL OR severity = $1) AND ($2::text IS NULL OR alert_type = $2)
                   AND ($3::uuid IS NULL OR budget_id = $3) AND ($4::boolean IS NULL OR acknowledged = $4)
                 ORDER BY raised_at DESC, seq DESC LIMIT $5 OFFSET $6"
            ),
            &[&f.severity, &f.alert_type, &f.budget_id, &f.acknowledged, &f.limit, &f.offset],
        )
        .await?;
    Ok(rows.iter().map(alert_row).collect())
}

pub async fn get(client: &impl GenericClient, id: Uuid) -> Result<Option<AlertRow>, tokio_postgres::Error> {
    let row = client.query_opt(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE alert_id = $1"), &[&id]).await?;
    Ok(row.as_ref().map(alert_row))
}

/// Alerts inserted after `seq`, in insertion order (the WebSocket hub's tail).
pub async fn after_seq(
    client: &impl GenericClient,
    seq: i64,
    limit: i64,
) -> Result<Vec<AlertRow>, tokio_postgres::Error> {
    let rows = client
        .query(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE seq > $1 ORDER BY seq LIMIT $2"), &[&seq, &limit])
        .await?;
    Ok(rows.iter().map(alert_row).collect())
}

/// Alerts raised by events after log position `position` and inserted up to `seq`, in insertion
/// order: what a reconnecting WebSocket client missed.
pub async fn raised_since(
    client: &impl GenericClient,
    position: i64,
    seq: i64,
) -> Result<Vec<AlertRow>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE position > $1 AND seq <= $2 ORDER BY seq"),
            &[&position, &seq],
        )
        .await?;
    Ok(rows.iter().map(alert_row).collect())
}

/// The highest `seq` so far (0 when there is none).
pub async fn last_seq(client: &impl GenericClient) -> Result<i64, tokio_postgres::Error> {
    Ok(client.query_one("SELECT coalesce(max(seq), 0) FROM alerts", &[]).await?.get(0))
}
