//! `budget prices list|update|set|history` and `budget calc_cost`.

use budget_api::routes::alerts::AlertList;
use budget_api::routes::prices::{CalculateResponse, PriceChange, PriceHistory, PriceList, PriceView};
use budget_api::routes::reprice::RepriceResponse;
use comfy_table::Cell;
use serde_json::{json, Value};

use crate::cli::{CalcCostArgs, PricesCommand};
use crate::client::Client;
use crate::output::{print_json, right, table, thousands, utc, utc_named};

pub async fn run(client: &Client, command: PricesCommand) -> anyhow::Result<()> {
    match command {
        PricesCommand::List { provider, model, json } => {
            let mut query = Vec::new();
            if let Some(p) = provider {
                query.push(("provider", p));
            }
            if let Some(m) = model {
                query.push(("model", m));
            }
            let list: PriceList = client.get("/api/prices", &query).await?;
            if json {
                print_json(&serde_json::to_value(&list)?);
            } else if list.prices.is_empty() && query.is_empty() {
                crate::say!("The price book is empty; `budget prices update` applies the bundled table.");
            } else if list.prices.is_empty() {
                let asked: Vec<String> = query.iter().map(|(k, v)| format!("{k} {v}")).collect();
                crate::say!("No prices for {}; `budget prices list` shows every priced model.", asked.join(" and "));
            } else {
                print_versions(&list.prices);
            }
        }
        PricesCommand::Update { from, dry_run, verbose, json } => {
            let mut body = json!({ "dry_run": dry_run });
            if let Some(from) = from {
                let (text, source) = read_source(&from).await?;
                let doc: Value =
                    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{from} is not valid JSON: {e}"))?;
                body["litellm"] = doc;
                body["source"] = json!(source);
            }
            let r: PriceChange = client.post("/api/prices/update", &body).await?;
            client.remember_write(r.position);
            if json {
                print_json(&serde_json::to_value(&r)?);
            } else {
                print_update(&r, dry_run, verbose);
            }
        }
        PricesCommand::Set { provider, model, input, output, cached_input, per, effective_from, json } => {
            let mut body = json!({"provider": provider, "model": model, "input": input, "output": output, "per": per});
            if let Some(c) = &cached_input {
                body["cached_input"] = json!(c);
            }
            if let Some(t) = effective_from {
                body["effective_from"] = json!(t);
            }
            let r: PriceChange = client.post("/api/prices", &body).await?;
            client.remember_write(r.position);
            if json {
                print_json(&serde_json::to_value(&r)?);
            } else {
                if r.unchanged == 1 {
                    // In effect since its own version's time, which `history` shows; not since now.
                    crate::say!(
                        "{provider}/{model}: unchanged, the same price is already in effect (`budget prices history {provider} {model}` shows since when)"
                    );
                } else {
                    crate::say!("{provider}/{model}: set, effective {}", utc_named(r.effective_from));
                    if r.effective_from < chrono::Utc::now() {
                        say_records_to_reprice(client, &provider, &model, r.effective_from).await;
                    }
                    let price =
                        PriceArgs { input: &input, output: &output, cached_input: cached_input.as_deref(), per: &per };
                    say_older_unpriced(client, &r, &price).await;
                }
            }
        }
        PricesCommand::Reprice { provider, model, since, until, dry_run, json } => {
            let mut body = json!({"provider": provider, "model": model, "since": since, "dry_run": dry_run});
            if let Some(until) = until {
                body["until"] = json!(until);
            }
            let r: RepriceResponse = client.post("/api/prices/reprice", &body).await?;
            client.remember_write(r.position);
            if json {
                print_json(&serde_json::to_value(&r)?);
                return Ok(());
            }
            if !r.corrections.is_empty() {
                let mut t = table(&["Record", "Occurred (UTC)", "Was $", "Now $", "Change $"]);
                for c in &r.corrections {
                    t.add_row(vec![
                        Cell::new(c.record_id),
                        Cell::new(utc(c.occurred_at)),
                        right(c.previous_cost),
                        right(c.cost),
                        right(c.delta),
                    ]);
                }
                crate::say!("{}", crate::output::fitted(t));
            }
            crate::say!(
                "{}{} of {provider}/{model} {}re-priced, total change {}",
                if dry_run { "Dry run, nothing written: " } else { "" },
                crate::output::count(r.records, "record"),
                if dry_run { "would be " } else { "" },
                crate::output::dollars(r.total_delta),
            );
            if let Some(first) = r.first_unpriced_at {
                // A price set after the records (set now, by default) is not in effect at their time.
                let since = first.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                crate::say!(
                    "{} of {provider}/{model} since {} {} no price in effect at {} time, so {} unpriced; set one from \
                     then with `budget prices set {provider} {model} --input … --output … --effective-from {since}`, \
                     then run this again",
                    crate::output::count(r.unpriced_records, "record"),
                    utc_named(first),
                    if r.unpriced_records == 1 { "has" } else { "have" },
                    if r.unpriced_records == 1 { "its" } else { "their" },
                    if r.unpriced_records == 1 { "it stays" } else { "they stay" },
                );
            }
        }
        PricesCommand::History { provider, model, json } => {
            let h: PriceHistory = client.get(&format!("/api/prices/history/{provider}/{model}"), &[]).await?;
            if json {
                print_json(&serde_json::to_value(&h)?);
            } else {
                print_versions(&h.versions);
            }
        }
    }
    Ok(())
}

