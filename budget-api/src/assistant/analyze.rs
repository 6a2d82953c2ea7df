//! `analyze`: where the money went over a range, where it is heading in every active window, and what
//! stands out, each finding a sentence with its numbers.

use budget_events::decide::WindowState;
use budget_events::display::{and_list, count, thousands};
use budget_events::domain::price;
use budget_events::money::{decimal_json, optional_decimal_json};
use budget_events::store::{allocations, policies, prices};
use budget_projections::usage_rollups::{self, Totals, UsageFilter};
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::assistant::{number, span, started_hours, usd, Range};
use crate::error::ApiError;

/// An analysis: its range, each section's figures (documents whose shape is the section's), and the
/// findings, a sentence each.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Analysis {
    pub period: String,
    pub days: i64,
    pub start: chrono::DateTime<chrono::Utc>,
    pub end: chrono::DateTime<chrono::Utc>,
    pub totals: Value,
    pub breakdown: Value,
    pub series: Value,
    pub trend: Value,
    pub windows: Vec<WindowPace>,
    pub spikes: Value,
    pub top_drivers: Value,
    pub allocation_efficiency: Value,
    pub findings: Vec<String>,
}

/// One active calendar window at the rate spent so far: each limit's burn rate and where it ends the
/// window, and when the first limit to run out does (`exhausted_by`; now when one is used up).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct WindowPace {
    pub policy_id: Uuid,
    pub budget: String,
    pub period: String,
    #[serde(rename = "type")]
    pub policy_type: String,
    /// The IANA zone its windows begin in.
    #[serde(default = "utc")]
    pub timezone: String,
    pub scope: String,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    /// What the rates run from: the window's start, or the hour of the log's first usage when the
    /// log began inside the window.
    pub rate_since: DateTime<Utc>,
    #[serde(with = "decimal_json")]
    pub used_cost: Decimal,
    #[serde(with = "decimal_json")]
    pub reserved_cost: Decimal,
    #[serde(with = "optional_decimal_json")]
    pub cost_limit: Option<Decimal>,
    /// Dollars per hour since `rate_since`.
    #[serde(with = "decimal_json")]
    pub burn_rate_per_hour: Decimal,
    #[serde(with = "decimal_json")]
    pub projected_end_spend: Decimal,
    pub used_tokens: i64,
    pub reserved_tokens: i64,
    pub token_limit: Option<i64>,
    #[serde(with = "decimal_json")]
    pub token_burn_rate_per_hour: Decimal,
    #[serde(with = "decimal_json")]
    pub projected_end_tokens: Decimal,
    pub exhausted_at: Option<DateTime<Utc>>,
    /// `cost` or `tokens`: the limit that runs out first.
    pub exhausted_by: Option<String>,
    pub state: WindowState,
}

