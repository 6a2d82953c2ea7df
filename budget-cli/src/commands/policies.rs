//! `budget policies list|disable|enable`: the policies `set_limit` made, and turning one off and on
//! again without the API.

use budget_api::routes::policies::{PolicyList, PolicySetResponse, PolicyView};
use comfy_table::Cell;
use serde_json::json;

use super::set_limit::{limits, opening, words, zone};
use crate::cli::PoliciesCommand;
use crate::client::Client;
use crate::ids::{resolve, Kind};
use crate::output::{print_json, short_id, table};

pub async fn run(client: &Client, command: PoliciesCommand) -> anyhow::Result<()> {
    match command {
        PoliciesCommand::List { period, provider, component, all, json } => {
            let mut query = Vec::new();
            for (name, value) in [("period", period), ("provider", provider), ("component", component)] {
                if let Some(v) = value {
                    query.push((name, v));
                }
            }
            if all {
                query.push(("all", "true".to_string()));
            }
            let list: PolicyList = client.get("/api/policies", &query).await?;
            if json {
                print_json(&serde_json::to_value(&list)?);
            } else if list.policies.is_empty() {
                let matching = if query.iter().any(|(k, _)| *k != "all") { " match" } else { "" };
                crate::say!("No policies{matching}; set one with `budget set_limit daily 10.0`.");
            } else {
                let mut t = table(&["Policy", "Budget", "Limit", "Scope", "Of", "Warn / act at", "Enabled"]);
                for p in &list.policies {
                    t.add_row(vec![
                        Cell::new(short_id(p.policy_id)),
                        Cell::new(&p.budget_name),
                        Cell::new(crate::commands::set_limit::kind(p)),
                        Cell::new(&p.scope),
                        Cell::new(limits(p)),
                        Cell::new(format!("{}% / {}%", share(p.warning_threshold), share(p.action_threshold))),
                        Cell::new(match (p.enabled, p.budget_archived) {
                            (true, false) => "yes",
                            (false, false) => "no",
                            // Counts nothing either way (`--all` lists it).
                            (true, true) => "yes, budget archived",
                            (false, true) => "no, budget archived",
                        }),
                    ]);
                }
                crate::say!("{}", crate::output::fitted(t));
            }
        }
        PoliciesCommand::Disable { policy_id, json } => switch(client, &policy_id, false, json).await?,
        PoliciesCommand::Enable { policy_id, json } => switch(client, &policy_id, true, json).await?,
    }
    Ok(())
}

/// Turns a policy off or on; one already so is left as it is (and says so).
async fn switch(client: &Client, given: &str, enable: bool, json: bool) -> anyhow::Result<()> {
    let id = resolve(client, Kind::Policy, given).await?;
    let before: PolicyView = client.get(&format!("/api/policies/{id}"), &[]).await?;
    if before.budget_archived {
        // Checked here too: "already enabled" would read as if it counted.
        anyhow::bail!(
            "policy {} ({}) counts nothing, enabled or not: its budget is archived, and an archived budget takes no changes; set the limit again in another budget (`budget set_limit … --budget NAME`)",
            short_id(before.policy_id),
            words(&before),
        );
    }
    if before.enabled == enable && !json {
        let state = if enable { "enabled" } else { "disabled" };
        crate::say!(
            "Policy {} ({}) is already {state}; nothing was changed.",
            short_id(before.policy_id),
            words(&before)
        );
        return Ok(());
    }
    let response: PolicySetResponse = if enable {
        client.patch(&format!("/api/policies/{id}"), &json!({ "enabled": true })).await?
    } else {
        client.post(&format!("/api/policies/{id}/disable"), &json!({})).await?
    };
    client.remember_write(response.position);
    if json {
        print_json(&serde_json::to_value(&response)?);
        return Ok(());
    }
    let p = &response.policy;
    let short = short_id(p.policy_id);
    if enable {
        crate::say!("Enabled policy {short} ({}): it counts and limits again from now on.", words(p));
        if let Some(o) = &response.opening {
            crate::say!("{}", opening(o, zone(p)));
        }
    } else {
        crate::say!(
            "Disabled policy {short} ({}): it no longer counts or limits anything; the log keeps it, and `budget policies enable {short}` turns it back on.",
            words(p)
        );
    }
    Ok(())
}

/// A threshold (0.8) as a percentage (80).
fn share(threshold: rust_decimal::Decimal) -> rust_decimal::Decimal {
    (threshold * rust_decimal::Decimal::ONE_HUNDRED).normalize()
}
