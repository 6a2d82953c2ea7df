//! `budget bench`: sizes a deployment. In one run, on a fresh database of the given server, it measures
//! what PostgreSQL does alone (the ceilings) and what the service does over HTTP and WebSocket, with an
//! in-process load generator, and reports each figure with its latency percentiles and its ratio to a
//! ceiling of the same run (ratios hold across machines; absolute figures do not). It ends with the
//! checks that make the figures worth having: every acknowledged record is in the log once and posted
//! once, and the hard-limited window was never overspent.
//!
//! The service runs as `budget start` child processes (`server.rs`), so their memory is measured apart
//! from the load generator's.

pub mod ceilings;
pub mod checks;
pub mod client;
pub mod cpu;
pub mod gateway;
pub mod load;
pub mod scrape;
pub mod server;
pub mod stats;

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;
use serde_json::{json, Value};
use tokio_postgres::NoTls;
use uuid::Uuid;

use budget_events::db::{self, DbConfig};
use checks::Check;
use server::Server;
use stats::{Figure, Latencies};

/// How big a run is. `quick()` is for tests and a first look; `default()` is the sizing run.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub clients: usize,
    pub ceiling_rows: usize,
    pub ceiling_clients: usize,
    pub bulk_rows: usize,
    pub single_records: usize,
    pub batch_records: usize,
    pub batch_size: usize,
    pub reservations: usize,
    pub ws_rate: usize,
    pub ws_seconds: f64,
    /// Events in the log when `budget status` and the replay are timed.
    pub log_events: usize,
    /// `--gateway`: the rate of each phase and how long it runs.
    pub gateway_rate: usize,
    pub gateway_seconds: f64,
}

impl Default for Sizes {
    fn default() -> Sizes {
        Sizes {
            clients: 64,
            ceiling_rows: 20_000,
            ceiling_clients: 16,
            bulk_rows: 200_000,
            single_records: 20_000,
            batch_records: 200_000,
            batch_size: 1000,
            reservations: 20_000,
            ws_rate: 2000,
            ws_seconds: 10.0,
            log_events: 1_000_000,
            gateway_rate: 500,
            gateway_seconds: 10.0,
        }
    }
}

impl Sizes {
    pub fn quick() -> Sizes {
        Sizes {
            clients: 8,
            ceiling_rows: 1000,
            ceiling_clients: 4,
            bulk_rows: 10_000,
            single_records: 400,
            batch_records: 4000,
            batch_size: 500,
            reservations: 400,
            ws_rate: 100,
            ws_seconds: 2.0,
            log_events: 10_000,
            gateway_rate: 100,
            gateway_seconds: 2.0,
        }
    }
}

pub struct Options {
    /// The `budget` executable, run as `budget start` for the service under test.
    pub exe: PathBuf,
    /// The server to create the bench's database on.
    pub server: DbConfig,
    pub sizes: Sizes,
    /// Keep the bench database afterwards (it is dropped by default).
    pub keep: bool,
    /// Measure the gateway's overhead instead of the ledger's figures.
    pub gateway: bool,
    /// Progress lines go here (stderr for people; nothing for `--json`).
    pub progress: Box<dyn Fn(&str) + Send + Sync>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub date: String,
    pub machine: String,
    pub database: String,
    /// The bench's own database (dropped after the run unless kept).
    pub database_name: String,
    pub synchronous_commit: String,
    pub figures: Vec<Figure>,
    /// Where each write phase's time went (the service's `/metrics`).
    pub breakdown: Vec<String>,
    pub checks: Vec<Check>,
}

impl Report {
    /// A report of this run on `config`'s database, dated now.
    fn new(
        config: &DbConfig,
        synchronous_commit: String,
        figures: Vec<Figure>,
        breakdown: Vec<String>,
        checks: Vec<Check>,
    ) -> Report {
        Report {
            date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            machine: machine(),
            database: db::describe(config),
            database_name: config.get_dbname().unwrap_or_default().to_string(),
            synchronous_commit,
            figures,
            breakdown,
            checks,
        }
    }

    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find_map(|l| l.strip_prefix("MemTotal:")).map(|v| v.trim().to_string()))
        .and_then(|v| v.trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(String::new(), |kb| format!(", {:.0} GiB", kb / 1024.0 / 1024.0));
    format!("{} cores{memory}, {}", cpus, std::env::consts::ARCH)
}

