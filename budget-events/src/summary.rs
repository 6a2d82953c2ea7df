//! One line on what an event is about (`openai/gpt-4o by codex for task-123`, `daily warn of $10 on
//! provider=openai`), for the audit trail: a list of event types and costs alone did not say which
//! price, limit or reservation each row was, so a person could not follow the log without its JSON.

use crate::display::{dollars, thousands};
use crate::event::Event;

/// The last 8 characters of an id, as the CLI and the dashboard show ids.
fn short(id: &uuid::Uuid) -> String {
    let text = id.to_string();
    text[text.len() - 8..].to_string()
}

impl Event {
    /// What the event is about, in a few words.
    pub fn summary(&self) -> String {
        match self {
            Event::UsageRecorded(u) => {
                let context = u.context_id.as_ref().map(|c| format!(" for {c}")).unwrap_or_default();
                format!("{}/{} by {}{context}", u.provider, u.model, u.component)
            }
            Event::UsageRepriced(c) => {
                format!(
                    "{}/{} record {}: {} → {}",
                    c.provider,
                    c.model,
                    short(&c.record_id),
                    dollars(c.previous_cost.amount()),
                    dollars(c.cost.amount())
                )
            }
            Event::BudgetCreated(b) => format!("budget {}", b.name),
            Event::BudgetUpdated(b) => match &b.name {
                Some(name) => format!("budget {} named {name}", short(&b.budget_id)),
                None => format!("budget {}", short(&b.budget_id)),
            },
            Event::BudgetArchived(b) => format!("budget {}", short(&b.budget_id)),
            Event::PolicySet(p) => {
                let limits: Vec<String> = p
                    .cost_limit
                    .map(|c| dollars(c.amount()))
                    .into_iter()
                    .chain(p.token_limit.map(|t| format!("{} tokens", thousands(t))))
                    .collect();
                let limits = if limits.is_empty() { "no limit".to_string() } else { limits.join(" and ") };
                let disabled = if p.enabled { "" } else { " (disabled)" };
                format!("{} {} of {limits} on {}{disabled}", p.period, p.policy_type, p.scope.describe())
            }
            Event::AllocationCreated(a) => format!(
                "{} tokens ({}) for {} in {}",
                thousands(a.tokens_allocated),
                dollars(a.estimated_cost.amount()),
                a.component,
                a.context_id
            ),
            Event::AllocationReleased(r) | Event::AllocationExpired(r) => format!(
                "allocation {}: {} tokens ({}) no longer reserved",
                short(&r.allocation_id),
                thousands(r.released_tokens),
                dollars(r.released_cost.amount())
            ),
            Event::PriceSet(p) => format!(
                "{}/{} from {}",
                p.spec.provider,
                p.spec.model,
                p.effective_from.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            Event::BudgetRefused(r) => {
                let model = match (&r.provider, &r.model) {
                    (Some(p), Some(m)) => format!(" of {p}/{m}"),
                    _ => String::new(),
                };
                let windows = crate::display::count(r.refusals.len() as i64, "window");
                format!("{} by {}{model}, refused by {windows}", r.source, r.component)
            }
            Event::AlertAcknowledged(a) => match &a.acknowledged_by {
                Some(who) => format!("alert {} by {who}", short(&a.alert_id)),
                None => format!("alert {}", short(&a.alert_id)),
            },
            Event::ApiKeyCreated(k) => {
                let name = k.name.as_ref().map(|n| format!(" ({n})")).unwrap_or_default();
                format!("{} key {}…{name}", k.scope, k.prefix)
            }
            Event::ApiKeyRevoked(k) => format!("key {}", short(&k.key_id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::event::{Event, PriceSet, UsageRecorded};

    #[test]
    fn an_events_summary_names_what_it_is_about() {
        let usage: UsageRecorded = serde_json::from_value(serde_json::json!({
            "record_id": "01a23f6f-ae0b-7215-935a-10d193080f0b", "provider": "openai",
            "model": "gpt-4o", "component": "codex", "task_type": "default", "context_id": "task-123", "input_tokens": 1200,
            "output_tokens": 340, "cost": "0.0064", "cost_source": "price_book",
            "occurred_at": "2026-12-04T05:03:33Z"
        }))
        .unwrap();
        assert_eq!(Event::UsageRecorded(usage).summary(), "openai/gpt-4o by codex for task-123");
        let price: PriceSet = serde_json::from_value(serde_json::json!({
            "version_id": "01a23f6f-ae0b-7215-935a-10d193080f0b",
            "spec": {"provider": "openai", "model": "gpt-4o", "input_per_token": "0.0000025", "output_per_token": "0.00001"},
            "effective_from": "2024-01-01T00:00:00Z", "source": "bundled"
        }))
        .unwrap();
        assert_eq!(Event::PriceSet(price).summary(), "openai/gpt-4o from 2024-01-01 00:00:00 UTC");
    }
}
