//! `recommend-model`: every priced model ranked for a described task: cost per call and per day at the
//! stated frequency, whether it fits the budget and the context, how well its capabilities match the
//! task's words, and a one-line rationale.

use budget_events::display::{count, thousands};
use budget_events::domain::price::{self, PriceVersion};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::assistant::usd;
use crate::error::ApiError;

#[derive(Debug, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecommendRequest {
    /// What the calls are for, in words ("Generate Python code for data processing").
    #[schema(schema_with = crate::openapi::schemas::non_blank)]
    pub task_description: String,
    /// Input tokens per call.
    #[schema(schema_with = crate::openapi::schemas::some_tokens)]
    pub input_length: i64,
    /// Output tokens per call.
    #[schema(schema_with = crate::openapi::schemas::some_tokens)]
    pub output_length: i64,
    /// Calls per day (default 1).
    #[schema(schema_with = crate::openapi::schemas::calls_per_day)]
    pub usage_frequency: Option<i64>,
    /// USD per day the calls may cost.
    #[schema(schema_with = crate::openapi::schemas::positive_money)]
    pub budget_limit: Option<budget_events::Money>,
    /// What matters most, in words ("Code accuracy, error handling").
    pub priority_areas: Option<String>,
    /// Prefer this provider among equals.
    pub prefer_provider: Option<String>,
    /// Also rank local models (price 0; whether one runs here is not known).
    #[serde(default)]
    pub include_local: bool,
    /// Add the figures behind the answer.
    #[serde(default)]
    pub include_raw_data: bool,
    /// At most this many models (default 10).
    #[schema(schema_with = crate::openapi::schemas::count)]
    pub limit: Option<usize>,
}

/// One model's fit for the task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelFit {
    pub provider: String,
    pub model: String,
    #[serde(with = "budget_events::money::decimal_json")]
    pub cost_per_call: Decimal,
    #[serde(with = "budget_events::money::decimal_json")]
    pub cost_per_day: Decimal,
    /// None when no budget was given.
    pub fits_budget: Option<bool>,
    /// None when the model's context window is not known.
    pub fits_context: Option<bool>,
    pub context_window: Option<i64>,
    /// Share of the needed capabilities the model has, 0 to 1.
    #[serde(with = "budget_events::money::decimal_json")]
    pub capability_fit: Decimal,
    pub capabilities: Vec<String>,
    #[serde(with = "budget_events::money::decimal_json")]
    pub score: Decimal,
    pub rationale: String,
    pub price_version: uuid::Uuid,
}

/// Every priced model ranked for the task, best first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelRanking {
    pub needed_capabilities: Vec<String>,
    pub best: Option<ModelFit>,
    pub alternatives: Vec<ModelFit>,
    pub models: Vec<ModelFit>,
    pub findings: Vec<String>,
}

/// The capabilities the words ask for.
pub fn needed_capabilities(words: &str) -> Vec<&'static str> {
    let t = words.to_ascii_lowercase();
    let has = |keys: &[&str]| keys.iter().any(|k| t.contains(k));
    let mut needed = Vec::new();
    if has(&["code", "coding", "program", "python", "javascript", "rust", "sql", "function", "bug", "refactor"]) {
        needed.push("code");
    }
    if has(&["reason", "analy", "math", "logic", "plan", "accuracy", "complex"]) {
        needed.push("reasoning");
    }
    if has(&["image", "vision", "screenshot", "photo", "diagram"]) {
        needed.push("vision");
    }
    if has(&["tool", "agent", "api call", "function calling"]) {
        needed.push("tool_use");
    }
    needed
}

/// The most calls per day a recommendation prices (keeps the daily cost within exact arithmetic).
pub const MAX_CALLS_PER_DAY: i64 = 1_000_000_000;

impl RecommendRequest {
    pub fn validate(&self) -> Result<(), ApiError> {
        let mut problems = Vec::new();
        if self.task_description.trim().is_empty() {
            problems.push((
                "task_description".to_string(),
                "task_description is empty; describe the task in words".to_string(),
            ));
        }
        for (field, v) in [("input_length", self.input_length), ("output_length", self.output_length)] {
            if !(1..=budget_events::domain::usage::MAX_TOKENS_PER_RECORD).contains(&v) {
                problems.push((field.to_string(), format!("{field} is {v}; give at least 1 token")));
            }
        }
        if let Some(f) = self.usage_frequency.filter(|f| !(1..=MAX_CALLS_PER_DAY).contains(f)) {
            problems.push((
                "usage_frequency".into(),
                format!("usage_frequency is {f}; give calls per day, 1 to {MAX_CALLS_PER_DAY}"),
            ));
        }
        if self.budget_limit.is_some_and(|b| b.amount() <= Decimal::ZERO) {
            problems.push(("budget_limit".into(), "budget_limit must be more than 0 (USD per day)".into()));
        }
        if let Some(n) = self.limit.filter(|n| !(1..=crate::openapi::schemas::MAX_COUNT).contains(n)) {
            let max = crate::openapi::schemas::MAX_COUNT;
            problems.push(("limit".into(), format!("limit is {n}; ask for 1 to {max} models")));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(problems, "nothing was ranked"))
        }
    }
}