/// The admin key of the servers under test and a write key made with it, as clients would hold.
async fn keys(http: &reqwest::Client, url: &str, admin: &str) -> anyhow::Result<String> {
    let r = http
        .post(format!("{url}/api/keys"))
        .bearer_auth(admin)
        .json(&json!({"name": "bench", "scope": "write"}))
        .send()
        .await?;
    anyhow::ensure!(r.status().as_u16() == 201, "creating the bench's key answered {}", r.status());
    let v: Value = r.json().await?;
    v["secret"].as_str().map(str::to_string).ok_or_else(|| anyhow::anyhow!("no secret in {v}"))
}

async fn policy(http: &reqwest::Client, url: &str, key: &str, body: Value) -> anyhow::Result<Uuid> {
    let r = http.post(format!("{url}/api/policies")).bearer_auth(key).json(&body).send().await?;
    anyhow::ensure!(r.status().as_u16() == 201, "setting a policy answered {}", r.status());
    let v: Value = r.json().await?;
    v["policy"]["policy_id"].as_str().and_then(|s| s.parse().ok()).ok_or_else(|| anyhow::anyhow!("no policy_id in {v}"))
}

/// Runs every phase and the checks on a fresh database; drops it afterwards unless `keep`.
pub async fn run(options: Options) -> anyhow::Result<Report> {
    let say = &options.progress;
    let name = format!("budget_bench_{}", Uuid::now_v7().simple());
    let config = db::ensure_database(options.server.clone(), &name).await.map_err(|e| {
        anyhow::Error::new(e).context(format!(
            "cannot create the bench's database on {} (check --database-url or BUDGET_DATABASE_URL, and that the server runs)",
            db::describe(&options.server)
        ))
    })?;
    let result =
        if options.gateway { measure_gateway(&options, &config).await } else { measure(&options, &config).await };
    if !options.keep {
        let (client, connection) = options.server.connect(NoTls).await?;
        tokio::spawn(connection);
        client.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await?;
    } else {
        say(&format!("kept the database {name}"));
    }
    result
}

