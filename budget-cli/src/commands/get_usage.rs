//! `budget get_usage PERIOD`: usage per period with totals, and the top models and components.

use comfy_table::Cell;

use crate::cli::GetUsageArgs;
use crate::client::Client;
use crate::output::{print_json, right, table, thousands, usd};

pub async fn run(client: &Client, args: GetUsageArgs) -> anyhow::Result<()> {
    let mut query = vec![("period", args.period.clone()), ("days", args.days.to_string())];
    for (name, value) in [
        ("provider", &args.provider),
        ("model", &args.model),
        ("component", &args.component),
        ("task_type", &args.task_type),
    ] {
        if let Some(v) = value {
            query.push((name, v.clone()));
        }
    }
    let usage: serde_json::Value = client.get("/api/usage", &query).await?;
    if args.json {
        print_json(&usage);
        return Ok(());
    }

    let filters: Vec<String> = query[2..].iter().map(|(k, v)| format!("{k}={v}")).collect();
    crate::say!(
        "Usage {} from {} to {}{}",
        usage["period"].as_str().unwrap_or(&args.period),
        usage["start_time"].as_str().unwrap_or("?"),
        usage["end_time"].as_str().unwrap_or("?"),
        if filters.is_empty() { String::new() } else { format!(" ({})", filters.join(", ")) }
    );
    let mut t = table(&["Period start (UTC)", "Input tokens", "Output tokens", "Total tokens", "Cost (USD)", "Calls"]);
    for bucket in usage["series"].as_array().into_iter().flatten() {
        t.add_row(row(bucket["start"].as_str().unwrap_or("?"), bucket));
    }
    t.add_row(row("Total", &usage["totals"]));
    crate::say!("{t}");

    for dimension in ["model", "component"] {
        let Some(groups) = usage["groups"][dimension].as_object().filter(|g| !g.is_empty()) else {
            continue;
        };
        let mut g = table(&[dimension, "Input tokens", "Output tokens", "Total tokens", "Cost (USD)", "Calls"]);
        for (name, totals) in groups {
            g.add_row(row(name, totals));
        }
        crate::say!("\nBy {dimension}\n{g}");
    }
    Ok(())
}

fn row(label: &str, totals: &serde_json::Value) -> Vec<Cell> {
    let n = |k: &str| thousands(totals[k].as_i64().unwrap_or(0));
    vec![
        Cell::new(label),
        right(n("input_tokens")),
        right(n("output_tokens")),
        right(n("total_tokens")),
        right(usd(&totals["cost"])),
        right(n("count")),
    ]
}
