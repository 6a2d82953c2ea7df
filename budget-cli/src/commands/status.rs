//! `budget status`: every active policy's window, then server health and projection lag.

use budget_api::routes::health::Health;
use budget_api::routes::policies::PolicyView;
use budget_api::routes::status::{MoreWindows, StatusResponse, WindowStatus};
use comfy_table::Cell;
use serde_json::json;

use crate::cli::StatusArgs;
use crate::client::Client;
use crate::output::{print_json, right, table, thousands, utc_named};

pub async fn run(client: &Client, url: &str, args: StatusArgs) -> anyhow::Result<()> {
    let health: Health = client.get("/api/health", &[]).await?;
    let mut query = Vec::new();
    for (name, value) in [
        ("period", &args.period),
        ("provider", &args.provider),
        ("component", &args.component),
        ("tier", &args.tier),
        ("at", &args.at),
        ("as_of", &args.as_of),
    ] {
        if let Some(v) = value {
            query.push((name, v.clone()));
        }
    }
    let status: Option<StatusResponse> =
        if health.database == "ok" { Some(client.get("/api/status", &query).await?) } else { None };
    let windows = status.as_ref().map_or(&[][..], |s| s.windows.as_slice());
    let waiting = status.as_ref().map_or(&[][..], |s| s.waiting.as_slice());
    let more = status.as_ref().map_or(&[][..], |s| s.more_windows.as_slice());
    if args.json {
        let at = status.as_ref().map(|s| s.at);
        print_json(
            &json!({ "health": health, "windows": windows, "waiting": waiting, "more_windows": more, "at": at }),
        );
    } else {
        let as_of = status.as_ref().filter(|_| args.as_of.is_some()).map(|s| s.at);
        if !waiting.is_empty() {
            if !windows.is_empty() {
                print_windows(windows);
            }
            print_waiting(waiting);
        } else if let (true, Some(then)) = (windows.is_empty(), as_of) {
            let matching = if query.len() > 1 { " matching" } else { "" };
            crate::say!("No{matching} policy was active at {} (the log as it stood then).", utc_named(then));
        } else if windows.is_empty() {
            crate::say!(
                "No active policies{}; set one with `budget set_limit daily 10.0`.",
                if query.is_empty() { "" } else { " match" }
            );
        } else {
            print_windows(windows);
        }
        print_more(more, windows);
        crate::say!("\nBudget {} at {url}: {} (database {})", health.version, health.status, health.database);
        let mut t = table(&["Projection", "Applied", "Lag (events)", "Lag (s)", "Error"]);
        for p in &health.projections {
            t.add_row(vec![
                Cell::new(&p.name),
                right(thousands(p.events_applied)),
                right(thousands(p.lag_events)),
                right(format!("{:.1}", p.lag_seconds)),
                Cell::new(p.error.as_deref().unwrap_or("")),
            ]);
        }
        crate::say!("{}", crate::output::fitted(t));
        for h in &health.log_held_by {
            crate::say!(
                "Projections wait for transaction pid {} ({}, {}) open {:.0}s in this database; end it to let them catch up",
                h.pid,
                if h.application_name.is_empty() { "no application name" } else { &h.application_name },
                h.state.as_deref().unwrap_or("?"),
                h.age_seconds
            );
        }
    }
    if health.status != "healthy" {
        anyhow::bail!("Budget at {url} is {}", health.status);
    }
    Ok(())
}

/// The per-task and per-session policies whose windows were not all listed: how many there are, and
/// how to see one.
pub fn print_more(more: &[MoreWindows], windows: &[WindowStatus]) {
    for m in more {
        let Some(w) = windows.iter().find(|w| w.policy.policy_id == m.policy_id) else { continue };
        let each = if w.policy.period == "per_session" { "session" } else { "task" };
        let short = crate::output::short_id(m.policy_id);
        crate::say!(
            "Policy {short} has {} {each} windows; the {} most recent are above. One {each}'s: `budget explain {short} --window {each}:ID`",
            thousands(m.total),
            m.shown,
        );
    }
}

/// The per-task and per-session policies with no window yet, each on a line of its own: a policy
/// just set must not look as if it were not there.
pub fn print_waiting(policies: &[PolicyView]) {
    for p in policies {
        let each = if p.period == "per_session" { "session" } else { "task" };
        crate::say!(
            "Policy {} ({}) has no window yet: each {each} gets its own with its first call or reservation.",
            crate::output::short_id(p.policy_id),
            super::set_limit::words(p),
        );
    }
}

