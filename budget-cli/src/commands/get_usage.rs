//! `budget get_usage PERIOD`: usage per period with totals, and the top models and components.

use budget_api::routes::usage_query::{UsageResponse, UsageTotals};
use comfy_table::Cell;

use crate::cli::GetUsageArgs;
use crate::client::Client;
use crate::output::{dollars, print_json, right, table, thousands, utc, utc_named};

pub async fn run(client: &Client, args: GetUsageArgs) -> anyhow::Result<()> {
    let mut query = vec![("period", args.period.clone()), ("days", args.days.to_string())];
    for (name, value) in [
        ("provider", &args.provider),
        ("model", &args.model),
        ("component", &args.component),
        ("task_type", &args.task_type),
        ("user", &args.user),
    ] {
        if let Some(v) = value {
            query.push((name, v.clone()));
        }
    }
    // The header names the user's filters: those after period and days, before min_position.
    let filters: Vec<String> = query[2..].iter().map(|(k, v)| format!("{k}={v}")).collect();
    if let Some(position) = client.last_write() {
        query.push(("min_position", position.to_string()));
    }
    let usage: UsageResponse = client.get("/api/usage", &query).await?;
    if args.json {
        print_json(&serde_json::to_value(&usage)?);
        return Ok(());
    }

    let matching = if filters.is_empty() { String::new() } else { format!(" ({})", filters.join(", ")) };
    if usage.totals.count == 0 {
        // A table of zeros says less than the sentence.
        let (from, to) = (utc_named(usage.start_time), utc_named(usage.end_time));
        crate::say!("No usage{matching} was recorded from {from} to {to}.");
        return Ok(());
    }
    crate::say!(
        "Usage {} from {} to {}{matching}",
        serde_json::to_value(usage.period)?.as_str().unwrap_or(&args.period),
        utc_named(usage.start_time),
        utc_named(usage.end_time),
    );
    let period = serde_json::to_value(usage.period)?.as_str().unwrap_or_default().to_string();
    let (heading, format) = match period.as_str() {
        _ if crate::output::is_precise() => ("Period start (UTC)", None),
        "hourly" => ("Hour (UTC)", Some("%Y-%m-%d %H:%M")),
        "daily" => ("Day (UTC)", Some("%Y-%m-%d")),
        "weekly" => ("Week (UTC)", Some("%Y-%m-%d")),
        "monthly" => ("Month (UTC)", Some("%Y-%m")),
        _ => ("Period start (UTC)", None),
    };
    let mut t = table(&[heading, "Input tokens", "Output tokens", "Total tokens", "Cost (USD)", "Calls"]);
    for bucket in &usage.series {
        t.add_row(row(&start(bucket.start, format), &bucket.totals));
    }
    t.add_row(row("Total", &usage.totals));
    crate::say!("{}", crate::output::fitted(t));

    for (dimension, heading) in [("model", "Model"), ("component", "Component"), ("user", "User")] {
        // Users only once some record names one (records without a user are "").
        let Some(groups) = usage.groups.get(dimension).filter(|g| g.keys().any(|name| !name.is_empty())) else {
            continue;
        };
        let mut g = table(&[heading, "Input tokens", "Output tokens", "Total tokens", "Cost (USD)", "Calls"]);
        // The biggest spenders first; equal ones by name.
        let mut groups: Vec<_> = groups.iter().collect();
        groups.sort_by(|(a, x), (b, y)| y.cost.cmp(&x.cost).then(a.cmp(b)));
        for (name, totals) in groups {
            g.add_row(row(if name.is_empty() { "(none)" } else { name }, totals));
        }
        crate::say!("\nBy {dimension}\n{}", crate::output::fitted(g));
    }
    Ok(())
}

/// A period's start as the period names it (`2026-11-28` a day, `2026-11-28 13:00` an hour, `2026-11`
/// a month): its row's "00:00:00" said nothing and took a fifth of an 80-column table. A start off the
/// period's boundary (none is today, the periods being UTC's) keeps its every second.
fn start(at: chrono::DateTime<chrono::Utc>, format: Option<&str>) -> String {
    use chrono::Timelike;
    match format {
        Some(format) if at.second() == 0 && at.nanosecond() == 0 && at.minute() == 0 => at.format(format).to_string(),
        _ => utc(at),
    }
}

fn row(label: &str, totals: &UsageTotals) -> Vec<Cell> {
    vec![
        Cell::new(label),
        right(thousands(totals.input_tokens)),
        right(thousands(totals.output_tokens)),
        right(thousands(totals.total_tokens)),
        right(dollars(totals.cost)),
        right(thousands(totals.count)),
    ]
}
