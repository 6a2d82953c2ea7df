//! `budget status`: server health and projection lag.

use crate::cli::StatusArgs;
use crate::client::Client;
use crate::output::{print_json, right, table, thousands};

pub async fn run(client: &Client, url: &str, args: StatusArgs) -> anyhow::Result<()> {
    let health: serde_json::Value = client.get("/api/health", &[]).await?;
    if args.json {
        print_json(&health);
    } else {
        println!(
            "Budget {} at {url}: {} (database {})",
            health["version"].as_str().unwrap_or("?"),
            health["status"].as_str().unwrap_or("?"),
            health["database"].as_str().unwrap_or("?")
        );
        let mut t = table(&["Projection", "Applied", "Lag (events)", "Lag (s)", "Error"]);
        for p in health["projections"].as_array().into_iter().flatten() {
            t.add_row(vec![
                comfy_table::Cell::new(p["name"].as_str().unwrap_or("?")),
                right(thousands(p["events_applied"].as_i64().unwrap_or(0))),
                right(thousands(p["lag_events"].as_i64().unwrap_or(0))),
                right(format!("{:.1}", p["lag_seconds"].as_f64().unwrap_or(0.0))),
                comfy_table::Cell::new(p["error"].as_str().unwrap_or("")),
            ]);
        }
        println!("{t}");
    }
    if health["status"] != "healthy" {
        anyhow::bail!("Budget at {url} is {}", health["status"].as_str().unwrap_or("unhealthy"));
    }
    Ok(())
}
