//! `budget budgets list|show|create|rename|archive`.

use budget_api::routes::budgets::{BudgetChanged, BudgetDetail, BudgetList};
use comfy_table::Cell;
use serde_json::json;

use crate::cli::BudgetsCommand;
use crate::client::Client;
use crate::commands::status::{print_more, print_waiting, print_windows};
use crate::output::{print_json, right, table};

pub async fn run(client: &Client, command: BudgetsCommand) -> anyhow::Result<()> {
    match command {
        BudgetsCommand::List { all, json } => {
            let query = if all { vec![("all", "true".to_string())] } else { Vec::new() };
            let list: BudgetList = client.get("/api/budgets", &query).await?;
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
                    Cell::new(if b.active { "yes" } else { "no, archived" }),
                    Cell::new(crate::output::utc(b.created_at)),
                ]);
            }
            crate::say!("{}", crate::output::fitted(t));
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
            if !b.active {
                crate::say!(
                    "It is archived: its policies count nothing; the windows below stand where archiving left them."
                );
            }
            if !detail.status.is_empty() {
                print_windows(&detail.status);
            }
            print_more(&detail.more_windows, &detail.status);
            print_waiting(&detail.waiting);
        }
        BudgetsCommand::Create { name, description, owner, json } => {
            let body = json!({"name": name, "description": description, "owner": owner});
            let created: BudgetChanged = client.post("/api/budgets", &body).await?;
            client.remember_write(created.position);
            if json {
                print_json(&serde_json::to_value(&created)?);
            } else {
                crate::say!(
                    "Created budget {} ({}); `budget set_limit daily 10.0 --budget {}` gives it a limit.",
                    created.name,
                    created.budget_id,
                    created.name
                );
            }
        }
        BudgetsCommand::Rename { budget, new_name, json } => {
            let budget_id = resolve(client, &budget).await?;
            let before: BudgetDetail = client.get(&format!("/api/budgets/{budget_id}"), &[]).await?;
            let renamed: BudgetChanged =
                client.patch(&format!("/api/budgets/{budget_id}"), &json!({ "name": new_name })).await?;
            client.remember_write(renamed.position);
            if json {
                print_json(&serde_json::to_value(&renamed)?);
            } else if renamed.position.is_none() {
                crate::say!("Budget {} is already named so; nothing was changed.", renamed.name);
            } else {
                crate::say!("Renamed budget {} to {}.", before.budget.name, renamed.name);
            }
        }
        BudgetsCommand::Archive { budget, json } => {
            let budget_id = resolve(client, &budget).await?;
            let before: BudgetDetail = client.get(&format!("/api/budgets/{budget_id}"), &[]).await?;
            let archived: BudgetChanged = client.post(&format!("/api/budgets/{budget_id}/archive"), &json!({})).await?;
            client.remember_write(archived.position);
            if json {
                print_json(&serde_json::to_value(&archived)?);
            } else if !before.budget.active {
                crate::say!("Budget {} is already archived; nothing was changed.", archived.name);
            } else {
                let name = &archived.name;
                match before.budget.policies {
                    0 => crate::say!("Archived budget {name}; it had no policies."),
                    1 => crate::say!(
                        "Archived budget {name}: its 1 policy no longer counts or limits anything; the log keeps it and every figure it made."
                    ),
                    n => crate::say!(
                        "Archived budget {name}: its {n} policies no longer count or limit anything; the log keeps them and every figure they made."
                    ),
                }
            }
        }
    }
    Ok(())
}

/// The id of the budget `given` names: by its name (budgets' names are unique), else by its id,
/// whole or short (`crate::ids`).
async fn resolve(client: &Client, given: &str) -> anyhow::Result<String> {
    let mut offset = 0;
    loop {
        let query = [("all", "true".to_string()), ("limit", "500".to_string()), ("offset", offset.to_string())];
        let page: BudgetList = client.get("/api/budgets", &query).await?;
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
        anyhow::bail!("no budget is named `{}`; `budget budgets list --all` lists them", given.trim());
    }
    crate::ids::resolve(client, crate::ids::Kind::Budget, given).await
}
