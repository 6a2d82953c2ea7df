//! Short ids, like git's short hashes: tables show an id's last [`SHORT`] characters, and every
//! command that takes a budget, policy, alert, allocation or key id accepts any unique start or end of it (at
//! least 4 characters), resolved against the service's own list. The end, not the start: ids are
//! UUIDv7, whose first digits are their creation time, so ids made together share them; the last
//! digits are random.

use anyhow::bail;
use serde_json::Value;

use crate::client::Client;

/// Characters of an id that tables show.
pub const SHORT: usize = 8;
/// The shortest fragment looked up (fewer would match half the list).
const MIN_PREFIX: usize = 4;

/// What an id names: where its list is, the list's field, the id's field, and how to list them.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Budget,
    Policy,
    Alert,
    Allocation,
    Key,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Budget => "budget",
            Kind::Policy => "policy",
            Kind::Alert => "alert",
            Kind::Allocation => "allocation",
            Kind::Key => "key",
        }
    }

    /// (path, query, list field, id field, the command that lists them).
    fn list(self) -> (&'static str, &'static [(&'static str, &'static str)], &'static str, &'static str, &'static str) {
        match self {
            Kind::Budget => (
                "/api/budgets",
                &[("all", "true"), ("limit", "500")],
                "budgets",
                "budget_id",
                "budget budgets list --all",
            ),
            Kind::Policy => {
                ("/api/policies", &[("all", "true")], "policies", "policy_id", "budget policies list --all")
            }
            Kind::Alert => {
                ("/api/alerts", &[("all", "true"), ("limit", "500")], "alerts", "id", "budget alerts list --all")
            }
            Kind::Allocation => (
                "/api/allocations",
                &[("state", "all"), ("limit", "500")],
                "allocations",
                "allocation_id",
                "budget allocate list --all",
            ),
            Kind::Key => ("/api/keys", &[], "keys", "key_id", "budget keys list"),
        }
    }
}

/// The whole id `given` names: itself when it is a whole UUID, else the one id it starts or ends.
pub async fn resolve(client: &Client, kind: Kind, given: &str) -> anyhow::Result<String> {
    let given = given.trim();
    if uuid::Uuid::parse_str(given).is_ok() {
        return Ok(given.to_string());
    }
    let (path, query, field, id_field, lister) = kind.list();
    let noun = kind.noun();
    if given.chars().count() < MIN_PREFIX || !given.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        let article = if noun.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
        bail!("`{given}` is not {article} {noun} id; give the id, or at least {MIN_PREFIX} of its characters as `{lister}` shows them");
    }
    let prefix = given.to_ascii_lowercase();
    let mut matches = Vec::new();
    let mut offset = 0i64;
    loop {
        let mut q: Vec<(&str, String)> = query.iter().map(|(k, v)| (*k, v.to_string())).collect();
        if offset > 0 {
            q.push(("offset", offset.to_string()));
        }
        let page: Value = client.get(path, &q).await?;
        let items = page[field].as_array().cloned().unwrap_or_default();
        matches.extend(
            items
                .iter()
                .filter_map(|i| i[id_field].as_str())
                .filter(|id| id.starts_with(&prefix) || id.ends_with(&prefix))
                .map(str::to_string),
        );
        match page["next_offset"].as_i64() {
            Some(next) if next > offset => offset = next,
            _ => break,
        }
    }
    match matches.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no {noun} id starts or ends with `{given}`; `{lister}` lists them"),
        many => bail!(
            "`{given}` matches {} {noun} ids ({}); give more characters",
            many.len(),
            many.iter().take(5).map(String::as_str).collect::<Vec<_>>().join(", ")
        ),
    }
}