/// After a price set to take effect in the past: the records since then that it would price otherwise,
/// and the command that corrects them. Records keep the cost they were given until someone re-prices
/// them, so a backdated price changes no figure by itself, which surprised its user when unsaid. Found
/// by a dry run of that command; if the dry run fails, the price is set all the same and nothing is said.
async fn say_records_to_reprice(client: &Client, provider: &str, model: &str, since: chrono::DateTime<chrono::Utc>) {
    let body = json!({"provider": provider, "model": model, "since": since, "dry_run": true});
    let Ok(r) = client.post::<_, RepriceResponse>("/api/prices/reprice", &body).await else { return };
    if r.records == 0 {
        return;
    }
    let (verb, them) = if r.records == 1 { ("has", "it") } else { ("have", "them") };
    let change = if r.total_delta.is_sign_negative() {
        format!("{} less", crate::output::dollars(-r.total_delta))
    } else {
        format!("{} more", crate::output::dollars(r.total_delta))
    };
    crate::say!(
        "{} of {provider}/{model} since {} {verb} another cost under the price book as it now stands ({change} in \
         all); `budget prices reprice --provider {provider} --model {model} --since {}` corrects {them}",
        crate::output::count(r.records, "record"),
        utc_named(since),
        // To the second: a second earlier selects no other record than the price book now prices otherwise.
        since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
}

/// A price as `prices set` was given it, to repeat in the command that backdates it.
struct PriceArgs<'a> {
    input: &'a str,
    output: &'a str,
    cached_input: Option<&'a str>,
    per: &'a str,
}

/// Records of the model made before the price takes effect, and still unpriced, stay so (a price
/// reaches back no further than its `--effective-from`): says how many, and the two commands that price
/// them. Found from the model's `unpriced_model` alerts (one per recorded name, with its first record's
/// time), so a model that was never unpriced costs no read of the log.
async fn say_older_unpriced(client: &Client, set: &PriceChange, price: &PriceArgs<'_>) {
    // The names as stored (a provider alias resolved), from the answer.
    let Some((provider, model)) = set.added.iter().chain(&set.changed).next().and_then(|m| m.split_once('/')) else {
        return;
    };
    let query = [("type", "unpriced_model".to_string()), ("all", "true".to_string()), ("limit", "500".to_string())];
    let Ok(alerts) = client.get::<AlertList>("/api/alerts", &query).await else { return };
    let first = alerts
        .alerts
        .iter()
        .map(|a| &a.alert)
        .filter(|a| a.details["provider"] == provider)
        .filter(|a| {
            a.details["model"].as_str().is_some_and(|m| budget_events::domain::price::is_model(provider, m, model))
        })
        .filter_map(|a| a.details["first_record_at"].as_str()?.parse::<chrono::DateTime<chrono::Utc>>().ok())
        .min();
    let Some(first) = first.filter(|f| *f < set.effective_from) else { return };
    let body =
        json!({"provider": provider, "model": model, "since": first, "until": set.effective_from, "dry_run": true});
    let Ok(r) = client.post::<_, RepriceResponse>("/api/prices/reprice", &body).await else { return };
    let Some(since) = r.first_unpriced_at.filter(|_| r.unpriced_records > 0) else { return };
    // To the second, as the alert gives it: the price and the re-price then cover the first record.
    let at = since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut repeat = format!("--input {} --output {}", price.input, price.output);
    if let Some(c) = price.cached_input {
        repeat.push_str(&format!(" --cached-input {c}"));
    }
    if price.per != "1M" {
        repeat.push_str(&format!(" --per {}", price.per));
    }
    let (verb, them) = if r.unpriced_records == 1 { ("is", "it") } else { ("are", "them") };
    crate::say!(
        "{} of {provider}/{model} since {} {verb} older than this price, so {} unpriced; \
         `budget prices set {provider} {model} {repeat} --effective-from {at}`, then \
         `budget prices reprice --provider {provider} --model {model} --since {at}` price {them}",
        crate::output::count(r.unpriced_records as i64, "record"),
        utc_named(since),
        if r.unpriced_records == 1 { "it stays" } else { "they stay" },
    );
}

/// The file's text, or an http(s):// URL's body; and which source it counts as.
async fn read_source(from: &str) -> anyhow::Result<(String, &'static str)> {
    let (text, source) = budget_api::price_sources::fetch(from).await.map_err(anyhow::Error::msg)?;
    Ok((text, source.as_str()))
}

