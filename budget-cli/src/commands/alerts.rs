//! `budget alerts list|acknowledge`.

use budget_api::routes::alerts::{Acknowledged, AlertList};
use comfy_table::Cell;
use serde_json::json;

use crate::cli::AlertsCommand;
use crate::client::Client;
use crate::output::{print_json, short_id, table, utc, utc_named};

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
            if let Some(position) = client.last_write() {
                query.push(("min_position", position.to_string()));
            }
            let list: AlertList = client.get("/api/alerts", &query).await?;
            if json {
                print_json(&serde_json::to_value(&list)?);
                return Ok(());
            }
            let rows = &list.alerts;
            if rows.is_empty() {
                crate::say!("No {}alerts.", if all { "" } else { "open " });
                return Ok(());
            }
            let mut t = table(&["Alert", "Time (UTC)", "Severity", "Type", "Count", "Acknowledged", "Message"]);
            for a in rows {
                let acknowledged = match (a.acknowledged, &a.acknowledged_by) {
                    (true, Some(by)) => format!("yes ({by})"),
                    (true, None) => "yes".into(),
                    (false, _) => "no".into(),
                };
                t.add_row(vec![
                    Cell::new(crate::output::short_id(a.id)),
                    Cell::new(utc(a.timestamp)),
                    Cell::new(&a.severity),
                    Cell::new(&a.alert_type),
                    Cell::new(a.occurrences),
                    Cell::new(acknowledged),
                    Cell::new(&a.message),
                ]);
            }
            crate::say!("{t}");
        }
        AlertsCommand::Acknowledge { alert_id, by, json } => {
            let alert_id = crate::ids::resolve(client, crate::ids::Kind::Alert, &alert_id).await?;
            let body = match by {
                Some(by) => json!({ "by": by }),
                None => json!({}),
            };
            let answer: Acknowledged = client.post(&format!("/api/alerts/{alert_id}/acknowledge"), &body).await?;
            client.remember_write(answer.acknowledgement_position);
            if json {
                print_json(&serde_json::to_value(&answer)?);
            } else {
                let a = &answer.alert;
                let who = a.acknowledged_by.as_ref().map_or(String::new(), |b| format!(" by {b}"));
                let when = a.acknowledged_at.map_or("?".into(), utc_named);
                let alert_id = short_id(&alert_id);
                if answer.already_acknowledged {
                    crate::say!("Alert {alert_id} was already acknowledged{who} at {when}");
                } else {
                    crate::say!("Acknowledged alert {alert_id}{who} at {when}: {}", a.message);
                }
            }
        }
    }
    Ok(())
}