async fn measure(options: &Options, config: &DbConfig) -> anyhow::Result<Report> {
    let (say, s) = (&options.progress, &options.sizes);
    let admin = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let database = db::conninfo(config);
    say("starting the service (budget start)…");
    let primary = Server::start(&options.exe, &database, &admin).await?;
    let http = reqwest::Client::new();
    let key = keys(&http, &primary.url, &admin).await?;
    let pool = db::pool(config, s.ceiling_clients + 2);
    let synchronous_commit: String = pool.get().await?.query_one("SHOW synchronous_commit", &[]).await?.get(0);
    let mut figures = Vec::new();

    // Enforcement on: every usage record is priced (no client cost) and posted to a hard-limited
    // window; the reservations share one hot window with room for half of them.
    let usage_policy = policy(
        &http,
        &primary.url,
        &admin,
        json!({"period": "daily", "type": "hard_limit", "cost_limit": "9999999999", "component": "bench"}),
    )
    .await?;
    let tokens_each = 100i64;
    let token_limit = tokens_each * (s.reservations as i64 / 2);
    let hot_policy = policy(
        &http,
        &primary.url,
        &admin,
        json!({"period": "daily", "type": "hard_limit", "token_limit": token_limit, "component": "hot"}),
    )
    .await?;

    let mut breakdown = Vec::new();
    let scrape = || scrape::Scrape::take(&http, &primary.url, &admin);
    let database_name = config.get_dbname().unwrap_or_default();
    let cpu = || cpu::CpuSample::take(primary.pid(), database_name);
    // What a phase's (or its ceiling's) turns spent, where `/proc` could be read before and after each
    // of them; and the CPU line that says so.
    let spent_in = |spent: &mut Option<cpu::CpuSpent>,
                    before: Option<cpu::CpuSample>,
                    after: Option<cpu::CpuSample>| {
        *spent = spent.zip(before.zip(after)).map(|(spent, (before, after))| spent.plus(after.spent_since(&before)));
    };
    let cpu_line = |spent: Option<cpu::CpuSpent>, who: &str, count: usize, unit: &str, own: &str| {
        spent.map(|spent| spent.per_unit(who, count, unit, own))
    };
    // Each write phase runs in turns with its PostgreSQL ceiling (see `TURNS`).
    say(&format!(
        "POST /api/usage, {} records, {} clients, in turns with one-row inserts…",
        s.single_records, s.clients
    ));
    let mut one_row_ceiling = ceilings::Ceiling::default();
    let mut single = load::Written::default();
    let (mut spent, mut ceiling_spent) = (Some(cpu::CpuSpent::default()), Some(cpu::CpuSpent::default()));
    let before = scrape().await?;
    for turn in 0..TURNS {
        settle(&pool, say.as_ref()).await?;
        let rows = share(s.ceiling_rows, turn);
        let cpu_before = cpu();
        one_row_ceiling.add(ceilings::one_row_inserts(&pool, s.ceiling_clients, rows, one_row_ceiling.rows).await?);
        spent_in(&mut ceiling_spent, cpu_before, cpu());
        let cpu_before = cpu();
        single.add(load::usage_single(&primary.url, &key, s.clients, share(s.single_records, turn)).await?);
        spent_in(&mut spent, cpu_before, cpu());
    }
    breakdown.extend(cpu_line(ceiling_spent, "one-row INSERTs", one_row_ceiling.rows, "row", "their client"));
    breakdown.extend(cpu_line(spent, "POST /api/usage", single.acknowledged.len(), "record", "load generator"));
    breakdown.push(scrape().await?.since(&before, "POST /api/usage"));
    let one_row = Figure::new(
        "ceiling_one_row_insert",
        format!("PostgreSQL: one-row INSERT per transaction, {} clients, in {TURNS} turns", s.ceiling_clients),
        one_row_ceiling.per_second(),
        "rows/s",
    )
    .latency(&one_row_ceiling.latencies);
    let single_figure = Figure::new(
        "usage_single",
        format!("POST /api/usage, 1 record per request, {} clients (keys, priced, enforced)", s.clients),
        single.per_second,
        "records/s",
    )
    .latency(&single.latencies)
    .against(&one_row);
    let met = single_figure.ratio.unwrap_or(0.0) >= 1.0 && single_figure.latency.is_some_and(|l| l.p99_ms <= 20.0);
    figures.push(single_figure.clone().target("≥ 1.0× the one-row-insert ceiling, p99 ≤ 20 ms", met));

    say(&format!("POST /api/usage/batch, {} records, in turns with INSERT … SELECT…", s.batch_records));
    let batch_clients = 4.min(s.clients);
    let mut bulk_ceiling = ceilings::Ceiling::default();
    let mut batch = load::Written::default();
    let (mut spent, mut ceiling_spent) = (Some(cpu::CpuSpent::default()), Some(cpu::CpuSpent::default()));
    let before = scrape().await?;
    for turn in 0..TURNS {
        settle(&pool, say.as_ref()).await?;
        let cpu_before = cpu();
        bulk_ceiling.add(ceilings::insert_select(&pool, share(s.bulk_rows, turn), bulk_ceiling.rows).await?);
        spent_in(&mut ceiling_spent, cpu_before, cpu());
        let cpu_before = cpu();
        let records = share(s.batch_records, turn);
        batch.add(load::usage_batch(&primary.url, &key, batch_clients, records, s.batch_size).await?);
        spent_in(&mut spent, cpu_before, cpu());
    }
    ceilings::clean(&pool).await?;
    breakdown.extend(cpu_line(ceiling_spent, "INSERT … SELECT", bulk_ceiling.rows, "row", "its client"));
    breakdown.extend(cpu_line(spent, "POST /api/usage/batch", batch.acknowledged.len(), "record", "load generator"));
    breakdown.push(scrape().await?.since(&before, "POST /api/usage/batch"));
    let bulk = Figure::new(
        "ceiling_insert_select",
        format!("PostgreSQL: INSERT … SELECT of {} event rows, in {TURNS} turns", s.bulk_rows),
        bulk_ceiling.per_second(),
        "rows/s",
    );
    let batch_figure = Figure::new(
        "usage_batch",
        format!("POST /api/usage/batch, {} records per request, {batch_clients} clients", s.batch_size),
        batch.per_second,
        "records/s",
    )
    .latency(&batch.latencies)
    .against(&bulk);
    let met = batch_figure.ratio.unwrap_or(0.0) >= 0.5;
    figures.push(batch_figure.target("≥ 0.5× the INSERT … SELECT ceiling", met));

    say(&format!("POST /api/allocations, {} requests on one hot window…", s.reservations));
    let (before, cpu_before) = (scrape().await?, cpu());
    let reserved = load::reservations(&primary.url, &key, s.clients, s.reservations, tokens_each, "hot").await?;
    let spent = cpu_before.zip(cpu()).map(|(before, after)| after.spent_since(&before));
    breakdown.extend(cpu_line(spent, "POST /api/allocations", s.reservations, "request", "load generator"));
    breakdown.push(scrape().await?.since(&before, "POST /api/allocations"));
    let reserve_figure = Figure::new(
        "reservations",
        format!(
            "POST /api/allocations on one hard-limited window, {} clients ({} admitted, {} refused)",
            s.clients, reserved.admitted, reserved.refused
        ),
        reserved.per_second,
        "requests/s",
    )
    .latency(&reserved.latencies)
    .against(&single_figure);
    let met = reserve_figure.ratio.unwrap_or(0.0) >= 0.8;
    figures.push(reserve_figure.target("≥ 0.8× the single-record usage rate, zero overspend", met));

    say(&format!("WebSocket delivery at {} records/s, on this server and a second one…", s.ws_rate));
    let second = Server::start(&options.exe, &database, &admin).await?;
    let ws = |u: &str| format!("{}/ws/budget/updates?api_key={key}", u.replacen("http", "ws", 1));
    let (delivered, ws_acknowledged) =
        load::ws_delivery(&primary.url, &key, &[ws(&primary.url), ws(&second.url)], s.ws_rate, s.ws_seconds).await?;
    second.stop().await;
    for (latencies, (name, label)) in delivered.iter().zip([
        ("ws_delivery", "commit → WebSocket delivery, same server process"),
        ("ws_delivery_second_process", "commit → WebSocket delivery, a second server process"),
    ]) {
        let p99 = latencies.percentiles().map_or(f64::MAX, |p| p.p99_ms);
        figures.push(
            Figure::new(name, format!("{label}, at {}/s", s.ws_rate), p99, "ms p99")
                .latency(latencies)
                .target("p99 ≤ 50 ms", p99 <= 50.0),
        );
    }

    // Fill the log up to `log_events`, untimed, then time what depends on its size.
    let logged: i64 = pool.get().await?.query_one("SELECT count(*) FROM events", &[]).await?.get(0);
    let mut fill = load::Written::default();
    if (logged as usize) < s.log_events {
        let missing = s.log_events - logged as usize;
        say(&format!("filling the log with {missing} more records…"));
        fill = load::usage_batch(&primary.url, &key, 2, missing, 1000.min(missing)).await?;
    }
    let events: i64 = pool.get().await?.query_one("SELECT count(*) FROM events", &[]).await?.get(0);
    say(&format!("replay and status with {events} events in the log…"));
    figures.push(replay(&http, &primary.url, &admin).await?);
    figures.push(status(&options.exe, &primary.url, &admin, events).await?);
    if let Some(rss) = primary.rss_mb() {
        figures.push(
            Figure::new("server_rss", format!("server RSS with {events} events in the log"), rss, "MB")
                .target("≤ 150 MB", rss <= 150.0),
        );
    }

    say("checks…");
    let client = pool.get().await?;
    let acknowledged: Vec<Uuid> = [&single.acknowledged, &batch.acknowledged, &ws_acknowledged, &fill.acknowledged]
        .into_iter()
        .flatten()
        .copied()
        .collect();
    let mut found = vec![checks::exactly_once(&**client, &acknowledged, usage_policy).await?];
    found.push(Check {
        name: "retries_replayed",
        passed: single.retries_replayed == single.retries,
        detail: format!(
            "{} of {} retried requests got their first answer back",
            single.retries_replayed, single.retries
        ),
    });
    let admitted_tokens = reserved.admitted as i64 * tokens_each;
    found.push(checks::zero_overspend(&**client, hot_policy, token_limit, admitted_tokens).await?);
    primary.stop().await;
    Ok(Report::new(config, synchronous_commit, [vec![one_row, bulk], figures].concat(), breakdown, found))
}

