//! `optimize`: recommendations ranked by the USD they would save per period, computed from the token
//! mix actually in the log: model substitutions, allocation sizing, prompt caching and policy
//! adjustments, each with its evidence and a confidence.

use std::collections::BTreeMap;

use budget_events::display::{count, thousands};
use budget_events::domain::alternatives::{self, CallShape};
use budget_events::domain::price;
use budget_events::store::{allocations, policies, prices};
use budget_projections::usage_rollups::{self, UsageFilter};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::assistant::{number, usd, Range};
use crate::error::ApiError;

/// Capability tags that say what a model can do (the rest say where it runs).
const SKILLS: [&str; 4] = ["code", "reasoning", "vision", "tool_use"];

/// Under this share of a model's cost, a substitute is taken for another class of model: recommended
/// with medium confidence at most, and said to need a trial first.
const ANOTHER_CLASS: Decimal = Decimal::from_parts(2, 0, 0, false, 1);

/// One recommendation, ranked by its savings.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RankedRecommendation {
    pub rank: usize,
    /// model_substitution, allocation_sizing, prompt_caching or policy_adjustment.
    pub kind: String,
    pub recommendation: String,
    #[serde(with = "budget_events::money::decimal_json")]
    pub estimated_savings_per_period: Decimal,
    pub period: String,
    /// high, medium or low.
    pub confidence: String,
    /// The figures behind it; their shape depends on the kind.
    pub evidence: Value,
}

/// The recommendations for a range, largest saving first.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Savings {
    pub period: String,
    pub days: i64,
    pub summary: String,
    /// What following every recommendation would save per period, each token counted once: not the
    /// sum of the recommendations, since caching saves nothing on calls moved to another model.
    #[serde(with = "budget_events::money::decimal_json")]
    pub total_savings_per_period: Decimal,
    pub recommendations: Vec<RankedRecommendation>,
}

struct Recommendation {
    kind: &'static str,
    what: String,
    savings: Decimal,
    confidence: &'static str,
    evidence: Value,
}

/// What a component sent one model over the range, and the model's input rates (plain and cached).
/// The calls of one component for one task type on one priced model: a model's name, its dated
/// snapshots and its `provider/` form are priced by one entry and move together (OpenAI answers with
/// the snapshot, so components that record the answer's model and those that record the asked one
/// split a model's calls, and each half was a recommendation of its own).
struct Calls {
    provider: String,
    /// The names the log holds them under, the most spent on first.
    names: Vec<String>,
    /// The price book's name for them.
    resolved: String,
    price: price::PriceVersion,
    component: String,
    task_type: String,
    totals: usage_rollups::Totals,
}