/// The analysis of `range`, and the figures behind it.
pub async fn analyze(client: &impl tokio_postgres::GenericClient, range: Range) -> Result<(Analysis, Value), ApiError> {
    let now = range.end;
    let filter = UsageFilter { start: Some(range.start), ..Default::default() };
    let report = usage_rollups::report(client, &filter, range.period, &usage_rollups::DIMENSIONS).await?;
    let previous = usage_rollups::report(
        client,
        &UsageFilter {
            start: Some(range.start - Duration::days(range.days)),
            end: Some(range.start),
            ..Default::default()
        },
        range.period,
        &[],
    )
    .await?;
    let total = report.totals;
    let mut findings: Vec<String> = Vec::new();
    // The days are counted back from now to the minute, not from a midnight as get_usage's are: said,
    // so that a total set beside get_usage's for "7 days" is not taken for the same span.
    let last = format!("the last {} (since {} UTC)", count(range.days, "day"), range.start.format("%Y-%m-%d %H:%M"));
    findings.push(if total.count == 0 {
        format!("No usage was recorded in {last}.")
    } else {
        format!(
            "In {last}, {} spent {} on {} ({} input, {} output).",
            count(total.count, "call"),
            usd(total.cost),
            count(total.total_tokens(), "token"),
            thousands(total.input_tokens),
            thousands(total.output_tokens)
        )
    });

    let breakdown = |dimension: &str| -> Vec<Value> {
        let mut rows: Vec<(&String, &Totals)> =
            report.groups.get(dimension).map(|g| g.iter().collect()).unwrap_or_default();
        rows.sort_by(|a, b| b.1.cost.cmp(&a.1.cost).then(a.0.cmp(b.0)));
        rows.iter()
            .map(|(name, t)| {
                json!({
                    "name": name, "cost": number(t.cost), "tokens": t.total_tokens(), "calls": t.count,
                    "share": if total.cost.is_zero() { number(Decimal::ZERO) } else { number((t.cost / total.cost).round_dp(4)) },
                })
            })
            .collect()
    };
    let by: Value = usage_rollups::DIMENSIONS
        .iter()
        .map(|d| (d.to_string(), json!(breakdown(d))))
        .collect::<serde_json::Map<_, _>>()
        .into();
    for d in ["provider", "component"] {
        if let Some(top) = by[d].as_array().and_then(|a| a.first()) {
            findings.push(format!(
                "The largest {d} is {} with {} ({}% of the spend).",
                top["name"].as_str().unwrap_or("?"),
                usd(top["cost"].to_string().parse().unwrap_or_default()),
                (top["share"].to_string().parse::<Decimal>().unwrap_or_default() * Decimal::from(100))
                    .round_dp(1)
                    .normalize()
            ));
        }
    }

    // Trend: this range against the one before it. The log may hold only the end of that one (a
    // deployment younger than both): its total would then stand for days never recorded ("up 100%"
    // for a week against two days), so daily averages are compared instead, and under a day of it
    // is too little to compare with.
    let before = previous.totals.cost;
    let change = total.cost - before;
    let previous_start = range.start - Duration::days(range.days);
    let recorded_from =
        usage_rollups::first_hour(client).await?.filter(|first| *first > previous_start && *first < range.start);
    let previous_hours = recorded_from.map(|first| started_hours(range.start - first));
    let per_day = |cost: Decimal, hours: i64| (cost * Decimal::from(24) / Decimal::from(hours.max(1))).round_dp(10);
    let daily_average = per_day(total.cost, range.days * 24);
    let previous_daily_average = previous_hours.map(|hours| per_day(before, hours));
    let (now_rate, before_rate) = match previous_daily_average {
        Some(average) => (daily_average, average),
        None => (total.cost, before),
    };
    let comparable = previous_hours.is_none_or(|hours| hours >= 24);
    let change_fraction =
        (comparable && !before_rate.is_zero()).then(|| ((now_rate - before_rate) / before_rate).round_dp(4));
    let percent = |f: Decimal| (f.abs() * Decimal::from(100)).round_dp(1).normalize();
    let direction = |f: Decimal| if f >= Decimal::ZERO { "up" } else { "down" };
    match (change_fraction, recorded_from.zip(previous_hours)) {
        (Some(f), None) => findings.push(format!(
            "Spend is {} {}% against the previous {} ({} then).",
            direction(f),
            percent(f),
            count(range.days, "day"),
            usd(before),
        )),
        (Some(f), Some((first, hours))) => findings.push(format!(
            "Spend averaged {} a day, {} {}% against {} a day in the previous {}, of which the log holds only the last {} (from {}).",
            usd(now_rate),
            direction(f),
            percent(f),
            usd(before_rate),
            count(range.days, "day"),
            span(Duration::hours(hours)),
            first.format("%Y-%m-%d %H:%M UTC"),
        )),
        (None, Some((first, hours))) if !before.is_zero() && !comparable => findings.push(format!(
            "The previous {} hold usage only from {} (their last {}, {}): too little to compare with.",
            count(range.days, "day"),
            first.format("%Y-%m-%d %H:%M UTC"),
            span(Duration::hours(hours)),
            usd(before),
        )),
        (None, _) if !total.cost.is_zero() => {
            findings.push(format!("There was no spend in the previous {} to compare with.", count(range.days, "day")))
        }
        (None, _) => {}
    }

    // Every active calendar window: each limit's burn rate, its projection to the window's end, and
    // when the first of its limits runs out (now, when one is used up already).
    let rows = policies::list(client).await?;
    let active: Vec<_> = rows.into_iter().filter(|r| r.counts()).collect();
    let mut windows = Vec::new();
    for w in crate::routes::status::windows(client, &active, now, true).await? {
        let (Some(start), Some(end)) = (w.window_start, w.window_end) else { continue };
        let row = active.iter().find(|r| r.policy.id == w.policy.policy_id).expect("the window's policy is listed");
        // From the log's first usage when the log began inside the window.
        let rate_since = w.rate_since.unwrap_or(start);
        let elapsed_hours = hours(now - rate_since).max(Decimal::new(1, 2));
        let left_hours = hours(end - now).max(Decimal::ZERO);
        let cost_limit = row.policy.cost_limit.map(|l| l.amount());
        let cost = Pace::of(w.used_cost, w.reserved_cost, cost_limit, elapsed_hours, left_hours);
        let tokens = Pace::of(
            Decimal::from(w.used_tokens),
            Decimal::from(w.reserved_tokens),
            row.policy.token_limit.map(Decimal::from),
            elapsed_hours,
            left_hours,
        );
        let limit_words = |metric: Metric, amount: Decimal| match metric {
            Metric::Cost => usd(amount),
            Metric::Tokens => count(amount.round().try_into().unwrap_or(i64::MAX), "token"),
        };
        for (metric, pace) in [(Metric::Cost, &cost), (Metric::Tokens, &tokens)] {
            let (Some(limit), Some(in_hours)) = (pace.limit, pace.runs_out_in) else { continue };
            let scope = format!("{} limit of {} on {}", w.policy.period, limit_words(metric, limit), w.policy.scope);
            findings.push(if in_hours.is_zero() {
                format!(
                    "The {scope} is used up: {} used and {} reserved{}; it resets at {}.",
                    limit_words(metric, pace.used),
                    match metric {
                        Metric::Cost => usd(pace.reserved),
                        Metric::Tokens => thousands(pace.reserved.try_into().unwrap_or(i64::MAX)),
                    },
                    // A limit of zero (nothing allowed) has no percentage.
                    if limit.is_zero() {
                        String::new()
                    } else {
                        format!(
                            " ({}%)",
                            ((pace.used + pace.reserved) / limit * Decimal::from(100)).round_dp(1).normalize()
                        )
                    },
                    end.format("%Y-%m-%d %H:%M UTC")
                )
            } else {
                format!(
                    "At {}/hour the {scope} runs out at {} ({} projected by the window's end).",
                    match metric {
                        Metric::Cost => usd(pace.burn),
                        Metric::Tokens => thousands(pace.burn.round().try_into().unwrap_or(i64::MAX)) + " tokens",
                    },
                    at_hours(now, in_hours).format("%Y-%m-%d %H:%M UTC"),
                    limit_words(metric, pace.projected)
                )
            });
        }
        // The limit that runs out first decides when the window does.
        let first = [(Metric::Cost, &cost), (Metric::Tokens, &tokens)]
            .into_iter()
            .filter_map(|(metric, pace)| pace.runs_out_in.map(|h| (h, metric)))
            .min_by_key(|(h, _)| *h);
        windows.push(WindowPace {
            policy_id: w.policy.policy_id,
            budget: row.budget_name.clone(),
            period: w.policy.period.clone(),
            policy_type: w.policy.policy_type.clone(),
            timezone: w.policy.timezone.clone(),
            scope: w.policy.scope.clone(),
            window_start: start,
            rate_since,
            window_end: end,
            used_cost: w.used_cost,
            reserved_cost: w.reserved_cost,
            cost_limit,
            burn_rate_per_hour: cost.burn.round_dp(10),
            projected_end_spend: cost.projected.round_dp(10),
            used_tokens: w.used_tokens,
            reserved_tokens: w.reserved_tokens,
            token_limit: row.policy.token_limit,
            token_burn_rate_per_hour: tokens.burn.round_dp(2),
            projected_end_tokens: tokens.projected.round(),
            exhausted_at: first.map(|(h, _)| at_hours(now, h)),
            exhausted_by: first.map(|(_, metric)| metric.as_str().to_string()),
            state: w.state,
        });
    }

    // Spend spikes the alerts projection raised in the range.
    let spikes: Vec<Value> = client
        .query(
            "SELECT details, message FROM alerts WHERE alert_type = 'spend_spike' AND raised_at >= $1 ORDER BY raised_at",
            &[&range.start],
        )
        .await?
        .iter()
        .map(|r| json!({"details": r.get::<_, Value>("details"), "message": r.get::<_, String>("message")}))
        .collect();
    if !spikes.is_empty() {
        findings.push(format!(
            "{} spent far above the trailing average (spend_spike alerts).",
            count(spikes.len() as i64, "hour")
        ));
    }

    // Top cost drivers: model × component × task type.
    let mix = usage_rollups::mix(client, &filter).await?;
    let drivers: Vec<Value> = mix
        .iter()
        .take(5)
        .map(|(p, m, c, t, totals)| json!({"provider": p, "model": m, "component": c, "task_type": t, "cost": number(totals.cost), "calls": totals.count}))
        .collect();
    if let Some((p, m, c, task, t)) = mix.first() {
        // The figure is one task type's: named, or it reads as all of the component's use of the model.
        findings.push(format!(
            "The top cost driver is {c}'s {task} calls on {p}/{m}: {} in {}.",
            usd(t.cost),
            count(t.count, "call")
        ));
    }

    // Spend on models their providers retire within the notice (the bundled table's days): calls that
    // stop working that day, and the first to move.
    let keys = price::candidate_keys(mix.iter().map(|(p, m, ..)| (p.as_str(), m.as_str())));
    let versions = prices::versions_for(client, &keys).await?;
    // By retirement (earliest first) and provider: one clause for a provider's models retired together.
    type Models = (std::collections::BTreeSet<String>, Decimal);
    let mut retiring: std::collections::BTreeMap<(crate::price_book::Retirement, String), Models> = Default::default();
    for (p, m, _, _, t) in &mix {
        let Some((v, _)) = price::resolve(&versions, p, m, range.end) else { continue };
        if let Some(r) = crate::price_book::retiring(v, range.end) {
            let (models, cost) = retiring.entry((r, v.spec.provider.clone())).or_default();
            models.insert(format!("{}/{}", v.spec.provider, v.spec.model));
            *cost += t.cost;
        }
    }
    let on_retiring: Decimal = retiring.values().map(|(_, cost)| cost).sum();
    if !on_retiring.is_zero() && !total.cost.is_zero() {
        let today = range.end.date_naive();
        let models: Vec<String> = retiring
            .iter()
            .map(|((r, _), (models, _))| {
                let names: Vec<&str> = models.iter().map(String::as_str).collect();
                let whose = if names.len() == 1 { "its" } else { "their" };
                let verb = r.verb(today);
                format!("{}, which {whose} provider {verb} {}", and_list(&names), r.when())
            })
            .collect();
        findings.push(format!(
            "{} ({}% of the spend) went to {}: `budget optimize` names cheaper models to move such calls to.",
            usd(on_retiring),
            (on_retiring / total.cost * Decimal::from(100)).round_dp(1).normalize(),
            models.join("; ")
        ));
    }

    // Allocation efficiency: reserved against used, per component, over reservations that are over (a
    // task still running has not used its tokens yet).
    let allocated = allocations::list(
        client,
        &allocations::AllocationFilter {
            states: Some(["released", "expired", "exhausted"].map(String::from).to_vec()),
            limit: 10_000,
            ..Default::default()
        },
    )
    .await?;
    let mut per_component: std::collections::BTreeMap<String, (i64, i64, i64)> = Default::default();
    for a in allocated.iter().filter(|a| a.created_at >= range.start) {
        let e = per_component.entry(a.component.to_string()).or_default();
        e.0 += a.tokens_allocated;
        e.1 += a.input_tokens_used + a.output_tokens_used;
        e.2 += 1;
    }
    let efficiency: Vec<Value> = per_component
        .iter()
        .map(|(component, (reserved, used, n))| {
            let f = if *reserved > 0 { Decimal::from(*used) / Decimal::from(*reserved) } else { Decimal::ZERO };
            if *reserved > 0 && f < Decimal::new(5, 1) {
                findings.push(format!(
                    "{component} used {}% of the {} it reserved in {}; smaller allocations would free the rest for others.",
                    (f * Decimal::from(100)).round_dp(1).normalize(),
                    count(*reserved, "token"),
                    count(*n, "allocation")
                ));
            }
            json!({"component": component, "allocations": n, "reserved_tokens": reserved, "used_tokens": used, "efficiency": number(f.round_dp(4))})
        })
        .collect();

    let analysis = Analysis {
        period: range.period.to_string(),
        days: range.days,
        start: range.start,
        end: range.end,
        totals: json!({"cost": number(total.cost), "tokens": total.total_tokens(), "input_tokens": total.input_tokens, "output_tokens": total.output_tokens, "calls": total.count}),
        breakdown: json!(by),
        series: report.series.iter().map(|b| json!({"start": b.start, "cost": number(b.totals.cost), "tokens": b.totals.total_tokens(), "calls": b.totals.count})).collect(),
        trend: json!({"previous_cost": number(before), "change": number(change), "change_fraction": change_fraction.map(number),
                      "previous_recorded_from": recorded_from, "previous_hours_recorded": previous_hours,
                      "daily_average": number(daily_average), "previous_daily_average": previous_daily_average.map(number)}),
        windows,
        spikes: json!(spikes),
        top_drivers: json!(drivers),
        allocation_efficiency: json!(efficiency),
        findings,
    };
    let raw = json!({"mix": mix.iter().map(|(p, m, c, t, totals)| json!({"provider": p, "model": m, "component": c, "task_type": t, "input_tokens": totals.input_tokens, "output_tokens": totals.output_tokens, "cost": number(totals.cost), "calls": totals.count})).collect::<Vec<_>>()});
    Ok((analysis, raw))
}

