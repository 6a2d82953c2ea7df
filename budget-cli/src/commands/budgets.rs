//! `budget budgets list|show`.

use budget_api::routes::budgets::{BudgetDetail, BudgetList};
use comfy_table::Cell;

use crate::cli::BudgetsCommand;
use crate::client::Client;
use crate::commands::status::{print_waiting, print_windows};
use crate::output::{print_json, right, table};

pub async fn run(client: &Client, command: BudgetsCommand) -> anyhow::Result<()> {
    match command {
        BudgetsCommand::List { json } => {
            let list: BudgetList = client.get("/api/budgets", &[]).await?;
            if json {
                print_json(&serde_json::to_value(&list)?);
                return Ok(());
            }
            if list.budgets.is_empty() {
                crate::say!(
                    "No active budgets; `budget set_limit daily 10.0` creates `default` with its first policy."
                );
                return Ok(());
            }
            let mut t = table(&["Budget", "Id", "Policies", "Active", "Created (UTC)"]);
            for b in &list.budgets {
                t.add_row(vec![
                    Cell::new(&b.name),
                    Cell::new(crate::output::short_id(b.budget_id)),
                    right(b.policies),
                    Cell::new(b.active),
                    Cell::new(crate::output::utc(b.created_at)),
                ]);
            }
            crate::say!("{t}");
        }
        BudgetsCommand::Show { budget, json } => {
            let budget_id = resolve(client, &budget).await?;
            let detail: BudgetDetail = client.get(&format!("/api/budgets/{budget_id}"), &[]).await?;
            if json {
                print_json(&serde_json::to_value(&detail)?);
                return Ok(());
            }
            let b = &detail.budget;
            crate::say!("Budget {} ({}), {}", b.name, b.budget_id, crate::output::count(b.policies, "policy"));
            if !detail.status.is_empty() {
                print_windows(&detail.status);
            }
            print_waiting(&detail.waiting);
        }
    }
    Ok(())
}

/// The id of the budget `given` names: by its name (budgets' names are unique), else by its id,
/// whole or short (`crate::ids`).
async fn resolve(client: &Client, given: &str) -> anyhow::Result<String> {
    let mut offset = 0;
    loop {
        let page: BudgetList =
            client.get("/api/budgets", &[("limit", "500".to_string()), ("offset", offset.to_string())]).await?;
        if let Some(b) = page.budgets.iter().find(|b| b.name == given.trim()) {
            return Ok(b.budget_id.to_string());
        }
        match page.next_offset {
            Some(next) if next > offset => offset = next,
            _ => break,
        }
    }
    let looks_like_id = given.trim().chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    if !looks_like_id {
        anyhow::bail!("no budget is named `{}`; `budget budgets list` lists them", given.trim());
    }
    crate::ids::resolve(client, crate::ids::Kind::Budget, given).await
}