/// Turns of a write phase and of its PostgreSQL ceiling. This machine's speed swings by half within a
/// minute (the one-row ceiling went from 9,454 to 13,129 rows/s between two runs a minute apart on
/// 2026-12-02), and each ceiling used to be measured once at the start, up to a minute before its
/// phase: a ratio then said as much about the minute as about the service. Measured in alternating
/// turns, a phase and its ceiling see the same minutes.
const TURNS: usize = 4;

/// The part of `total` that turn `turn` of [`TURNS`] takes (the turns add up to `total`).
fn share(total: usize, turn: usize) -> usize {
    total * (turn + 1) / TURNS - total * turn / TURNS
}

/// Waits (at most half a minute, then says so) until the projections have folded everything in the
/// log, so that a ceiling's turn finds the service idle, as a ceiling measured before any load did.
async fn settle(pool: &deadpool_postgres::Pool, say: &(dyn Fn(&str) + Send + Sync)) -> anyhow::Result<()> {
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    let client = pool.get().await?;
    loop {
        let behind: i64 = client
            .query_one(
                "SELECT coalesce((SELECT max(position) FROM events), 0)
                        - coalesce((SELECT min(position) FROM projection_checkpoints), 0)",
                &[],
            )
            .await?
            .get(0);
        if behind <= 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            say(&format!(
                "the projections are still {behind} events behind after 30 s (see `budget status`); \
                 measuring the ceiling's turn anyway"
            ));
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// `--gateway`: the same chat completion sent to a fake provider directly and through the gateway,
/// open-loop at `gateway_rate` per second each; the overhead is the difference of their percentiles.
/// Checks that every answered call is one settled usage record and nothing stays reserved.
async fn measure_gateway(options: &Options, config: &DbConfig) -> anyhow::Result<Report> {
    let (say, s) = (&options.progress, &options.sizes);
    let admin = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let provider = gateway::fake_provider()?;
    let upstreams = json!({"openai": {"base_url": provider, "api_key_env": "BENCH_PROVIDER_KEY"}}).to_string();
    say("starting the service (budget start) with the fake provider as its upstream…");
    let env = [("BUDGET_UPSTREAMS", upstreams.as_str()), ("BENCH_PROVIDER_KEY", gateway::FAKE_SECRET)];
    let server = Server::start_with(&options.exe, &db::conninfo(config), &admin, &env).await?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(1024).build()?;
    let key = keys(&http, &server.url, &admin).await?;
    // Enforced as a real deployment would be: every call reserves in one hard-limited window.
    let limit =
        json!({"period": "daily", "type": "hard_limit", "cost_limit": "9999999999", "component": "bench-gateway"});
    policy(&http, &server.url, &admin, limit).await?;
    let pool = db::pool(config, 2);
    let synchronous_commit: String = pool.get().await?.query_one("SHOW synchronous_commit", &[]).await?.get(0);

    let (rate, seconds) = (s.gateway_rate, s.gateway_seconds);
    // A short warm-up of both paths (connections, the first price lookups), not timed.
    gateway::open_loop(&http, &format!("{provider}/chat/completions"), gateway::FAKE_SECRET, rate, 0.5).await?;
    gateway::open_loop(&http, &format!("{}/v1/chat/completions", server.url), &key, rate, 0.5).await?;
    let settled_before: i64 = pool
        .get()
        .await?
        .query_one("SELECT count(*) FROM events WHERE event_type = 'UsageRecorded'", &[])
        .await?
        .get(0);

    say(&format!("the fake provider directly, {rate} requests/s for {seconds} s…"));
    let direct =
        gateway::open_loop(&http, &format!("{provider}/chat/completions"), gateway::FAKE_SECRET, rate, seconds).await?;
    say(&format!("through the gateway, {rate} requests/s for {seconds} s…"));
    let before = scrape::Scrape::take(&http, &server.url, &admin).await?;
    let through =
        gateway::open_loop(&http, &format!("{}/v1/chat/completions", server.url), &key, rate, seconds).await?;
    let breakdown =
        vec![scrape::Scrape::take(&http, &server.url, &admin).await?.since(&before, "POST /v1/chat/completions")];

    let pct = |l: &Latencies| l.percentiles().unwrap_or(stats::Percentiles { p50_ms: 0.0, p95_ms: 0.0, p99_ms: 0.0 });
    let (d, g) = (pct(&direct.latencies), pct(&through.latencies));
    let direct_figure = Figure::new(
        "gateway_direct",
        format!("the fake provider called directly, {rate} requests/s ({} failed)", direct.failed),
        d.p50_ms,
        "ms p50",
    )
    .latency(&direct.latencies);
    let through_figure = Figure::new(
        "gateway_through",
        format!(
            "the same call through the gateway (reserve, forward, settle), {rate} requests/s ({} failed)",
            through.failed
        ),
        g.p50_ms,
        "ms p50",
    )
    .latency(&through.latencies);
    let overhead_p50 = Figure::new("gateway_overhead_p50", "gateway overhead, p50", g.p50_ms - d.p50_ms, "ms");
    let overhead_p99 = Figure::new("gateway_overhead_p99", "gateway overhead, p99", g.p99_ms - d.p99_ms, "ms")
        .target("≤ 5 ms (LiteLLM publishes 43 ms)", g.p99_ms - d.p99_ms <= 5.0);

    say("checks…");
    let client = pool.get().await?;
    let checks = vec![
        Check {
            name: "gateway_calls_answered",
            passed: through.failed == 0 && direct.failed == 0,
            detail: match through.first_failure.as_ref().or(direct.first_failure.as_ref()) {
                None => format!("{} of {} calls answered", through.ok, through.ok + through.failed),
                Some(why) => format!("{} calls failed, the first: {why}", through.failed + direct.failed),
            },
        },
        checks::gateway_settled_once(&**client, settled_before, through.ok as i64).await?,
    ];
    server.stop().await;
    Ok(Report::new(
        config,
        synchronous_commit,
        vec![direct_figure, through_figure, overhead_p50, overhead_p99],
        breakdown,
        checks,
    ))
}

/// Replays one projection (`usage_rollups`) from the whole log: events per second.
async fn replay(http: &reqwest::Client, url: &str, admin: &str) -> anyhow::Result<Figure> {
    let text = http
        .post(format!("{url}/api/replay"))
        .bearer_auth(admin)
        .json(&json!({"projection": "usage_rollups"}))
        .send()
        .await?
        .text()
        .await?;
    let report = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "projection")
        .ok_or_else(|| {
            anyhow::anyhow!("the replay reported no projection: {}", text.chars().take(500).collect::<String>())
        })?;
    let (events, seconds) =
        (report["report"]["events"].as_f64().unwrap_or(0.0), report["report"]["seconds"].as_f64().unwrap_or(0.0));
    let rate = if seconds > 0.0 { events / seconds } else { 0.0 };
    Ok(Figure::new("replay", format!("replay of one projection (usage_rollups), {events} events"), rate, "events/s")
        .target("≥ 150,000 events/s", rate >= 150_000.0))
}

/// `budget status` run as a command, as an operator would: the median wall time of five.
async fn status(exe: &std::path::Path, url: &str, key: &str, events: i64) -> anyhow::Result<Figure> {
    let mut walls = Latencies::default();
    for _ in 0..5 {
        let t = Instant::now();
        let out = tokio::process::Command::new(exe)
            .args(["status", "--json"])
            .env("BUDGET_URL", url)
            .env("BUDGET_API_KEY", key)
            .output()
            .await?;
        anyhow::ensure!(out.status.success(), "budget status failed: {}", String::from_utf8_lossy(&out.stderr));
        walls.push(t.elapsed());
    }
    let p50 = walls.percentiles().map_or(0.0, |p| p.p50_ms);
    Ok(Figure::new("status_wall", format!("`budget status` wall time, {events} events in the log"), p50, "ms")
        .latency(&walls)
        .target("≤ 50 ms", p50 <= 50.0))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_turns_share_a_phase_whole() {
        for total in [0, 1, 3, 400, 20_000, 200_001] {
            let shares: Vec<usize> = (0..super::TURNS).map(|t| super::share(total, t)).collect();
            assert_eq!(shares.iter().sum::<usize>(), total, "{shares:?}");
            assert!(shares.iter().max().unwrap() - shares.iter().min().unwrap() <= 1, "{shares:?}");
        }
    }
}