/// Ranks `in_effect` for the request. A score: fitting the budget (5) and the context (5) weigh most,
/// since a model that does not fit cannot be used; then the share of the needed capabilities it has
/// (up to 4), a reasoning model where accuracy is a priority (1), the preferred provider (0.5); ties
/// go to the cheaper model.
pub fn rank(r: &RecommendRequest, in_effect: &[PriceVersion]) -> (ModelRanking, Value) {
    let words = format!("{} {}", r.task_description, r.priority_areas.as_deref().unwrap_or(""));
    let needed = needed_capabilities(&words);
    let accuracy = words.to_ascii_lowercase().contains("accura") || words.to_ascii_lowercase().contains("quality");
    let frequency = Decimal::from(r.usage_frequency.unwrap_or(1));
    let mut ranked: Vec<ModelFit> = in_effect
        .iter()
        .filter(|v| r.include_local || !v.spec.capabilities.iter().any(|c| c.starts_with("local_")))
        .map(|v| {
            let per_call = price::cost(&v.spec, r.input_length, 0, r.output_length).total_cost;
            let per_day = per_call * frequency;
            let fits_budget = r.budget_limit.map(|b| per_day <= b.amount());
            let fits_context = v.spec.context_window.map(|w| w >= r.input_length + r.output_length);
            let matched: Vec<&str> =
                needed.iter().copied().filter(|n| v.spec.capabilities.iter().any(|c| c == n)).collect();
            let fit = if needed.is_empty() {
                Decimal::ONE
            } else {
                Decimal::from(matched.len() as i64) / Decimal::from(needed.len() as i64)
            };
            let strong = v.spec.capabilities.iter().any(|c| c == "reasoning");
            let preferred = r.prefer_provider.as_deref() == Some(v.spec.provider.as_str());
            let score = fit * Decimal::from(4)
                + if fits_budget != Some(false) { Decimal::from(5) } else { Decimal::ZERO }
                + if fits_context != Some(false) { Decimal::from(5) } else { Decimal::ZERO }
                + if accuracy && strong { Decimal::ONE } else { Decimal::ZERO }
                + if preferred { Decimal::new(5, 1) } else { Decimal::ZERO };
            let mut reasons = Vec::new();
            reasons.push(if needed.is_empty() {
                "no particular capability needed".to_string()
            } else if matched.len() == needed.len() {
                format!("has {}", needed.join(", "))
            } else {
                format!(
                    "lacks {}",
                    needed.iter().filter(|n| !matched.contains(n)).copied().collect::<Vec<_>>().join(", ")
                )
            });
            reasons.push(format!("{} per call, {} per day", usd(per_call), usd(per_day)));
            match fits_budget {
                Some(false) => reasons.push("over the budget".into()),
                Some(true) => reasons.push("within the budget".into()),
                None => {}
            }
            match fits_context {
                Some(false) => reasons.push(format!("context window {} too small", v.spec.context_window.unwrap_or(0))),
                None => reasons.push("context window unknown".into()),
                Some(true) => {}
            }
            if accuracy && strong {
                reasons.push("a reasoning model, for accuracy".into());
            }
            ModelFit {
                provider: v.spec.provider.clone(),
                model: v.spec.model.clone(),
                cost_per_call: per_call.normalize(),
                cost_per_day: per_day.normalize(),
                fits_budget,
                fits_context,
                context_window: v.spec.context_window,
                capability_fit: fit.round_dp(4).normalize(),
                capabilities: v.spec.capabilities.clone(),
                score: score.normalize(),
                rationale: reasons.join("; "),
                price_version: v.version_id,
            }
        })
        .collect();
    ranked.sort_by(|a, b| {
        b.score.cmp(&a.score).then(a.cost_per_call.cmp(&b.cost_per_call)).then_with(|| a.model.cmp(&b.model))
    });
    let total = ranked.len();
    ranked.truncate(r.limit.unwrap_or(10));
    let models = ranked;
    let best = models.first().cloned();
    let findings: Vec<String> = match &best {
        Some(b) => vec![format!(
            "For \"{}\" ({} in, {} out, {} a day) the best match is {}/{}: {}.",
            r.task_description.trim(),
            thousands(r.input_length),
            thousands(r.output_length),
            count(r.usage_frequency.unwrap_or(1), "call"),
            b.provider,
            b.model,
            b.rationale
        )],
        None => vec!["The price book has no models to rank; run `budget prices update`.".into()],
    };
    (
        ModelRanking {
            needed_capabilities: needed.iter().map(|n| n.to_string()).collect(),
            best,
            alternatives: models.iter().skip(1).cloned().collect(),
            models,
            findings,
        },
        json!({"models_considered": total}),
    )
}
