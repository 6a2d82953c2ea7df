//! `budget allocate create|list|release`.

use budget_api::routes::allocations::{AllocationList, AllocationView};
use budget_api::routes::policies::{PolicyList, PolicyView};
use comfy_table::Cell;
use serde_json::{json, Value};

use crate::cli::AllocateCommand;
use crate::client::Client;
use crate::output::{print_json, right, short_id, table, thousands, utc, utc_named, when};

pub async fn run(client: &Client, command: AllocateCommand) -> anyhow::Result<()> {
    match command {
        AllocateCommand::Create(args) => {
            let mut body = json!({"context_id": args.context_id});
            for (field, value) in [
                ("component", args.component),
                ("tier", args.tier),
                ("provider", args.provider),
                ("model", args.model),
                ("task_type", args.task_type),
                ("user_id", args.user),
                ("session_id", args.session_id),
                ("estimated_cost", args.estimated_cost),
                ("ttl", args.ttl),
            ] {
                if let Some(v) = value {
                    body[field] = Value::String(v);
                }
            }
            if let Some(t) = args.tokens {
                body["tokens"] = json!(t);
            }
            if let Some(p) = args.priority {
                body["priority"] = json!(p);
            }
            let a: AllocationView = client.post("/api/allocations", &body).await?;
            client.remember_write(a.position);
            if args.json {
                print_json(&serde_json::to_value(&a)?);
            } else {
                crate::say!(
                    "Allocated {} tokens ({}) to {} for {}: allocation {}, expires {}",
                    thousands(a.tokens_allocated),
                    crate::output::dollars(a.estimated_cost),
                    a.component,
                    a.context_id,
                    a.allocation_id,
                    expiry(a.expires_at),
                );
                if a.reservations.is_empty() {
                    crate::say!("No policy window counts this call, so nothing limits it.");
                }
                // The limits by what they are, not by their ids alone (a listing the answer lacks;
                // without it, the ids).
                let policies: Vec<PolicyView> = match a.reservations.is_empty() {
                    true => Vec::new(),
                    false => {
                        client.get::<PolicyList>("/api/policies", &[]).await.map(|l| l.policies).unwrap_or_default()
                    }
                };
                for r in &a.reservations {
                    let words = policies
                        .iter()
                        .find(|p| p.policy_id == r.policy_id)
                        .map(|p| format!("{} on {} ", crate::commands::set_limit::kind(p), p.scope));
                    crate::say!(
                        "  reserved under {}(policy {}), window {}",
                        words.unwrap_or_default(),
                        short_id(r.policy_id),
                        r.window
                    );
                }
                // What the answer warns of (warn and soft limits it presses, a model that names no
                // provider) comes after: the reservation was made all the same.
                for m in &a.messages {
                    crate::say!("Warning: {m}");
                }
                for alt in &a.alternatives {
                    crate::say!(
                        "  {}/{}: {} (saves {})",
                        alt.provider,
                        alt.model,
                        crate::output::dollars(alt.cost),
                        crate::output::dollars(alt.savings)
                    );
                }
            }
        }
        AllocateCommand::List(args) => {
            let mut query = Vec::new();
            if let Some(c) = args.component {
                query.push(("component", c));
            }
            if let Some(c) = args.context_id {
                query.push(("context_id", c));
            }
            if args.all {
                query.push(("state", "all".to_string()));
            }
            let list: AllocationList = client.get("/api/allocations", &query).await?;
            if args.json {
                print_json(&serde_json::to_value(&list)?);
                return Ok(());
            }
            let rows = &list.allocations;
            if rows.is_empty() {
                crate::say!("No {}allocations.", if args.all { "" } else { "active " });
                return Ok(());
            }
            let mut t = table(&[
                "Allocation",
                "Context",
                "Component",
                "Model or tier",
                "State",
                "Allocated",
                "Used",
                "Remaining",
                "Used %",
                "Expires (UTC)",
            ]);
            for a in rows {
                t.add_row(vec![
                    Cell::new(crate::output::short_id(a.allocation_id)),
                    Cell::new(&a.context_id),
                    Cell::new(&a.component),
                    // What it is for, as the dashboard shows it; open, it holds room under every tier's limits.
                    Cell::new(match (&a.provider, &a.model) {
                        (Some(provider), Some(model)) => format!("{provider}/{model}"),
                        (None, Some(model)) => model.clone(),
                        _ if a.tier_open => "any".into(),
                        _ => a.tier.clone(),
                    }),
                    Cell::new(&a.state),
                    right(thousands(a.tokens_allocated)),
                    right(thousands(a.tokens_used)),
                    right(thousands(a.remaining_tokens)),
                    right(format!("{}%", a.usage_percentage)),
                    Cell::new(utc(a.expires_at)),
                ]);
            }
            crate::say!("{}", crate::output::fitted(t));
        }
        AllocateCommand::Release { allocation_id, json } => {
            let allocation_id = crate::ids::resolve(client, crate::ids::Kind::Allocation, &allocation_id).await?;
            let a: AllocationView =
                client.post(&format!("/api/allocations/{allocation_id}/release"), &json!({})).await?;
            if json {
                print_json(&serde_json::to_value(&a)?);
            } else {
                crate::say!(
                    "Released allocation {} ({} of {} tokens used; the rest is no longer reserved)",
                    a.allocation_id,
                    thousands(a.tokens_used),
                    thousands(a.tokens_allocated),
                );
            }
        }
    }
    Ok(())
}

/// When an allocation expires: relative, then the time (`in 15m (2026-12-03 05:55:58 UTC)`); with
/// `--precise`, the RFC 3339 time alone.
fn expiry(at: chrono::DateTime<chrono::Utc>) -> String {
    let (relative, time) = (when(at), utc_named(at));
    if relative == utc(at) {
        time
    } else {
        format!("{relative} ({time})")
    }
}
