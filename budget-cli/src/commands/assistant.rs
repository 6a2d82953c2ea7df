//! `budget recommend`, `budget analyze`, `budget optimize`: the assistant's answers for people.

use budget_api::assistant::analyze::WindowPace;
use budget_api::assistant::usd;
use budget_api::routes::assistant::{AnalyzeResponse, OptimizeResponse, RecommendResponse};
use budget_events::period::Period;
use comfy_table::Cell;
use rust_decimal::Decimal;
use serde_json::json;

use crate::cli::{AssistantArgs, OptimizeArgs};
use crate::client::Client;
use crate::output::{print_json, right, table, thousands};

pub struct Ask {
    pub task_type: String,
    pub context_size: i64,
    pub output_size: i64,
    pub max_cost: Option<String>,
    pub frequency: i64,
    pub prefer_provider: Option<String>,
    pub limit: usize,
}

pub async fn recommend(client: &Client, ask: Ask, as_json: bool) -> anyhow::Result<()> {
    let mut body = json!({
        // `code_generation` reads as the words "code generation".
        "task_description": ask.task_type.replace(['_', '-'], " "),
        "input_length": ask.context_size,
        "output_length": ask.output_size,
        "usage_frequency": ask.frequency,
        "limit": ask.limit,
    });
    if let Some(max) = ask.max_cost {
        body["budget_limit"] = json!(max);
    }
    if let Some(p) = ask.prefer_provider {
        body["prefer_provider"] = json!(p);
    }
    let r: RecommendResponse = client.post("/api/assistant/recommend-model", &body).await?;
    if as_json {
        print_json(&serde_json::to_value(&r)?);
        return Ok(());
    }
    let rec = &r.recommendations;
    // Without --max-cost there is no budget to fit: no column of `?`.
    let budget = rec.models.iter().any(|m| m.fits_budget.is_some());
    let mut headers = vec!["#", "Model", "$/call", "$/day"];
    headers.extend(budget.then_some("Budget"));
    headers.extend(["Context", "Capabilities"]);
    let mut t = table(&headers);
    let yes_no = |v: Option<bool>| match v {
        Some(true) => "fits",
        Some(false) => "no",
        None => "?",
    };
    for (i, m) in rec.models.iter().enumerate() {
        let mut row = vec![
            right(i + 1),
            Cell::new(format!("{}/{}", m.provider, m.model)),
            right(m.cost_per_call),
            right(m.cost_per_day),
        ];
        row.extend(budget.then(|| Cell::new(yes_no(m.fits_budget))));
        let context = match (m.fits_context, m.context_window) {
            (Some(false), Some(w)) => format!("too small ({})", crate::output::thousands(w)),
            (None, _) => "unknown".into(),
            (fits, _) => yes_no(fits).into(),
        };
        row.extend([Cell::new(context), Cell::new(capabilities(&rec.needed_capabilities, &m.capabilities))]);
        t.add_row(row);
    }
    if !rec.models.is_empty() {
        crate::say!("{}", crate::output::fitted(t));
    }
    for f in &rec.findings {
        crate::say!("{f}");
    }
    Ok(())
}

/// The task's needed capabilities as a model meets them: `code`, `code; lacks vision`, `lacks code`
/// (the other columns give the cost, budget and context the API's rationale repeats).
fn capabilities(needed: &[String], has: &[String]) -> String {
    if needed.is_empty() {
        return "none needed".into();
    }
    let (met, lacking): (Vec<&str>, Vec<&str>) =
        needed.iter().map(String::as_str).partition(|n| has.iter().any(|c| c == n));
    let mut parts = Vec::new();
    if !met.is_empty() {
        parts.push(met.join(", "));
    }
    if !lacking.is_empty() {
        parts.push(format!("lacks {}", lacking.join(", ")));
    }
    parts.join("; ")
}

pub async fn analyze(client: &Client, args: AssistantArgs) -> anyhow::Result<()> {
    let r: AnalyzeResponse =
        client.post("/api/assistant/analyze", &json!({"period": args.period, "days": args.days})).await?;
    if args.json {
        print_json(&serde_json::to_value(&r)?);
        return Ok(());
    }
    for f in &r.analysis.findings {
        crate::say!("- {f}");
    }
    paces(&r.analysis.windows);
    narrative(r.narrative.as_deref());
    Ok(())
}

