//! `budget status`: every active policy's window, then server health and projection lag.

use comfy_table::Cell;
use serde_json::{json, Value};

use crate::cli::StatusArgs;
use crate::client::Client;
use crate::output::{print_json, right, table, thousands};

pub async fn run(client: &Client, url: &str, args: StatusArgs) -> anyhow::Result<()> {
    let health: Value = client.get("/api/health", &[]).await?;
    let mut query = Vec::new();
    for (name, value) in [
        ("period", &args.period),
        ("provider", &args.provider),
        ("component", &args.component),
        ("tier", &args.tier),
        ("at", &args.at),
        ("as_of", &args.as_of.as_deref().map(crate::cli::instant)),
    ] {
        if let Some(v) = value {
            query.push((name, v.clone()));
        }
    }
    let status: Value =
        if health["database"] == "ok" { client.get("/api/status", &query).await? } else { json!({"windows": []}) };
    if args.json {
        print_json(&json!({ "health": health, "windows": status["windows"], "at": status["at"] }));
    } else {
        let windows = status["windows"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        if windows.is_empty() {
            crate::say!(
                "No active policies{}; set one with `budget set_limit daily 10.0`.",
                if query.is_empty() { "" } else { " match" }
            );
        } else {
            print_windows(windows);
        }
        crate::say!(
            "\nBudget {} at {url}: {} (database {})",
            health["version"].as_str().unwrap_or("?"),
            health["status"].as_str().unwrap_or("?"),
            health["database"].as_str().unwrap_or("?")
        );
        let mut t = table(&["Projection", "Applied", "Lag (events)", "Lag (s)", "Error"]);
        for p in health["projections"].as_array().into_iter().flatten() {
            t.add_row(vec![
                Cell::new(p["name"].as_str().unwrap_or("?")),
                right(thousands(p["events_applied"].as_i64().unwrap_or(0))),
                right(thousands(p["lag_events"].as_i64().unwrap_or(0))),
                right(format!("{:.1}", p["lag_seconds"].as_f64().unwrap_or(0.0))),
                Cell::new(p["error"].as_str().unwrap_or("")),
            ]);
        }
        crate::say!("{t}");
    }
    if health["status"] != "healthy" {
        anyhow::bail!("Budget at {url} is {}", health["status"].as_str().unwrap_or("unhealthy"));
    }
    Ok(())
}

/// One row per policy window: what it limits, how much is used, and when it resets.
pub fn print_windows(windows: &[Value]) {
    let mut t = table(&[
        "Budget",
        "Period",
        "Type",
        "Scope",
        "Window",
        "Used",
        "Reserved",
        "Limit",
        "%",
        "Remaining",
        "State",
        "Resets (UTC)",
    ]);
    for w in windows {
        let money = |k: &str| w[k].as_number().map(|n| format!("${n}"));
        let tokens = |k: &str| w[k].as_i64().map(|n| format!("{} tok", thousands(n)));
        let both = |a: Option<String>, b: Option<String>| [a, b].into_iter().flatten().collect::<Vec<_>>().join(" / ");
        let has_cost = !w["cost_limit"].is_null();
        let has_tokens = !w["token_limit"].is_null();
        t.add_row(vec![
            Cell::new(w["budget_name"].as_str().unwrap_or("?")),
            Cell::new(w["period"].as_str().unwrap_or("?")),
            Cell::new(w["type"].as_str().unwrap_or("?")),
            Cell::new(w["scope"].as_str().unwrap_or("?")),
            Cell::new(w["window"].as_str().unwrap_or("?")),
            right(both(
                has_cost.then(|| money("used_cost")).flatten(),
                has_tokens.then(|| tokens("used_tokens")).flatten(),
            )),
            right(both(
                has_cost.then(|| money("reserved_cost")).flatten(),
                has_tokens.then(|| tokens("reserved_tokens")).flatten(),
            )),
            right(both(money("cost_limit"), tokens("token_limit"))),
            right(w["percent"].as_number().map_or("-".into(), |n| format!("{n}%"))),
            right(both(money("remaining_cost"), tokens("remaining_tokens"))),
            Cell::new(w["state"].as_str().unwrap_or("?")),
            Cell::new(w["resets_at"].as_str().unwrap_or("-")),
        ]);
    }
    crate::say!("{t}");
}