/// The price versions as a table: the $/1K columns where the terminal has room for them (they are
/// the $/1M ones over a thousand), the Until column where some version has ended; under a model's
/// name, the day its provider retires it (a line of the cell, not a column: a column put the list
/// past 100 terminal columns).
fn print_versions(versions: &[PriceView]) {
    let with_until = versions.iter().any(|v| v.effective_to.is_some());
    let today = chrono::Utc::now().date_naive();
    let build = |per_1k: bool| {
        let mut headers = vec!["Provider", "Model", "Input $/1M", "Output $/1M", "Cached $/1M"];
        if per_1k {
            headers.extend(["Input $/1K", "Output $/1K"]);
        }
        headers.push("Since (UTC)");
        headers.extend(with_until.then_some("Until"));
        headers.push("Source");
        let mut t = table(&headers);
        for v in versions {
            let mut row = vec![
                Cell::new(&v.provider),
                Cell::new(match (v.retires_on, v.retired_by) {
                    (Some(day), _) => format!("{}\n{} {day}", v.model, budget_api::price_book::retire_verb(day, today)),
                    (None, Some(day)) => format!("{}\nretired by {day}", v.model),
                    (None, None) => v.model.clone(),
                }),
                right(v.input_per_1m),
                right(v.output_per_1m),
                right(v.cached_input_per_1m.map_or("-".to_string(), |n| n.to_string())),
            ];
            if per_1k {
                row.extend([right(v.input_per_1k), right(v.output_per_1k)]);
            }
            row.push(Cell::new(utc(v.effective_from)));
            row.extend(with_until.then(|| Cell::new(v.effective_to.map_or(String::new(), utc))));
            row.push(Cell::new(&v.source));
            t.add_row(row);
        }
        t
    };
    let t = build(true);
    let t = if crate::output::fits_words(&t) { t } else { build(false) };
    crate::say!("{}", crate::output::fitted(t));
}

pub async fn calc_cost(client: &Client, args: CalcCostArgs) -> anyhow::Result<()> {
    let body = json!({"provider": args.provider, "model": args.model, "input_tokens": args.input_tokens,
                      "output_tokens": args.output_tokens, "cached_input_tokens": args.cached_input_tokens,
                      "cache_creation_input_tokens": args.cache_creation_tokens,
                      "reasoning_tokens": args.reasoning_tokens});
    let r: CalculateResponse = client.post("/api/prices/calculate", &body).await?;
    if args.json {
        print_json(&serde_json::to_value(&r)?);
        return Ok(());
    }
    // Input and output always; the other parts when the call has them.
    let c = &r.cost;
    let parts: Vec<String> = [
        ("input", c.input_cost, true),
        ("cached input", c.cached_input_cost, args.cached_input_tokens > 0),
        ("cache writes", c.cache_creation_cost, args.cache_creation_tokens > 0),
        ("output", c.output_cost, true),
        ("reasoning", c.reasoning_cost, args.reasoning_tokens > 0),
        ("per request", c.request_cost, !c.request_cost.is_zero()),
    ]
    .into_iter()
    .filter(|(_, _, shown)| *shown)
    .map(|(name, amount, _)| format!("{name} {}", crate::output::dollars(amount)))
    .collect();
    // A dated or suffixed name priced as its base model says which price it took.
    let priced_as =
        if r.resolved_model == args.model { String::new() } else { format!(" (priced as {})", r.resolved_model) };
    crate::say!(
        "{}/{}{priced_as}: {} input + {} output tokens = {} ({})",
        args.provider,
        args.model,
        thousands(args.input_tokens),
        thousands(args.output_tokens),
        crate::output::dollars(c.total_cost),
        parts.join(", "),
    );
    Ok(())
}

/// A few lines of counts; every name with `--verbose`.
fn print_update(r: &PriceChange, dry_run: bool, verbose: bool) {
    let thousands = |n: usize| thousands(i64::try_from(n).unwrap_or(i64::MAX));
    crate::say!(
        "{}{} added, {} changed, {} unchanged, {} merged duplicates, {} conflicts, {} skipped (source {})",
        if dry_run { "Dry run, nothing written: " } else { "" },
        thousands(r.added.len()),
        thousands(r.changed.len()),
        thousands(r.unchanged),
        thousands(r.merged),
        thousands(r.conflicts.len()),
        thousands(r.skipped),
        r.source,
    );
    for (reason, n) in &r.skipped_by_reason {
        crate::say!("  skipped {}: {reason}", thousands(*n));
    }
    const SHOWN: usize = 5;
    for (label, names) in [("added", &r.added), ("changed", &r.changed)] {
        if names.is_empty() {
            continue;
        }
        if names.len() <= SHOWN {
            crate::say!("  {label}: {}", names.join(", "));
        } else if verbose {
            // One a line, to read or grep: a real import adds thousands.
            for name in names {
                crate::say!("  {label} {name}");
            }
        } else {
            crate::say!(
                "  {label}: {}, … ({} more; --verbose lists them)",
                names[..SHOWN].join(", "),
                names.len() - SHOWN
            );
        }
    }
    for c in r.conflicts.iter().take(if verbose { usize::MAX } else { SHOWN }) {
        crate::say!("  conflict {}: kept `{}` over `{}`", c.price, c.kept, c.dropped);
    }
    if !verbose && r.conflicts.len() > SHOWN {
        crate::say!("  … {} more conflicts; --verbose lists them", r.conflicts.len() - SHOWN);
    }
}
