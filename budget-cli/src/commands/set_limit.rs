//! `budget set_limit PERIOD LIMIT [scope…]`: create or replace a policy.

use budget_api::routes::policies::{PolicySetResponse, PolicyView};
use budget_events::event::OpeningBalance;
use serde_json::{json, Value};

use crate::cli::SetLimitArgs;
use crate::client::Client;
use crate::output::print_json;

pub async fn run(client: &Client, args: SetLimitArgs) -> anyhow::Result<()> {
    let tokens_only = args.tokens.is_some() && args.limit.trim().parse::<f64>().is_ok_and(|l| l == 0.0);
    // Left out, a new policy is a warning and one set again keeps its type.
    let mut body = json!({ "period": args.period });
    if let Some(t) = args.policy_type {
        body["type"] = Value::String(t);
    }
    if !tokens_only {
        // Sent as a string: the server reads its exact decimal digits.
        body["cost_limit"] = Value::String(args.limit.trim().to_string());
    }
    for (field, value) in [
        ("provider", args.provider),
        ("model", args.model),
        ("component", args.component),
        ("tier", args.tier),
        ("task_type", args.task_type),
        ("user", args.user),
        ("budget", args.budget),
        ("timezone", args.timezone),
        ("warning_threshold", args.warning_threshold),
        ("action_threshold", args.action_threshold),
    ] {
        if let Some(v) = value {
            body[field] = Value::String(v);
        }
    }
    if let Some(t) = args.tokens {
        body["token_limit"] = json!(t);
    }
    let response: PolicySetResponse = client.post("/api/policies", &body).await?;
    client.remember_write(response.position);
    if args.json {
        print_json(&serde_json::to_value(&response)?);
        return Ok(());
    }
    let p = &response.policy;
    // Windows of a zone other than UTC begin at its midnight, which a UTC time hides.
    let zone = zone(p);
    let replaced = match (&response.previous, response.created) {
        (Some(before), false) => {
            let disabled = if before.enabled { "" } else { "disabled " };
            format!("Replaced {disabled}{} limit of {} with", kind(before), limits(before))
        }
        (None, false) => "Replaced with".into(),
        (_, true) => "Set".into(),
    };
    crate::say!(
        "{replaced} {} limit of {} for {} in budget {} (policy {}{})",
        kind(p),
        limits(p),
        p.scope,
        p.budget_name,
        p.policy_id,
        if response.budget_created { "; budget created" } else { "" },
    );
    if let Some(o) = &response.opening {
        crate::say!("{}", opening(o, zone));
    }
    // The API's notes on a scope that looks like a typo (`budget_api::scope_notes`), with the CLI's way out.
    for note in &response.notes {
        let short = crate::output::short_id(p.policy_id);
        crate::say!("Note: {note}. Check the spelling (`budget policies disable {short}` turns it off).");
    }
    Ok(())
}

/// The zone a policy's windows begin in, when it is not UTC (whose times need no second reading).
pub fn zone(p: &PolicyView) -> Option<chrono_tz::Tz> {
    zone_named(&p.timezone)
}

fn zone_named(timezone: &str) -> Option<chrono_tz::Tz> {
    timezone.parse::<chrono_tz::Tz>().ok().filter(|z| *z != chrono_tz::UTC)
}

/// `daily hard_limit`, or `daily (Europe/Berlin) warn` for windows that begin in another zone, as
/// the tables name a limit.
pub fn kind(p: &PolicyView) -> String {
    kind_of(&p.period.to_string(), &p.policy_type.to_string(), &p.timezone)
}

/// [`kind`] from its parts.
pub fn kind_of(period: &str, policy_type: &str, timezone: &str) -> String {
    match zone_named(timezone) {
        Some(z) => format!("{period} ({z}) {policy_type}"),
        None => format!("{period} {policy_type}"),
    }
}

/// What a policy's current window already held when it started counting (set, or enabled again).
pub fn opening(o: &OpeningBalance, zone: Option<chrono_tz::Tz>) -> String {
    let from = format!(
        "Its window from {}{} counts what is already in it",
        o.window,
        match (zone, o.window_start) {
            (Some(z), Some(start)) => format!(" ({} {z})", start.with_timezone(&z).format("%H:%M")),
            _ => String::new(),
        },
    );
    if o.records == 0 && o.posted_cost.is_zero() && o.pending_cost.is_zero() && o.pending_tokens == 0 {
        return format!("{from}: nothing yet");
    }
    format!(
        "{from}: {} used in {} record{}, {} reserved ({} tokens)",
        crate::output::dollars(o.posted_cost),
        crate::output::thousands(o.records),
        if o.records == 1 { "" } else { "s" },
        crate::output::dollars(o.pending_cost),
        crate::output::thousands(o.pending_tokens),
    )
}

/// A policy in words, as `status`, `explain` and `policies` name it: `daily hard_limit of $20,
/// provider=openai, budget default`.
pub fn words(p: &PolicyView) -> String {
    format!("{} {} of {}, {}, budget {}", p.period, p.policy_type, limits(p), p.scope, p.budget_name)
}

/// A policy's limits in words: `$20`, `200,000 tokens`, or `$20 and 200,000 tokens`.
pub fn limits(p: &PolicyView) -> String {
    let cost = p.cost_limit.map(|c| crate::output::dollars(c.amount()));
    let tokens = p.token_limit.map(|t| format!("{} tokens", crate::output::thousands(t)));
    cost.into_iter().chain(tokens).collect::<Vec<_>>().join(" and ")
}
