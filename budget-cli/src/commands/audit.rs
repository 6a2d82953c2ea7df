//! `budget audit` (the events behind a selection, with the running total) and `budget explain` (how a
//! policy window's figures were reached).

use budget_api::routes::audit::{EventPage, EventView, Explanation, Opening};
use budget_api::routes::policies::PolicyView;
use comfy_table::{Cell, ColumnConstraint};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::json;

use crate::cli::AuditArgs;
use crate::client::Client;
use crate::output::{print_json, right, short_id, table, thousands, utc};

pub async fn audit(client: &Client, args: AuditArgs) -> anyhow::Result<()> {
    if args.limit < 1 {
        anyhow::bail!("--limit is {}; give at least 1", args.limit);
    }
    let mut base: Vec<(&str, String)> = Vec::new();
    for (name, value) in [
        ("provider", args.provider),
        ("model", args.model),
        ("component", args.component),
        ("context_id", args.context_id),
        ("budget", args.budget),
        ("policy_id", args.policy),
        ("type", args.event_type),
        ("since", args.since.clone()),
        ("until", args.until.clone()),
    ] {
        if let Some(v) = value {
            base.push((name, v));
        }
    }
    // Page through the selection, oldest first, up to --limit events.
    let mut events: Vec<EventView> = Vec::new();
    let mut after = 0i64;
    // Whether --limit cut the selection (its total is then not the selection's).
    let mut more = false;
    loop {
        let page_size = (args.limit - events.len() as i64).min(5000);
        let mut query = base.clone();
        query.push(("after", after.to_string()));
        query.push(("limit", page_size.to_string()));
        let page: EventPage = client.get("/api/events", &query).await?;
        events.extend(page.events);
        match page.next_after {
            Some(next) if (events.len() as i64) < args.limit => after = next,
            Some(_) => {
                more = true;
                break;
            }
            None => break,
        }
    }
    let (mut cost, mut tokens) = (Decimal::ZERO, 0i64);
    let lines: Vec<AuditLine> = events
        .into_iter()
        .map(|event| {
            cost += event.cost.unwrap_or_default();
            tokens += event.tokens.unwrap_or(0);
            AuditLine { event, running_cost: cost.normalize(), running_tokens: tokens }
        })
        .collect();
    if args.json {
        let totals = Totals { events: lines.len(), cost: cost.normalize(), tokens, more };
        print_json(&json!({ "events": lines, "totals": totals }));
        return Ok(());
    }
    if lines.is_empty() {
        crate::say!("No events match.");
        return Ok(());
    }
    let headers = [
        "Position",
        "Recorded (UTC)",
        "Type",
        "What",
        "Actor / request",
        "Tokens",
        "Cost $",
        "Running $",
        "Running tokens",
    ];
    let mut t = table(&headers);
    // Figures are never broken across lines; the words wrap around them, what each event is about
    // first.
    for (i, header) in headers.iter().enumerate() {
        let constraint = match *header {
            "Position" | "Tokens" | "Cost $" | "Running $" | "Running tokens" => ColumnConstraint::ContentWidth,
            "What" => ColumnConstraint::LowerBoundary(comfy_table::Width::Percentage(20)),
            _ => continue,
        };
        if let Some(column) = t.column_mut(i) {
            column.set_constraint(constraint);
        }
    }
    for line in &lines {
        let e = &line.event;
        let actor = match (e.actor.as_deref(), e.on_behalf_of.as_deref()) {
            (Some(a), Some(b)) => Some(format!("{a} for {b}")),
            (a, _) => a.map(str::to_string),
        };
        // The service's request ids are UUIDs, shown short like every id (a log search finds them by
        // their end); one a client chose is shown as it is.
        let request =
            e.request_id.as_deref().map(|r| if uuid::Uuid::parse_str(r).is_ok() { short_id(r) } else { r.to_string() });
        let who = match (actor.as_deref(), request) {
            (Some(a), Some(r)) => format!("{a} / {r}"),
            (Some(a), None) => a.to_string(),
            (None, Some(r)) => r,
            (None, None) => String::new(),
        };
        t.add_row(vec![
            right(e.position),
            Cell::new(utc(e.recorded_at)),
            Cell::new(&e.event_type),
            // The price version a cost came from ends its line; `--json` has it whole.
            Cell::new(match e.price_version {
                Some(version) => format!("{}, price {}", e.summary, short_id(version)),
                None => e.summary.clone(),
            }),
            Cell::new(who),
            right(e.tokens.map(thousands).unwrap_or_default()),
            right(e.cost.map(|n| n.to_string()).unwrap_or_default()),
            right(line.running_cost),
            right(thousands(line.running_tokens)),
        ]);
    }
    crate::say!("{}", crate::output::fitted(t));
    let (cost, tokens) = (cost.normalize(), crate::output::count(tokens, "token"));
    if more {
        let first = crate::output::count(lines.len(), "event");
        crate::say!(
            "The first {first} of more that match (raise --limit); their total {} and {tokens}",
            crate::output::dollars(cost)
        );
    } else {
        crate::say!(
            "{}; total {} and {tokens}",
            crate::output::count(lines.len(), "event"),
            crate::output::dollars(cost)
        );
    }
    Ok(())
}

