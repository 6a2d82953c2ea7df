//! `budget replay`: rebuild projections from the log, compare, swap; and check the accounts. Shows a
//! progress line (events/s, ETA) on standard error while the server folds.

use std::io::Write;

use serde_json::{json, Value};

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
            let message: Value = serde_json::from_slice(&line)?;
            if json {
                print_json(&message);
            } else {
                show(&message, swap)?;
            }
            match message["type"].as_str() {
                Some("done") => differences = message["differences"].as_i64(),
                Some("error") => {
                    anyhow::bail!(
                        "replay of {} failed: {}",
                        message["projection"],
                        message["message"].as_str().unwrap_or("?")
                    )
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

fn show(m: &Value, swap: bool) -> anyhow::Result<()> {
    match m["type"].as_str() {
        Some("progress") => {
            let p = &m["progress"];
            let mut err = std::io::stderr().lock();
            write!(
                err,
                "\r[{}] {} / {} events  {:.0} events/s  ETA {:.1}s   ",
                p["projection"].as_str().unwrap_or("?"),
                thousands(p["events"].as_i64().unwrap_or(0)),
                thousands(p["total"].as_i64().unwrap_or(0)),
                p["events_per_second"].as_f64().unwrap_or(0.0),
                p["eta_seconds"].as_f64().unwrap_or(0.0),
            )?;
            err.flush()?;
        }
        Some("projection") => {
            eprintln!();
            let r = &m["report"];
            let name = r["projection"].as_str().unwrap_or("?");
            let diffs = r["differences"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            if diffs.is_empty() {
                crate::say!(
                    "{name}: {} events replayed in {:.2}s; the live tables equal the replay",
                    thousands(r["events"].as_i64().unwrap_or(0)),
                    r["seconds"].as_f64().unwrap_or(0.0)
                );
            } else {
                crate::say!(
                    "{name}: {} events replayed; {} rows differ",
                    thousands(r["events"].as_i64().unwrap_or(0)),
                    m["differing_rows"]
                );
                for d in diffs {
                    let table = d["table"].as_str().unwrap_or("?");
                    crate::say!(
                        "  {table}: {} rows missing from the live table, {} rows there that the log does not give",
                        d["missing_in_live"],
                        d["unexpected_in_live"]
                    );
                    for row in d["missing_rows"].as_array().into_iter().flatten() {
                        crate::say!("    - log says:  {row}");
                    }
                    for row in d["unexpected_rows"].as_array().into_iter().flatten() {
                        crate::say!("    + live has:  {row}");
                    }
                }
            }
            if swap && r["swapped"] == true {
                crate::say!("{name}: the live tables now hold the replay");
            }
        }
        Some("accounts") => {
            let diffs = m["differences"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            if diffs.is_empty() {
                crate::say!(
                    "accounts: all {} enforcement accounts equal the fold of {} events",
                    m["accounts"],
                    thousands(m["events"].as_i64().unwrap_or(0))
                );
            } else {
                crate::say!("accounts: {} differ from the fold of the log", diffs.len());
                for d in diffs {
                    crate::say!(
                        "  policy {} window {}: stored {} / folded {}",
                        d["policy_id"].as_str().unwrap_or("?"),
                        d["window"].as_str().unwrap_or("?"),
                        d["stored"],
                        d["folded"]
                    );
                }
            }
        }
        _ => {}
    }
    Ok(())
}
