//! `budget replay`: rebuild projections from the log, compare, swap; and check the accounts. Shows a
//! progress line (events/s, ETA) on standard error while the server folds.

use std::io::Write;

use budget_api::routes::replay::ReplayLine;
use serde_json::json;

use crate::client::Client;
use crate::output::{print_json, thousands};

pub async fn run(
    client: &Client,
    projection: Option<String>,
    verify: bool,
    swap: bool,
    json: bool,
) -> anyhow::Result<()> {
    let body = json!({ "projection": projection.unwrap_or_else(|| "all".into()), "swap": swap });
    let mut response = client.post_stream("/api/replay", &body).await?;
    let mut pending = Vec::new();
    let mut differences = None;
    while let Some(chunk) = response.chunk().await? {
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let message = ReplayLine::parse(&line)?;
            if json {
                print_json(&serde_json::to_value(&message)?);
            } else {
                show(&message, swap)?;
            }
            match message {
                ReplayLine::Done { differences: d } => differences = Some(d),
                ReplayLine::Error { projection, message } => {
                    anyhow::bail!("replay of {projection} failed: {message}")
                }
                _ => {}
            }
        }
    }
    let Some(differences) = differences else {
        anyhow::bail!("the replay ended before it reported; see the server's log");
    };
    if verify && differences > 0 {
        anyhow::bail!("{differences} differences between the log and the live tables");
    }
    Ok(())
}

fn show(m: &ReplayLine, swap: bool) -> anyhow::Result<()> {
    match m {
        ReplayLine::Progress { progress: p } => {
            let mut err = std::io::stderr().lock();
            write!(
                err,
                "\r[{}] {} / {} events  {} events/s  ETA {:.1}s   ",
                p.projection,
                thousands(p.events as i64),
                thousands(p.total),
                thousands(p.events_per_second.round() as i64),
                p.eta_seconds,
            )?;
            err.flush()?;
        }
        ReplayLine::Projection { report: r, differing_rows } => {
            eprintln!();
            let name = &r.projection;
            if r.differences.is_empty() {
                crate::say!(
                    "{name}: {} events replayed in {:.2}s; the live tables equal the replay",
                    thousands(r.events as i64),
                    r.seconds
                );
            } else {
                crate::say!(
                    "{name}: {} replayed; {} differ",
                    crate::output::count(r.events as i64, "event"),
                    crate::output::count(*differing_rows, "row")
                );
                for d in &r.differences {
                    crate::say!(
                        "  {}: {} missing from the live table, {} there that the log does not give",
                        d.table,
                        crate::output::count(d.missing_in_live, "row"),
                        crate::output::count(d.unexpected_in_live, "row")
                    );
                    for row in &d.missing_rows {
                        crate::say!("    - log says:  {row}");
                    }
                    for row in &d.unexpected_rows {
                        crate::say!("    + live has:  {row}");
                    }
                }
                if !swap {
                    crate::say!(
                        "  `budget replay --projection {name} --swap` replaces the live tables with this replay (they differ after an upgrade that changed how {name} folds the log, or when something else wrote to them)"
                    );
                }
            }
            if swap && r.swapped {
                crate::say!("{name}: the live tables now hold the replay");
            }
        }
        ReplayLine::Accounts { accounts, events, differences } => {
            let events = crate::output::count(*events as i64, "event");
            if differences.is_empty() {
                match accounts {
                    0 => crate::say!("accounts: none to compare yet (no policy has had a window in the {events})"),
                    1 => crate::say!("accounts: the one enforcement account equals the fold of {events}"),
                    n => crate::say!(
                        "accounts: all {} enforcement accounts equal the fold of {events}",
                        thousands(*n as i64)
                    ),
                }
            } else {
                crate::say!(
                    "accounts: {} of {} {} from the fold of {events}",
                    thousands(differences.len() as i64),
                    thousands(*accounts as i64),
                    if differences.len() == 1 { "differs" } else { "differ" }
                );
                for d in differences {
                    crate::say!(
                        "  policy {} window {}: stored {} / folded {}",
                        d.policy_id,
                        d.window,
                        d.stored,
                        d.folded
                    );
                }
            }
        }
        ReplayLine::Error { .. } | ReplayLine::Done { .. } => {}
    }
    Ok(())
}
