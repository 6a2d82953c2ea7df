//! `budget alerts list|acknowledge`.

use comfy_table::Cell;
use serde_json::{json, Value};

use crate::cli::AlertsCommand;
use crate::client::Client;
use crate::output::{print_json, table};

pub async fn run(client: &Client, command: AlertsCommand) -> anyhow::Result<()> {
    match command {
        AlertsCommand::List { severity, alert_type, budget_id, all, limit, json } => {
            let mut query = vec![("limit", limit.to_string())];
            for (name, value) in [("severity", severity), ("type", alert_type), ("budget_id", budget_id)] {
                if let Some(v) = value {
                    query.push((name, v));
                }
            }
            if all {
                query.push(("all", "true".into()));
            }
            let list: Value = client.get("/api/alerts", &query).await?;
            if json {
                print_json(&list);
                return Ok(());
            }
            let rows = list["alerts"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            if rows.is_empty() {
                crate::say!("No {}alerts.", if all { "" } else { "open " });
                return Ok(());
            }
            let mut t = table(&["Alert", "Time (UTC)", "Severity", "Type", "Count", "Acknowledged", "Message"]);
            for a in rows {
                let acknowledged = match (a["acknowledged"].as_bool(), a["acknowledged_by"].as_str()) {
                    (Some(true), Some(by)) => format!("yes ({by})"),
                    (Some(true), None) => "yes".into(),
                    _ => "no".into(),
                };
                t.add_row(vec![
                    Cell::new(a["id"].as_str().unwrap_or("?")),
                    Cell::new(a["timestamp"].as_str().unwrap_or("?")),
                    Cell::new(a["severity"].as_str().unwrap_or("?")),
                    Cell::new(a["type"].as_str().unwrap_or("?")),
                    Cell::new(a["occurrences"].to_string()),
                    Cell::new(acknowledged),
                    Cell::new(a["message"].as_str().unwrap_or("")),
                ]);
            }
            crate::say!("{t}");
        }
        AlertsCommand::Acknowledge { alert_id, by, json } => {
            let body = match by {
                Some(by) => json!({ "by": by }),
                None => json!({}),
            };
            let a: Value = client.post(&format!("/api/alerts/{alert_id}/acknowledge"), &body).await?;
            if json {
                print_json(&a);
            } else {
                let who = a["acknowledged_by"].as_str().map_or(String::new(), |b| format!(" by {b}"));
                let when = a["acknowledged_at"].as_str().unwrap_or("?");
                if a["already_acknowledged"] == true {
                    crate::say!("Alert {alert_id} was already acknowledged{who} at {when}");
                } else {
                    crate::say!(
                        "Acknowledged alert {alert_id}{who} at {when}: {}",
                        a["message"].as_str().unwrap_or("")
                    );
                }
            }
        }
    }
    Ok(())
}
