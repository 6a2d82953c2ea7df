//! Cheaper models for a call: what a soft limit suggests, `POST /api/prices/recommendations` lists and
//! the assistant builds on. Pure: the price versions in effect are passed in.
//!
//! A model qualifies when it has the capability the task needs (code for coding, reasoning for
//! analysis…), a context window that fits the call (when its window is known), and a lower cost for
//! the same tokens. Local models (price 0) are only offered when asked for, since whether one runs
//! here is not something the price book knows.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::price::{cost_of_calls, PriceSpec, PriceVersion, Tokens};

/// The calls to find alternatives for: `calls` calls that used the tokens between them (1 for one
/// call). The context window must fit the average call, not the sum.
#[derive(Debug, Clone)]
pub struct CallShape<'a> {
    pub task_type: &'a str,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub calls: i64,
    pub include_local: bool,
}

impl CallShape<'_> {
    /// What the calls cost under `spec`.
    pub fn cost(&self, spec: &PriceSpec) -> Decimal {
        let tokens = Tokens { input: self.input_tokens, output: self.output_tokens, ..Tokens::default() };
        cost_of_calls(spec, tokens, self.calls).total_cost
    }

    /// The tokens of the average call, rounded up: what a context window must hold.
    fn tokens_per_call(&self) -> i64 {
        let (calls, total) = (self.calls.max(1), self.input_tokens.saturating_add(self.output_tokens));
        total / calls + i64::from(total % calls != 0)
    }
}

/// A cheaper model for the call, with what it would cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alternative {
    pub provider: String,
    pub model: String,
    #[serde(with = "crate::money::decimal_json")]
    pub cost: Decimal,
    #[serde(with = "crate::money::decimal_json")]
    pub savings: Decimal,
    /// Savings as a fraction of the current cost (0.75 = 75% cheaper).
    #[serde(with = "crate::money::decimal_json")]
    pub savings_fraction: Decimal,
    pub context_window: Option<i64>,
    pub capabilities: Vec<String>,
    pub price_version: Uuid,
}

/// The capability a task type needs, if any (`chat`, `summarization`… need none in particular).
pub fn required_capability(task_type: &str) -> Option<&'static str> {
    let t = task_type.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| t.contains(w));
    if has(&["code", "coding", "program"]) {
        Some("code")
    } else if has(&["reason", "analysis", "analy", "math", "plan"]) {
        Some("reasoning")
    } else if has(&["vision", "image"]) {
        Some("vision")
    } else if has(&["tool", "agent", "function"]) {
        Some("tool_use")
    } else {
        None
    }
}

fn is_local(v: &PriceVersion) -> bool {
    v.spec.capabilities.iter().any(|c| c.starts_with("local_"))
}

/// Every model in `in_effect` that suits the call and costs less than `current`, cheapest first.
pub fn cheaper_alternatives(
    in_effect: &[PriceVersion],
    current: &PriceVersion,
    call: &CallShape<'_>,
) -> Vec<Alternative> {
    let now = call.cost(&current.spec);
    let needed = required_capability(call.task_type);
    let fits = call.tokens_per_call();
    let mut found: Vec<Alternative> = in_effect
        .iter()
        .filter(|v| !(v.spec.provider == current.spec.provider && v.spec.model == current.spec.model))
        .filter(|v| call.include_local || !is_local(v))
        .filter(|v| needed.is_none_or(|c| v.spec.capabilities.iter().any(|have| have == c)))
        .filter(|v| v.spec.context_window.is_none_or(|w| w >= fits))
        .filter_map(|v| {
            let c = call.cost(&v.spec);
            (c < now).then(|| Alternative {
                provider: v.spec.provider.clone(),
                model: v.spec.model.clone(),
                cost: c,
                savings: (now - c).normalize(),
                savings_fraction: if now.is_zero() { Decimal::ZERO } else { ((now - c) / now).round_dp(4).normalize() },
                context_window: v.spec.context_window,
                capabilities: v.spec.capabilities.clone(),
                price_version: v.version_id,
            })
        })
        .collect();
    found.sort_by(|a, b| b.savings.cmp(&a.savings).then_with(|| (&a.provider, &a.model).cmp(&(&b.provider, &b.model))));
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::price::{PriceSource, PriceSpec};
    use rust_decimal_macros::dec;

    fn version(model: &str, input_1m: Decimal, output_1m: Decimal, window: Option<i64>, caps: &[&str]) -> PriceVersion {
        PriceVersion {
            version_id: Uuid::now_v7(),
            spec: PriceSpec {
                provider: "p".into(),
                model: model.into(),
                input_per_token: input_1m / dec!(1000000),
                output_per_token: output_1m / dec!(1000000),
                cached_input_per_token: None,
                cache_creation_per_token: None,
                reasoning_per_token: None,
                tiers: vec![],
                per_request: None,
                context_window: window,
                capabilities: caps.iter().map(|c| c.to_string()).collect(),
                retires_on: None,
            },
            effective_from: "2024-01-01T00:00:00Z".parse().unwrap(),
            effective_to: None,
            source: PriceSource::Manual,
        }
    }

    #[test]
    fn only_capable_fitting_cheaper_models_sorted_by_savings() {
        let current = version("big", dec!(10), dec!(30), Some(200_000), &["code"]);
        let book = vec![
            current.clone(),
            version("mid", dec!(3), dec!(15), Some(200_000), &["code"]),
            version("small", dec!(0.5), dec!(1.5), Some(128_000), &["code"]),
            version("tiny-window", dec!(0.1), dec!(0.1), Some(2_000), &["code"]),
            version("no-code", dec!(0.1), dec!(0.1), None, &["vision"]),
            version("pricier", dec!(20), dec!(60), None, &["code"]),
            version("local", dec!(0), dec!(0), None, &["code", "local_midweight"]),
        ];
        let call =
            CallShape { task_type: "coding", input_tokens: 2000, output_tokens: 1000, calls: 1, include_local: false };
        let found = cheaper_alternatives(&book, &current, &call);
        let names: Vec<&str> = found.iter().map(|a| a.model.as_str()).collect();
        assert_eq!(names, ["small", "mid"]);
        // big: 2000 × 10/1M + 1000 × 30/1M = 0.05; small: 0.001 + 0.0015 = 0.0025.
        assert_eq!(
            (found[0].cost, found[0].savings, found[0].savings_fraction),
            (dec!(0.0025), dec!(0.0475), dec!(0.95))
        );
        let with_local = cheaper_alternatives(&book, &current, &CallShape { include_local: true, ..call });
        assert_eq!(with_local[0].model, "local");
        assert_eq!(required_capability("chat"), None);
        assert_eq!(required_capability("data-analysis"), Some("reasoning"));
    }
}
