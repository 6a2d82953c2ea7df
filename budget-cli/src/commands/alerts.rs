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
            // Open alerts only (the default): a column of "no" would take the message's room.
            let with_acknowledged = rows.iter().any(|a| a.alert.acknowledged);
            let mut headers = vec!["Alert", "Time (UTC)", "Severity", "Type", "Count"];
            headers.extend(with_acknowledged.then_some("Acknowledged"));
            headers.push("Message");
            let mut t = table(&headers);
            for view in rows {
                let a = &view.alert;
                let acknowledged = match (a.acknowledged, &a.acknowledged_by) {
                    (true, Some(by)) => format!("yes ({by})"),
                    (true, None) => "yes".into(),
                    (false, _) => "no".into(),
                };
                let mut row = vec![
                    Cell::new(crate::output::short_id(a.id)),
                    Cell::new(utc(a.timestamp)),
                    Cell::new(&a.severity),
                    Cell::new(&a.alert_type),
                    Cell::new(a.occurrences),
                ];
                row.extend(with_acknowledged.then(|| Cell::new(acknowledged)));
                // What the price book of now adds (a misspelled model's name and price), after the message.
                row.push(Cell::new(match &view.hint {
                    Some(hint) => format!("{}\n{hint}", a.message),
                    None => a.message.clone(),
                }));
                t.add_row(row);
            }
            crate::say!("{}", crate::output::fitted(t));
        }
        AlertsCommand::Acknowledge { alert_id: None, alert_type, severity, budget_id, by, json, .. } => {
            let filters = [("type", alert_type), ("severity", severity), ("budget_id", budget_id)];
            acknowledge_all(client, filters, by, json).await?;
        }
        AlertsCommand::Acknowledge { alert_id: Some(alert_id), by, json, .. } => {
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

/// `acknowledge --all`: the open alerts the filters select, listed first (so that acknowledging does
/// not move the pages under the listing), then acknowledged one by one, as a person would.
async fn acknowledge_all(
    client: &Client,
    filters: [(&str, Option<String>); 3],
    by: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let mut open = Vec::new();
    let mut offset = 0;
    loop {
        let mut query = vec![("limit", "500".to_string()), ("offset", offset.to_string())];
        query.extend(filters.iter().filter_map(|(name, value)| value.clone().map(|v| (*name, v))));
        if let Some(position) = client.last_write() {
            query.push(("min_position", position.to_string()));
        }
        let page: AlertList = client.get("/api/alerts", &query).await?;
        open.extend(page.alerts.into_iter().map(|a| (a.alert.id, a.alert.alert_type)));
        match page.next_offset {
            Some(next) => offset = next,
            None => break,
        }
    }
    let body = by.as_ref().map_or_else(|| json!({}), |by| json!({ "by": by }));
    let mut by_type: std::collections::BTreeMap<String, usize> = Default::default();
    let mut acknowledged = Vec::new();
    for (id, alert_type) in &open {
        let answer: Acknowledged = client.post(&format!("/api/alerts/{id}/acknowledge"), &body).await?;
        client.remember_write(answer.acknowledgement_position);
        // Someone else may have acknowledged it since the listing: not counted as ours.
        if !answer.already_acknowledged {
            *by_type.entry(alert_type.clone()).or_default() += 1;
            acknowledged.push(*id);
        }
    }
    if json {
        print_json(&json!({ "acknowledged": acknowledged, "count": acknowledged.len() }));
    } else if acknowledged.is_empty() {
        crate::say!("No open alerts to acknowledge.");
    } else {
        let who = by.map_or(String::new(), |b| format!(" by {b}"));
        let kinds: Vec<String> = by_type.iter().map(|(t, n)| format!("{n} {t}")).collect();
        crate::say!("Acknowledged {}{who}: {}.", crate::output::count(acknowledged.len(), "alert"), kinds.join(", "));
    }
    Ok(())
}