/// One row per policy window: what it limits, how much is used, and when it resets. Fits a terminal:
/// the budget only when there are several, the window's key only with `--wide` or when some window
/// never resets (per task or session: its key, `task:…`, is what tells its rows apart), and the
/// reset time only when some window has one.
pub fn print_windows(windows: &[WindowStatus]) {
    let wide = crate::output::is_wide();
    let with_window = wide || windows.iter().any(|w| w.resets_at.is_none());
    let with_resets = wide || windows.iter().any(|w| w.resets_at.is_some());
    let budgets: std::collections::BTreeSet<&str> = windows.iter().map(|w| w.policy.budget_name.as_str()).collect();
    let with_budget = wide || budgets.len() > 1;
    let mut headers = vec!["Policy"];
    if with_budget {
        headers.push("Budget");
    }
    headers.extend(["Limit", "Scope"]);
    if with_window {
        headers.push("Window");
    }
    // The share with reservations only where some window has one: else it repeats the share spent.
    let with_committed = windows.iter().any(|w| w.committed_percent != w.percent);
    headers.extend(["Used", "Reserved", "Of", if with_committed { "% (committed)" } else { "%" }, "Left", "State"]);
    if with_resets {
        headers.push("Resets");
    }
    let mut t = table(&headers);
    for w in windows {
        let p = &w.policy;
        let money = |d: Option<rust_decimal::Decimal>| d.map(crate::output::dollars);
        let tokens = |n: Option<i64>| n.map(|n| format!("{} tok", thousands(n)));
        let both = |a: Option<String>, b: Option<String>| [a, b].into_iter().flatten().collect::<Vec<_>>().join(" / ");
        let (has_cost, has_tokens) = (p.cost_limit.is_some(), p.token_limit.is_some());
        let mut row = vec![Cell::new(crate::output::short_id(p.policy_id))];
        if with_budget {
            row.push(Cell::new(&p.budget_name));
        }
        row.extend([Cell::new(crate::commands::set_limit::kind(p)), Cell::new(&p.scope)]);
        if with_window {
            row.push(Cell::new(&w.window));
        }
        let percent = |n: Option<rust_decimal::Decimal>| n.map_or("-".into(), |n| format!("{}%", n.normalize()));
        // A window that ended before the policy existed was not measured: its zeros are not figures.
        let untracked = matches!((w.tracked_since, w.window_end), (Some(since), Some(end)) if end <= since);
        let measured = |text: String| right(if untracked { "-".into() } else { text });
        row.extend([
            measured(both(money(has_cost.then_some(w.used_cost)), tokens(has_tokens.then_some(w.used_tokens)))),
            measured(both(money(has_cost.then_some(w.reserved_cost)), tokens(has_tokens.then_some(w.reserved_tokens)))),
            right(both(money(p.cost_limit.map(|l| l.amount())), tokens(p.token_limit))),
            measured(match with_committed {
                true => format!("{} ({})", percent(w.percent), percent(w.committed_percent)),
                false => percent(w.percent),
            }),
            measured(both(money(w.remaining_cost), tokens(w.remaining_tokens))),
            Cell::new(if untracked { "not tracked" } else { w.state.as_str() }),
        ]);
        if with_resets {
            row.push(Cell::new(w.resets_at.map_or("-".into(), crate::output::when)));
        }
        t.add_row(row);
    }
    if crate::output::fits(&t) {
        crate::say!("{}", crate::output::fitted(t));
    } else {
        print_paragraphs(windows, with_budget, with_window);
    }
    for w in windows {
        if let Some(note) = &w.note {
            crate::say!("{} {} window {}: {note}", w.policy.period, w.policy.scope, w.window);
        }
    }
}

/// The windows as paragraphs, for a terminal their table does not fit (an 80-column one broke
/// "$3.660049" into "$3.6", "6004" and "9"): the policy, its scope and state on one line, then its
/// figures, each phrase whole.
fn print_paragraphs(windows: &[WindowStatus], with_budget: bool, with_window: bool) {
    for (i, w) in windows.iter().enumerate() {
        let p = &w.policy;
        let (has_cost, has_tokens) = (p.cost_limit.is_some(), p.token_limit.is_some());
        let figure = |cost: rust_decimal::Decimal, tokens: i64| {
            let cost = has_cost.then(|| crate::output::dollars(cost));
            let tokens = has_tokens.then(|| format!("{} tok", thousands(tokens)));
            [cost, tokens].into_iter().flatten().collect::<Vec<_>>().join(" / ")
        };
        let untracked = matches!((w.tracked_since, w.window_end), (Some(since), Some(end)) if end <= since);
        let mut head = vec![crate::output::short_id(p.policy_id), crate::commands::set_limit::kind(p)];
        head.push(format!("on {}", p.scope));
        if with_budget {
            head.push(format!("in budget {}", p.budget_name));
        }
        if with_window {
            if let Some(last) = head.last_mut() {
                last.push(',');
            }
            head.push(format!("window {}", w.window));
        }
        if let Some(last) = head.last_mut() {
            last.push(':');
        }
        let state = if untracked { "not tracked" } else { w.state.as_str() };
        match w.resets_at {
            Some(at) => head.extend([format!("{state},"), format!("resets {}", crate::output::when(at))]),
            None => head.push(state.to_string()),
        }
        if i > 0 {
            crate::say!("");
        }
        crate::say!("{}", crate::output::paragraph(&head, "  "));
        let percent = |n: Option<rust_decimal::Decimal>| n.map_or("-".into(), |n| format!("{}%", n.normalize()));
        let body = if untracked {
            vec!["not measured:".to_string(), "the window ended before the policy was set".to_string()]
        } else {
            let limit =
                figure(p.cost_limit.map_or(rust_decimal::Decimal::ZERO, |l| l.amount()), p.token_limit.unwrap_or(0));
            let mut reserved = format!("reserved {}", figure(w.reserved_cost, w.reserved_tokens));
            if w.committed_percent != w.percent {
                reserved.push_str(&format!(" ({} committed)", percent(w.committed_percent)));
            }
            let left = |cost: Option<rust_decimal::Decimal>, tokens: Option<i64>| {
                figure(cost.unwrap_or_default(), tokens.unwrap_or_default())
            };
            vec![
                format!("used {} of {limit} ({}),", figure(w.used_cost, w.used_tokens), percent(w.percent)),
                format!("{reserved},"),
                format!("left {}", left(w.remaining_cost, w.remaining_tokens)),
            ]
        };
        let body: Vec<String> =
            body.into_iter().enumerate().map(|(i, b)| if i == 0 { format!("  {b}") } else { b }).collect();
        crate::say!("{}", crate::output::paragraph(&body, "  "));
    }
}
