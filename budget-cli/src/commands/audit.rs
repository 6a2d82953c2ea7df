//! `budget audit` (the events behind a selection, with the running total) and `budget explain` (how a
//! policy window's figures were reached).

use comfy_table::Cell;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::cli::{instant, AuditArgs};
use crate::client::Client;
use crate::output::{print_json, right, table, thousands};

pub async fn audit(client: &Client, args: AuditArgs) -> anyhow::Result<()> {
    if args.limit < 1 {
        anyhow::bail!("--limit is {}; give at least 1", args.limit);
    }
    let mut base: Vec<(&str, String)> = Vec::new();
    for (name, value) in [
        ("provider", args.provider),
        ("model", args.model),
        ("component", args.component),
        ("context_id", args.context_id),
        ("budget", args.budget),
        ("policy_id", args.policy),
        ("type", args.event_type),
        ("since", args.since.as_deref().map(instant)),
        ("until", args.until.as_deref().map(instant)),
    ] {
        if let Some(v) = value {
            base.push((name, v));
        }
    }
    // Page through the selection, oldest first, up to --limit events.
    let mut events: Vec<Value> = Vec::new();
    let mut after = 0i64;
    loop {
        let page_size = (args.limit - events.len() as i64).min(5000);
        let mut query = base.clone();
        query.push(("after", after.to_string()));
        query.push(("limit", page_size.to_string()));
        let page: Value = client.get("/api/events", &query).await?;
        let found = page["events"].as_array().cloned().unwrap_or_default();
        events.extend(found);
        match page["next_after"].as_i64() {
            Some(next) if (events.len() as i64) < args.limit => after = next,
            _ => break,
        }
    }
    let (mut cost, mut tokens) = (Decimal::ZERO, 0i64);
    for e in events.iter_mut() {
        if let Some(c) = e["cost"].as_number() {
            cost += c.to_string().parse::<Decimal>().unwrap_or_default();
        }
        tokens += e["tokens"].as_i64().unwrap_or(0);
        e["running_cost"] = serde_json::from_str(&cost.normalize().to_string())?;
        e["running_tokens"] = json!(tokens);
    }
    if args.json {
        let totals = json!({"events": events.len(), "cost": serde_json::from_str::<Value>(&cost.normalize().to_string())?, "tokens": tokens});
        print_json(&json!({ "events": events, "totals": totals }));
        return Ok(());
    }
    if events.is_empty() {
        crate::say!("No events match.");
        return Ok(());
    }
    let mut t = table(&[
        "Position",
        "Recorded (UTC)",
        "Type",
        "Actor / request",
        "Tokens",
        "Cost $",
        "Price version",
        "Running $",
        "Running tokens",
    ]);
    for e in &events {
        let who = match (e["actor"].as_str(), e["request_id"].as_str()) {
            (Some(a), Some(r)) => format!("{a} / {r}"),
            (Some(a), None) => a.to_string(),
            (None, Some(r)) => r.to_string(),
            (None, None) => String::new(),
        };
        t.add_row(vec![
            right(e["position"].to_string()),
            Cell::new(e["recorded_at"].as_str().unwrap_or("?")),
            Cell::new(e["type"].as_str().unwrap_or("?")),
            Cell::new(who),
            right(e["tokens"].as_i64().map(thousands).unwrap_or_default()),
            right(e["cost"].as_number().map(|n| n.to_string()).unwrap_or_default()),
            Cell::new(e["price_version"].as_str().unwrap_or("")),
            right(e["running_cost"].to_string()),
            right(thousands(e["running_tokens"].as_i64().unwrap_or(0))),
        ]);
    }
    crate::say!("{t}");
    crate::say!("{} events; total ${} and {} tokens", events.len(), cost.normalize(), thousands(tokens));
    Ok(())
}

pub async fn explain(client: &Client, policy_id: String, window: Option<String>, json: bool) -> anyhow::Result<()> {
    let query: Vec<(&str, String)> = window.map(|w| ("window", w)).into_iter().collect();
    let x: Value = client.get(&format!("/api/policies/{policy_id}/explain"), &query).await?;
    if json {
        print_json(&x);
        return Ok(());
    }
    let contributions = x["contributions"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    crate::say!("Policy {} window {}: {} events", policy_id, x["window"].as_str().unwrap_or("?"), contributions.len());
    if !contributions.is_empty() {
        let mut t = table(&[
            "Position",
            "Recorded (UTC)",
            "Event",
            "Record / allocation",
            "Used $",
            "Used tokens",
            "Reserved $",
            "Reserved tokens",
        ]);
        for c in contributions {
            t.add_row(vec![
                right(c["position"].to_string()),
                Cell::new(c["recorded_at"].as_str().unwrap_or("?")),
                Cell::new(c["event_type"].as_str().unwrap_or("?")),
                Cell::new(c["subject"].as_str().unwrap_or("")),
                right(c["posted_cost"].to_string()),
                right(thousands(c["posted_tokens"].as_i64().unwrap_or(0))),
                right(c["pending_cost"].to_string()),
                right(thousands(c["pending_tokens"].as_i64().unwrap_or(0))),
            ]);
        }
        crate::say!("{t}");
    }
    let line = |f: &Value| {
        format!(
            "used ${} / {} tokens in {} records, reserved ${} / {} tokens",
            f["posted_cost"],
            thousands(f["posted_tokens"].as_i64().unwrap_or(0)),
            f["records"],
            f["pending_cost"],
            thousands(f["pending_tokens"].as_i64().unwrap_or(0))
        )
    };
    crate::say!("Sum of the events: {}", line(&x["folded"]));
    crate::say!("The account:       {}", line(&x["account"]));
    if x["matches"] == true {
        crate::say!("They agree.");
        Ok(())
    } else {
        anyhow::bail!(
            "the account differs from the sum of its events; run `budget replay --verify` to see every difference"
        )
    }
}
