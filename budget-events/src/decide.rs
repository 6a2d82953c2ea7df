//! Decisions: pure functions from a validated command (and, later, the state it is decided against)
//! to the events it produces. No I/O here, so every rule is unit-tested without a database.

use uuid::Uuid;

use crate::domain::usage::CostSource;
use crate::domain::RecordUsage;
use crate::event::{Event, UsageRecorded};
use crate::money::Money;

/// Usage records are facts: a call that happened is always recorded.
pub fn record_usage(record: &RecordUsage, record_id: Uuid) -> Event {
    let (cost, cost_source) = match record.cost {
        Some(cost) => (cost, CostSource::Client),
        None => (Money::ZERO, CostSource::Unpriced),
    };
    Event::UsageRecorded(UsageRecorded {
        record_id,
        provider: record.provider.clone(),
        model: record.model.clone(),
        component: record.component.clone(),
        task_type: record.task_type.clone(),
        context_id: record.context_id.clone(),
        session_id: record.session_id.clone(),
        input_tokens: record.input_tokens.get(),
        output_tokens: record.output_tokens.get(),
        cost,
        cost_source,
        occurred_at: record.occurred_at,
    })
}

/// The stream a usage record lives in: one stream per record, version 1.
pub fn usage_stream(record_id: Uuid) -> String {
    format!("usage-{record_id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UsageInput;
    use chrono::Utc;

    #[test]
    fn a_record_without_cost_is_kept_as_unpriced() {
        let input: UsageInput = serde_json::from_str(
            r#"{"provider":"openai","model":"gpt-4o","component":"codex","input_tokens":10,"output_tokens":5}"#,
        )
        .unwrap();
        let record = RecordUsage::validate(&input, Utc::now()).unwrap();
        let Event::UsageRecorded(e) = record_usage(&record, Uuid::nil());
        assert_eq!(e.cost, Money::ZERO);
        assert_eq!(e.cost_source, CostSource::Unpriced);
        assert_eq!(e.total_tokens(), 15);
    }
}
