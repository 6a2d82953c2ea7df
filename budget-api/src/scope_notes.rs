//! Notes on a limit's scope that names what a typo would: a provider or model the price book does not
//! know, a component, task type or user no recent call named. `--component codx` made a limit that
//! counted nothing, and said only that its window held "nothing yet". Said, not refused: a local
//! model may rightly be unpriced, and a limit may be set before its first call (so nothing is said
//! while the price book, or the usage, is empty). Read after the write, outside its transaction.

use budget_events::domain::price::{self, PriceVersion};
use budget_events::store::prices;
use budget_projections::usage_rollups::{self, UsageFilter};
use chrono::{Duration, Utc};

use crate::error::ApiError;
use crate::routes::policies::PolicyView;

/// How far back a component, task type or user is looked for.
pub const SEEN_DAYS: i64 = 90;

/// What each note ends with: why it matters.
const COUNTS_NOTHING: &str = "; if no call names it, this limit counts nothing";

/// The notes on `p`'s scope, each a sentence without its full stop.
pub async fn notes(client: &impl tokio_postgres::GenericClient, p: &PolicyView) -> Result<Vec<String>, ApiError> {
    let mut notes = Vec::new();
    if p.provider.is_some() || p.model.is_some() {
        let book = prices::in_effect(client, Utc::now()).await?;
        notes.extend(unknown_to_the_price_book(&book, p.provider.as_deref(), p.model.as_deref()));
    }
    let scoped: Vec<(&str, &str, &str)> =
        [("component", "component", &p.component), ("task_type", "task type", &p.task_type), ("user", "user", &p.user)]
            .into_iter()
            .filter_map(|(dimension, noun, name)| Some((dimension, noun, name.as_deref()?)))
            .collect();
    if !scoped.is_empty() {
        let since = UsageFilter { start: Some(Utc::now() - Duration::days(SEEN_DAYS)), ..Default::default() };
        let dimensions: Vec<&str> = scoped.iter().map(|(d, _, _)| *d).collect();
        let usage = usage_rollups::report(client, &since, budget_events::period::Period::Monthly, &dimensions).await?;
        if usage.totals.count > 0 {
            for (dimension, noun, name) in scoped {
                // Records without a user are grouped under "": not a name anyone limits.
                let seen: Vec<&str> = usage
                    .groups
                    .get(dimension)
                    .map(|g| g.keys().map(String::as_str).filter(|n| !n.is_empty()).collect())
                    .unwrap_or_default();
                notes.extend(unseen(noun, name, &seen));
            }
        }
    }
    Ok(notes)
}

fn did_you_mean(name: Option<&str>) -> String {
    name.map(|n| format!("did you mean `{n}`? ")).unwrap_or_default()
}

/// A provider or model `book` does not price (`gpt-4o-2024-08-06` and `openai/gpt-4o` are gpt-4o's,
/// as records are priced).
fn unknown_to_the_price_book(book: &[PriceVersion], provider: Option<&str>, model: Option<&str>) -> Option<String> {
    if book.is_empty() {
        return None;
    }
    let providers: std::collections::BTreeSet<&str> = book.iter().map(|v| v.spec.provider.as_str()).collect();
    let note = match (provider, model) {
        (Some(pr), _) if !providers.contains(pr) => {
            let known = providers.iter().copied().collect::<Vec<_>>().join(", ");
            let near = did_you_mean(price::closest(pr, providers.iter().copied()));
            format!("the price book has no provider `{pr}` ({near}it has {known})")
        }
        (pr, Some(m))
            if !book.iter().any(|v| {
                pr.is_none_or(|pr| v.spec.provider == pr)
                    && price::candidates(&v.spec.provider, m).contains(&v.spec.model)
            }) =>
        {
            let of = pr.map(|pr| format!(" of {pr}")).unwrap_or_default();
            let models =
                book.iter().filter(|v| pr.is_none_or(|pr| v.spec.provider == pr)).map(|v| v.spec.model.as_str());
            let near = did_you_mean(price::closest(m, models));
            format!("the price book has no model `{m}`{of} ({near}`budget prices list` shows them)")
        }
        _ => return None,
    };
    Some(format!("{note}{COUNTS_NOTHING}"))
}

/// `name` when no call of the last [`SEEN_DAYS`] days named it, among the `seen` names.
fn unseen(noun: &str, name: &str, seen: &[&str]) -> Option<String> {
    if seen.contains(&name) {
        return None;
    }
    let near = did_you_mean(price::closest(name, seen.iter().copied()));
    let those = match seen.len() {
        0 => format!("no call named a {noun}"),
        1..=12 => format!("those seen: {}", seen.join(", ")),
        n => format!("`budget get_usage monthly --days {SEEN_DAYS}` lists the {n} seen"),
    };
    Some(format!("no call in the last {SEEN_DAYS} days named {noun} `{name}` ({near}{those}){COUNTS_NOTHING}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_name_seen_says_nothing_and_one_unseen_names_its_likeness() {
        let seen = ["athena", "codex"];
        assert_eq!(super::unseen("component", "codex", &seen), None);
        assert_eq!(
            super::unseen("component", "codx", &seen).as_deref(),
            Some("no call in the last 90 days named component `codx` (did you mean `codex`? those seen: athena, codex); if no call names it, this limit counts nothing")
        );
        let many: Vec<String> = (0..13).map(|i| format!("u{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let note = super::unseen("user", "alice", &many).unwrap();
        assert!(note.contains("(`budget get_usage monthly --days 90` lists the 13 seen)"), "{note}");
    }
}
