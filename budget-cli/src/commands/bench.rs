//! `budget bench`: runs `budget_bench` against a fresh database and prints its report.

use anyhow::Context;
use budget_api::configuration::DatabaseLocation;
use budget_bench::{Options, Report, Sizes};
use budget_events::db;
use budget_events::db::embedded::EmbeddedPostgres;

use crate::cli::BenchArgs;
use crate::output::{print_json, right, table};

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let location = match &args.database_url {
        Some(url) => DatabaseLocation::Url(Box::new(
            db::parse_config(url).context("--database-url is not a valid PostgreSQL URL")?,
        )),
        None => DatabaseLocation::from_env()?,
    };
    let (server, embedded) = match location {
        DatabaseLocation::Url(config) => (*config, None),
        DatabaseLocation::Private(dir) => {
            let pg = super::start::private_cluster(dir)
                .await
                .context("cannot start the private PostgreSQL (give --database-url to use another server)")?;
            (pg.config(), Some(pg))
        }
    };
    let mut sizes = if args.quick { Sizes::quick() } else { Sizes::default() };
    if let Some(c) = args.clients {
        anyhow::ensure!((1..=1024).contains(&c), "--clients is {c}; use 1 to 1024");
        sizes.clients = c;
    }
    if let Some(n) = args.log_events {
        sizes.log_events = n;
    }
    let json = args.json;
    let options = Options {
        exe: std::env::current_exe().context("cannot find the budget executable to run `budget start`")?,
        server,
        sizes,
        keep: args.keep,
        gateway: args.gateway,
        progress: Box::new(move |line| {
            if !json {
                eprintln!("{line}");
            }
        }),
    };
    let report = budget_bench::run(options).await;
    if let Some(pg) = embedded.filter(EmbeddedPostgres::started_here) {
        let _ = tokio::task::spawn_blocking(move || pg.stop()).await?;
    }
    let report = report?;
    if json {
        print_json(&serde_json::to_value(&report)?);
    } else {
        print_report(&report);
    }
    anyhow::ensure!(report.passed(), "a correctness check failed (see above)");
    Ok(())
}

fn print_report(r: &Report) {
    crate::say!(
        "budget bench, {} on {} (PostgreSQL {}, synchronous_commit={})",
        r.date,
        r.machine,
        r.database,
        r.synchronous_commit
    );
    let mut t = table(&["Figure", "Value", "p50 ms", "p95 ms", "p99 ms", "Ratio", "Target"]);
    let ms = |v: f64| format!("{v:.1}");
    for f in &r.figures {
        let (p50, p95, p99) = f
            .latency
            .map_or((String::new(), String::new(), String::new()), |l| (ms(l.p50_ms), ms(l.p95_ms), ms(l.p99_ms)));
        let ratio = f.ratio.map_or(String::new(), |x| format!("{}× {}", ratio_text(x), f.baseline.unwrap_or_default()));
        let target = match (f.target, f.met) {
            (Some(t), Some(true)) => format!("met: {t}"),
            (Some(t), _) => format!("MISSED: {t}"),
            _ => String::new(),
        };
        t.add_row(vec![
            comfy_table::Cell::new(&f.label),
            right(value_text(f.value, f.unit)),
            right(p50),
            right(p95),
            right(p99),
            comfy_table::Cell::new(ratio),
            comfy_table::Cell::new(target),
        ]);
    }
    crate::say!("{}", crate::output::fitted(t));
    for line in &r.breakdown {
        crate::say!("{line}");
    }
    for c in &r.checks {
        crate::say!("{} {}: {}", if c.passed { "ok" } else { "FAILED" }, c.name, c.detail);
    }
}

/// A figure as the table shows it: whole and grouped from 100 up (`13,533 records/s`, read beside the
/// README's table and the CLI's counts), else to a tenth (`11.6 ms p99`, `85.3 MB`).
fn value_text(value: f64, unit: &str) -> String {
    if value >= 100.0 {
        format!("{} {unit}", crate::output::thousands(value.round() as i64))
    } else {
        format!("{value:.1} {unit}")
    }
}

/// A ratio to two decimals, cut rather than rounded: the targets' lines (0.5×, 0.8×, 1.0×) have no
/// more digits, so a figure printed at its line has met it (0.4989× printed as "0.50×" beside
/// "MISSED: ≥ 0.5×" read as a contradiction). The JSON keeps every digit.
fn ratio_text(ratio: f64) -> String {
    // The nudge keeps a ratio that is exactly two decimals (0.29, whose float is 0.28999…) as it is.
    format!("{:.2}", (ratio * 100.0 + 1e-9).floor() / 100.0)
}

#[cfg(test)]
mod tests {
    use super::{ratio_text, value_text};

    #[test]
    fn rates_are_grouped_as_the_readme_writes_them() {
        assert_eq!(value_text(13533.4, "records/s"), "13,533 records/s");
        assert_eq!(value_text(219_558.0, "events/s"), "219,558 events/s");
        assert_eq!(value_text(100.0, "MB"), "100 MB");
        assert_eq!(value_text(85.34, "MB"), "85.3 MB");
        assert_eq!(value_text(11.6, "ms p99"), "11.6 ms p99");
    }

    #[test]
    fn a_ratio_just_under_its_line_is_not_printed_at_it() {
        assert_eq!(ratio_text(0.49891), "0.49");
        assert_eq!(ratio_text(0.5), "0.50");
        assert_eq!(ratio_text(0.29), "0.29");
        assert_eq!(ratio_text(0.7999), "0.79");
        assert_eq!(ratio_text(1.234), "1.23");
    }
}
