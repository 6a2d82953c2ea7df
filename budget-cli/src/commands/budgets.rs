//! `budget budgets list|show`.

use comfy_table::Cell;
use serde_json::Value;

use crate::cli::BudgetsCommand;
use crate::client::Client;
use crate::commands::status::print_windows;
use crate::output::{print_json, right, table};

pub async fn run(client: &Client, command: BudgetsCommand) -> anyhow::Result<()> {
    match command {
        BudgetsCommand::List { json } => {
            let list: Value = client.get("/api/budgets", &[]).await?;
            if json {
                print_json(&list);
                return Ok(());
            }
            let mut t = table(&["Budget", "Id", "Policies", "Active", "Created (UTC)"]);
            for b in list["budgets"].as_array().into_iter().flatten() {
                t.add_row(vec![
                    Cell::new(b["name"].as_str().unwrap_or("?")),
                    Cell::new(b["budget_id"].as_str().unwrap_or("?")),
                    right(b["policies"].as_i64().unwrap_or(0)),
                    Cell::new(b["active"].to_string()),
                    Cell::new(b["created_at"].as_str().unwrap_or("?")),
                ]);
            }
            crate::say!("{t}");
        }
        BudgetsCommand::Show { budget_id, json } => {
            let budget: Value = client.get(&format!("/api/budgets/{budget_id}"), &[]).await?;
            if json {
                print_json(&budget);
                return Ok(());
            }
            crate::say!(
                "Budget {} ({}), {} policies",
                budget["name"].as_str().unwrap_or("?"),
                budget["budget_id"].as_str().unwrap_or("?"),
                budget["policies"]
            );
            print_windows(budget["status"].as_array().map(Vec::as_slice).unwrap_or(&[]));
        }
    }
    Ok(())
}
