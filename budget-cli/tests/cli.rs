//! The `budget` binary against a live server: the commands as the guide writes them.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use budget_api::{Application, Settings};
use budget_events::db::testing::{scratch_dir, TestDb};

const BIN: &str = env!("CARGO_BIN_EXE_budget");

struct Server {
    url: String,
    db: TestDb,
}

async fn server() -> Server {
    let db = TestDb::new().await;
    let mut settings = Settings::new("127.0.0.1", 0, db.config.clone());
    settings.shutdown_timeout = 2;
    settings.bundled_prices = false;
    settings.sweep_interval = Duration::from_millis(200);
    let app = Application::build(settings).await.unwrap();
    let url = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    Server { url, db }
}

/// Runs `budget ARGS` off the async runtime (it blocks) and returns its output.
async fn budget(url: &str, args: &[&str]) -> Output {
    let (url, args): (String, Vec<String>) = (url.to_string(), args.iter().map(|s| s.to_string()).collect());
    // The CLI remembers its last write per server under the state directory; keep it out of $HOME.
    let state = std::env::temp_dir().join("budget-cli-tests-state");
    tokio::task::spawn_blocking(move || {
        // Tables as wide as their content, whatever terminal runs the tests.
        Command::new(BIN)
            .args(&args)
            .env("BUDGET_URL", url)
            .env("XDG_STATE_HOME", state)
            .env_remove("COLUMNS")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn post_usage(url: &str, body: serde_json::Value) {
    let r = reqwest::Client::new().post(format!("{url}/api/usage")).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
}

/// Waits until the usage rollups count `n` records.
async fn wait_applied(url: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let h: serde_json::Value =
            reqwest::get(format!("{url}/api/usage?period=daily&days=1")).await.unwrap().json().await.unwrap();
        if h["totals"]["count"] == n {
            return;
        }
        assert!(Instant::now() < deadline, "{h}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn get_usage_prints_a_table_and_json() {
    let s = server().await;
    post_usage(
        &s.url,
        serde_json::json!({"provider":"openai","model":"gpt-4o","component":"codex","context_id":"task-123",
                           "task_type":"coding","input_tokens":1200,"output_tokens":340,"cost":0.0064}),
    )
    .await;
    post_usage(
        &s.url,
        serde_json::json!({"provider":"anthropic","model":"claude","component":"rhetor","input_tokens":1,"output_tokens":1,"cost":1}),
    )
    .await;
    wait_applied(&s.url, 2).await;

    // A write through the CLI first: the read after it waits for it (min_position), which is no filter.
    assert!(budget(&s.url, &["set_limit", "daily", "20"]).await.status.success());
    let out = budget(&s.url, &["get_usage", "daily", "--days", "7", "--provider", "openai"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("1,200") && text.contains("$0.0064") && text.contains("gpt-4o"), "{text}");
    let header = text.lines().find(|l| l.starts_with("Usage daily from")).unwrap_or_default();
    assert!(header.ends_with(" (provider=openai)"), "the header names the filters given, and only them: {text}");
    assert!(header.contains(" UTC to ") && header.contains(" UTC ("), "a sentence names its times' zone: {header}");
    assert!(!text.contains("claude"), "the provider filter applies: {text}");

    // The biggest spenders first (rhetor's $1 before codex's $0.0064), under a heading like the others.
    let text = stdout(&budget(&s.url, &["get_usage", "daily"]).await);
    let by_component = text.split("By component").nth(1).unwrap_or_default();
    assert!(by_component.contains("│ Component ┆ Input tokens"), "{text}");
    let (rhetor, codex) = (by_component.find("rhetor"), by_component.find("codex"));
    assert!(rhetor.is_some() && codex.is_some() && rhetor < codex, "{text}");

    let out = budget(&s.url, &["get-usage", "daily", "--json"]).await;
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["totals"]["count"], 2);
    assert_eq!(json["totals"]["cost"].to_string(), "1.0064");

    let out = budget(&s.url, &["get_usage", "daily", "--component", "codex"]).await;
    assert!(stdout(&out).contains("codex"));
    // Nothing matching: one sentence, not a table of zeros.
    let text = stdout(&budget(&s.url, &["get_usage", "daily", "--provider", "opnai"]).await);
    assert!(text.starts_with("No usage (provider=opnai) was recorded from ") && !text.contains('┌'), "{text}");
}

/// `budget get_usage daily` in an 80-column terminal broke "$5.5586196" into "$5.558619" over "6" and
/// "14,488,797" into "14,488,79" over "7", beside a "00:00:00" on every day's row. A period's row
/// names it as its period does (a day's date, an hour's time), and the figures stay whole.
#[tokio::test]
async fn get_usage_in_a_narrow_terminal_keeps_figures_whole() {
    let s = server().await;
    let yesterday = (chrono::Utc::now() - chrono::TimeDelta::days(1)).to_rfc3339();
    for (cost, tokens, at) in [("5.5586196", 14_488_797, Some(yesterday)), ("40.05642505", 1, None)] {
        let mut record = serde_json::json!({"provider": "openai", "model": "gpt-4o", "component": "codex",
                                            "input_tokens": tokens, "output_tokens": 0, "cost": cost});
        if let Some(at) = at {
            record["timestamp"] = at.into();
        }
        post_usage(&s.url, record).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while json_of(&budget(&s.url, &["get_usage", "daily", "--json"]).await)["totals"]["count"] != 2 {
        assert!(Instant::now() < deadline, "the records were not applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let narrow = |args: &'static [&'static str]| {
        let url = s.url.clone();
        tokio::task::spawn_blocking(move || {
            stdout(&Command::new(BIN).args(args).env("BUDGET_URL", url).env("COLUMNS", "80").output().unwrap())
        })
    };
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let text = narrow(&["get_usage", "daily"]).await.unwrap();
    let widest = text.lines().map(|l| l.chars().count()).max().unwrap();
    assert!(widest <= 80, "a line of {widest} columns:\n{text}");
    for whole in ["$5.5586196", "14,488,797", "$40.05642505", "14,488,798", "$45.61504465", "Day (UTC)"] {
        assert!(text.contains(whole), "`{whole}` whole in:\n{text}");
    }
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with('│')).collect();
    assert!(rows.iter().any(|r| r.starts_with(&format!("│ {today} "))), "{text}");
    assert!(!rows.iter().any(|r| r.contains("00:00:00")), "{text}");
    let hourly = narrow(&["get_usage", "hourly", "--days", "1"]).await.unwrap();
    assert!(hourly.contains("Hour (UTC)") && hourly.contains(&format!("│ {today} ")), "{hourly}");
    assert!(hourly.lines().any(|l| l.contains(":00 ") && !l.contains(":00:00")), "hours to the minute:\n{hourly}");
    let precise = narrow(&["get_usage", "daily", "--precise"]).await.unwrap();
    assert!(precise.contains(&format!("{today}T00:00:00Z")), "--precise prints the instant:\n{precise}");
}
#[tokio::test]
async fn status_shows_health_and_projection_lag() {
    let s = server().await;
    let out = budget(&s.url, &["status"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("healthy") && stdout(&out).contains("usage_rollups"), "{}", stdout(&out));
    let out = budget(&s.url, &["status", "--json"]).await;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["health"]["database"], "ok");
    assert!(stdout(&budget(&s.url, &["status"]).await).contains("No active policies"));
}

/// The guide's "Setting Up a New Budget" workflow, as written.
/// The guide's troubleshooting checks `$BUDGET_PORT`: a shell that exported it for `budget start`
/// reaches that service with the CLI too, unless `BUDGET_URL` says otherwise.
#[tokio::test]
async fn the_cli_finds_the_service_on_budget_port() {
    let s = server().await;
    let port = s.url.rsplit(':').next().unwrap().to_string();
    let run = move |envs: Vec<(&'static str, String)>| {
        let mut c = Command::new(BIN);
        c.arg("status").env_remove("BUDGET_URL").env_remove("BUDGET_HOST").env_remove("BUDGET_PORT");
        c.env("XDG_STATE_HOME", std::env::temp_dir().join("budget-cli-tests-state"));
        for (k, v) in envs {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let (p, u) = (port.clone(), s.url.clone());
    let (on_port, on_wildcard, url_wins) = tokio::task::spawn_blocking(move || {
        (
            run(vec![("BUDGET_PORT", p.clone())]),
            // A service listening on every interface is reached on the loopback one.
            run(vec![("BUDGET_PORT", p.clone()), ("BUDGET_HOST", "0.0.0.0".into())]),
            run(vec![("BUDGET_PORT", "9".into()), ("BUDGET_URL", u)]),
        )
    })
    .await
    .unwrap();
    for out in [&on_port, &on_wildcard, &url_wins] {
        assert!(out.status.success(), "{}", stderr(out));
        assert!(stdout(out).contains("healthy"), "{}", stdout(out));
    }

    let out = tokio::task::spawn_blocking(move || run(vec![("BUDGET_PORT", "9".into())])).await.unwrap();
    let err = stderr(&out);
    assert!(err.contains("cannot reach Budget at http://127.0.0.1:9 (from BUDGET_PORT)"), "{err}");
}

#[tokio::test]
async fn set_limit_then_status_shows_each_window() {
    let s = server().await;
    for args in [
        &["set_limit", "daily", "20.0", "--policy-type", "warn"][..],
        &["set_limit", "daily", "10.0", "--provider", "openai", "--policy-type", "hard_limit"],
        &["set_limit", "daily", "5.0", "--component", "codex", "--policy-type", "warn"],
        &["set_limit", "monthly", "100.0", "--provider", "anthropic"],
        &[
            "set_limit",
            "hourly",
            "0",
            "--tokens",
            "200000",
            "--tier",
            "remote_heavyweight",
            "--policy-type",
            "hard_limit",
        ],
    ] {
        let out = budget(&s.url, args).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).contains("in budget default"), "{}", stdout(&out));
    }
    post_usage(
        &s.url,
        serde_json::json!({"provider":"openai","model":"gpt-4o","component":"codex","input_tokens":1200,"output_tokens":340,"cost":"9.5"}),
    )
    .await;

    let out = budget(&s.url, &["status"]).await;
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    for needle in ["hard_limit", "provider=openai", "$9.5", "95%", "critical", "200,000 tok", "tier=remote_heavyweight"]
    {
        assert!(text.contains(needle), "status lacks `{needle}`:\n{text}");
    }
    let out = budget(&s.url, &["status", "--period", "daily", "--provider", "openai", "--json"]).await;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let windows = json["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 1);
    assert_eq!(windows[0]["used_cost"].to_string(), "9.5");

    let out = budget(&s.url, &["budgets", "list"]).await;
    assert!(stdout(&out).contains("default"));
    let out = budget(&s.url, &["set-limit", "daily", "-1"]).await;
    assert_eq!(out.status.code(), Some(2), "refused by the CLI, before anything is sent");
    assert!(stderr(&out).contains("`-1` is negative; amounts are zero or more"), "{}", stderr(&out));
    let out = budget(&s.url, &["set_limit", "--help"]).await;
    assert!(stdout(&out).contains("--policy-type") && stdout(&out).contains("budget set_limit daily 10.0"));
}

#[tokio::test]
async fn errors_are_one_clear_line_and_a_failure_exit() {
    let s = server().await;
    let out = budget(&s.url, &["get_usage", "yearly"]).await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("yearly") && err.contains("invalid_period"), "{err}");

    // An id that cannot be one, named with its article ("an allocation id").
    for (args, noun) in [
        (&["allocate", "release", "nope"][..], "an allocation id"),
        (&["alerts", "acknowledge", "zzz"], "an alert id"),
        (&["keys", "revoke", "zz"], "a key id"),
    ] {
        let err = stderr(&budget(&s.url, args).await);
        assert!(err.contains(&format!("is not {noun};")), "{args:?}: {err}");
    }

    let out = budget("http://127.0.0.1:9", &["status"]).await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("cannot reach Budget at http://127.0.0.1:9") && err.contains("BUDGET_URL"), "{err}");

    let out = Command::new(BIN).args(["status"]).env("BUDGET_RUNTIME_THREADS", "0").output().unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("BUDGET_RUNTIME_THREADS=\"0\"") && err.contains("whole number above 0"), "{err}");

    // An amount that is not a number is refused by the CLI itself, naming the argument: no JSON
    // line and column of a body the user never wrote, nothing sent.
    for args in [
        &["set_limit", "daily", "abc"][..],
        &["prices", "set", "openai", "m", "--input", "x", "--output", "1"],
        &["allocate", "create", "--context-id", "t", "--component", "c", "--estimated-cost", "1x"],
        &["recommend", "--task-type", "chat", "--max-cost", "five"],
    ] {
        let out = budget("http://127.0.0.1:9", args).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("is not a decimal number") && !err.contains("column"), "{args:?}: {err}");
        assert!(!err.contains("cannot reach"), "{args:?}: nothing is sent: {err}");
    }
    // A negative amount or count is refused the same way, as negative: not as an unknown option `-3`
    // with clap's tip to pass it after `--`, nor as the API's `cost_limit: -5 is negative`.
    for args in [
        &["set_limit", "daily", "-5"][..],
        &["set_limit", "daily", "5", "--tokens", "-3"],
        &["prices", "set", "openai", "m", "--input", "-1", "--output", "1"],
        &["calc_cost", "--provider", "openai", "--model", "gpt-4o", "--input-tokens", "-1000"],
        &["allocate", "create", "--context-id", "t", "--component", "c", "--tokens", "-10"],
    ] {
        let out = budget("http://127.0.0.1:9", args).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("is negative") && !err.contains("tip:"), "{args:?}: {err}");
        assert!(!err.contains("cannot reach"), "{args:?}: nothing is sent: {err}");
    }
    // Days are refused with the range the API takes ("0 or more" led to the API refusing 0).
    for (args, range) in [
        (&["get_usage", "daily", "--days", "-2"][..], "1 to 3660"),
        (&["get_usage", "daily", "--days", "0"], "1 to 3660"),
        (&["analyze", "--days", "400"], "1 to 365"),
    ] {
        let out = budget("http://127.0.0.1:9", args).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(&format!("is not a number of days; use {range}")), "{args:?}: {err}");
    }
    // A number too large or too long for a decimal is refused for that, with the fix, not as "not a
    // decimal number".
    let out = budget("http://127.0.0.1:9", &["set_limit", "daily", "1e30"]).await;
    assert!(stderr(&out).contains("1e30 is too large for a decimal"), "{}", stderr(&out));
    let out = budget("http://127.0.0.1:9", &["set_limit", "daily", "0.123456789012345678901234567890"]).await;
    assert!(
        stderr(&out).contains("has more digits than a decimal holds (28 significant digits); round it"),
        "{}",
        stderr(&out)
    );
    let out = budget(
        "http://127.0.0.1:9",
        &["allocate", "create", "--context-id", "t", "--component", "c", "--priority", "-1"],
    )
    .await;
    assert!(stderr(&out).contains("-1 is not in 1..=10") && out.status.code() == Some(2), "{}", stderr(&out));
    let out = budget("http://127.0.0.1:9", &["keys", "create", "--scope", "god"]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("[possible values: read, write, admin]") && !err.contains("column"), "{err}");
}