fn hours(d: Duration) -> Decimal {
    Decimal::from(d.num_seconds()) / Decimal::from(3600)
}

fn at_hours(now: DateTime<Utc>, h: Decimal) -> DateTime<Utc> {
    now + Duration::seconds((h * Decimal::from(3600)).round().try_into().unwrap_or(i64::MAX / 2))
}

#[derive(Debug, Clone, Copy)]
enum Metric {
    Cost,
    Tokens,
}

impl Metric {
    fn as_str(self) -> &'static str {
        match self {
            Metric::Cost => "cost",
            Metric::Tokens => "tokens",
        }
    }
}

/// One limit of a window at the rate spent so far: used and reserved, spent per hour, where that rate
/// ends the window, and in how many hours the limit runs out (zero: used up already; none: not before
/// the window ends, or no such limit).
struct Pace {
    used: Decimal,
    reserved: Decimal,
    limit: Option<Decimal>,
    burn: Decimal,
    projected: Decimal,
    runs_out_in: Option<Decimal>,
}

impl Pace {
    fn of(
        used: Decimal,
        reserved: Decimal,
        limit: Option<Decimal>,
        elapsed_hours: Decimal,
        left_hours: Decimal,
    ) -> Pace {
        let burn = used / elapsed_hours;
        let runs_out_in = limit.and_then(|l| {
            let room = l - used - reserved;
            if room <= Decimal::ZERO {
                Some(Decimal::ZERO)
            } else if burn > Decimal::ZERO {
                Some(room / burn).filter(|h| *h <= left_hours)
            } else {
                None
            }
        });
        Pace { used, reserved, limit, burn, projected: used + burn * left_hours, runs_out_in }
    }
}

fn utc() -> String {
    "UTC".into()
}