/// An event with the running total up to it (a correction's delta counts, so the total equals the rollups).
#[derive(Serialize)]
struct AuditLine {
    #[serde(flatten)]
    event: EventView,
    #[serde(with = "budget_events::money::decimal_json")]
    running_cost: Decimal,
    running_tokens: i64,
}

#[derive(Serialize)]
struct Totals {
    events: usize,
    #[serde(with = "budget_events::money::decimal_json")]
    cost: Decimal,
    tokens: i64,
    /// More events match than --limit let through: these totals are of the first ones only.
    more: bool,
}

pub async fn explain(
    client: &Client,
    policy_id: String,
    window: Option<String>,
    opening: bool,
    json: bool,
) -> anyhow::Result<()> {
    let given = policy_id;
    let policy_id = crate::ids::resolve(client, crate::ids::Kind::Policy, &given).await?;
    let mut query: Vec<(&str, String)> = window.clone().map(|w| ("window", w)).into_iter().collect();
    if opening {
        query.push(("opening", "true".into()));
    }
    let (explain, policy) = (format!("/api/policies/{policy_id}/explain"), format!("/api/policies/{policy_id}"));
    if json {
        let x: Explanation = client.get(&explain, &query).await?;
        print_json(&serde_json::to_value(&x)?);
        return Ok(());
    }
    // Which policy it is, as `budget status` names it (an id alone says nothing to a reader), asked
    // for together with the explanation.
    let (x, p): (Explanation, PolicyView) = tokio::try_join!(client.get(&explain, &query), client.get(&policy, &[]))?;
    let contributions = &x.contributions;
    crate::say!(
        "Policy {} ({}), window {}: {}",
        short_id(policy_id),
        super::set_limit::words(&p),
        x.window,
        crate::output::count(contributions.len(), "event")
    );
    if !contributions.is_empty() {
        let mut t = table(&[
            "Position",
            "Recorded (UTC)",
            "Event",
            "Record / allocation",
            "Used $",
            "Used tokens",
            "Reserved $",
            "Reserved tokens",
        ]);
        for c in contributions {
            t.add_row(vec![
                right(c.position),
                Cell::new(utc(c.recorded_at)),
                Cell::new(if c.event_type == "PolicySet" { "PolicySet (opening balance)" } else { &c.event_type }),
                Cell::new(c.subject.map(short_id).unwrap_or_default()),
                right(c.posted_cost),
                right(thousands(c.posted_tokens)),
                right(c.pending_cost),
                right(thousands(c.pending_tokens)),
            ]);
        }
        crate::say!("{}", crate::output::fitted(t));
    }
    for o in x.openings.iter().flatten() {
        show_opening(o);
    }
    if !opening && contributions.iter().any(|c| c.event_type == "PolicySet") {
        let window = window.map_or(String::new(), |w| format!(" --window {w}"));
        crate::say!("The opening balance, record by record: `budget explain {given}{window} --opening`");
    }
    crate::say!("Sum of the events: {}", x.folded);
    crate::say!("The account:       {}", x.account);
    if x.matches {
        crate::say!("They agree.");
        Ok(())
    } else {
        anyhow::bail!(
            "the account differs from the sum of its events; run `budget replay --verify` to see every difference"
        )
    }
}

/// An opening balance's records and reservations, as `explain --opening` lists them.
fn show_opening(o: &Opening) {
    let cost: Decimal = o.usage.iter().map(|u| u.cost).sum();
    let tokens: i64 = o.usage.iter().map(|u| u.tokens).sum();
    let records = o.usage.iter().filter(|u| u.event_type == "UsageRecorded").count();
    let corrections = o.usage.len() - records;
    crate::say!(
        "Opening balance at position {}: {}{}, {} and {} tokens in all; {}",
        o.position,
        crate::output::count(records, "usage record"),
        if corrections > 0 {
            format!(" and {}", crate::output::count(corrections, "correction"))
        } else {
            String::new()
        },
        crate::output::dollars(cost),
        thousands(tokens),
        match o.allocations.len() {
            0 => "no reservations".to_string(),
            _ =>
                format!("reservations of {}", o.allocations.iter().map(|a| short_id(*a)).collect::<Vec<_>>().join(", ")),
        }
    );
    if o.usage.is_empty() {
        return;
    }
    let mut t =
        table(&["Position", "Occurred (UTC)", "Event", "Record", "Model", "Component", "Used $", "Used tokens"]);
    for u in &o.usage {
        t.add_row(vec![
            right(u.position),
            Cell::new(utc(u.occurred_at)),
            Cell::new(&u.event_type),
            Cell::new(short_id(u.record_id)),
            Cell::new(format!("{}/{}", u.provider, u.model)),
            Cell::new(&u.component),
            right(u.cost.normalize()),
            right(thousands(u.tokens)),
        ]);
    }
    crate::say!("{}", crate::output::fitted(t));
}