/// The log's token mix (most spent first) grouped by the price each row resolves to at `at`; rows
/// with no price in effect are left out (nothing to compare).
async fn priced_calls(
    client: &impl tokio_postgres::GenericClient,
    mix: Vec<(String, String, String, String, usage_rollups::Totals)>,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Calls>, ApiError> {
    let mut grouped: Vec<Calls> = Vec::new();
    for (provider, model, component, task_type, totals) in mix {
        let versions = prices::versions_for_model(client, &provider, &model).await?;
        let Some((version, resolved)) = price::resolve(&versions, &provider, &model, at) else { continue };
        let same = |c: &&mut Calls| {
            (&c.provider, &c.resolved, &c.component, &c.task_type) == (&provider, &resolved, &component, &task_type)
                && c.price.version_id == version.version_id
        };
        if let Some(c) = grouped.iter_mut().find(same) {
            c.names.push(model);
            c.totals.input_tokens += totals.input_tokens;
            c.totals.output_tokens += totals.output_tokens;
            c.totals.cost += totals.cost;
            c.totals.count += totals.count;
        } else {
            let price = version.clone();
            grouped.push(Calls { provider, names: vec![model], resolved, price, component, task_type, totals });
        }
    }
    Ok(grouped)
}

/// How a recommendation names the model of `names`: as recorded when the log holds it under one name
/// (`claude-3-5-sonnet-20241022`), else by its price's name and the names it was recorded as.
fn shown_model(names: &[String], resolved: &str) -> String {
    match names {
        [one] => one.clone(),
        [] => resolved.to_string(),
        _ => format!("{resolved} (recorded as {})", budget_events::display::and_list(names)),
    }
}

struct Prompts {
    input: i64,
    output: i64,
    /// The input of the task types no substitution moves away: all that caching would still save on
    /// if every recommendation were followed.
    staying: i64,
    cached: Decimal,
    rate: Decimal,
}

pub async fn optimize(
    client: &impl tokio_postgres::GenericClient,
    range: Range,
    defaults: &budget_events::domain::allocation::AllocationDefaults,
) -> Result<(Savings, Value), ApiError> {
    let filter = UsageFilter { start: Some(range.start), ..Default::default() };
    let mix = usage_rollups::mix(client, &filter).await?;
    let mix_rows = mix.len();
    let in_effect = crate::offers::offers(client, range.end).await?;
    // Savings are rated over the hours of the range the log holds: a month's range over a week-old
    // log is a week.
    let hours = super::hours_recorded(&range, usage_rollups::first_hour(client).await?);
    let partly = hours < range.days * 24;
    let periods = range.periods(hours);
    let per_period = Decimal::ONE / periods;
    let over = if partly {
        format!("{} recorded", super::span(chrono::Duration::hours(hours)))
    } else {
        count(range.days, "day")
    };
    let mut found: Vec<Recommendation> = Vec::new();
    let mut prompts: BTreeMap<(String, String, String), Prompts> = BTreeMap::new();

    for Calls { provider, names, resolved, price: current, component, task_type, totals } in
        priced_calls(client, mix, range.end).await?
    {
        let (current, totals) = (&current, &totals);
        let model = &shown_model(&names, &resolved);
        let call = CallShape {
            task_type: &task_type,
            input_tokens: totals.input_tokens,
            output_tokens: totals.output_tokens,
            calls: totals.count,
            include_local: false,
        };
        let now_cost = call.cost(&current.spec);
        if now_cost.is_zero() {
            continue;
        }
        // Same skills first (high confidence); else anything able to do the task type (medium).
        let cheaper = alternatives::cheaper_alternatives(&in_effect, current, &call);
        let skills =
            |caps: &[String]| caps.iter().filter(|c| SKILLS.contains(&c.as_str())).cloned().collect::<Vec<_>>();
        let needed = skills(&current.spec.capabilities);
        let same = cheaper.iter().find(|a| needed.iter().all(|n| a.capabilities.contains(n)));
        let substitute = match (same, cheaper.first()) {
            (Some(a), _) => Some((a, "high")),
            (None, Some(a)) => Some((a, "medium")),
            // Nothing cheaper: no substitution, but prompt caching is still weighed below.
            (None, None) => None,
        };
        let moves = substitute.is_some();
        if let Some((best, confidence)) = substitute {
            // The price book's tags are coarse (every remote model is "remote_heavyweight"): a model at
            // a fraction of the price is likely another class of model, whatever its tags say.
            let share = best.cost / now_cost;
            let (confidence, caveat) = if share < ANOTHER_CLASS {
                let percent = (share * Decimal::from(100)).round();
                let percent = if percent.is_zero() { "under 1%".to_string() } else { format!("{percent}%") };
                let caveat =
                    format!(" A model at {percent} of the price may not do the same work: try it on a sample of these calls first.");
                ("medium", caveat)
            } else {
                (confidence, String::new())
            };
            let priced_as = format!("{}/{}", current.spec.provider, current.spec.model);
            let retires = crate::price_book::retiring(current, range.end).map_or(String::new(), |r| {
                format!(" Its provider {} {priced_as} {}.", r.verb(range.end.date_naive()), r.when())
            });
            found.push(Recommendation {
                kind: "model_substitution",
                what: format!(
                    "Move {component}'s {task_type} calls from {provider}/{model} to {}/{}: the same {} input and {} output tokens would cost {} instead of {} over the {}.{retires}{caveat}",
                    best.provider,
                    best.model,
                    thousands(totals.input_tokens),
                    thousands(totals.output_tokens),
                    usd(best.cost),
                    usd(now_cost),
                    over
                ),
                savings: best.savings * per_period,
                confidence,
                evidence: json!({
                    "component": component, "task_type": task_type, "provider": provider, "model": model, "models": names, "priced_as": resolved,
                    "input_tokens": totals.input_tokens, "output_tokens": totals.output_tokens, "calls": totals.count,
                    "current_cost": number(now_cost), "alternative": best, "skills_needed": needed,
                }),
            });
        }
        // Prompt caching: a model with a cached-input rate, used with long inputs. Weighed per component
        // and model below, since a component's prompts to one model share their prefixes whatever
        // the task type.
        if let Some(cached) = current.spec.cached_input_per_token.filter(|c| *c < current.spec.input_per_token) {
            let e = prompts.entry((component.clone(), provider.clone(), model.clone())).or_insert(Prompts {
                input: 0,
                output: 0,
                staying: 0,
                cached,
                rate: current.spec.input_per_token,
            });
            e.input += totals.input_tokens;
            e.output += totals.output_tokens;
            if !moves {
                e.staying += totals.input_tokens;
            }
        }
    }
    // What following every recommendation would save, each token counted once (caching saves nothing
    // on calls moved to another model).
    let mut together: Decimal = found.iter().map(|r| r.savings).sum();
    for ((component, provider, model), Prompts { input, output, staying, cached, rate }) in prompts {
        let input_share = Decimal::from(input) / Decimal::from((input + output).max(1));
        if input_share >= Decimal::new(7, 1) {
            // If half of the input were served from cache.
            let saved = Decimal::from(input) / Decimal::from(2) * (rate - cached);
            together += Decimal::from(staying) / Decimal::from(2) * (rate - cached) * per_period;
            found.push(Recommendation {
                kind: "prompt_caching",
                what: format!(
                    "{component} sends mostly input to {provider}/{model} ({}% of its tokens); stable prompt prefixes served from the cache ({}/1M instead of {}/1M) would save about {} per {} if half the input were cached.",
                    (input_share * Decimal::from(100)).round_dp(1).normalize(),
                    usd(cached * Decimal::from(1_000_000)),
                    usd(rate * Decimal::from(1_000_000)),
                    usd(saved * per_period),
                    range.period.unit()
                ),
                savings: saved * per_period,
                confidence: "low",
                evidence: json!({"component": component, "provider": provider, "model": model, "input_tokens": input, "output_tokens": output, "input_share": number(input_share.round_dp(4))}),
            });
        }
    }

    // Allocation sizing: what each component reserves per task type (the configured default, or what
    // it asks for) against the p95 of what it uses.
    let resolved = allocations::list(
        client,
        &allocations::AllocationFilter {
            states: Some(["released", "expired", "exhausted"].map(String::from).to_vec()),
            limit: 10_000,
            ..Default::default()
        },
    )
    .await?;
    let mut per_component: BTreeMap<(String, String), (Vec<i64>, Vec<i64>)> = BTreeMap::new();
    for a in resolved.iter().filter(|a| a.created_at >= range.start) {
        let e = per_component.entry((a.component.to_string(), a.task_type.to_string())).or_default();
        e.0.push(a.tokens_allocated);
        e.1.push(a.input_tokens_used + a.output_tokens_used);
    }
    for ((component, task_type), (allocated, mut used)) in per_component {
        if used.len() < 3 {
            continue;
        }
        used.sort_unstable();
        let p95 = used[((used.len() as f64 * 0.95).ceil() as usize).clamp(1, used.len()) - 1];
        let typical = allocated.iter().sum::<i64>() / allocated.len() as i64;
        let default = defaults.tokens(&task_type, 5);
        if (p95 as f64) < typical as f64 * 0.6 {
            let suggested = ((p95 as f64 * 1.1).ceil() as i64).max(1);
            found.push(Recommendation {
                kind: "allocation_sizing",
                what: format!(
                    "{component}'s {task_type} tasks reserve {} tokens each (the {task_type} default is {}) but 95% of them use at most {}; reserve about {} (BUDGET_ALLOCATION_DEFAULTS='{{\"{task_type}\": {suggested}}}', or --tokens {suggested}) so the unused {} tokens per task stay available to others.",
                    thousands(typical),
                    thousands(default),
                    thousands(p95),
                    thousands(suggested),
                    thousands(typical - suggested)
                ),
                savings: Decimal::ZERO,
                confidence: if used.len() >= 20 { "high" } else { "medium" },
                evidence: json!({"component": component, "task_type": task_type, "allocations": used.len(), "typical_allocated": typical,
                                 "configured_default": default, "p95_used": p95, "suggested": suggested}),
            });
        }
    }

    // Policy adjustments: a limit (dollars or tokens) reached in every one of its past windows, or a
    // policy whose windows saw nothing.
    for row in policies::list(client).await?.into_iter().filter(|r| r.counts()) {
        let cost_limit = row.policy.cost_limit.map(|l| l.amount()).filter(|l| *l > Decimal::ZERO);
        let token_limit = row.policy.token_limit.filter(|l| *l > 0);
        if cost_limit.is_none() && token_limit.is_none() {
            continue;
        }
        let history = client
            .query(
                "SELECT posted_cost, posted_tokens FROM policy_accounts WHERE policy_id = $1 AND window_start >= $2 AND window_end <= $3",
                &[&row.policy.id, &range.start, &range.end],
            )
            .await?;
        if history.len() < 2 {
            continue;
        }
        let costs: Vec<Decimal> = history.iter().map(|r| r.get("posted_cost")).collect();
        let tokens: Vec<i64> = history.iter().map(|r| r.get("posted_tokens")).collect();
        let scope = row.policy.scope.describe();
        let reached = [
            cost_limit.map(|l| ("cost", usd(l), number(l), costs.iter().filter(|u| **u >= l).count())),
            token_limit.map(|l| ("tokens", count(l, "token"), json!(l), tokens.iter().filter(|u| **u >= l).count())),
        ];
        for (metric, limit, amount, exhausted) in reached.into_iter().flatten() {
            if exhausted == history.len() {
                found.push(Recommendation {
                    kind: "policy_adjustment",
                    what: format!(
                        "The {} limit of {limit} on {scope} was reached in every one of its last {} windows: raise it, or route part of that usage to cheaper models.",
                        row.policy.period,
                        history.len()
                    ),
                    savings: Decimal::ZERO,
                    confidence: "medium",
                    evidence: json!({"policy_id": row.policy.id, "windows": history.len(), "exhausted": exhausted, "metric": metric, "limit": amount}),
                });
            }
        }
        if costs.iter().all(|u| u.is_zero()) && tokens.iter().all(|u| *u == 0) {
            let limits: Vec<String> =
                [cost_limit.map(usd), token_limit.map(|l| count(l, "token"))].into_iter().flatten().collect();
            found.push(Recommendation {
                kind: "policy_adjustment",
                what: format!(
                    "The {} limit of {} on {scope} saw no spend in {} windows: remove it or lower it.",
                    row.policy.period,
                    limits.join(" and "),
                    history.len()
                ),
                savings: Decimal::ZERO,
                confidence: "low",
                evidence: json!({"policy_id": row.policy.id, "windows": history.len()}),
            });
        }
    }

    found.sort_by(|a, b| b.savings.cmp(&a.savings).then_with(|| a.kind.cmp(b.kind)));
    // Allocation sizing and policy adjustments save no dollars; substitutions and caching are in.
    let total = together;
    let list: Vec<RankedRecommendation> = found
        .into_iter()
        .enumerate()
        .map(|(i, r)| RankedRecommendation {
            rank: i + 1,
            kind: r.kind.to_string(),
            recommendation: r.what,
            estimated_savings_per_period: r.savings.round_dp(10).normalize(),
            period: range.period.to_string(),
            confidence: r.confidence.to_string(),
            evidence: r.evidence,
        })
        .collect();
    let summary = if list.is_empty() {
        format!("No recommendations from the usage of the last {}.", count(range.days, "day"))
    } else {
        format!(
            "{}; following them all would save about {} per {} ({} over the {}; calls moved to a cheaper model are not counted again for caching).",
            count(list.len() as i64, "recommendation"),
            usd(total),
            range.period.unit(),
            usd(total * periods),
            if partly { format!("{over} of the {} asked for", count(range.days, "day")) } else { format!("{over} analysed") }
        )
    };
    let raw = json!({"mix_rows": mix_rows, "priced_models": in_effect.len(), "hours_recorded": hours, "periods_in_range": periods.to_f64()});
    Ok((
        Savings {
            period: range.period.to_string(),
            days: range.days,
            summary,
            total_savings_per_period: total.round_dp(10).normalize(),
            recommendations: list,
        },
        raw,
    ))
}