#[tokio::test]
async fn version_and_help_with_examples() {
    let out = budget("http://127.0.0.1:9", &["--version"]).await;
    assert!(stdout(&out).starts_with("budget "));
    let out = budget("http://127.0.0.1:9", &["get_usage", "--help"]).await;
    assert!(stdout(&out).contains("budget get_usage daily --days 7"), "{}", stdout(&out));
}

/// Stops a `budget start` a failed assertion left running (SIGTERM, so it stops its cluster too).
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }
}

/// `budget start` with no database URL: a private cluster in the data dir, kept across restarts,
/// stopped on SIGTERM after in-flight work.
#[tokio::test]
async fn start_runs_on_a_private_postgres_and_stops_cleanly() {
    let dir = scratch_dir("start");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");

    for round in 1..=2 {
        let child = Command::new(BIN)
            .args(["start", "--port", &port.to_string()])
            .env("BUDGET_DATA_DIR", &dir)
            .env_remove("BUDGET_DATABASE_URL")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(Some(child));
        let deadline = Instant::now() + Duration::from_secs(60);
        while reqwest::get(format!("{url}/api/health")).await.is_err() {
            assert!(Instant::now() < deadline, "budget start did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        post_usage(
            &url,
            serde_json::json!({"provider":"openai","model":"gpt-4o","component":"c","input_tokens":1,"output_tokens":1}),
        )
        .await;
        wait_applied(&url, round).await; // the first round's record survived the restart

        let mut running = child.0.take().expect("the server is running");
        Command::new("kill").args(["-TERM", &running.id().to_string()]).status().unwrap();
        let status = tokio::task::spawn_blocking(move || running.wait().unwrap()).await.unwrap();
        assert!(status.success(), "budget start exited with {status}");
        assert!(!dir.join("pgdata/postmaster.pid").exists(), "the private cluster was left running");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The guide's allocation commands, as written.
#[tokio::test]
async fn allocate_create_list_release() {
    let s = server().await;
    let out = budget(&s.url, &["set_limit", "daily", "0", "--tokens", "20000", "--policy-type", "hard_limit"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = budget(
        &s.url,
        &[
            "allocate",
            "create",
            "--context-id",
            "task-123",
            "--component",
            "rhetor",
            "--tokens",
            "10000",
            "--tier",
            "remote_heavyweight",
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let first: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = first["allocation_id"].as_str().unwrap().to_string();
    let out = budget(
        &s.url,
        &[
            "allocate",
            "create",
            "--context-id",
            "t-9",
            "--component",
            "codex",
            "--tokens",
            "4000",
            "--model",
            "gpt-4o",
            "--priority",
            "8",
            "--ttl",
            "15m",
        ],
    )
    .await;
    let text = stdout(&out);
    assert!(text.contains("Allocated 4,000 tokens"), "{text}{}", stderr(&out));
    // When it expires, relative and in UTC (a bare "expires 05:55" reads as local time).
    assert!(text.contains("expires in 14m (") || text.contains("expires in 15m ("), "{text}");
    assert!(text.lines().next().unwrap().ends_with(" UTC)"), "{text}");
    // Which limits it reserved under, in words, by the short policy ids `budget status` shows (it gave
    // the ids alone), and in which windows.
    let reserved = text.lines().find(|l| l.contains("reserved under ")).expect("which windows it reserved in");
    let policy = reserved.split("(policy ").nth(1).and_then(|r| r.split(')').next()).unwrap_or_default();
    assert_eq!(policy.len(), 8, "a short id, as `budget status` shows it: {reserved}");
    assert!(reserved.starts_with("  reserved under daily ") && reserved.contains("), window "), "{reserved}");

    // A model the price book does not know: said, since it then neither prices the reservation nor
    // names its provider.
    let args =
        ["allocate", "create", "--context-id", "t-8", "--component", "codex", "--tokens", "10", "--model", "gtp-4o"];
    let out = budget(&s.url, &args).await;
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(text.contains("`gtp-4o` is not in the price book"), "{text}");
    assert!(text.contains("budget prices list"), "{text}");
    let typo = text.split("allocation ").nth(1).unwrap().split(',').next().unwrap().to_string();
    assert!(budget(&s.url, &["allocate", "release", &typo]).await.status.success());

    // 10,000 + 4,000 reserved of 20,000: 8,000 more is refused in one line.
    let out =
        budget(&s.url, &["allocate", "create", "--context-id", "t-10", "--component", "codex", "--tokens", "8000"])
            .await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("budget_exceeded") && stderr(&out).contains("HTTP 402"), "{}", stderr(&out));

    let out = budget(&s.url, &["allocate", "list", "--wide"]).await;
    assert!(stdout(&out).contains("task-123") && stdout(&out).contains("t-9"), "{}", stdout(&out));
    // What each reservation is for, as the dashboard shows it: its model (this price book has no
    // provider for gpt-4o), else its tier (or any).
    let text = stdout(&out);
    let what_for = |context: &str| {
        let row = text.lines().find(|l| l.contains(&format!(" {context} "))).unwrap_or_default();
        row.split('┆').nth(3).unwrap_or_default().trim().to_string()
    };
    assert_eq!((what_for("t-9"), what_for("task-123")), ("gpt-4o".into(), "remote_heavyweight".into()), "{text}");
    let out = budget(&s.url, &["allocate", "list", "--component", "codex"]).await;
    assert!(!stdout(&out).contains("task-123"));
    let out = budget(&s.url, &["allocate", "release", &id]).await;
    assert!(out.status.success() && stdout(&out).contains("Released"), "{}", stderr(&out));
    let out = budget(&s.url, &["allocate", "release", &id]).await;
    assert!(!out.status.success() && stderr(&out).contains("already released"), "{}", stderr(&out));
    let out = budget(&s.url, &["allocate", "list", "--all", "--json"]).await;
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(all["allocations"].as_array().unwrap().len(), 3, "the two, and the typo's released one");
}

/// The guide's price commands, as written.
#[tokio::test]
async fn prices_and_calc_cost() {
    let s = server().await;
    // No table without rows: an empty price book, or nothing under a name, is said in words.
    let out = budget(&s.url, &["prices", "list"]).await;
    assert_eq!(stdout(&out).trim(), "The price book is empty; `budget prices update` applies the bundled table.");
    let out = budget(&s.url, &["prices", "update"]).await;
    assert!(out.status.success() && stdout(&out).contains("added"), "{}{}", stdout(&out), stderr(&out));
    let out = budget(&s.url, &["prices", "list", "--provider", "opnai"]).await;
    assert_eq!(stdout(&out).trim(), "No prices for provider opnai; `budget prices list` shows every priced model.");
    let out = budget(&s.url, &["prices", "list", "--provider", "openai"]).await;
    assert!(stdout(&out).contains("gpt-4o") && stdout(&out).contains("bundled"), "{}", stdout(&out));
    // The day a model's provider retires it, which is why recommend leaves a priced model out: under
    // its name, so that the table still fits 100 columns.
    let out = budget(&s.url, &["--wide", "prices", "list", "--provider", "google"]).await;
    let text = stdout(&out);
    let mut lines = text.lines().skip_while(|l| !l.contains(" gemini-1.5-flash "));
    assert!(lines.next().is_some() && lines.next().unwrap_or_default().contains(" retired 2025-09-24 "), "{text}");
    // Where the provider's day was not found, only that it was retired by the day the table was checked.
    let out = budget(&s.url, &["--wide", "prices", "list", "--provider", "together"]).await;
    let text = stdout(&out);
    let mut lines = text.lines().skip_while(|l| !l.contains(" meta-llama/Meta-Llama-3.1-405B-Instruct-Turbo "));
    assert!(lines.next().is_some() && lines.next().unwrap_or_default().contains(" retired by 2026-12-04 "), "{text}");
    let url = s.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        let args = ["--url", &url, "prices", "list", "--provider", "anthropic"];
        Command::new(BIN).args(args).env("COLUMNS", "100").output().unwrap()
    })
    .await
    .unwrap();
    assert!(stdout(&out).starts_with('┌'), "a table in 100 columns:\n{}", stdout(&out));
    let out = budget(
        &s.url,
        &["calc_cost", "--provider", "openai", "--model", "gpt-4", "--input-tokens", "1000", "--output-tokens", "500"],
    )
    .await;
    assert!(stdout(&out).contains("= $0.06"), "{}{}", stdout(&out), stderr(&out));
    // A model priced under its own name says nothing more; a dated one names the price it took.
    assert!(stdout(&out).starts_with("openai/gpt-4: 1,000 input"), "{}", stdout(&out));
    let dated = ["calc_cost", "--provider", "openai", "--model", "gpt-4o-2024-08-06", "--input-tokens", "1000"];
    let out = budget(&s.url, &dated).await;
    assert!(stdout(&out).starts_with("openai/gpt-4o-2024-08-06 (priced as gpt-4o): "), "{}", stdout(&out));
    let out = budget(
        &s.url,
        &[
            "prices",
            "set",
            "openai",
            "gpt-4o",
            "--input",
            "2.00",
            "--output",
            "8.00",
            "--cached-input",
            "1.00",
            "--per",
            "1M",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("openai/gpt-4o: set, effective 20"), "{}", stdout(&out));
    // The same price again changes nothing, and does not claim to take effect now.
    let again = ["prices", "set", "openai", "gpt-4o", "--input", "2", "--output", "8", "--cached-input", "1"];
    let out = budget(&s.url, &again).await;
    assert_eq!(
        stdout(&out).trim(),
        "openai/gpt-4o: unchanged, the same price is already in effect (`budget prices history openai gpt-4o` shows since when)"
    );
    let out = budget(&s.url, &["prices", "history", "openai", "gpt-4o", "--json"]).await;
    let history: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(history["versions"].as_array().unwrap().len(), 2);
    let file = std::env::temp_dir().join(format!("litellm-{}.json", std::process::id()));
    std::fs::write(
        &file,
        r#"{"m-1": {"litellm_provider": "acme", "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}}"#,
    )
    .unwrap();
    let out = budget(&s.url, &["prices", "update", "--from", file.to_str().unwrap(), "--dry-run"]).await;
    assert!(stdout(&out).contains("Dry run") && stdout(&out).contains("acme/m-1"), "{}{}", stdout(&out), stderr(&out));
    let out = budget(&s.url, &["calc_cost", "--provider", "acme", "--model", "m-1", "--input-tokens", "1"]).await;
    assert!(!out.status.success() && stderr(&out).contains("no price"), "the dry run wrote nothing: {}", stderr(&out));
    let _ = std::fs::remove_file(file);

    // A model used before it had a price: re-pricing gives its records their cost.
    post_usage(
        &s.url,
        serde_json::json!({"provider": "acme", "model": "m-2", "component": "c", "input_tokens": 1000,
                           "output_tokens": 0, "timestamp": "2026-11-27T10:00:00Z"}),
    )
    .await;
    let set =
        ["prices", "set", "acme", "m-2", "--input", "1", "--output", "2", "--effective-from", "2026-01-01T00:00:00Z"];
    let out = budget(&s.url, &set).await;
    assert!(out.status.success(), "{}", stderr(&out));
    // A price that takes effect in the past says which records it leaves priced otherwise, and how to
    // correct them (nothing is re-priced by itself: the records stay as they were told).
    assert!(
        stdout(&out).contains(
            "1 record of acme/m-2 since 2026-01-01 00:00:00 UTC has another cost under the price book as it now \
             stands ($0.001 more in all); `budget prices reprice --provider acme --model m-2 --since 2026-01-01T00:00:00Z` corrects it"
        ),
        "{}",
        stdout(&out)
    );
    let reprice = ["prices", "reprice", "--provider", "acme", "--model", "m-2", "--since", "2026-11-01"];
    let out = budget(&s.url, &[&reprice[..], &["--dry-run"]].concat()).await;
    assert!(
        stdout(&out).contains("1 record of acme/m-2 would be re-priced, total change $0.001"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let out = budget(&s.url, &reprice).await;
    assert!(
        stdout(&out).contains("1 record of acme/m-2 re-priced, total change $0.001"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let out = budget(&s.url, &reprice).await;
    assert!(stdout(&out).contains("0 records of acme/m-2 re-priced"), "nothing left to correct: {}", stdout(&out));

    // A price set now is not in effect at an older record's time: the re-price says how to reach it.
    post_usage(
        &s.url,
        serde_json::json!({"provider": "acme", "model": "m-3", "component": "c", "input_tokens": 1000,
                           "output_tokens": 0, "timestamp": "2026-11-27T10:00:00.250Z"}),
    )
    .await;
    wait_caught_up(&s.url).await;
    let out = budget(&s.url, &["prices", "set", "acme", "m-3", "--input", "1", "--output", "2"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    // Set now, the price does not reach the record: the set says so, with the two commands that do.
    assert!(
        stdout(&out).contains(
            "1 record of acme/m-3 since 2026-11-27 10:00:00 UTC is older than this price, so it stays unpriced; \
             `budget prices set acme m-3 --input 1 --output 2 --effective-from 2026-11-27T10:00:00Z`, then \
             `budget prices reprice --provider acme --model m-3 --since 2026-11-27T10:00:00Z` price it"
        ),
        "{}",
        stdout(&out)
    );
    let out =
        budget(&s.url, &["prices", "reprice", "--provider", "acme", "--model", "m-3", "--since", "2026-11-01"]).await;
    assert_eq!(
        stdout(&out).trim(),
        "0 records of acme/m-3 re-priced, total change $0\n1 record of acme/m-3 since 2026-11-27 10:00:00 UTC has no \
         price in effect at its time, so it stays unpriced; set one from then with `budget prices set acme m-3 --input \
         … --output … --effective-from 2026-11-27T10:00:00Z`, then run this again",
        "{}",
        stderr(&out)
    );
}

/// Waits until every projection has applied the whole log.
async fn wait_caught_up(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let h: serde_json::Value = reqwest::get(format!("{url}/api/health")).await.unwrap().json().await.unwrap();
        if h["projections"].as_array().unwrap().iter().all(|p| p["lag_events"] == 0) {
            return;
        }
        assert!(Instant::now() < deadline, "{h}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A $1 daily hard limit on openai and a $1 record that reaches it (three alerts).
async fn spend_a_dollar_limit(url: &str) {
    let limit = ["set_limit", "daily", "1.0", "--provider", "openai", "--policy-type", "hard_limit"];
    assert!(budget(url, &limit).await.status.success());
    post_usage(
        url,
        serde_json::json!({"provider": "openai", "model": "gpt-4o", "component": "codex", "input_tokens": 10,
                           "output_tokens": 0, "cost": 1.0}),
    )
    .await;
}

#[tokio::test]
async fn alerts_list_and_acknowledge() {
    let s = server().await;
    let out = budget(&s.url, &["alerts", "list"]).await;
    assert!(out.status.success() && stdout(&out).contains("No open alerts."), "{}{}", stdout(&out), stderr(&out));
    spend_a_dollar_limit(&s.url).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    wait_caught_up(&s.url).await;
    let out = budget(&s.url, &["alerts", "list"]).await;
    let text = stdout(&out);
    assert!(text.contains("cost_limit_exceeded") && text.contains("cost_limit_approaching"), "{text}");
    assert!(!text.contains("Acknowledged"), "open alerts need no column of `no`: {text}");
    let out = budget(&s.url, &["alerts", "list", "--severity", "error", "--json"]).await;
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let alerts = list["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1);
    let id = alerts[0]["id"].as_str().unwrap();
    let out = budget(&s.url, &["alerts", "acknowledge", id, "--by", "alice"]).await;
    // The alert by its short id, as the list shows it, and the time with its zone.
    let short = &id[id.len() - 8..];
    let said = stdout(&out);
    assert!(said.starts_with(&format!("Acknowledged alert {short} by alice at 20")), "{said}{}", stderr(&out));
    assert!(said.contains(" UTC: daily cost"), "{said}");
    let out = budget(&s.url, &["alerts", "acknowledge", id, "--by", "bob"]).await;
    let said = stdout(&out);
    assert!(
        said.starts_with(&format!("Alert {short} was already acknowledged by alice"))
            && said.trim_end().ends_with(" UTC"),
        "{said}"
    );
    // No wait: the list passes the acknowledgement's position (min_position), so it sees it applied.
    let out = budget(&s.url, &["alerts", "list", "--severity", "error"]).await;
    assert!(stdout(&out).contains("No open alerts."), "{}", stdout(&out));
    let out = budget(&s.url, &["alerts", "list", "--severity", "error", "--all"]).await;
    assert!(stdout(&out).contains("yes (alice)"), "{}", stdout(&out));
    let out = budget(&s.url, &["alerts", "list", "--severity", "loud"]).await;
    assert!(!out.status.success() && stderr(&out).contains("severity `loud`"), "{}", stderr(&out));
}

/// `budget alerts acknowledge --all` acknowledges every open alert the filters select, one by one,
/// and says how many of each type; an id and `--all` together, or neither, is a usage error.
#[tokio::test]
async fn alerts_acknowledge_all_takes_every_open_alert_the_filters_select() {
    let s = server().await;
    spend_a_dollar_limit(&s.url).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    wait_caught_up(&s.url).await;
    let out =
        budget(&s.url, &["alerts", "acknowledge", "--all", "--type", "cost_limit_approaching", "--by", "ops"]).await;
    assert_eq!(stdout(&out).trim(), "Acknowledged 2 alerts by ops: 2 cost_limit_approaching.", "{}", stderr(&out));
    let out = budget(&s.url, &["alerts", "list", "--json"]).await;
    let open: Vec<String> =
        json_of(&out)["alerts"].as_array().unwrap().iter().map(|a| a["type"].as_str().unwrap().to_string()).collect();
    assert_eq!(open, ["cost_limit_exceeded"]);
    let out = budget(&s.url, &["alerts", "acknowledge", "--all"]).await;
    assert_eq!(stdout(&out).trim(), "Acknowledged 1 alert: 1 cost_limit_exceeded.", "{}", stderr(&out));
    let out = budget(&s.url, &["alerts", "acknowledge", "--all"]).await;
    assert!(out.status.success());
    assert_eq!(stdout(&out).trim(), "No open alerts to acknowledge.");
    let out = budget(&s.url, &["alerts", "list", "--all", "--json"]).await;
    let by: Vec<String> = json_of(&out)["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["acknowledged_by"].as_str().unwrap_or("?").to_string())
        .collect();
    assert_eq!(by.len(), 3);
    assert_eq!(by.iter().filter(|b| *b == "ops").count(), 2, "{by:?}");
    for args in [&["alerts", "acknowledge"][..], &["alerts", "acknowledge", "0b6c1234", "--all"][..]] {
        let out = budget(&s.url, args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains("--all"), "{args:?}: {}", stderr(&out));
    }
}

async fn post_json(url: &str, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new().post(format!("{url}{path}")).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

async fn get_json(url: &str, path: &str) -> serde_json::Value {
    reqwest::get(format!("{url}{path}")).await.unwrap().json().await.unwrap()
}

fn json_of(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}{}", stdout(o), stderr(o)))
}

/// A log with every event type, then audit, explain, status --as-of, export and replay over it.
#[tokio::test]
async fn audit_explain_as_of_export_and_replay_explain_every_number() {
    use serde_json::json;
    let s = server().await;
    let url = s.url.as_str();
    let ok = |o: &Output| assert!(o.status.success(), "{}{}", stdout(o), stderr(o));
    ok(&budget(
        url,
        &["set_limit", "daily", "10.0", "--provider", "openai", "--policy-type", "hard_limit", "--tokens", "100000"],
    )
    .await);
    let before_change = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Budgets: created (above), updated, another created and archived.
    let budgets = get_json(url, "/api/budgets").await;
    let default_id = budgets["budgets"][0]["budget_id"].as_str().unwrap().to_string();
    let r = reqwest::Client::new()
        .patch(format!("{url}/api/budgets/{default_id}"))
        .json(&json!({"description": "team"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (_, other) = post_json(url, "/api/budgets", json!({"name": "old"})).await;
    let other_id = other["budget_id"].as_str().unwrap().to_string();
    assert_eq!(post_json(url, &format!("/api/budgets/{other_id}/archive"), json!({})).await.0, 200);
    // Usage, some priced from the book, and a later correction of that price.
    assert_eq!(post_json(url, "/api/prices", json!({"provider": "openai", "model": "gpt-4o", "input": "2.5", "output": "10", "effective_from": "2026-01-01T00:00:00Z"})).await.0, 200);
    for (model, input, cost) in
        [("gpt-4o", 1000, None), ("gpt-4o", 2000, None), ("gpt-4o-mini", 500, Some(0.25)), ("o3", 100, Some(1.5))]
    {
        let mut body = json!({"provider": "openai", "model": model, "component": "codex", "input_tokens": input, "output_tokens": 100});
        if let Some(c) = cost {
            body["cost"] = json!(c);
        }
        post_usage(url, body).await;
    }
    post_usage(url, json!({"provider": "anthropic", "model": "claude", "component": "rhetor", "input_tokens": 10, "output_tokens": 10, "cost": 0.5})).await;
    assert_eq!(post_json(url, "/api/prices", json!({"provider": "openai", "model": "gpt-4o", "input": "5", "output": "10", "effective_from": "2026-06-01T00:00:00Z"})).await.0, 200);
    let (_, repriced) = post_json(
        url,
        "/api/prices/reprice",
        json!({"provider": "openai", "model": "gpt-4o", "since": "2026-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(repriced["records"], 2, "{repriced}");
    // Allocations: settled, released, expired, refused.
    let (_, a) = post_json(url, "/api/allocations", json!({"context_id": "t1", "component": "codex", "provider": "openai", "tokens": 1000, "estimated_cost": "0.1"})).await;
    post_usage(url, json!({"provider": "openai", "model": "o3", "component": "codex", "input_tokens": 600, "output_tokens": 0, "cost": 0.06, "allocation_id": a["allocation_id"]})).await;
    let (_, b) = post_json(url, "/api/allocations", json!({"context_id": "t2", "component": "codex", "provider": "openai", "tokens": 500, "estimated_cost": "0.05"})).await;
    assert_eq!(
        post_json(url, &format!("/api/allocations/{}/release", b["allocation_id"].as_str().unwrap()), json!({}))
            .await
            .0,
        200
    );
    assert_eq!(post_json(url, "/api/allocations", json!({"context_id": "t3", "component": "codex", "provider": "openai", "tokens": 800, "estimated_cost": "0.01", "ttl": "1s"})).await.0, 201);
    assert_eq!(
        post_json(
            url,
            "/api/allocations",
            json!({"context_id": "t4", "component": "codex", "provider": "openai", "tokens": 200000})
        )
        .await
        .0,
        402
    );
    // The limit raised: the old one stays in the log.
    ok(&budget(
        url,
        &["set_limit", "daily", "20.0", "--provider", "openai", "--policy-type", "hard_limit", "--tokens", "100000"],
    )
    .await);
    tokio::time::sleep(Duration::from_millis(1500)).await; // the 1 s allocation expires
    wait_caught_up(url).await;
    let alerts = get_json(url, "/api/alerts?all=true").await;
    let alert_id = alerts["alerts"][0]["id"].as_str().expect("the refusal raised an alert").to_string();
    ok(&budget(url, &["alerts", "acknowledge", &alert_id, "--by", "alice"]).await);
    // A key created and revoked: the service is open again after (no active key).
    let key = json_of(&budget(url, &["keys", "create", "--scope", "admin", "--json"]).await);
    let (secret, id) = (key["secret"].as_str().unwrap(), key["key_id"].as_str().unwrap());
    let out = budget(url, &["--api-key", secret, "keys", "revoke", id]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    wait_caught_up(url).await;
    let types: Vec<String> = {
        let db = s.db.pool.get().await.unwrap();
        db.query("SELECT DISTINCT event_type FROM events ORDER BY 1", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    assert_eq!(types.len(), budget_events::event::EVENT_TYPES.len(), "every event type is in the log: {types:?}");

    // Audit: the selection's total equals the usage rollups for the same selection.
    let audit = json_of(
        &budget(url, &["audit", "--provider", "openai", "--type", "UsageRecorded,UsageRepriced", "--json"]).await,
    );
    let usage = get_json(url, "/api/usage?period=daily&days=1&provider=openai").await;
    assert_eq!(audit["totals"]["cost"], usage["totals"]["cost"], "{audit:#}\n{usage:#}");
    assert_eq!(audit["totals"]["tokens"], usage["totals"]["total_tokens"]);
    let out = budget(url, &["audit", "--context-id", "t1"]).await;
    assert!(stdout(&out).contains("AllocationCreated") || stdout(&out).contains("UsageRecorded"), "{}", stdout(&out));
    // Each row says what its event is about: which limit, price, record or budget.
    let out = budget(url, &["audit", "--wide"]).await;
    for what in [
        "daily hard_limit of $10 and 100,000 tokens on provider=openai",
        "openai/gpt-4o by codex",
        "openai/gpt-4o from 2026-01-01 00:00:00 UTC",
        "budget old",
    ] {
        assert!(stdout(&out).contains(what), "{what} in {}", stdout(&out));
    }
    let all = json_of(&budget(url, &["audit", "--json"]).await);
    let events = all["events"].as_array().unwrap();
    assert!(events.iter().all(|e| !e["summary"].as_str().unwrap_or_default().is_empty()), "{all:#}");
    // A selection cut by --limit says so: its total is not the selection's.
    let out = budget(url, &["audit", "--provider", "openai", "--limit", "2"]).await;
    let last = stdout(&out).lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("The first 2 events of more that match (raise --limit); their total $"), "{last}");
    let cut = json_of(&budget(url, &["audit", "--provider", "openai", "--limit", "2", "--json"]).await);
    assert_eq!((cut["totals"]["events"].as_i64(), cut["totals"]["more"].as_bool()), (Some(2), Some(true)), "{cut:#}");
    assert_eq!(audit["totals"]["more"], false, "{audit:#}");

    // Explain: the events of the policy's window sum to its account.
    let status = json_of(&budget(url, &["status", "--json"]).await);
    let window = status["windows"].as_array().unwrap().iter().find(|w| w["period"] == "daily").unwrap().clone();
    let policy_id = window["policy_id"].as_str().unwrap();
    let x = json_of(&budget(url, &["explain", policy_id, "--json"]).await);
    assert_eq!(x["matches"], true, "{x:#}");
    assert_eq!(x["folded"], x["account"]);
    assert_eq!(x["account"]["posted_cost"], window["used_cost"]);
    let out = budget(url, &["explain", policy_id]).await;
    assert!(stdout(&out).contains("They agree."), "{}", stdout(&out));
    // The heading says which policy it is, as `budget status` shows it, not only its id.
    let heading = format!(
        "Policy {} (daily hard_limit of $20 and 100,000 tokens, provider=openai, budget default), window ",
        &policy_id[policy_id.len() - 8..]
    );
    assert!(stdout(&out).starts_with(&heading), "{heading}\n{}", stdout(&out));

    // --as-of: the old limit before the change, the new one now.
    let then = json_of(&budget(url, &["status", "--as-of", &before_change, "--json"]).await);
    let limit_then =
        then["windows"].as_array().unwrap().iter().find(|w| w["period"] == "daily").unwrap()["cost_limit"].clone();
    assert_eq!((limit_then.to_string(), window["cost_limit"].to_string()), ("10".into(), "20".into()), "{then:#}");

    // Export: one line per record and correction, and the cost column sums to the spend.
    let file = std::env::temp_dir().join(format!("budget-export-{}.csv", std::process::id()));
    let out = budget(url, &["export", "--output", file.to_str().unwrap()]).await;
    ok(&out);
    let csv = std::fs::read_to_string(&file).unwrap();
    // What was written, in rows (a finance user's count), besides bytes.
    let said = stderr(&out);
    assert!(
        said.starts_with("Wrote 8 rows (") && said.trim_end().ends_with(&format!(" bytes) to {}", file.display())),
        "{said}"
    );
    let _ = std::fs::remove_file(&file);
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("position,occurred_at"), "{}", lines[0]);
    assert_eq!(lines.len(), 1 + 6 + 2, "a header, six records, two corrections");
    let cost_col = lines[0].split(',').position(|c| c == "cost").unwrap();
    let sum: rust_decimal::Decimal =
        lines[1..].iter().map(|l| l.split(',').nth(cost_col).unwrap().parse::<rust_decimal::Decimal>().unwrap()).sum();
    let all_usage = get_json(url, "/api/usage?period=daily&days=1").await;
    assert_eq!(sum.normalize().to_string(), all_usage["totals"]["cost"].to_string());

    // Replay: the live projections equal the fold of the whole log, and the accounts too.
    let out = budget(url, &["replay", "--verify"]).await;
    ok(&out);
    assert!(
        stdout(&out).contains("usage_rollups:") && stdout(&out).contains("the live tables equal the replay"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("alerts:")
            && stdout(&out).contains("accounts: the one enforcement account equals the fold of 25 events"),
        "{}",
        stdout(&out)
    );
    // A corrupted row is found, and a swap repairs it.
    {
        let db = s.db.pool.get().await.unwrap();
        db.execute("UPDATE usage_rollups SET cost = cost + 1 WHERE provider = 'anthropic'", &[]).await.unwrap();
        db.execute("UPDATE policy_accounts SET records = records + 1 WHERE policy_id = (SELECT policy_id FROM policy_accounts LIMIT 1)", &[]).await.unwrap();
    }
    let out = budget(url, &["replay", "--verify"]).await;
    assert!(!out.status.success(), "--verify fails on a difference: {}", stdout(&out));
    assert!(stdout(&out).contains("usage_rollups: ") && stdout(&out).contains("rows differ"), "{}", stdout(&out));
    assert!(
        stdout(&out)
            .contains("`budget replay --projection usage_rollups --swap` replaces the live tables with this replay"),
        "what to do about it: {}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("anthropic")
            && stdout(&out).contains("accounts: 1 of ")
            && stdout(&out).contains(" differs from the fold of "),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("differences between the log and the live tables"), "{}", stderr(&out));
    ok(&budget(url, &["replay", "--projection", "usage_rollups", "--swap"]).await);
    {
        let db = s.db.pool.get().await.unwrap();
        db.execute("UPDATE policy_accounts SET records = records - 1 WHERE policy_id = (SELECT policy_id FROM policy_accounts LIMIT 1)", &[]).await.unwrap();
    }
    ok(&budget(url, &["replay", "--verify"]).await);
    let out = budget(url, &["replay", "--projection", "nope"]).await;
    assert!(!out.status.success() && stderr(&out).contains("no projection `nope`"), "{}", stderr(&out));
    let out = budget(url, &["completions", "bash"]).await;
    assert!(stdout(&out).contains("_budget()"), "a bash completion script");
}

/// Every CLI example of the user guide, as written (with `budget` for `python -m budget.cli.main`),
/// one by one against a server with data.
#[tokio::test]
async fn the_guides_cli_examples_work_as_written() {
    let s = server().await;
    let url = s.url.as_str();
    post_usage(
        url,
        serde_json::json!({"provider": "openai", "model": "gpt-4o", "component": "codex", "input_tokens": 1200,
                           "output_tokens": 340, "cost": 0.0064}),
    )
    .await;
    let mut allocation_id = String::new();
    let guide: &[&str] = &[
        "status",
        "prices update",
        "prices list",
        "set_limit daily 10.0 --provider openai --policy-type warn",
        "set_limit daily 20.0 --policy-type hard_limit --provider anthropic",
        "allocate create --context-id task-123 --component rhetor --tokens 10000 --tier remote_heavyweight",
        "allocate list",
        "allocate release ALLOCATION_ID",
        "get_usage daily --days 7",
        "get_usage daily --provider openai --component codex",
        "calc_cost --provider openai --model gpt-4 --input-tokens 1000 --output-tokens 500",
        "status --period daily",
        "get_usage weekly --provider openai",
        "set_limit monthly 100.0 --provider anthropic",
        "allocate list --component codex",
        "set_limit daily 20.0 --policy-type warn",
        "set_limit daily 10.0 --provider openai --policy-type hard_limit",
        "set_limit daily 5.0 --component codex --policy-type warn",
        "status",
        "get_usage daily",
        "recommend --task-type code_generation --context-size 2000 --output-size 1000",
        "recommend --task-type text_generation --max-cost 5.0",
        "analyze --period daily --days 7",
        "optimize",
        "set_limit --help",
    ];
    for line in guide {
        let line = line.replace("ALLOCATION_ID", &allocation_id);
        let args: Vec<&str> = line.split_whitespace().collect();
        let out = budget(url, &args).await;
        assert!(out.status.success(), "`budget {line}` failed: {}{}", stdout(&out), stderr(&out));
        assert!(!stdout(&out).trim().is_empty(), "`budget {line}` printed nothing");
        if line.starts_with("allocate create") {
            let text = stdout(&out);
            allocation_id = text
                .split_whitespace()
                .map(|w| w.trim_end_matches(','))
                .find(|w| w.len() == 36 && w.matches('-').count() == 4)
                .unwrap_or_else(|| panic!("no allocation id in: {text}"))
                .to_string();
        }
    }
}

/// A background task that dies takes the process down with a non-zero exit and says which one, so an
/// orchestrator restarts it; without the fault the same process keeps serving.
#[tokio::test]
async fn a_dead_background_task_stops_the_process_with_a_failure_exit() {
    let db = TestDb::new().await;
    let start = |fault: Option<&str>| {
        let mut command = Command::new(BIN);
        command
            .args(["start", "--port", "0"])
            .env("BUDGET_DATABASE_URL", db.connection_string())
            .env("BUDGET_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        match fault {
            Some(task) => command.env("BUDGET_FAULT", task),
            None => command.env_remove("BUDGET_FAULT"),
        };
        command.spawn().unwrap()
    };

    // Control: no fault, still running after 3 s (far longer than the fault's 200 ms).
    let mut healthy = KillOnDrop(Some(start(None)));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let child = healthy.0.as_mut().unwrap();
    assert!(child.try_wait().unwrap().is_none(), "budget start without a fault exited on its own");
    drop(healthy);

    let mut faulty = KillOnDrop(Some(start(Some("sweeper"))));
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = faulty.0.as_mut().unwrap().try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "budget start kept running after its sweeper died");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success(), "budget start exited with {status} after its sweeper died");
    let mut err = String::new();
    std::io::Read::read_to_string(faulty.0.take().unwrap().stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("background task `sweeper` panicked"), "{err}");
}

/// A list right after an acknowledgement reads the alerts as of that write: the CLI remembers the
/// write's log position and passes it as `min_position`. Proven with the alerts projection held back
/// (a transaction of this database older than the acknowledgement): the list waits and then says so,
/// instead of showing the alert still open.
#[tokio::test]
async fn a_list_after_an_acknowledgement_reads_that_acknowledgement() {
    let s = server().await;
    spend_a_dollar_limit(&s.url).await;
    wait_caught_up(&s.url).await;
    let out = budget(&s.url, &["alerts", "list", "--severity", "error", "--json"]).await;
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = list["alerts"][0]["id"].as_str().unwrap().to_string();

    let mut client = s.db.pool.get().await.unwrap();
    let held = client.transaction().await.unwrap();
    held.batch_execute("CREATE TEMPORARY TABLE scratch (n int); INSERT INTO scratch VALUES (1)").await.unwrap();
    assert!(budget(&s.url, &["alerts", "acknowledge", &id]).await.status.success());
    let out = budget(&s.url, &["alerts", "list", "--severity", "error"]).await;
    assert!(!out.status.success() && stderr(&out).contains("projection_lag"), "{}{}", stdout(&out), stderr(&out));
    held.rollback().await.unwrap();
    let out = budget(&s.url, &["alerts", "list", "--severity", "error"]).await;
    assert!(out.status.success() && stdout(&out).contains("No open alerts."), "{}{}", stdout(&out), stderr(&out));
}

/// A per-user limit from the CLI: alice's allocation is refused once her limit is taken, bob's is not;
/// `get_usage --user` shows one user's usage and a table by user.
#[tokio::test]
async fn a_user_limit_from_the_cli_refuses_alice_not_bob() {
    let s = server().await;
    let out = budget(
        &s.url,
        &["set_limit", "daily", "0", "--tokens", "1000", "--user", "alice", "--policy-type", "hard_limit"],
    )
    .await;
    assert!(out.status.success() && stdout(&out).contains("user=alice"), "{}{}", stdout(&out), stderr(&out));
    let reserve = |user: &'static str, tokens: &'static str| {
        let url = s.url.clone();
        async move {
            budget(
                &url,
                &[
                    "allocate",
                    "create",
                    "--context-id",
                    "t-1",
                    "--component",
                    "chat",
                    "--tokens",
                    tokens,
                    "--user",
                    user,
                ],
            )
            .await
        }
    };
    assert!(reserve("alice", "800").await.status.success());
    let refused = reserve("alice", "300").await;
    assert!(!refused.status.success(), "{}", stdout(&refused));
    assert!(stderr(&refused).contains("user=alice"), "{}", stderr(&refused));
    let bob = reserve("bob", "5000").await;
    assert!(bob.status.success(), "{}", stderr(&bob));

    post_usage(
        &s.url,
        serde_json::json!({"provider": "openai", "model": "gpt-4o", "component": "chat", "input_tokens": 100,
                           "output_tokens": 0, "cost": "0.01", "user_id": "bob"}),
    )
    .await;
    wait_applied(&s.url, 1).await;
    let out = budget(&s.url, &["get_usage", "daily", "--user", "bob"]).await;
    let text = stdout(&out);
    assert!(
        out.status.success() && text.contains("user=bob") && text.contains("By user") && text.contains("bob"),
        "{text}"
    );
}

/// Ids are shown short (their random last 8 characters) and every command takes them, or their start;
/// a fragment that names several, or none, says so; `--precise` shows them whole.
#[tokio::test]
async fn short_ids_from_status_work_in_explain_and_release() {
    let s = server().await;
    for args in
        [["set_limit", "daily", "10", "--provider", "openai"], ["set_limit", "daily", "20", "--provider", "anthropic"]]
    {
        assert!(budget(&s.url, &args).await.status.success());
    }
    let status = json_of(&budget(&s.url, &["status", "--json"]).await);
    let ids: Vec<String> =
        status["windows"].as_array().unwrap().iter().map(|w| w["policy_id"].as_str().unwrap().to_string()).collect();
    let table = stdout(&budget(&s.url, &["status"]).await);
    let short = &ids[0][ids[0].len() - 8..];
    assert!(table.contains(short) && !table.contains(&ids[0]), "{table}");
    let precise = stdout(&budget(&s.url, &["status", "--precise"]).await);
    assert!(precise.contains(&ids[0]), "{precise}");

    let out = budget(&s.url, &["explain", short]).await;
    assert!(
        out.status.success() && stdout(&out).starts_with(&format!("Policy {short} (")),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    // The two policies were made in the same millisecond or so: their ids start alike.
    let out = budget(&s.url, &["explain", &ids[0][..4]]).await;
    assert!(!out.status.success() && stderr(&out).contains("matches 2 policy ids"), "{}", stderr(&out));
    let out = budget(&s.url, &["explain", "ffffffff"]).await;
    assert!(!out.status.success() && stderr(&out).contains("no policy id starts or ends with"), "{}", stderr(&out));

    let out =
        budget(&s.url, &["allocate", "create", "--context-id", "t-1", "--component", "c", "--tokens", "10"]).await;
    assert!(out.status.success());
    let list = stdout(&budget(&s.url, &["allocate", "list", "--wide"]).await);
    let id = list.split_whitespace().find(|w| w.len() == 36 && w.matches('-').count() == 4).unwrap().to_string();
    // The reservation is one of the policy's events: explain names it short, --precise whole.
    let explained = stdout(&budget(&s.url, &["explain", short]).await);
    assert!(explained.contains("AllocationCreated") && explained.contains(&id[id.len() - 8..]), "{explained}");
    assert!(!explained.contains(&id), "{explained}");
    assert!(stdout(&budget(&s.url, &["explain", short, "--precise"]).await).contains(&id));
    let out = budget(&s.url, &["allocate", "release", &id[id.len() - 8..]]).await;
    assert!(out.status.success(), "{}", stderr(&out));

    // Time options: relative forms are accepted; a bad one names the option and the forms.
    assert!(budget(&s.url, &["audit", "--since", "yesterday", "--until", "now"]).await.status.success());
    let out = budget(&s.url, &["export", "--since", "last tuesday"]).await;
    let said = stderr(&out);
    assert!(!out.status.success() && said.contains("--since") && said.contains("7d"), "{said}");
    // A range the wrong way round says which times it got.
    for command in ["export", "audit"] {
        let out = budget(&s.url, &[command, "--since", "2026-12-05", "--until", "2026-12-01"]).await;
        let said = stderr(&out);
        let expected = "until 2026-12-01T00:00:00Z is not later than since 2026-12-05T00:00:00Z; swap them";
        assert!(!out.status.success() && said.contains(expected), "{command}: {said}");
    }
}

/// A window that ended before its policy existed has no measured figures: the table says "not
/// tracked" in its row instead of showing $0 and "ok", and the note below says since when.
#[tokio::test]
async fn status_at_a_time_before_the_policy_says_not_tracked_in_the_row() {
    let s = server().await;
    assert!(budget(&s.url, &["set_limit", "daily", "10", "--provider", "openai"]).await.status.success());
    let out = budget(&s.url, &["status", "--at", "3d"]).await;
    let table = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    let row = table.lines().find(|l| l.contains("provider=openai") && l.contains("daily")).expect("the policy's row");
    assert!(row.contains("not tracked") && !row.contains("$0") && !row.contains(" ok "), "{table}");
    assert!(table.contains("not tracked before"), "{table}");
    // Today's window is measured.
    let now = stdout(&budget(&s.url, &["status"]).await);
    let row = now.lines().find(|l| l.contains("provider=openai")).expect("the policy's row");
    assert!(row.contains("$0") && row.contains(" ok "), "{now}");
    // One record in it: explain counts it as one ("1 record", not "1 records").
    post_usage(&s.url, serde_json::json!({"provider": "openai", "model": "gpt-4o", "component": "c", "input_tokens": 10, "output_tokens": 1, "cost": "0.5"})).await;
    let id =
        json_of(&budget(&s.url, &["status", "--json"]).await)["windows"][0]["policy_id"].as_str().unwrap().to_string();
    let explained = stdout(&budget(&s.url, &["explain", &id]).await);
    assert!(explained.contains("used $0.5 / 11 tokens in 1 record, reserved"), "{explained}");
}

/// `budgets list` shows ids and times as every other table does, and `budgets show` takes what it
/// shows: the budget's name, its short id, or the whole id.
#[tokio::test]
async fn budgets_list_is_short_and_show_takes_a_name_or_short_id() {
    let s = server().await;
    assert!(budget(&s.url, &["set_limit", "daily", "10"]).await.status.success());
    let list = json_of(&budget(&s.url, &["budgets", "list", "--json"]).await);
    let id = list["budgets"][0]["budget_id"].as_str().unwrap().to_string();
    let short = &id[id.len() - 8..];
    let created: chrono::DateTime<chrono::Utc> = list["budgets"][0]["created_at"].as_str().unwrap().parse().unwrap();
    let table = stdout(&budget(&s.url, &["budgets", "list"]).await);
    assert!(table.contains(short) && !table.contains(&id), "{table}");
    assert!(table.contains(&created.format("%Y-%m-%d %H:%M:%S").to_string()) && !table.contains("."), "{table}");
    for given in ["default", short, id.as_str()] {
        let out = budget(&s.url, &["budgets", "show", given]).await;
        assert!(out.status.success(), "{given}: {}", stderr(&out));
        assert!(stdout(&out).contains(&format!("Budget default ({id})")), "{given}: {}", stdout(&out));
    }
    let out = budget(&s.url, &["budgets", "show", "nosuch"]).await;
    let said = stderr(&out);
    assert!(
        !out.status.success() && said.contains("no budget is named `nosuch`") && said.contains("budget budgets list"),
        "{said}"
    );
}

/// `budget start` on `db` with `env`, its stdout and stderr in one log file; returns its URL once it
/// answers, the log's path, and the process (stopped when dropped).
async fn start_logged(db: &TestDb, env: &[(&str, &str)]) -> (String, std::path::PathBuf, KillOnDrop) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let log = std::env::temp_dir().join(format!("budget-start-{port}.log"));
    let child = Command::new(BIN)
        .args(["start", "--port", &port.to_string()])
        .env("BUDGET_DATABASE_URL", db.connection_string())
        .envs(env.iter().copied())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::options().append(true).open(&log).unwrap())
        .spawn()
        .unwrap();
    let child = KillOnDrop(Some(child));
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{url}/api/health")).await.is_err() {
        assert!(Instant::now() < deadline, "budget start did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (url, log, child)
}

/// `budget start` against a database it cannot reach says why in one line (the driver's own reason
/// once, not "error connecting to server: error connecting to server"), and where to set another.
#[tokio::test]
async fn start_says_once_why_the_database_is_out_of_reach() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let db = TestDb::new().await;
    let missing = db.connection_string().replace(db.name(), "no_such_database_here");
    for (url, reason) in [
        ("postgres://postgres@127.0.0.1:1/budget".to_string(), "Connection refused"),
        (missing, "database \"no_such_database_here\" does not exist"),
    ] {
        let out = Command::new(BIN)
            .args(["start", "--port", &port.to_string()])
            .env("BUDGET_DATABASE_URL", &url)
            .output()
            .unwrap();
        let err = stderr(&out);
        let line = err.lines().find(|l| l.starts_with("error:")).unwrap_or_default();
        assert!(!out.status.success() && line.contains(reason), "{url}: {err}");
        assert!(line.starts_with("error: cannot connect to PostgreSQL at "), "{err}");
        assert!(line.contains("BUDGET_DATABASE_URL") && !line.contains("error connecting to server"), "{err}");
    }
}

/// A log filter `budget start` cannot read is refused as every other variable is: its name, its value, the fix.
#[tokio::test]
async fn start_refuses_a_bad_log_filter_naming_it() {
    let out = Command::new(BIN).args(["start", "--port", "0"]).env("BUDGET_LOG", "info,,==").output().unwrap();
    let err = stderr(&out);
    assert!(!out.status.success() && err.starts_with("error: BUDGET_LOG is `info,,==`; "), "{err}");
    assert!(err.contains("use a level (error, warn, info, debug, trace)"), "{err}");
}

/// Keys from the CLI against `budget start`: the first admin key, then a scoped one used with
/// `--api-key`; the secrets appear in no log line of the server (at debug level) and in no event.
#[tokio::test]
async fn keys_from_the_cli_and_no_secret_in_logs_or_events() {
    let db = TestDb::new().await;
    let (url, log, child) = start_logged(&db, &[("BUDGET_LOG", "debug")]).await;

    // Open on loopback: the first key is created without one; from then on keys are required.
    let out = budget(&url, &["keys", "create", "--scope", "admin", "--name", "ops", "--json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let admin =
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["secret"].as_str().unwrap().to_string();
    assert!(admin.starts_with("bgt_"));
    let out = budget(&url, &["status"]).await;
    assert!(!out.status.success() && stderr(&out).contains("API key"), "{}", stderr(&out));

    let out =
        budget(&url, &["--api-key", &admin, "keys", "create", "--scope", "read", "--name", "dashboard", "--json"])
            .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let read =
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["secret"].as_str().unwrap().to_string();
    let out = budget(&url, &["--api-key", &read, "budgets", "list"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = budget(&url, &["--api-key", &read, "set_limit", "daily", "10"]).await;
    assert!(!out.status.success() && stderr(&out).contains("admin"), "a read key cannot set limits: {}", stderr(&out));
    // A key bound to a component allocates for it without --component; a key bound to none must name one.
    let out =
        budget(&url, &["--api-key", &admin, "keys", "create", "--scope", "write", "--component", "codex", "--json"])
            .await;
    let codex =
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["secret"].as_str().unwrap().to_string();
    let out =
        budget(&url, &["--api-key", &codex, "allocate", "create", "--context-id", "t-1", "--tokens", "100"]).await;
    assert!(out.status.success() && stdout(&out).contains("to codex for t-1"), "{}", stderr(&out));
    let out =
        budget(&url, &["--api-key", &admin, "allocate", "create", "--context-id", "t-1", "--tokens", "100"]).await;
    assert!(
        !out.status.success() && stderr(&out).contains("component is missing: name the calling component"),
        "{}",
        stderr(&out)
    );
    let out = budget(&url, &["--api-key", &admin, "keys", "list"]).await;
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(listed.contains("dashboard") && listed.contains("ops") && !listed.contains(&read[8..]), "{listed}");
    assert!(
        listed.contains("Last used (UTC)") && listed.contains("Expires (UTC)"),
        "every time column names its zone: {listed}"
    );

    drop(child);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("budget::http"), "the log was captured at debug level");
    for secret in [&admin, &read] {
        assert!(!logged.contains(&secret[4..]), "a secret is in the server's log");
    }
    let client = db.pool.get().await.unwrap();
    let found: i64 = client
        .query_one(
            "SELECT count(*) FROM events WHERE payload::text LIKE $1 OR metadata::text LIKE $1",
            &[&format!("%{}%", &admin[4..])],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(found, 0, "a secret is in the log of events");
    let _ = std::fs::remove_file(&log);
}

/// `BUDGET_LOG_FORMAT=json`: every line the server writes is one JSON object, and a request's lines
/// carry its request id in their span.
#[tokio::test]
async fn json_logs_are_one_object_per_line_with_the_request_id() {
    let db = TestDb::new().await;
    let (url, log, child) = start_logged(&db, &[("BUDGET_LOG", "info"), ("BUDGET_LOG_FORMAT", "json")]).await;
    let answer = reqwest::Client::new()
        .get(format!("{url}/api/alerts/not-an-id"))
        .header("X-Request-Id", "json-log-test-1")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(child);
    let logged = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = logged
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    assert!(lines.iter().all(|l| l["timestamp"].is_string() && l["level"].is_string() && l["fields"].is_object()));
    assert!(
        lines.iter().any(|l| l["span"]["request_id"] == "json-log-test-1"
            && l["fields"]["message"].as_str().is_some_and(|m| m.contains("/api/alerts/not-an-id"))),
        "no line of the request carries its id: {logged}"
    );

    // A bad value stops the start with a message naming the variable.
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["start", "--port", "0"])
            .env("BUDGET_DATABASE_URL", db.connection_string())
            .env("BUDGET_LOG_FORMAT", "yaml")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("BUDGET_LOG_FORMAT") && said.contains("text or json"), "{said}");
    let _ = std::fs::remove_file(&log);
}

/// Off loopback without keys, `budget start` refuses to run and says what to set.
#[tokio::test]
async fn start_on_all_interfaces_without_keys_refuses() {
    let db = TestDb::new().await;
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["start", "--host", "0.0.0.0", "--port", "0"])
            .env("BUDGET_DATABASE_URL", db.connection_string())
            .env_remove("BUDGET_ADMIN_KEY")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(message.contains("BUDGET_ADMIN_KEY") && message.contains("BUDGET_ALLOW_UNAUTHENTICATED"), "{message}");
}

/// Tables fit a 100-column terminal (`COLUMNS`), and `--wide` prints them whole.
#[tokio::test]
async fn tables_fit_the_terminal_unless_wide() {
    let s = server().await;
    for args in [
        vec!["set_limit", "daily", "10.0", "--provider", "openai", "--policy-type", "hard_limit"],
        vec!["set_limit", "monthly", "100.0", "--component", "a-rather-long-component-name", "--policy-type", "warn"],
    ] {
        assert!(budget(&s.url, &args).await.status.success());
    }
    let run = |wide: bool| {
        let url = s.url.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = Command::new(BIN);
            c.arg("status").env("BUDGET_URL", url).env("COLUMNS", "100");
            if wide {
                c.arg("--wide");
            }
            c.output().unwrap()
        })
    };
    let fitted = stdout(&run(false).await.unwrap());
    let widest = fitted.lines().map(|l| l.chars().count()).max().unwrap();
    assert!(widest <= 100, "a line of {widest} columns:\n{fitted}");
    let wide = stdout(&run(true).await.unwrap());
    assert!(wide.lines().any(|l| l.chars().count() > 100), "--wide keeps the table whole:\n{wide}");
    assert!(wide.contains("provider=openai") && wide.contains("component=a-rather-long-component-name"), "{wide}");
}

/// `budget status` in an 80- or 100-column terminal: its table broke "$3.660049" into "$3.6 / 6004 /
/// 9" and "warning" into "warnin / g"; where the table does not fit, each window is a paragraph whose
/// figures and words stay whole, and where it does, the table stays.
#[tokio::test]
async fn status_in_a_narrow_terminal_keeps_figures_and_words_whole() {
    let s = server().await;
    for args in [
        vec!["set_limit", "daily", "10.0", "--provider", "openai", "--policy-type", "hard_limit"],
        vec!["set_limit", "daily", "0", "--tokens", "20000", "--component", "codex", "--policy-type", "warn"],
    ] {
        assert!(budget(&s.url, &args).await.status.success());
    }
    post_usage(
        &s.url,
        serde_json::json!({"provider": "openai", "model": "gpt-4o", "component": "codex",
                           "input_tokens": 17000, "output_tokens": 500, "cost": "3.660049"}),
    )
    .await;
    wait_applied(&s.url, 1).await;
    let at = |columns: &'static str| {
        let url = s.url.clone();
        tokio::task::spawn_blocking(move || {
            let out = Command::new(BIN).arg("status").env("BUDGET_URL", url).env("COLUMNS", columns).output().unwrap();
            stdout(&out).split("\nBudget ").next().unwrap().to_string()
        })
    };
    for columns in ["80", "100"] {
        let text = at(columns).await.unwrap();
        let widest = text.lines().map(|l| l.chars().count()).max().unwrap();
        assert!(widest <= columns.parse::<usize>().unwrap(), "a line of {widest} columns:\n{text}");
        for whole in [
            "daily hard_limit",
            "provider=openai",
            "$3.660049 of $10 (36.6%)",
            "left $6.339951",
            "component=codex",
            "17,500 tok of 20,000 tok (87.5%)",
            "warning",
        ] {
            assert!(text.contains(whole), "{columns} columns: `{whole}` whole in:\n{text}");
        }
    }
    let wide = at("200").await.unwrap();
    assert!(wide.contains("│ Policy") && wide.contains("$3.660049"), "a terminal it fits shows the table:\n{wide}");
    // Nothing reserved: one percentage, not "36.6% (36.6%)" under "% (committed)".
    assert!(!wide.contains("committed") && wide.contains(" 36.6% ") && !wide.contains("(36.6%)"), "{wide}");
}

/// A list whose table cannot keep its figures whole in the terminal prints each row as a record: in
/// 80 columns `allocate list` gave its Model column a letter a line and broke "10,000" in two.
#[tokio::test]
async fn lists_too_wide_for_the_terminal_print_records() {
    let s = server().await;
    for args in [
        &["allocate", "create", "--context-id", "task-123", "--component", "rhetor", "--tokens", "10000"][..],
        &["allocate", "create", "--context-id", "t-9", "--component", "codex", "--tokens", "4000", "--model", "gpt-4o"],
    ] {
        assert!(budget(&s.url, args).await.status.success());
    }
    let at = |columns: &'static str| {
        let url = s.url.clone();
        tokio::task::spawn_blocking(move || {
            let out =
                Command::new(BIN).args(["allocate", "list"]).env("BUDGET_URL", url).env("COLUMNS", columns).output();
            stdout(&out.unwrap())
        })
    };
    let text = at("80").await.unwrap();
    let widest = text.lines().map(|l| l.chars().count()).max().unwrap();
    assert!(widest <= 80 && !text.contains('┌'), "records, a line of {widest} columns at most:\n{text}");
    for line in ["Model or tier  gpt-4o", "Allocated      10,000", "Context        task-123", "Used %         0%"] {
        assert!(text.lines().any(|l| l == line), "`{line}` in:\n{text}");
    }
    assert_eq!(text.split("\n\n").count(), 2, "a blank line between the records:\n{text}");
    let wide = at("200").await.unwrap();
    assert!(wide.contains("│ Allocation ┆ Context") && wide.contains("gpt-4o"), "the table where it fits:\n{wide}");
}

/// What people see in a 100-column terminal, as snapshots (`tests/snapshots/`; review a change with
/// `cargo insta review`, or accept it with `INSTA_UPDATE=always`). Ids and times are masked with
/// text of the same width, so the tables keep their shape; per-task limits have no reset time.
#[tokio::test]
async fn tables_at_100_columns_look_like_their_snapshots() {
    let s = server().await;
    for args in [
        vec!["set_limit", "per_task", "5", "--provider", "openai", "--policy-type", "hard_limit"],
        vec!["set_limit", "per_task", "0", "--tokens", "20000", "--component", "codex", "--policy-type", "warn"],
        vec!["prices", "set", "acme", "m-1", "--input", "2.50", "--output", "10", "--effective-from", "2026-01-01"],
        vec![
            "prices",
            "set",
            "acme",
            "m-2",
            "--input",
            "0.15",
            "--output",
            "0.6",
            "--cached-input",
            "0.075",
            "--effective-from",
            "2026-01-01",
        ],
        vec![
            "allocate",
            "create",
            "--context-id",
            "task-2",
            "--component",
            "rhetor",
            "--tokens",
            "10000",
            "--estimated-cost",
            "0.5",
        ],
    ] {
        let out = budget(&s.url, &args).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    post_usage(
        &s.url,
        serde_json::json!({"provider": "openai", "model": "gpt-4o", "component": "codex", "context_id": "task-1",
                           "input_tokens": 17000, "output_tokens": 500, "cost": "4.25"}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while json_of(&budget(&s.url, &["alerts", "list", "--json"]).await)["alerts"].as_array().map_or(0, Vec::len) < 2 {
        assert!(Instant::now() < deadline, "the alerts were not raised");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let show = |args: &'static [&'static str]| {
        let url = s.url.clone();
        let state = std::env::temp_dir().join("budget-cli-tests-state");
        tokio::task::spawn_blocking(move || {
            Command::new(BIN)
                .args(args)
                .env("BUDGET_URL", url)
                .env("XDG_STATE_HOME", state)
                .env("COLUMNS", "100")
                .output()
                .unwrap()
        })
    };
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"\b[0-9a-f]{8}\b", "[  id  ]");
    settings.add_filter(r"\d{4}-\d{2}-\d{2}", "YYYY-MM-DD");
    settings.add_filter(r"\d{2}:\d{2}:\d{2}", "hh:mm:ss");
    settings.add_filter(r"in \d+h \d+m", "in Xh Ym");
    let _guard = settings.bind_to_scope();
    for (name, args) in [
        ("status", &["status"][..]),
        ("alerts_list", &["alerts", "list"][..]),
        ("prices_list", &["prices", "list", "--provider", "acme"][..]),
        ("allocate_list", &["allocate", "list"][..]),
    ] {
        let out = show(args).await.unwrap();
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        // The health table of `status` shows event counts that depend on timing: only the windows.
        let text = stdout(&out);
        let text = text.split("\nBudget ").next().unwrap().to_string();
        insta::assert_snapshot!(name, text);
    }
}

/// A provider that answers one OpenAI chat completion per connection and reports the `Authorization`
/// it was sent; `fail` makes it answer 500 with the request's headers echoed (a careless provider).
async fn tiny_provider(fail: bool) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let (seen, received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                            })
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        if body.len() >= length || n == 0 {
                            break;
                        }
                    }
                    if n == 0 {
                        break;
                    }
                }
                let text = String::from_utf8_lossy(&request).to_string();
                let auth = text.lines().find(|l| l.to_ascii_lowercase().starts_with("authorization:")).unwrap_or("");
                let _ = seen.send(auth.to_string());
                let (status, body) = if fail {
                    (
                        "500 Internal Server Error",
                        serde_json::json!({"error": {"message": "broken", "type": "server_error"}}),
                    )
                } else {
                    (
                        "200 OK",
                        serde_json::json!({"id": "x", "object": "chat.completion", "model": "gpt-4o",
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}),
                    )
                };
                let body = body.to_string();
                let answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    (url, received)
}

/// Gateway mode under `budget start` with everything logged (trace level, the HTTP client's own lines
/// included): the provider gets its secret, and the secret is in no answer, log line or event, for a
/// call that succeeds, one the provider fails and one to a provider that is down.
#[tokio::test]
async fn gateway_secrets_reach_only_their_provider() {
    const SECRET: &str = "sk-provider-secret-never-shown-4711";
    let db = TestDb::new().await;
    let (good, mut good_seen) = tiny_provider(false).await;
    let (bad, _) = tiny_provider(true).await;
    let upstreams = serde_json::json!({
        "openai": {"base_url": good, "api_key_env": "TEST_PROVIDER_KEY"},
        "failing": {"base_url": bad, "api_key_env": "TEST_PROVIDER_KEY"},
        "down": {"base_url": "http://127.0.0.1:9/v1", "api_key_env": "TEST_PROVIDER_KEY"},
    })
    .to_string();
    let (url, log, child) =
        start_logged(&db, &[("BUDGET_LOG", "trace"), ("BUDGET_UPSTREAMS", &upstreams), ("TEST_PROVIDER_KEY", SECRET)])
            .await;
    let http = reqwest::Client::new();
    let mut answers = String::new();
    for (model, status) in [("gpt-4o", 200), ("failing/gpt-4o", 500), ("down/gpt-4o", 502)] {
        let body =
            serde_json::json!({"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
        let r = http.post(format!("{url}/v1/chat/completions")).json(&body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{model}");
        answers.push_str(&format!("{:?}", r.headers()));
        answers.push_str(&r.text().await.unwrap());
    }
    assert_eq!(good_seen.recv().await.unwrap().trim(), format!("authorization: Bearer {SECRET}"));
    assert!(answers.contains("x-budget-cost"), "{answers}");
    assert!(!answers.contains(SECRET), "a provider secret is in an answer: {answers}");

    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(child);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("TRACE"), "the log was captured at trace level");
    assert!(!logged.contains(SECRET), "a provider secret is in the server's log");
    let client = db.pool.get().await.unwrap();
    let found: i64 = client
        .query_one(
            "SELECT count(*) FROM events WHERE payload::text LIKE $1 OR metadata::text LIKE $1",
            &[&format!("%{SECRET}%")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(found, 0, "a provider secret is in the log of events");
    let records: i64 =
        client.query_one("SELECT count(*) FROM events WHERE event_type = 'UsageRecorded'", &[]).await.unwrap().get(0);
    assert_eq!(records, 1, "only the answered call is a usage record");
    let _ = std::fs::remove_file(&log);
}

/// Prices acme/big at $10 and acme/small at $1 per token, both able to code: optimize moves big's
/// calls to small.
async fn price_big_and_small(url: &str) {
    let http = reqwest::Client::new();
    for (model, rate) in [("big", "10"), ("small", "1")] {
        let price = serde_json::json!({"provider": "acme", "model": model, "input": rate, "output": rate,
                                       "capabilities": ["code"], "effective_from": "2026-01-01T00:00:00Z"});
        let r = http.post(format!("{url}/api/prices")).json(&price).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
}

/// `budget optimize` names the period its savings are per: "Saves / day" for daily, "/ week" for weekly.
#[tokio::test]
async fn optimize_says_what_its_savings_are_per() {
    let s = server().await;
    price_big_and_small(&s.url).await;
    // The log holds all 30 days (it begins before them), so savings are rated over all of them;
    // the daily usage `wait_applied` counts is the record after it.
    let before = (chrono::Utc::now() - chrono::Duration::hours(30 * 24 + 2)).to_rfc3339();
    post_usage(
        &s.url,
        serde_json::json!({"provider": "acme", "model": "none", "component": "setup", "input_tokens": 0,
                           "output_tokens": 0, "cost": "0", "timestamp": before}),
    )
    .await;
    post_usage(
        &s.url,
        serde_json::json!({"provider": "acme", "model": "big", "component": "codex", "task_type": "coding",
                           "input_tokens": 10001, "output_tokens": 2000}),
    )
    .await;
    wait_applied(&s.url, 1).await;
    // $0.108009 saved over 30 days: the table rounds it as the sentence below it does (it showed
    // $0.0036003 above "about $0.0036 per day").
    for (period, header, saves) in [("daily", "Saves / day", "$0.0036"), ("weekly", "Saves / week", "$0.0252")] {
        let out = budget(&s.url, &["optimize", "--period", period]).await;
        let text = stdout(&out);
        assert!(out.status.success() && text.contains("model_substitution"), "{text}{}", stderr(&out));
        assert!(text.contains(header) && !text.contains("/ period"), "{period}: {text}");
        assert!(text.contains(&format!(" {saves} ┆")) && text.contains(&format!("about {saves} per")), "{text}");
    }
}

/// `budget analyze` shows every window's pace, a line per limit, and says when a token limit is
/// used up (it printed the findings only, and none for token limits).
#[tokio::test]
async fn analyze_shows_each_windows_pace_and_a_used_up_token_limit() {
    let s = server().await;
    for args in [
        &["set_limit", "daily", "0", "--tokens", "1000", "--component", "codex", "--policy-type", "hard_limit"][..],
        &["set_limit", "daily", "5.0", "--component", "rhetor", "--policy-type", "warn"][..],
    ] {
        let out = budget(&s.url, args).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    for component in ["codex", "rhetor"] {
        post_usage(
            &s.url,
            serde_json::json!({"provider": "openai", "model": "gpt-4o", "component": component,
                               "input_tokens": 1200, "output_tokens": 300, "cost": 0.25}),
        )
        .await;
    }
    wait_applied(&s.url, 2).await;
    let out = budget(&s.url, &["analyze"]).await;
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        text.contains("- The daily limit of 1,000 tokens on component=codex is used up: 1,500 tokens used and 0 reserved (150%); it resets at "),
        "{text}"
    );
    let row = |scope: &str| {
        // The table's row (a finding may name the scope too).
        let row = text.lines().find(|l| l.contains(scope) && l.contains('┆'));
        row.unwrap_or_else(|| panic!("no row for {scope}: {text}")).to_string()
    };
    let codex = row("component=codex");
    assert!(codex.contains("1,500 tok") && codex.contains("1,000 tok") && codex.contains("used up"), "{codex}");
    let rhetor = row("component=rhetor");
    assert!(rhetor.contains("$0.25") && rhetor.contains("$5"), "{rhetor}");
    // The log began this hour, inside the day's windows (unless this is the day's first hour): the
    // rates are over the hours it holds, and the table says from when.
    use chrono::Timelike;
    if chrono::Utc::now().hour() > 0 {
        assert!(text.contains("Rates run from ") && text.contains(" UTC, where the log's usage begins"), "{text}");
    }
}

/// The assistant's commands say each thing once: an empty optimize one sentence, and recommend's
/// table a Budget column only when there is a budget to fit (without one it was `?` on every row).
#[tokio::test]
async fn recommend_and_optimize_say_each_thing_once() {
    let s = server().await;
    let out = budget(&s.url, &["optimize"]).await;
    assert_eq!(stdout(&out).trim(), "No recommendations from the usage of the last 30 days.", "{}", stderr(&out));
    let ask = ["recommend", "--task-type", "code_generation", "--context-size", "2000", "--output-size", "1000"];
    // An empty price book: the sentence that says so, without an empty table above it.
    let out = budget(&s.url, &ask).await;
    assert_eq!(stdout(&out).trim(), "The price book has no models to rank; run `budget prices update`.");
    let price = serde_json::json!({"provider": "acme", "model": "m", "input": "1", "output": "2"});
    let r = reqwest::Client::new().post(format!("{}/api/prices", s.url)).json(&price).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let out = budget(&s.url, &ask).await;
    let header = stdout(&out).lines().nth(1).unwrap_or_default().to_string();
    assert!(header.contains("$/call") && !header.contains("Budget"), "{}{}", stdout(&out), stderr(&out));
    // The cost, budget and context have their columns; the last says what the task needs and the
    // model lacks (it was the rationale, repeating the other columns).
    assert!(header.contains("Capabilities") && !header.contains("Why"), "{}", stdout(&out));
    let row = stdout(&out).lines().nth(3).unwrap_or_default().to_string();
    assert!(row.contains("acme/m") && row.contains("unknown") && row.contains("lacks code"), "{}", stdout(&out));
    let out = budget(&s.url, &[&ask[..], &["--max-cost", "5.0"]].concat()).await;
    let text = stdout(&out);
    assert!(text.lines().nth(1).unwrap_or_default().contains("Budget") && text.contains("fits"), "{text}");
}

/// A limit in another timezone says so, and where its window began in that zone's own time.
#[tokio::test]
async fn set_limit_names_its_timezone() {
    let s = server().await;
    let out = budget(&s.url, &["set_limit", "daily", "5", "--timezone", "Europe/Berlin"]).await;
    let text = stdout(&out);
    assert!(text.starts_with("Set daily (Europe/Berlin) warn limit of $5 for all usage"), "{text}{}", stderr(&out));
    let window = text.lines().nth(1).unwrap_or_default();
    assert!(window.contains("Z (00:00 Europe/Berlin) counts what is already in it"), "{text}");
    // Nothing in it yet: said so, not "$0 used in 0 records, $0 reserved (0 tokens)".
    assert!(window.ends_with("counts what is already in it: nothing yet"), "{text}");
    // The tables name it too: a day in Berlin is not the day in UTC beside it.
    for command in [&["status", "--wide"][..], &["policies", "list", "--wide"], &["analyze", "--wide"]] {
        let out = budget(&s.url, command).await;
        assert!(stdout(&out).contains("daily (Europe/Berlin) warn"), "{command:?}: {}", stdout(&out));
    }
    // The same budget, period and scope in UTC replaces it, and names no zone (left out, the zone is kept).
    let out = budget(&s.url, &["set_limit", "daily", "5", "--timezone", "UTC"]).await;
    assert!(
        stdout(&out)
            .starts_with("Replaced daily (Europe/Berlin) warn limit of $5 with daily warn limit of $5 for all usage"),
        "{}",
        stdout(&out)
    );
    let out = budget(&s.url, &["policies", "list", "--wide"]).await;
    assert!(stdout(&out).contains(" daily warn ") && !stdout(&out).contains("Berlin"), "{}", stdout(&out));
}

/// A list with nothing in it says so in words, with the command that fills it, instead of printing
/// a table of headings alone.
#[tokio::test]
async fn empty_lists_say_so_in_words() {
    let s = server().await;
    for (args, said) in [
        (&["keys", "list"][..], "No keys have been created; `budget keys create --scope admin` makes the first."),
        (
            &["budgets", "list"],
            "No active budgets; `budget set_limit daily 10.0` creates `default` with its first policy.",
        ),
        (&["policies", "list"], "No policies; set one with `budget set_limit daily 10.0`."),
        (&["alerts", "list"], "No open alerts."),
        (&["allocate", "list"], "No active allocations."),
    ] {
        let out = budget(&s.url, args).await;
        assert_eq!(stdout(&out).trim(), said, "{args:?}: {}", stderr(&out));
    }
}

/// A limit set by mistake can be turned off from the CLI and on again: `policies disable` stops it
/// counting (status no longer shows it), `policies list --all` still does, `enable` reopens its window.
#[tokio::test]
async fn policies_are_listed_disabled_and_enabled_again() {
    let s = server().await;
    let out = budget(&s.url, &["set_limit", "daily", "5", "--provider", "opnai", "--json"]).await;
    let id = json_of(&out)["policy"]["policy_id"].as_str().unwrap().to_string();
    let short = &id[id.len() - 8..];
    let list = stdout(&budget(&s.url, &["policies", "list"]).await);
    assert!(list.contains(short) && list.contains("provider=opnai") && list.contains("80% / 95%"), "{list}");

    let out = budget(&s.url, &["policies", "disable", short]).await;
    assert!(
        stdout(&out).starts_with(&format!(
            "Disabled policy {short} (daily warn of $5, provider=opnai, budget default): it no longer counts"
        )),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let again = stdout(&budget(&s.url, &["policies", "disable", short]).await);
    assert!(again.contains("is already disabled; nothing was changed"), "{again}");
    let status = stdout(&budget(&s.url, &["status"]).await);
    assert!(status.contains("No active policies") && !status.contains(short), "{status}");
    assert!(stdout(&budget(&s.url, &["policies", "list"]).await).starts_with("No policies; set one"));
    let all = stdout(&budget(&s.url, &["policies", "list", "--all"]).await);
    assert!(all.contains(short) && all.contains(" no "), "{all}");

    let out = budget(&s.url, &["policies", "enable", short]).await;
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("Enabled policy {short}")) && text.contains("counts what is already in it"),
        "{text}"
    );
    assert!(stdout(&budget(&s.url, &["status"]).await).contains(short));
    let out = budget(&s.url, &["policies", "disable", "nope"]).await;
    assert!(!out.status.success() && stderr(&out).contains("budget policies list --all"), "{}", stderr(&out));
}

/// A limit on a provider or model the price book does not know says so (a typo limits nothing); a
/// known one, a dated name of a known model, or any name while the price book is empty, says nothing.
#[tokio::test]
async fn set_limit_notes_a_name_the_price_book_does_not_know() {
    let s = server().await;
    let note = |out: &Output| stdout(out).lines().find(|l| l.starts_with("Note:")).map(str::to_string);
    let out = budget(&s.url, &["set_limit", "daily", "5", "--provider", "acme"]).await;
    assert_eq!(note(&out), None, "an empty price book says nothing: {}", stdout(&out));
    let price = serde_json::json!({"provider": "acme", "model": "m1", "input": "1", "output": "2"});
    let r = reqwest::Client::new().post(format!("{}/api/prices", s.url)).json(&price).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let then = "; if no call names it, this limit counts nothing. Check the spelling (`budget policies disable ";
    for (args, expected) in [
        (
            &["--provider", "acmee"][..],
            Some("the price book has no provider `acmee` (did you mean `acme`? it has acme)"),
        ),
        (&["--provider", "zzz"][..], Some("the price book has no provider `zzz` (it has acme)")),
        (
            &["--provider", "acme", "--model", "n1"],
            Some("the price book has no model `n1` of acme (did you mean `m1`? `budget prices list` shows them)"),
        ),
        // Another version of a model the book has is another model, not a typo of it.
        (
            &["--provider", "acme", "--model", "m2"],
            Some("the price book has no model `m2` of acme (`budget prices list` shows them)"),
        ),
        (
            &["--provider", "acme", "--model", "model-two"],
            Some("the price book has no model `model-two` of acme (`budget prices list` shows them)"),
        ),
        (&["--provider", "acme"], None),
        (&["--model", "m1-2026-01-15"], None),
    ] {
        let out = budget(&s.url, &[&["set_limit", "daily", "5"][..], args].concat()).await;
        assert!(out.status.success(), "{}", stderr(&out));
        // The note names the new policy by its short id: the last 8 characters of the id the first line gives.
        let text = stdout(&out);
        let id = text.split("(policy ").nth(1).and_then(|rest| rest.get(..36)).unwrap_or_default().to_string();
        let expected = expected.map(|e| format!("Note: {e}{then}{}` turns it off).", &id[id.len() - 8..]));
        assert_eq!(note(&out), expected, "{args:?}: {}", stdout(&out));
    }
}

/// A limit on a component, task type or user no recent call named says so, with the name it may be a
/// typo of: `--component codx` made a limit that counted nothing and said only "nothing yet". Names
/// seen say nothing, nor does any name before the first call.
#[tokio::test]
async fn set_limit_notes_a_component_no_call_named() {
    let s = server().await;
    let note = |out: &Output| stdout(out).lines().find(|l| l.starts_with("Note:")).map(str::to_string);
    let out = budget(&s.url, &["set_limit", "daily", "5", "--component", "anything"]).await;
    assert_eq!(note(&out), None, "no usage yet says nothing: {}", stdout(&out));
    post_usage(
        &s.url,
        serde_json::json!({"provider": "acme", "model": "m1", "component": "codex", "task_type": "coding",
                           "input_tokens": 1, "output_tokens": 1, "cost": "0.01"}),
    )
    .await;
    wait_applied(&s.url, 1).await;
    let then = "; if no call names it, this limit counts nothing. Check the spelling (`budget policies disable ";
    for (args, expected) in [
        (
            &["--component", "codx"][..],
            Some("no call in the last 90 days named component `codx` (did you mean `codex`? those seen: codex)"),
        ),
        (&["--task-type", "chat"], Some("no call in the last 90 days named task type `chat` (those seen: coding)")),
        (&["--component", "codex", "--task-type", "coding"], None),
    ] {
        let out = budget(&s.url, &[&["set_limit", "daily", "5"][..], args].concat()).await;
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        let id = text.split("(policy ").nth(1).and_then(|rest| rest.get(..36)).unwrap_or_default().to_string();
        let expected = expected.map(|e| format!("Note: {e}{then}{}` turns it off).", &id[id.len() - 8..]));
        assert_eq!(note(&out), expected, "{args:?}: {text}");
    }
}

/// An import's --verbose lists one name a line (3,840 names of LiteLLM's file made one line), and its
/// counts have separators.
#[tokio::test]
async fn prices_update_verbose_lists_a_name_a_line() {
    let s = server().await;
    let models: serde_json::Map<String, serde_json::Value> = (1..=1200)
        .map(|i| (format!("m-{i}"), serde_json::json!({"litellm_provider": "acme", "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06})))
        .collect();
    let file = std::env::temp_dir().join(format!("litellm-verbose-{}.json", std::process::id()));
    std::fs::write(&file, serde_json::Value::Object(models).to_string()).unwrap();
    let out = budget(&s.url, &["prices", "update", "--from", file.to_str().unwrap(), "--dry-run", "--verbose"]).await;
    let _ = std::fs::remove_file(&file);
    let text = stdout(&out);
    assert!(text.starts_with("Dry run, nothing written: 1,200 added, "), "{text}{}", stderr(&out));
    assert!(
        text.lines().any(|l| l == "  added acme/m-1") && text.lines().any(|l| l == "  added acme/m-1200"),
        "{text}"
    );
    assert!(text.lines().all(|l| l.len() < 200), "a line per name: {text}");
}

/// A reader that goes away (`budget completions bash | head`) ends the command quietly, as for every
/// other command: the completion script (83 KB, more than a pipe holds) panicked on the closed pipe.
#[test]
fn completions_into_a_closed_pipe_end_quietly() {
    for shell in ["bash", "zsh"] {
        let mut child = Command::new(BIN)
            .args(["completions", shell])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before the script is written
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success() && out.stderr.is_empty(), "{shell}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// `status --as-of` a time before any policy says that no policy was active then, not to set one.
#[tokio::test]
async fn status_as_of_before_any_policy_says_so() {
    let s = server().await;
    assert!(budget(&s.url, &["set_limit", "daily", "20"]).await.status.success());
    let out = budget(&s.url, &["status", "--as-of", "2026-01-01"]).await;
    let first = stdout(&out).lines().next().unwrap_or_default().to_string();
    assert_eq!(
        first,
        "No policy was active at 2026-01-01 00:00:00 UTC (the log as it stood then).",
        "{}",
        stderr(&out)
    );
}

/// A per-task limit has a window per task: `budget status` names each (`task:…`), or its rows could
/// not be told apart; calendar windows keep the narrow table.
#[tokio::test]
async fn status_names_each_task_s_window() {
    let s = server().await;
    assert!(budget(&s.url, &["set_limit", "per_task", "0.05", "--policy-type", "hard_limit"]).await.status.success());
    // Before its first task it has no window, and status says so instead of "No active policies".
    let text = stdout(&budget(&s.url, &["status"]).await);
    assert!(
        text.starts_with("Policy ") && text.contains("(per_task hard_limit of $0.05, all usage, budget default) has no window yet: each task gets its own with its first call or reservation."),
        "{text}"
    );
    assert!(!text.contains("No active policies"), "{text}");
    let text = stdout(&budget(&s.url, &["budgets", "show", "default"]).await);
    assert!(text.contains("has no window yet") && !text.contains('┌'), "no empty table: {text}");
    for task in ["task-1", "task-2"] {
        post_usage(
            &s.url,
            serde_json::json!({"provider": "openai", "model": "gpt-4o", "component": "codex", "context_id": task,
                               "input_tokens": 100, "output_tokens": 10, "cost": "0.01"}),
        )
        .await;
    }
    let text = stdout(&budget(&s.url, &["status"]).await);
    assert!(text.contains("task:task-1") && text.contains("task:task-2") && !text.contains("no window yet"), "{text}");
    assert!(budget(&s.url, &["set_limit", "daily", "5", "--policy-type", "warn"]).await.status.success());
    let text = stdout(&budget(&s.url, &["status", "--period", "daily"]).await);
    assert!(!text.contains("Window"), "a daily window is told by its reset time: {text}");
}

/// Budgets are made, renamed and archived from the CLI (not only by `set_limit --budget` and the
/// API); an archived budget's policies leave `status` and say why where they are still listed.
#[tokio::test]
async fn budgets_are_created_renamed_and_archived() {
    let s = server().await;
    let out = budget(&s.url, &["budgets", "create", "research", "--owner", "alice", "--description", "R&D"]).await;
    assert!(stdout(&out).starts_with("Created budget research ("), "{}{}", stdout(&out), stderr(&out));
    let out = budget(&s.url, &["budgets", "create", "research"]).await;
    assert!(!out.status.success() && stderr(&out).contains("budget_exists"), "{}", stderr(&out));
    assert!(budget(&s.url, &["set_limit", "daily", "5", "--budget", "research"]).await.status.success());

    let out = budget(&s.url, &["budgets", "rename", "research", "lab"]).await;
    assert_eq!(stdout(&out).trim(), "Renamed budget research to lab.", "{}", stderr(&out));
    assert!(stdout(&budget(&s.url, &["policies", "list"]).await).contains("lab"));

    let out = budget(&s.url, &["budgets", "archive", "lab"]).await;
    assert!(
        stdout(&out).starts_with("Archived budget lab: its 1 policy no longer counts or limits anything"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let status = stdout(&budget(&s.url, &["status"]).await);
    assert!(status.contains("No active policies"), "{status}");
    let list = stdout(&budget(&s.url, &["budgets", "list"]).await);
    assert!(!list.contains("lab"), "{list}");
    let all = stdout(&budget(&s.url, &["budgets", "list", "--all"]).await);
    // Yes and no, as the policies' Enabled column says them (it said `true` and `false`).
    assert!(all.contains("lab") && all.contains("no, archived") && !all.contains("false"), "{all}");
    let shown = stdout(&budget(&s.url, &["budgets", "show", "lab"]).await);
    assert!(shown.contains("archived: its policies count nothing"), "{shown}");
    let policies = stdout(&budget(&s.url, &["policies", "list", "--all"]).await);
    assert!(policies.contains("yes, budget archived"), "{policies}");
    let out = budget(&s.url, &["budgets", "archive", "lab"]).await;
    assert_eq!(stdout(&out).trim(), "Budget lab is already archived; nothing was changed.", "{}", stderr(&out));
}

/// A limit set after the day's spend opens with it as one balance; `explain` says how to see it
/// record by record, and `--opening` lists the records.
#[tokio::test]
async fn explain_opening_lists_the_records_a_limit_opened_with() {
    let s = server().await;
    for cost in ["0.5", "0.25"] {
        post_usage(&s.url, serde_json::json!({"provider": "openai", "model": "gpt-4o", "component": "codex", "input_tokens": 10, "output_tokens": 1, "cost": cost})).await;
    }
    assert!(budget(&s.url, &["set_limit", "daily", "10", "--provider", "openai"]).await.status.success());
    let id =
        json_of(&budget(&s.url, &["status", "--json"]).await)["windows"][0]["policy_id"].as_str().unwrap().to_string();
    let short = &id[id.len() - 8..];
    let explained = stdout(&budget(&s.url, &["explain", short]).await);
    assert!(
        explained.contains(&format!("The opening balance, record by record: `budget explain {short} --opening`")),
        "{explained}"
    );
    // Asked for a window by name, the command it offers names that window too.
    let explained = stdout(&budget(&s.url, &["explain", short, "--window", "today"]).await);
    let today = chrono::Utc::now().format("%Y-%m-%dT00:00:00Z");
    assert!(explained.contains(&format!("`budget explain {short} --window {today} --opening`")), "{explained}");
    let out = budget(&s.url, &["explain", short, "--opening", "--wide"]).await;
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(text.contains("Opening balance at position "), "{text}");
    assert!(text.contains("2 usage records, $0.75 and 22 tokens in all; no reservations"), "{text}");
    let rows: Vec<&str> = text.lines().filter(|l| l.contains("openai/gpt-4o") && l.contains("codex")).collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(rows[0].contains("0.5") && rows[1].contains("0.25"), "{text}");
}

/// `allocate create --session-id` reserves under the session's per-session limit.
#[tokio::test]
async fn allocate_create_holds_room_in_its_sessions_window() {
    let s = server().await;
    let set =
        budget(&s.url, &["set_limit", "per_session", "1", "--policy-type", "hard_limit", "--component", "c"]).await;
    assert!(set.status.success(), "{}", stderr(&set));
    let args = [
        "allocate",
        "create",
        "--context-id",
        "t",
        "--component",
        "c",
        "--session-id",
        "s-1",
        "--estimated-cost",
        "0.6",
    ];
    let out = budget(&s.url, &args).await;
    assert!(stdout(&out).contains("), window session:s-1"), "{}{}", stdout(&out), stderr(&out));
    let out = budget(&s.url, &args).await;
    assert!(
        !out.status.success() && stderr(&out).contains("in session s-1's window"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
}

/// A reservation past a soft limit is made, and says so with the cheaper models for its task.
#[tokio::test]
async fn allocate_create_warns_past_a_soft_limit_and_names_cheaper_models() {
    let s = server().await;
    let prices = budget(&s.url, &["prices", "update"]).await;
    assert!(prices.status.success(), "the bundled table: {}", stderr(&prices));
    let set =
        budget(&s.url, &["set_limit", "daily", "0.02", "--policy-type", "soft_limit", "--provider", "openai"]).await;
    assert!(set.status.success(), "{}", stderr(&set));
    let args: Vec<&str> =
        "allocate create --context-id t --component c --provider openai --model gpt-4o --task-type coding --tokens 1500"
            .split_whitespace()
            .collect();
    let out = budget(&s.url, &args).await;
    // Under the limit: no limit's warning (gpt-4o's retirement day is said, as of any reservation of it).
    assert!(out.status.success() && !stdout(&out).contains("Warning: daily"), "{}{}", stdout(&out), stderr(&out));
    let out = budget(&s.url, &args).await;
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains(
            "Warning: daily soft_limit policy on provider=openai (budget default): with it, its window starting "
        ),
        "{text}"
    );
    assert!(text.contains("would hold $0.03 of $0.02 (150%), over the limit"), "{text}");
    assert!(
        text.contains("Warning: soft limit: ") && text.contains("instead of $0.015 for this reservation"),
        "{text}"
    );
}

/// Status lists a per-task policy's ten most recent windows and says how many there are in all.
#[tokio::test]
async fn status_says_how_many_task_windows_there_are() {
    let s = server().await;
    assert!(budget(&s.url, &["set_limit", "per_task", "1"]).await.status.success());
    for i in 0..11 {
        post_usage(&s.url, serde_json::json!({"provider": "openai", "model": "gpt-4o", "component": "c", "context_id": format!("t-{i}"), "input_tokens": 1, "output_tokens": 0, "cost": "0.01"})).await;
    }
    let id =
        json_of(&budget(&s.url, &["status", "--json"]).await)["windows"][0]["policy_id"].as_str().unwrap().to_string();
    let short = &id[id.len() - 8..];
    let text = stdout(&budget(&s.url, &["status"]).await);
    assert!(
        text.contains(&format!(
            "Policy {short} has 11 task windows; the 10 most recent are above. One task's: `budget explain {short} --window task:ID`"
        )),
        "{text}"
    );
    // A budget's own status says the same.
    let shown = stdout(&budget(&s.url, &["budgets", "show", "default"]).await);
    assert!(shown.contains(&format!("Policy {short} has 11 task windows")), "{shown}");
}

#[tokio::test]
async fn dollar_amounts_group_thousands_as_token_counts_do() {
    // A table printed "$4957.5572707" left of a "$5000" limit, beside "20,000 tok" and the dashboard's
    // "$4,957.55": dollars are grouped too, every digit kept.
    let s = server().await;
    post_usage(
        &s.url,
        serde_json::json!({"provider":"openai","model":"gpt-4o","component":"codex","input_tokens":1,"output_tokens":1,"cost":"1234.5678"}),
    )
    .await;
    wait_applied(&s.url, 1).await;
    let out = budget(&s.url, &["set_limit", "monthly", "5000"]).await;
    let text = stdout(&out);
    assert!(text.contains("limit of $5,000 ") && text.contains("$1,234.5678 used"), "{text}");
    let text = stdout(&budget(&s.url, &["status", "--wide"]).await);
    for needle in ["$1,234.5678", "$5,000", "$3,765.4322"] {
        assert!(text.contains(needle), "status lacks `{needle}`:\n{text}");
    }
    let text = stdout(&budget(&s.url, &["get_usage", "daily"]).await);
    assert!(text.contains("$1,234.5678") && !text.contains("$1234"), "{text}");
    // JSON stays the API's number.
    let json = json_of(&budget(&s.url, &["status", "--json"]).await);
    assert_eq!(json["windows"][0]["used_cost"].to_string(), "1234.5678");
}

/// `budget optimize` lists the ten recommendations that save most and sums up the rest: a week of four
/// components' calls on a few models gave 80 rows, most of them saving a cent a day.
#[tokio::test]
async fn optimize_lists_the_top_ten_and_sums_up_the_rest() {
    let s = server().await;
    price_big_and_small(&s.url).await;
    // Twelve components' coding calls on `big`: twelve substitutions, each its own row.
    for i in 1..=12 {
        post_usage(
            &s.url,
            serde_json::json!({"provider": "acme", "model": "big", "component": format!("c{i:02}"), "task_type": "coding",
                               "input_tokens": 1000 * i, "output_tokens": 100}),
        )
        .await;
    }
    wait_applied(&s.url, 12).await;
    let text = stdout(&budget(&s.url, &["optimize", "--wide"]).await);
    let rows = |text: &str| text.lines().filter(|l| l.contains("┆ model_substitution ┆")).count();
    assert_eq!(rows(&text), 10, "{text}");
    assert!(
        text.contains("acme/big") && text.contains("c12's") && !text.contains("c01's"),
        "the biggest first: {text}"
    );
    assert!(text.contains("The other 2 save up to $0.") && text.contains("`--top 0` lists all 12"), "{text}");
    let text = stdout(&budget(&s.url, &["optimize", "--wide", "--top", "0"]).await);
    assert_eq!(rows(&text), 12, "{text}");
    assert!(!text.contains("The other"), "{text}");
    let text = stdout(&budget(&s.url, &["optimize", "--wide", "--top", "3"]).await);
    assert_eq!(rows(&text), 3, "{text}");
    assert!(text.contains("The other 9 save up to $"), "{text}");
    // JSON is the API's answer, every recommendation in it.
    let json = json_of(&budget(&s.url, &["optimize", "--json"]).await);
    assert_eq!(json["recommendations"]["recommendations"].as_array().map(Vec::len), Some(12));
}

/// `set_limit` again on a limit changes what it names and says what it replaced: `set_limit daily 8
/// --provider openai` over a $5 hard limit made it a $8 warning, said only "Replaced with daily warn
/// limit of $8".
#[tokio::test]
async fn set_limit_again_keeps_the_type_and_says_what_it_replaced() {
    let s = server().await;
    let args = [
        "set_limit",
        "daily",
        "5",
        "--provider",
        "openai",
        "--policy-type",
        "hard_limit",
        "--timezone",
        "Europe/Berlin",
    ];
    assert!(budget(&s.url, &args).await.status.success());
    let out = budget(&s.url, &["set_limit", "daily", "8", "--provider", "openai"]).await;
    let text = stdout(&out);
    assert!(
        text.starts_with("Replaced daily (Europe/Berlin) hard_limit limit of $5 with daily (Europe/Berlin) hard_limit limit of $8 for provider=openai in budget default (policy "),
        "{text}{}",
        stderr(&out)
    );
    let out = budget(&s.url, &["set_limit", "daily", "8", "--provider", "openai", "--policy-type", "warn"]).await;
    assert!(
        stdout(&out).starts_with(
            "Replaced daily (Europe/Berlin) hard_limit limit of $8 with daily (Europe/Berlin) warn limit of $8 "
        ),
        "{}",
        stdout(&out)
    );
    let help = stdout(&budget(&s.url, &["set_limit", "--help"]).await);
    assert!(help.contains("a limit set again keeps its type"), "{help}");
    // Set again, a disabled limit counts again; the line says it was off.
    let id = text.split("(policy ").nth(1).and_then(|rest| rest.get(..36)).unwrap_or_default().to_string();
    assert!(budget(&s.url, &["policies", "disable", &id]).await.status.success());
    let out = budget(&s.url, &["set_limit", "daily", "9", "--provider", "openai"]).await;
    assert!(
        stdout(&out).starts_with(
            "Replaced disabled daily (Europe/Berlin) warn limit of $8 with daily (Europe/Berlin) warn limit of $9 "
        ),
        "{}",
        stdout(&out)
    );
}
