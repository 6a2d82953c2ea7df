//! `budget recommend`, `budget analyze`, `budget optimize`: the assistant's answers for people.

use comfy_table::Cell;
use serde_json::{json, Value};

use crate::cli::AssistantArgs;
use crate::client::Client;
use crate::output::{print_json, right, table};

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
    let r: Value = client.post("/api/assistant/recommend-model", &body).await?;
    if as_json {
        print_json(&r);
        return Ok(());
    }
    let rec = &r["recommendations"];
    let models = rec["models"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let mut t = table(&["#", "Model", "$/call", "$/day", "Budget", "Context", "Capability fit", "Why"]);
    let yes_no = |v: &Value| match v.as_bool() {
        Some(true) => "fits",
        Some(false) => "no",
        None => "?",
    };
    for (i, m) in models.iter().enumerate() {
        t.add_row(vec![
            right((i + 1).to_string()),
            Cell::new(format!("{}/{}", m["provider"].as_str().unwrap_or("?"), m["model"].as_str().unwrap_or("?"))),
            right(m["cost_per_call"].to_string()),
            right(m["cost_per_day"].to_string()),
            Cell::new(yes_no(&m["fits_budget"])),
            Cell::new(yes_no(&m["fits_context"])),
            right(m["capability_fit"].to_string()),
            Cell::new(m["rationale"].as_str().unwrap_or("")),
        ]);
    }
    crate::say!("{t}");
    for f in rec["findings"].as_array().into_iter().flatten() {
        crate::say!("{}", f.as_str().unwrap_or(""));
    }
    Ok(())
}

pub async fn analyze(client: &Client, args: AssistantArgs) -> anyhow::Result<()> {
    let r: Value = client.post("/api/assistant/analyze", &json!({"period": args.period, "days": args.days})).await?;
    if args.json {
        print_json(&r);
        return Ok(());
    }
    for f in r["analysis"]["findings"].as_array().into_iter().flatten() {
        crate::say!("- {}", f.as_str().unwrap_or(""));
    }
    narrative(&r);
    Ok(())
}

pub async fn optimize(client: &Client, args: AssistantArgs) -> anyhow::Result<()> {
    let r: Value = client.post("/api/assistant/optimize", &json!({"period": args.period, "days": args.days})).await?;
    if args.json {
        print_json(&r);
        return Ok(());
    }
    let recs = &r["recommendations"];
    let list = recs["recommendations"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if list.is_empty() {
        crate::say!("Nothing to recommend for the last {} days.", args.days);
    } else {
        let mut t = table(&["#", "Kind", "Saves / period", "Confidence", "Recommendation"]);
        for x in list {
            t.add_row(vec![
                right(x["rank"].to_string()),
                Cell::new(x["kind"].as_str().unwrap_or("?")),
                right(format!("${}", x["estimated_savings_per_period"])),
                Cell::new(x["confidence"].as_str().unwrap_or("?")),
                Cell::new(x["recommendation"].as_str().unwrap_or("")),
            ]);
        }
        crate::say!("{t}");
    }
    crate::say!("{}", recs["summary"].as_str().unwrap_or(""));
    narrative(&r);
    Ok(())
}

fn narrative(r: &Value) {
    if let Some(text) = r["narrative"].as_str() {
        crate::say!("\n{text}");
    }
}
