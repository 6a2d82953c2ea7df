//! `budget keys create|list|revoke`.

use budget_api::routes::keys::{CreatedKey, KeyList, KeyView};
use comfy_table::Cell;
use serde_json::json;

use crate::cli::KeysCommand;
use crate::client::Client;
use crate::output::{print_json, table, utc, utc_named};

pub async fn run(client: &Client, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create { scope, component, name, expires, json } => {
            let body = json!({"scope": scope.trim().to_ascii_lowercase(), "component": component, "name": name, "expires": expires});
            let created: CreatedKey = client.post("/api/keys", &body).await?;
            if json {
                print_json(&serde_json::to_value(&created)?);
                return Ok(());
            }
            let k = &created.key;
            crate::say!(
                "Created {} key {}{}{}{}",
                k.scope,
                k.key_id,
                k.name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default(),
                k.component.as_deref().map(|c| format!(", bound to component {c}")).unwrap_or_default(),
                k.expires_at.map(|t| format!(", expires {}", utc_named(t))).unwrap_or_default(),
            );
            crate::say!("Secret (shown once, only its hash is kept):\n{}", created.secret);
            crate::say!(
                "Use it with: export BUDGET_API_KEY=<secret>   (or --api-key, or Authorization: Bearer <secret>)"
            );
        }
        KeysCommand::List { json } => {
            let list: KeyList = client.get("/api/keys", &[]).await?;
            if json {
                print_json(&serde_json::to_value(&list)?);
                return Ok(());
            }
            if list.keys.is_empty() {
                crate::say!("No keys have been created; `budget keys create --scope admin` makes the first.");
                return Ok(());
            }
            let mut t = table(&[
                "Id",
                "Prefix",
                "Name",
                "Scope",
                "Component",
                "Created (UTC)",
                "Last used (UTC)",
                "Expires (UTC)",
                "State",
            ]);
            for k in &list.keys {
                t.add_row(vec![
                    Cell::new(crate::output::short_id(k.key_id)),
                    Cell::new(&k.prefix),
                    Cell::new(k.name.as_deref().unwrap_or("")),
                    Cell::new(k.scope),
                    Cell::new(k.component.as_deref().unwrap_or("any")),
                    Cell::new(utc(k.created_at)),
                    Cell::new(k.last_used_at.map(utc).unwrap_or_else(|| "never".into())),
                    Cell::new(k.expires_at.map(utc).unwrap_or_else(|| "never".into())),
                    Cell::new(state(k)),
                ]);
            }
            crate::say!("{}", crate::output::fitted(t));
        }
        KeysCommand::Revoke { key_id, json } => {
            let key_id = crate::ids::resolve(client, crate::ids::Kind::Key, &key_id).await?;
            let key: KeyView = client.post(&format!("/api/keys/{key_id}/revoke"), &json!({})).await?;
            if json {
                print_json(&serde_json::to_value(&key)?);
                return Ok(());
            }
            crate::say!(
                "Revoked key {}{}; it is refused from now on",
                key.key_id,
                key.name.map(|n| format!(" ({n})")).unwrap_or_default()
            );
        }
    }
    Ok(())
}

fn state(k: &KeyView) -> &'static str {
    match (k.revoked_at, k.active) {
        (Some(_), _) => "revoked",
        (None, true) => "active",
        (None, false) => "expired",
    }
}