/// Every active calendar window at the rate spent so far, a line per limit (cost, tokens).
fn paces(windows: &[WindowPace]) {
    if windows.is_empty() {
        return;
    }
    let mut t = table(&["Policy", "Limit", "Scope", "Used", "Of", "Per hour", "At the end", "Runs out"]);
    for w in windows {
        let runs_out = |metric: &str| match (w.exhausted_by.as_deref(), w.exhausted_at) {
            (Some(by), Some(at)) if by == metric => {
                if at <= chrono::Utc::now() {
                    "used up".to_string()
                } else {
                    crate::output::when(at)
                }
            }
            _ => "-".to_string(),
        };
        let tokens = |d: Decimal| format!("{} tok", thousands(d.round().try_into().unwrap_or(i64::MAX)));
        let mut lines = Vec::new();
        if let Some(limit) = w.cost_limit {
            lines.push([
                usd(w.used_cost),
                usd(limit),
                usd(w.burn_rate_per_hour),
                usd(w.projected_end_spend),
                runs_out("cost"),
            ]);
        }
        if let Some(limit) = w.token_limit {
            lines.push([
                tokens(Decimal::from(w.used_tokens)),
                tokens(Decimal::from(limit)),
                tokens(w.token_burn_rate_per_hour),
                tokens(w.projected_end_tokens),
                runs_out("tokens"),
            ]);
        }
        for [used, of, per_hour, at_end, out] in lines {
            t.add_row(vec![
                Cell::new(crate::output::short_id(w.policy_id)),
                Cell::new(crate::commands::set_limit::kind_of(&w.period, &w.policy_type, &w.timezone)),
                Cell::new(&w.scope),
                right(used),
                right(of),
                right(per_hour),
                right(at_end),
                Cell::new(out),
            ]);
        }
    }
    crate::say!("\nAt the rate spent so far in each window:\n{}", crate::output::fitted(t));
    // A log younger than a window: its rates are over the hours the log holds, not the whole window.
    if let Some(w) = windows.iter().find(|w| w.rate_since > w.window_start) {
        crate::say!(
            "Rates run from {}, where the log's usage begins, in windows that began before it.",
            crate::output::utc_named(w.rate_since)
        );
    }
}

pub async fn optimize(client: &Client, args: OptimizeArgs) -> anyhow::Result<()> {
    let (range, top) = (args.range, args.top);
    let r: OptimizeResponse =
        client.post("/api/assistant/optimize", &json!({"period": range.period, "days": range.days})).await?;
    if range.json {
        print_json(&serde_json::to_value(&r)?);
        return Ok(());
    }
    let recs = &r.recommendations;
    let list = &recs.recommendations;
    // With nothing to recommend, the summary below says so.
    if !list.is_empty() {
        // The server took the period, so it parses; savings are per one of it ("Saves / day").
        let unit = range.period.parse::<Period>().map_or("period", Period::unit);
        let mut t = table(&["#", "Kind", &format!("Saves / {unit}"), "Confidence", "Recommendation"]);
        // The server ranks them, the biggest saving first.
        let shown = if top == 0 { list.len() } else { top.min(list.len()) };
        for x in &list[..shown] {
            t.add_row(vec![
                right(x.rank),
                Cell::new(&x.kind),
                // Rounded as the summary below rounds it (the field keeps every digit for scripts).
                right(usd(x.estimated_savings_per_period)),
                Cell::new(&x.confidence),
                Cell::new(&x.recommendation),
            ]);
        }
        crate::say!("{}", crate::output::fitted(t));
        let rest = &list[shown..];
        if !rest.is_empty() {
            // A bound, not a sum: a caching and a substitution recommendation can act on the same
            // calls, which the summary's total counts once (it read $7.12 beside a total of $6.43).
            let saved: Decimal = rest.iter().map(|x| x.estimated_savings_per_period).sum();
            crate::say!(
                "The other {} save up to {} per {unit} between them (where two act on the same calls, the total below counts them once); `--top 0` lists all {}.",
                rest.len(),
                usd(saved),
                list.len()
            );
        }
    }
    crate::say!("{}", recs.summary);
    narrative(r.narrative.as_deref());
    Ok(())
}

fn narrative(text: Option<&str>) {
    if let Some(text) = text {
        crate::say!("\n{text}");
    }
}
