//! `budget budgets list|show`.

use budget_api::routes::budgets::{BudgetDetail, BudgetList};
use comfy_table::Cell;

use crate::cli::BudgetsCommand;
use crate::client::Client;
use crate::commands::status::print_windows;
use crate::output::{print_json, right, table};

pub async fn run(client: &Client, command: BudgetsCommand) -> anyhow::Result<()> {
    match command {
        BudgetsCommand::List { json } => {
            let list: BudgetList = client.get("/api/budgets", &[]).await?;
            if json {
                print_json(&serde_json::to_value(&list)?);
                return Ok(());
            }
            let mut t = table(&["Budget", "Id", "Policies", "Active", "Created (UTC)"]);
            for b in &list.budgets {
                t.add_row(vec![
                    Cell::new(&b.name),
                    Cell::new(b.budget_id),
                    right(b.policies),
                    Cell::new(b.active),
                    Cell::new(b.created_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
                ]);
            }
            crate::say!("{t}");
        }
        BudgetsCommand::Show { budget_id, json } => {
            let detail: BudgetDetail = client.get(&format!("/api/budgets/{budget_id}"), &[]).await?;
            if json {
                print_json(&serde_json::to_value(&detail)?);
                return Ok(());
            }
            let b = &detail.budget;
            crate::say!("Budget {} ({}), {}", b.name, b.budget_id, crate::output::count(b.policies, "policy"));
            print_windows(&detail.status);
        }
    }
    Ok(())
}
