//! `budget prices list|update|set|history` and `budget calc_cost`.

use comfy_table::Cell;
use serde_json::{json, Value};

use crate::cli::{CalcCostArgs, PricesCommand};
use crate::client::Client;
use crate::output::{print_json, right, table, thousands};

pub async fn run(client: &Client, command: PricesCommand) -> anyhow::Result<()> {
    match command {
        PricesCommand::List { provider, model, json } => {
            let mut query = Vec::new();
            if let Some(p) = provider {
                query.push(("provider", p));
            }
            if let Some(m) = model {
                query.push(("model", m));
            }
            let list: Value = client.get("/api/prices", &query).await?;
            if json {
                print_json(&list);
            } else {
                print_versions(list["prices"].as_array().map(Vec::as_slice).unwrap_or(&[]));
            }
        }
        PricesCommand::Update { from, dry_run, json } => {
            let mut body = json!({ "dry_run": dry_run });
            if let Some(from) = from {
                let (text, source) = read_source(&from).await?;
                let doc: Value =
                    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{from} is not valid JSON: {e}"))?;
                body["litellm"] = doc;
                body["source"] = json!(source);
            }
            let r: Value = client.post("/api/prices/update", &body).await?;
            if json {
                print_json(&r);
            } else {
                let names = |k: &str| {
                    r[k].as_array()
                        .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
                        .unwrap_or_default()
                };
                crate::say!(
                    "{}{} added, {} changed, {} unchanged, {} skipped (source {})",
                    if dry_run { "Dry run, nothing written: " } else { "" },
                    r["added"].as_array().map_or(0, Vec::len),
                    r["changed"].as_array().map_or(0, Vec::len),
                    r["unchanged"],
                    r["skipped"],
                    r["source"].as_str().unwrap_or("?"),
                );
                for (label, key) in [("added", "added"), ("changed", "changed")] {
                    let list = names(key);
                    if !list.is_empty() {
                        crate::say!("  {label}: {list}");
                    }
                }
            }
        }
        PricesCommand::Set { provider, model, input, output, cached_input, per, effective_from, json } => {
            let mut body = json!({"provider": provider, "model": model, "input": input, "output": output, "per": per});
            if let Some(c) = cached_input {
                body["cached_input"] = json!(c);
            }
            if let Some(t) = effective_from {
                body["effective_from"] = json!(t);
            }
            let r: Value = client.post("/api/prices", &body).await?;
            if json {
                print_json(&r);
            } else {
                let what = if r["unchanged"] == 1 { "unchanged (same price already in effect)" } else { "set" };
                crate::say!("{provider}/{model}: {what}, effective {}", r["effective_from"].as_str().unwrap_or("?"));
            }
        }
        PricesCommand::Reprice { provider, model, since, until, dry_run, json } => {
            let mut body =
                json!({"provider": provider, "model": model, "since": crate::cli::instant(&since), "dry_run": dry_run});
            if let Some(until) = until {
                body["until"] = json!(crate::cli::instant(&until));
            }
            let r: Value = client.post("/api/prices/reprice", &body).await?;
            if json {
                print_json(&r);
                return Ok(());
            }
            let corrections = r["corrections"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            if !corrections.is_empty() {
                let mut t = table(&["Record", "Occurred (UTC)", "Was $", "Now $", "Change $"]);
                for c in corrections {
                    t.add_row(vec![
                        Cell::new(c["record_id"].as_str().unwrap_or("?")),
                        Cell::new(c["occurred_at"].as_str().unwrap_or("?")),
                        right(c["previous_cost"].to_string()),
                        right(c["cost"].to_string()),
                        right(c["delta"].to_string()),
                    ]);
                }
                crate::say!("{t}");
            }
            crate::say!(
                "{}{} record(s) of {provider}/{model} {}re-priced, total change ${}",
                if dry_run { "Dry run, nothing written: " } else { "" },
                r["records"],
                if dry_run { "would be " } else { "" },
                r["total_delta"],
            );
        }
        PricesCommand::History { provider, model, json } => {
            let h: Value = client.get(&format!("/api/prices/history/{provider}/{model}"), &[]).await?;
            if json {
                print_json(&h);
            } else {
                print_versions(h["versions"].as_array().map(Vec::as_slice).unwrap_or(&[]));
            }
        }
    }
    Ok(())
}

/// The file's text, or an http(s):// URL's body; and which source it counts as.
async fn read_source(from: &str) -> anyhow::Result<(String, &'static str)> {
    let (text, source) = budget_api::price_sources::fetch(from).await.map_err(anyhow::Error::msg)?;
    Ok((text, source.as_str()))
}

fn print_versions(versions: &[Value]) {
    let mut t = table(&[
        "Provider",
        "Model",
        "Input $/1M",
        "Output $/1M",
        "Cached $/1M",
        "Input $/1K",
        "Output $/1K",
        "Since (UTC)",
        "Until",
        "Source",
    ]);
    for v in versions {
        let n = |k: &str| v[k].as_number().map_or("-".to_string(), |n| n.to_string());
        t.add_row(vec![
            Cell::new(v["provider"].as_str().unwrap_or("?")),
            Cell::new(v["model"].as_str().unwrap_or("?")),
            right(n("input_per_1m")),
            right(n("output_per_1m")),
            right(n("cached_input_per_1m")),
            right(n("input_per_1k")),
            right(n("output_per_1k")),
            Cell::new(v["effective_from"].as_str().unwrap_or("?")),
            Cell::new(v["effective_to"].as_str().unwrap_or("")),
            Cell::new(v["source"].as_str().unwrap_or("?")),
        ]);
    }
    crate::say!("{t}");
}

pub async fn calc_cost(client: &Client, args: CalcCostArgs) -> anyhow::Result<()> {
    let body = json!({"provider": args.provider, "model": args.model, "input_tokens": args.input_tokens,
                      "output_tokens": args.output_tokens, "cached_input_tokens": args.cached_input_tokens});
    let r: Value = client.post("/api/prices/calculate", &body).await?;
    if args.json {
        print_json(&r);
        return Ok(());
    }
    crate::say!(
        "{}/{} (priced as {}): {} input + {} output tokens = ${} (input ${}, cached input ${}, output ${})",
        args.provider,
        args.model,
        r["resolved_model"].as_str().unwrap_or("?"),
        thousands(args.input_tokens),
        thousands(args.output_tokens),
        r["total_cost"],
        r["input_cost"],
        r["cached_input_cost"],
        r["output_cost"],
    );
    Ok(())
}
