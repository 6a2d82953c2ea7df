//! The dashboard in a real headless Chromium, against a server with keys and data: sign-in (a wrong
//! key is refused clearly), gauges equal to `GET /api/status`, a record posted over REST moving its
//! gauge and the spend total without a reload, an alert acknowledged from the page, and the page
//! fitting 390 px; an admin setting a limit, changing or disabling one from its card, and renaming or
//! archiving a budget. Screenshots (1280 px light and dark, 390 px, the change, new-limit and budget
//! dialogs) go to `target/dashboard/`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::browser::Browser;
use crate::helpers::{spawn_app_with, TestApp};

const ADMIN: &str = "dashboard-test-bootstrap-admin-key-0123456789";

async fn create_key(app: &TestApp, scope: &str, name: &str) -> String {
    let r = app
        .http
        .post(app.url("/api/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"scope": scope, "name": name}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_string()
}

async fn get(app: &TestApp, key: &str, path: &str) -> Value {
    let r = app.http.get(app.url(path)).bearer_auth(key).send().await.unwrap();
    assert_eq!(r.status(), 200, "GET {path}");
    r.json().await.unwrap()
}

async fn post(app: &TestApp, key: &str, path: &str, body: Value) -> Value {
    let r = app.http.post(app.url(path)).bearer_auth(key).json(&body).send().await.unwrap();
    assert!(r.status().is_success(), "POST {path}: {}", r.status());
    r.json().await.unwrap()
}

/// Signs in with `key` on the sign-in form and waits for the loaded page.
async fn sign_in(browser: &Browser, key: &str) {
    browser
        .wait_for("the sign-in form", "return !document.querySelector('#sign-in').hidden", Duration::from_secs(10))
        .await;
    browser.type_into("#api-key", key).await;
    browser.click("#sign-in-form button[type=submit]").await;
    browser.wait_for("the loaded page", "return document.body.dataset.ready", Duration::from_secs(15)).await;
}

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard")
}

/// What the page shows of every gauge: policy, window and each `data-field`'s text.
const GAUGES: &str = "return [...document.querySelectorAll('.gauge:not(.waiting)')].map(g => ({
    policy: g.dataset.policy, window: g.dataset.window,
    fields: Object.fromEntries([...g.querySelectorAll('[data-field]')].map(f => [f.dataset.field, f.textContent]))}))";

/// A figure as the page prints it, back to the API's digits: `$1,234.5 left` → `1234.5`.
fn plain(text: &str) -> String {
    text.replace(['$', ',', '%'], "").replace(" left", "")
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every gauge on the page shows its window's figures exactly as `GET /api/status` gives them.
fn assert_gauges_match(page: &Value, status: &Value) {
    let gauges = page.as_array().unwrap();
    let windows = status["windows"].as_array().unwrap();
    assert_eq!(gauges.len(), windows.len(), "one gauge per window: {page}");
    for w in windows {
        let gauge = gauges
            .iter()
            .find(|g| g["policy"] == w["policy_id"] && g["window"] == w["window"])
            .unwrap_or_else(|| panic!("no gauge for {}", w["policy_id"]));
        let shown = |field: &str| plain(gauge["fields"][field].as_str().unwrap_or_else(|| panic!("{field} not shown")));
        assert_eq!(shown("state"), text(&w["state"]));
        assert_eq!(shown("percent"), text(&w["percent"]));
        assert_eq!(shown("committed_percent"), text(&w["committed_percent"]));
        if !w["cost_limit"].is_null() {
            for field in ["used_cost", "reserved_cost", "cost_limit", "remaining_cost"] {
                assert_eq!(shown(field), text(&w[field]), "{field} of {}", w["scope"]);
            }
        }
        if !w["token_limit"].is_null() {
            for field in ["used_tokens", "reserved_tokens", "token_limit", "remaining_tokens"] {
                assert_eq!(shown(field), text(&w[field]), "{field} of {}", w["scope"]);
            }
        }
    }
}

#[tokio::test]
async fn the_dashboard_shows_the_api_s_numbers_live_and_acknowledges_as_the_signed_in_key() {
    let app = spawn_app_with(|s| s.security.admin_key = Some(ADMIN.into())).await;
    let read = create_key(&app, "read", "wallboard").await;
    let admin = create_key(&app, "admin", "ops").await;

    // Data: a cost limit, a token limit the records take past its warning threshold (an alert), a
    // reservation, and records of two providers.
    for policy in [
        json!({"period": "daily", "cost_limit": 1.0, "provider": "openai", "policy_type": "hard_limit"}),
        json!({"period": "daily", "token_limit": 5000, "component": "codex", "policy_type": "hard_limit"}),
        // A per-task limit: a window per task, which its gauge must name (the reservation below opens it).
        json!({"period": "per_task", "cost_limit": 1.0, "component": "rhetor", "policy_type": "hard_limit"}),
        // A per-session limit before any session: no window, and a card that says so.
        json!({"period": "per_session", "token_limit": 20000, "component": "scribe", "policy_type": "warn"}),
    ] {
        post(&app, ADMIN, "/api/policies", policy).await;
    }
    for _ in 0..3 {
        post(&app, ADMIN, "/api/usage", crate::helpers::record("codex", 1200)).await;
    }
    let last = post(
        &app,
        ADMIN,
        "/api/usage",
        json!({"provider": "anthropic", "model": "claude-3-5-sonnet",
        "component": "rhetor", "input_tokens": 900, "output_tokens": 100, "cost": 0.0042}),
    )
    .await;
    post(
        &app,
        ADMIN,
        "/api/allocations",
        json!({"context_id": "task-9", "component": "rhetor", "tokens": 1000,
        "tier": "remote_heavyweight"}),
    )
    .await;
    // A model the price book does not know names no provider.
    post(
        &app,
        ADMIN,
        "/api/allocations",
        json!({"context_id": "task-10", "component": "scribe", "tokens": 10, "model": "gtp-4o"}),
    )
    .await;
    let alerts = get(&app, ADMIN, &format!("/api/alerts?min_position={}", last["position"])).await;
    let alert_id = alerts["alerts"][0]["id"].as_str().expect("the token limit raised an alert").to_string();

    let browser = Browser::start(1280, 900).await;
    browser.goto(&app.url("/")).await;
    browser
        .wait_for("the sign-in form", "return !document.querySelector('#sign-in').hidden", Duration::from_secs(10))
        .await;

    // A wrong key: a clear error, still signed out.
    browser.type_into("#api-key", &format!("bgt_{}", "0".repeat(64))).await;
    browser.click("#sign-in-form button[type=submit]").await;
    let error = browser
        .wait_for(
            "a sign-in error",
            "return document.querySelector('#sign-in-error').textContent",
            Duration::from_secs(10),
        )
        .await;
    let error = error.as_str().unwrap();
    assert!(error.starts_with("This key was refused:") && error.contains("key"), "{error}");
    assert_eq!(browser.eval("return document.querySelector('#main').hidden").await, true);

    // A read key sees everything, as the API says it, and is offered no acknowledgement.
    browser.type_into("#api-key", &read).await;
    browser.click("#sign-in-form button[type=submit]").await;
    let ready =
        browser.wait_for("the loaded page", "return document.body.dataset.ready", Duration::from_secs(15)).await;
    println!("dashboard panels loaded in {} ms after sign-in", ready.as_str().unwrap());
    assert_eq!(browser.eval("return document.querySelector('#banner').hidden").await, true);
    assert_eq!(browser.eval("return document.querySelector('#whoami').textContent").await, "wallboard · read");
    let status = get(&app, &read, "/api/status").await;
    assert_gauges_match(&browser.eval(GAUGES).await, &status);
    let task = browser
        .eval("const g = document.querySelector('.gauge[data-window=\"task:task-9\"]'); return g && [g.querySelector('h4').textContent, g.querySelector('.when').textContent]")
        .await;
    assert_eq!(task, json!(["per task hard limit", "0 records · task task-9"]), "the per-task gauge names its task");
    let waiting = browser.eval("return [...document.querySelectorAll('.gauge.waiting')].map(g => g.innerText.replace(/\\s+/g, ' ').trim())").await;
    assert_eq!(
        waiting,
        json!(["per session warn NO WINDOW YET component=scribe limit 20,000 tokens per session Each session gets its own window with its first call or reservation."]),
        "a limit with no window yet is shown, not left out"
    );
    // A weekly or monthly window's reset keeps its hours, as the CLI's does ("4 days" was 3 days 15 h).
    let spans = browser
        .eval("const m = 60000; return [span(45 * m), span((15 * 60 + 27) * m), span((3 * 1440 + 15 * 60 + 27) * m), span((1440 * 2 + 59) * m)]")
        .await;
    assert_eq!(spans, json!(["45 min", "15 h 27 min", "3 days 15 h", "2 days 0 h"]));
    // A token limit's figures name their unit (a card can show dollars and tokens one above the other).
    let token_figures = browser
        .eval("return [...document.querySelectorAll('.meter[data-metric=tokens] .figures')].map(f => f.textContent)")
        .await;
    assert_eq!(
        token_figures,
        json!(["4,620 used + 0 reserved of 5,000 tokens · 380 left"]),
        "the codex token limit's figures"
    );
    let shown_alerts = browser
        .eval("return [...document.querySelectorAll('#alert-list [data-alert]')].map(a => a.dataset.alert)")
        .await;
    assert!(shown_alerts.as_array().unwrap().iter().any(|a| a == alert_id.as_str()), "{shown_alerts}");
    assert_eq!(browser.eval("return document.querySelectorAll('#alert-list button').length").await, 0);
    let models = browser
        .eval("return [...document.querySelectorAll('#allocation-table [data-allocation] td:nth-child(4)')].map(td => td.textContent)")
        .await;
    assert_eq!(models, json!(["gtp-4o (unpriced)", "remote_heavyweight"]), "no `/gtp-4o` for a model with no provider");
    // A reservation that named no tier holds room under every tier's limits, and says so.
    let open = browser.eval("return modelCell({tier: 'remote_heavyweight', tier_open: true}).textContent").await;
    assert_eq!(open, json!("any tier"));
    assert_eq!(browser.eval("return document.querySelectorAll('#record-table [data-record]').length").await, 4);
    // A record names the task it was spent on (its context) apart from its kind of task: "Task:
    // default" for a record of task-123 read as if the task were lost.
    let records = browser
        .eval("return [[...document.querySelectorAll('#record-table th')].map(th => th.textContent), ...[...document.querySelectorAll('#record-table [data-record]')].map(tr => [tr.children[3].textContent, tr.children[4].textContent])]")
        .await;
    assert_eq!(
        records,
        json!([
            ["Time", "Model", "Component", "Context", "Task type", "Input", "Output", "Cost", "Position"],
            ["—", "default"],
            ["task-123", "coding"],
            ["task-123", "coding"],
            ["task-123", "coding"]
        ])
    );
    let usage = get(&app, &read, "/api/usage?days=7").await;
    assert_eq!(
        plain(
            browser
                .eval("return document.querySelector('[data-field=total_cost]').textContent")
                .await
                .as_str()
                .unwrap()
        ),
        text(&usage["totals"]["cost"])
    );
    browser
        .wait_for(
            "the live connection",
            "return document.querySelector('#live').dataset.state === 'live'",
            Duration::from_secs(10),
        )
        .await;

    // Keyboard: a bar of the chart takes the focus and then shows its exact figures.
    let tip = browser
        .eval("const b = document.querySelector('.bucket[tabindex=\"0\"]'); b.focus(); const t = document.querySelector('#tip'); return t.hidden ? null : t.textContent")
        .await;
    let tip = tip.as_str().expect("a focused bar shows its figures");
    assert!(tip.contains(&format!("${}", text(&usage["totals"]["cost"]))) && tip.contains("openai"), "{tip}");
    browser.eval("document.activeElement.blur()").await;

    std::fs::create_dir_all(screenshots()).unwrap();
    browser.screenshot(&screenshots().join("dashboard-1280.png")).await;
    browser.color_scheme("dark").await;
    browser.screenshot(&screenshots().join("dashboard-1280-dark.png")).await;
    browser.color_scheme("light").await;

    // A record over REST moves its gauge and the spend total, without a reload.
    browser.eval("window.notReloaded = true").await;
    let policy =
        status["windows"].as_array().unwrap().iter().find(|w| w["scope"] == "provider=openai").unwrap().clone();
    let gauge_cost = format!(
        "return document.querySelector('.gauge[data-policy=\"{}\"] [data-field=used_cost]').textContent",
        text(&policy["policy_id"])
    );
    // Records an OpenAI call of `cost` over REST; the openai window's used cost as the API says it then.
    let spend = |cost: &'static str| {
        let (app, read, policy_id) = (&app, &read, policy["policy_id"].clone());
        async move {
            let call = json!({"provider": "openai", "model": "gpt-4o", "component": "codex",
                              "input_tokens": 10, "output_tokens": 10, "cost": cost});
            post(app, ADMIN, "/api/usage", call).await;
            let status = get(app, read, "/api/status").await;
            let window = status["windows"].as_array().unwrap().iter().find(|w| w["policy_id"] == policy_id).cloned();
            window.expect("the openai window")["used_cost"].clone()
        }
    };
    let before = browser.eval(&gauge_cost).await;
    let posted = Instant::now();
    let expected = spend("0.25").await;
    assert_ne!(plain(before.as_str().unwrap()), text(&expected));
    browser
        .wait_for(
            "the gauge's new figure",
            &format!("{gauge_cost}.replace(/[$,]/g, '') === '{}'", text(&expected)),
            Duration::from_secs(5),
        )
        .await;
    println!("gauge moved {} ms after the REST answer", posted.elapsed().as_millis());
    let usage = get(&app, &read, "/api/usage?days=7").await;
    browser
        .wait_for(
            "the new spend total",
            &format!(
                "return document.querySelector('[data-field=total_cost]').textContent.replace(/[$,]/g, '') === '{}'",
                text(&usage["totals"]["cost"])
            ),
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(browser.eval("return window.notReloaded === true").await, true, "the page reloaded");
    // That total is `days=7`'s: the range says so ("Last week" read as the calendar week before this one).
    let ranges =
        browser.eval("return [...document.querySelectorAll('#spend-range option')].map(o => o.textContent)").await;
    assert_eq!(ranges, json!(["Last 24 hours", "Last 7 days", "Last 30 days", "Custom…"]));
    assert_eq!(
        browser.eval("return document.querySelector('#spend-range').selectedOptions[0].textContent").await,
        "Last 7 days"
    );
    assert_gauges_match(&browser.eval(GAUGES).await, &get(&app, &read, "/api/status").await);

    // A dropped connection comes back by itself, and what happened meanwhile shows.
    browser.eval("state.socket.close()").await;
    let expected = spend("0.125").await;
    browser
        .wait_for(
            "the figure written while disconnected",
            &format!("{gauge_cost}.replace(/[$,]/g, '') === '{}'", text(&expected)),
            Duration::from_secs(10),
        )
        .await;
    browser
        .wait_for(
            "the live connection again",
            "return document.querySelector('#live').dataset.state === 'live'",
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(browser.eval("return window.notReloaded === true").await, true, "the page reloaded");

    // Explain: the window's events, and that they agree with its account.
    browser.click(&format!(".gauge[data-policy=\"{}\"] button", text(&policy["policy_id"]))).await;
    let explained = browser
        .wait_for("the explanation", "return document.querySelector('#explain-body').textContent.includes('They agree.') && document.querySelector('#explain-body').textContent", Duration::from_secs(10))
        .await;
    assert!(explained.as_str().unwrap().contains("UsageRecorded"), "{explained}");
    // The limit's opening balance is named as one, with the command that lists it record by record.
    assert!(
        explained.as_str().unwrap().contains("PolicySet (opening balance)")
            && explained
                .as_str()
                .unwrap()
                .contains(&format!("budget explain {} --opening", text(&policy["policy_id"]))),
        "{explained}"
    );
    browser.click("#explain-close").await;

    // 390 px: nothing wider than the screen.
    browser.resize(390, 844).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let overflow = browser.eval("return document.documentElement.scrollWidth").await;
    assert!(overflow.as_u64().unwrap() <= 390, "the page is {overflow} px wide at 390 px");
    // An alert's message takes its card's width, under the badge, not a column squeezed beside it.
    let share = browser
        .eval("const li = document.querySelector('#alert-list .alert'); return li.querySelector('.message').getBoundingClientRect().width / li.clientWidth")
        .await;
    assert!(share.as_f64().unwrap() > 0.8, "the message has {share} of its card's width at 390 px");
    browser.screenshot(&screenshots().join("dashboard-390.png")).await;
    browser.resize(1280, 900).await;

    // An admin key acknowledges from the page; the API has it, by that key.
    browser.click("#sign-out").await;
    browser
        .wait_for("the sign-in form again", "return !document.querySelector('#sign-in').hidden", Duration::from_secs(5))
        .await;
    browser.type_into("#api-key", &admin).await;
    browser.click("#sign-in-form button[type=submit]").await;
    let button = format!("#alert-list [data-alert=\"{alert_id}\"] button");
    browser
        .wait_for(
            "an Acknowledge button",
            &format!("return document.querySelector('{button}') !== null"),
            Duration::from_secs(15),
        )
        .await;
    browser.click(&button).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alert = get(&app, &read, &format!("/api/alerts/{alert_id}")).await;
        if alert["acknowledged"] == true {
            assert_eq!(alert["acknowledged_by"], "ops");
            break;
        }
        assert!(Instant::now() < deadline, "the alert was not acknowledged: {alert}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser
        .wait_for(
            "the alert gone from the open list",
            &format!("return document.querySelector('#alert-list [data-alert=\"{alert_id}\"]') === null"),
            Duration::from_secs(5),
        )
        .await;
}

/// An admin acknowledges every open alert at once, changes a limit and its type from its card or
/// disables it, and sets a new one; a wrong amount is refused on the page with what to write, and
/// nothing is sent. A read key is offered none of it.
#[tokio::test]
async fn an_admin_acknowledges_all_and_sets_changes_and_disables_limits() {
    let app = spawn_app_with(|s| s.security.admin_key = Some(ADMIN.into())).await;
    let read = create_key(&app, "read", "wallboard").await;
    let set_limit = |body: Value| {
        let app = &app;
        async move { text(&post(app, ADMIN, "/api/policies", body).await["policy"]["policy_id"]) }
    };
    let daily =
        set_limit(json!({"period": "daily", "cost_limit": 1.0, "provider": "openai", "policy_type": "hard_limit"}))
            .await;
    // A per-session limit has no window yet: its card is the waiting kind, and changes all the same.
    let session =
        set_limit(json!({"period": "per_session", "token_limit": 20000, "component": "scribe", "policy_type": "warn"}))
            .await;
    let policy = |id: String| {
        let app = &app;
        async move { get(app, ADMIN, &format!("/api/policies/{id}")).await }
    };

    let browser = Browser::start(1280, 900).await;
    browser.goto(&app.url("/")).await;
    // A codex call on openai of `cost` dollars.
    let spend = |cost: &'static str| {
        let app = &app;
        let call = json!({"provider": "openai", "model": "gpt-4o", "component": "codex",
                          "input_tokens": 10, "output_tokens": 10, "cost": cost});
        async move { post(app, ADMIN, "/api/usage", call).await }
    };
    // $1 of openai's $1 limit: three alerts (80 %, 95 %, exceeded), for "Acknowledge all".
    let spent = spend("1").await;
    let open = get(&app, ADMIN, &format!("/api/alerts?min_position={}", spent["position"])).await;
    assert_eq!(open["alerts"].as_array().unwrap().len(), 3, "{open}");
    sign_in(&browser, &read).await;
    assert_eq!(browser.eval("return document.querySelectorAll('.gauge').length").await, 2);
    assert_eq!(browser.eval("return document.querySelector('#alerts-ack-all').hidden").await, true);
    // A window with both limits runs out by the first of them: here its tokens, in an hour, while
    // its dollars would last past the window's end (it looked at the dollars only).
    let eta = browser
        .eval(
            "const t0 = Date.parse('2026-01-05T00:00:00Z'); return projection({state: 'ok',
             window_start: '2026-01-05T00:00:00Z', window_end: '2026-01-06T00:00:00Z',
             cost_limit: 100, used_cost: 1, reserved_cost: 0, token_limit: 1000, used_tokens: 500, reserved_tokens: 0},
             t0 + 3600e3)",
        )
        .await;
    assert_eq!(eta, "At this rate, exhausted in 1 h 0 min (2026-01-05 02:00 UTC).");
    // A log begun at 10:00 inside the window: $10 in its first hour runs out the $100 by 20:00 (over
    // the eleven hours since the window's start, it would last).
    let eta = browser
        .eval(
            "const t0 = Date.parse('2026-01-05T00:00:00Z'); return projection({state: 'ok',
             window_start: '2026-01-05T00:00:00Z', window_end: '2026-01-06T00:00:00Z', rate_since: '2026-01-05T10:00:00Z',
             cost_limit: 100, used_cost: 10, reserved_cost: 0, token_limit: null, used_tokens: 0, reserved_tokens: 0},
             t0 + 11 * 3600e3)",
        )
        .await;
    assert_eq!(eta, "At this rate, exhausted in 9 h 0 min (2026-01-05 20:00 UTC).");
    assert_eq!(
        browser.eval("return document.querySelectorAll('[data-action=change]').length").await,
        0,
        "a read key is offered no change"
    );
    assert_eq!(browser.eval("return document.querySelector('#new-limit').hidden").await, true);
    browser.click("#sign-out").await;
    browser.eval("document.body.dataset.ready = ''").await;
    sign_in(&browser, ADMIN).await;

    // Every open alert at once: a second click does it.
    let all = browser
        .wait_for(
            "Acknowledge all",
            "const b = document.querySelector('#alerts-ack-all'); return !b.hidden && b.textContent",
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(all, "Acknowledge all 3");
    browser.click("#alerts-ack-all").await;
    assert_eq!(
        browser.eval("return document.querySelector('#alerts-ack-all').textContent").await,
        "Click again to acknowledge 3 alerts"
    );
    assert_eq!(get(&app, ADMIN, "/api/alerts").await["alerts"].as_array().unwrap().len(), 3, "not yet");
    // The admin's buttons, the armed one at its longest, still fit a 390 px screen.
    browser.resize(390, 844).await;
    browser.wait_for("a 390 px window", "return window.innerWidth <= 400", Duration::from_secs(5)).await;
    let width = browser.eval("return document.documentElement.scrollWidth").await;
    assert!(width.as_u64().unwrap() <= 390, "the page is {width} px wide at 390 px");
    browser.resize(1280, 900).await;
    browser.wait_for("a 1280 px window", "return window.innerWidth > 1000", Duration::from_secs(5)).await;
    // Back at the top, where the cards are clear of the sticky header.
    browser.eval("window.scrollTo(0, 0)").await;
    browser.click("#alerts-ack-all").await;
    browser
        .wait_for(
            "no open alerts",
            "return document.querySelector('#alert-list').textContent === 'No open alerts.' && document.querySelector('#alerts-ack-all').hidden",
            Duration::from_secs(10),
        )
        .await;
    let acknowledged = get(&app, ADMIN, "/api/alerts?acknowledged=true").await;
    assert_eq!(acknowledged["alerts"].as_array().unwrap().len(), 3, "{acknowledged}");
    assert_eq!(get(&app, ADMIN, "/api/alerts").await["alerts"].as_array().unwrap().len(), 0);

    // A cost limit: a wrong amount first, then $2.50 as a warning.
    browser.click(&format!(".gauge[data-policy=\"{daily}\"] [data-action=change]")).await;
    browser.wait_for("the change dialog", "return document.querySelector('#limit').open", Duration::from_secs(5)).await;
    assert_eq!(browser.eval("return document.querySelector('#limit-cost').value").await, "1");
    assert_eq!(browser.eval("return document.querySelector('#limit-type').value").await, "hard_limit");
    assert_eq!(browser.eval("return document.querySelector('#limit-tokens')").await, Value::Null);
    let events = app.events().await;
    browser.eval("document.querySelector('#limit-cost').value = ''").await;
    browser.type_into("#limit-cost", "two").await;
    browser.click("#limit-body button[type=submit]").await;
    let error = browser
        .wait_for("an error", "return document.querySelector('#limit-error').textContent", Duration::from_secs(5))
        .await;
    assert!(error.as_str().unwrap().contains("“two” is not an amount"), "{error}");
    std::fs::create_dir_all(screenshots()).unwrap();
    browser.screenshot(&screenshots().join("dashboard-change-limit.png")).await;
    assert_eq!(app.events().await, events, "nothing was sent");
    browser.eval("document.querySelector('#limit-cost').value = ''").await;
    browser.type_into("#limit-cost", "$2.50").await;
    browser.eval("document.querySelector('#limit-type').value = 'warn'").await;
    browser.click("#limit-body button[type=submit]").await;
    let note = browser
        .wait_for(
            "the change's note",
            "return !document.querySelector('#limit').open && document.querySelector('#limits-note').textContent",
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(note, "The daily limit on provider=openai is now $2.5 (warn).");
    let changed = policy(daily.clone()).await;
    assert_eq!((changed["cost_limit"].as_f64(), changed["type"].as_str()), (Some(2.5), Some("warn")), "{changed}");
    browser
        .wait_for(
            "the card's new limit",
            &format!(
                "return document.querySelector('.gauge[data-policy=\"{daily}\"] [data-field=cost_limit]').textContent === '$2.5'"
            ),
            Duration::from_secs(5),
        )
        .await;

    // A token limit with thousands separators, on the waiting card.
    browser.click(&format!(".gauge[data-policy=\"{session}\"] [data-action=change]")).await;
    browser.wait_for("the change dialog", "return document.querySelector('#limit').open", Duration::from_secs(5)).await;
    browser.eval("document.querySelector('#limit-tokens').value = ''").await;
    browser.type_into("#limit-tokens", "25,000").await;
    browser.click("#limit-body button[type=submit]").await;
    browser
        .wait_for("the dialog closed", "return !document.querySelector('#limit').open", Duration::from_secs(5))
        .await;
    assert_eq!(policy(session.clone()).await["token_limit"], 25000);

    // Disabling takes a second click, which the first one asks for.
    browser.click(&format!(".gauge[data-policy=\"{daily}\"] [data-action=change]")).await;
    browser.wait_for("the change dialog", "return document.querySelector('#limit').open", Duration::from_secs(5)).await;
    browser.click("#limit-disable").await;
    let asked = browser.eval("return document.querySelector('#limit-disable').textContent").await;
    assert!(asked.as_str().unwrap().starts_with("Click again to disable"), "{asked}");
    assert_eq!(policy(daily.clone()).await["enabled"], true);
    browser.click("#limit-disable").await;
    browser
        .wait_for(
            "the card gone",
            &format!("return document.querySelector('.gauge[data-policy=\"{daily}\"]') === null"),
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(policy(daily.clone()).await["enabled"], false);
    let note = browser.eval("return document.querySelector('#limits-note').textContent").await;
    assert!(note.as_str().unwrap().ends_with(&format!("budget policies enable {daily}")), "{note}");

    // A new limit: none given is refused on the page; a budget name the API refuses says why; then a
    // daily hard limit of $3 on codex, whose window counts the two records already spent today.
    spend("0.5").await;
    browser.click("#new-limit").await;
    browser
        .wait_for("the new-limit dialog", "return document.querySelector('#limit').open", Duration::from_secs(5))
        .await;
    let events = app.events().await;
    browser.click("#limit-body button[type=submit]").await;
    let error = browser
        .wait_for("an error", "return document.querySelector('#limit-error').textContent", Duration::from_secs(5))
        .await;
    assert_eq!(error, "Give a cost limit, a token limit, or both.");
    assert_eq!(app.events().await, events, "nothing was sent");
    browser.type_into("#new-cost", "3").await;
    browser.type_into("#new-budget", &"x".repeat(130)).await;
    browser.click("#limit-body button[type=submit]").await;
    let error = browser
        .wait_for(
            "the API's error",
            "const t = document.querySelector('#limit-error').textContent; return t.startsWith('Not set:') && t",
            Duration::from_secs(5),
        )
        .await;
    assert!(error.as_str().unwrap().contains("budget names are 1 to 128"), "{error}");
    browser.eval("document.querySelector('#new-budget').value = 'default'").await;
    browser.type_into("#new-component", "codex").await;
    browser.eval("document.querySelector('#new-type').value = 'hard_limit'").await;
    std::fs::create_dir_all(screenshots()).unwrap();
    browser.screenshot(&screenshots().join("dashboard-new-limit.png")).await;
    browser.click("#limit-body button[type=submit]").await;
    let note = browser
        .wait_for(
            "the new limit's note",
            "return !document.querySelector('#limit').open && document.querySelector('#limits-note').textContent.startsWith('Set ') && document.querySelector('#limits-note').textContent",
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(
        note,
        "Set a daily limit of $3 on component=codex in budget default (hard limit). Its current window counts what is already in it: $1.5 used in 2 records, $0 reserved."
    );
    let policies = get(&app, ADMIN, "/api/policies").await;
    let codex = policies["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["component"] == "codex")
        .cloned()
        .unwrap_or_else(|| panic!("the new policy: {policies}"));
    assert_eq!((codex["cost_limit"].as_f64(), codex["type"].as_str()), (Some(3.0), Some("hard_limit")), "{codex}");
    browser
        .wait_for(
            "the new limit's card",
            &format!("return document.querySelector('.gauge[data-policy=\"{}\"]') !== null", text(&codex["policy_id"])),
            Duration::from_secs(5),
        )
        .await;
}

/// An admin renames a budget from its heading (a name another budget has is refused with the API's
/// reason, and nothing changes) and archives it with a second click: its cards go, its limits stop
/// counting. A read key is offered neither.
#[tokio::test]
async fn an_admin_renames_and_archives_a_budget() {
    let app = spawn_app_with(|s| s.security.admin_key = Some(ADMIN.into())).await;
    let read = create_key(&app, "read", "wallboard").await;
    let lab = post(
        &app,
        ADMIN,
        "/api/policies",
        json!({"budget": "lab", "period": "daily", "cost_limit": 5.0, "timezone": "Europe/Berlin"}),
    )
    .await;
    let lab = text(&lab["policy"]["budget_id"]);
    post(&app, ADMIN, "/api/policies", json!({"period": "daily", "cost_limit": 20.0})).await;
    post(&app, ADMIN, "/api/budgets", json!({"name": "ops"})).await;
    let heading = format!(".budget[data-budget=\"{lab}\"] h3");
    let manage = format!(".budget[data-budget=\"{lab}\"] [data-action=manage]");

    let browser = Browser::start(1280, 900).await;
    browser.goto(&app.url("/")).await;
    sign_in(&browser, &read).await;
    assert_eq!(browser.eval(&format!("return document.querySelector('{heading}').textContent")).await, "Budget lab");
    // A day in Berlin is not the UTC day of the card beside it: the card says whose day it is.
    let kinds = browser.eval("return [...document.querySelectorAll('.gauge h4')].map(h => h.textContent)").await;
    assert_eq!(kinds, json!(["daily (Europe/Berlin) warn", "daily warn"]), "{kinds}");
    assert_eq!(
        browser.eval("return document.querySelectorAll('[data-action=manage]').length").await,
        0,
        "a read key is offered no change"
    );
    browser.click("#sign-out").await;
    browser.eval("document.body.dataset.ready = ''").await;
    sign_in(&browser, ADMIN).await;

    // A name another budget has: the API's reason, and nothing written.
    browser.click(&manage).await;
    browser
        .wait_for("the budget dialog", "return document.querySelector('#budget').open", Duration::from_secs(5))
        .await;
    assert_eq!(browser.eval("return document.querySelector('#budget-name').value").await, "lab");
    let events = app.events().await;
    browser.eval("document.querySelector('#budget-name').value = ''").await;
    browser.type_into("#budget-name", "ops").await;
    browser.click("#budget-body button[type=submit]").await;
    let error = browser
        .wait_for(
            "the API's error",
            "const t = document.querySelector('#budget-error').textContent; return t.startsWith('Not renamed:') && t",
            Duration::from_secs(5),
        )
        .await;
    assert!(error.as_str().unwrap().contains("a budget named `ops` already exists"), "{error}");
    assert_eq!(app.events().await, events, "nothing was written");

    // A new name: the refusal of the last one goes as it is typed (it read as this name's), the note
    // says so and the heading follows.
    browser.eval("document.querySelector('#budget-name').value = ''").await;
    browser.type_into("#budget-name", "research").await;
    assert_eq!(browser.eval("return document.querySelector('#budget-error').textContent").await, "");
    std::fs::create_dir_all(screenshots()).unwrap();
    browser.screenshot(&screenshots().join("dashboard-budget.png")).await;
    browser.click("#budget-body button[type=submit]").await;
    let note = browser
        .wait_for(
            "the rename's note",
            "return !document.querySelector('#budget').open && document.querySelector('#limits-note').textContent",
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(note, "Renamed budget lab to research.");
    assert_eq!(get(&app, ADMIN, &format!("/api/budgets/{lab}")).await["name"], "research");
    browser
        .wait_for(
            "the new heading",
            &format!("return document.querySelector('{heading}').textContent === 'Budget research'"),
            Duration::from_secs(5),
        )
        .await;

    // Archiving takes a second click, which the first one asks for.
    browser.click(&manage).await;
    browser
        .wait_for("the budget dialog", "return document.querySelector('#budget').open", Duration::from_secs(5))
        .await;
    browser.click("#budget-archive").await;
    assert_eq!(
        browser.eval("return document.querySelector('#budget-archive').textContent").await,
        "Click again to archive: its 1 limit stops counting and limiting, for good"
    );
    assert_eq!(get(&app, ADMIN, &format!("/api/budgets/{lab}")).await["active"], true, "not yet");
    browser.click("#budget-archive").await;
    browser
        .wait_for(
            "the budget's cards gone",
            &format!("return document.querySelector('.budget[data-budget=\"{lab}\"]') === null"),
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(get(&app, ADMIN, &format!("/api/budgets/{lab}")).await["active"], false);
    assert_eq!(
        browser.eval("return document.querySelector('#limits-note').textContent").await,
        "Archived budget research: its 1 limit no longer counts or limits anything; the log keeps what it counted."
    );
    assert_eq!(browser.eval("return document.querySelectorAll('.budget').length").await, 1, "default stays");
}

/// A per-task limit's cards are its ten most recent tasks; the page says how many there are in all.
#[tokio::test]
async fn a_per_task_limit_says_how_many_task_windows_it_has() {
    let app = spawn_app_with(|s| s.security.admin_key = Some(ADMIN.into())).await;
    let created =
        post(&app, ADMIN, "/api/policies", json!({"period": "per_task", "type": "warn", "cost_limit": 1.0})).await;
    let records: Vec<Value> = (0..12)
        .map(|i| {
            json!({"provider": "openai", "model": "m", "component": "c", "context_id": format!("t-{i}"),
                   "input_tokens": 1, "output_tokens": 0, "cost": "0.01"})
        })
        .collect();
    post(&app, ADMIN, "/api/usage/batch", json!({ "records": records })).await;
    let browser = Browser::start(1280, 900).await;
    browser.goto(&app.url("/")).await;
    sign_in(&browser, ADMIN).await;
    let note = browser
        .wait_for(
            "the note of the windows left out",
            "const p = document.querySelector('.more-windows'); return p && p.textContent",
            Duration::from_secs(10),
        )
        .await;
    let id = text(&created["policy"]["policy_id"]);
    assert_eq!(
        note,
        format!("per task warn · all usage: the 10 most recent of 12 task windows; one task's: budget explain {id} --window task:ID"),
        "{note}"
    );
    assert_eq!(browser.eval("return document.querySelectorAll('.gauge').length").await, 10);
}

/// A misspelled model's alert shows, under its message, the model it misspells and the commands that
/// price its records at that model's price (the API's `hint`); a new limit's notes; a price's model
/// retirement day.
#[tokio::test]
async fn a_misspelled_models_alert_shows_its_hint() {
    let app = spawn_app_with(|s| s.security.admin_key = Some(ADMIN.into())).await;
    let price = json!({"provider": "openai", "model": "gpt-4o", "input": "2.5", "output": "10",
                       "effective_from": "2024-01-01T00:00:00Z"});
    post(&app, ADMIN, "/api/prices", price).await;
    let record =
        json!({"provider": "openai", "model": "gtp-4o", "component": "c", "input_tokens": 1, "output_tokens": 0});
    post(&app, ADMIN, "/api/usage", record).await;
    let browser = Browser::start(1280, 900).await;
    browser.goto(&app.url("/")).await;
    sign_in(&browser, ADMIN).await;
    let hint = browser
        .wait_for(
            "the alert's hint",
            "const p = document.querySelector('#alert-list .alert .fix'); return p && p.textContent",
            Duration::from_secs(10),
        )
        .await;
    let hint = text(&hint);
    assert!(hint.starts_with("did you mean openai/gpt-4o? "), "{hint}");
    assert!(hint.contains("budget prices set openai gtp-4o --input 2.5 --output 10 --effective-from "), "{hint}");

    // A new limit on a component no call named says so, as `budget set_limit` does.
    browser.click("#new-limit").await;
    browser
        .wait_for("the new-limit dialog", "return document.querySelector('#limit').open", Duration::from_secs(5))
        .await;
    browser.type_into("#new-cost", "3").await;
    browser.type_into("#new-component", "cc").await;
    browser.click("#limit-body button[type=submit]").await;
    let note = browser
        .wait_for(
            "the new limit's note",
            "const t = document.querySelector('#limits-note').textContent; return t.startsWith('Set ') && t",
            Duration::from_secs(5),
        )
        .await;
    let note = text(&note);
    assert!(
        note.ends_with(" Note: no call in the last 90 days named component `cc` (did you mean `c`? those seen: c); if no call names it, this limit counts nothing."),
        "{note}"
    );

    // The price book says the day a model's provider retires it (the bundled table's).
    post(&app, ADMIN, "/api/prices/update", json!({})).await;
    browser.type_into("#price-search", "gemini-1.5-flash").await;
    let row = browser
        .wait_for(
            "gemini-1.5-flash's price",
            "const r = [...document.querySelectorAll('#price-table tr')].find((r) => r.textContent.includes('gemini-1.5-flash')); \
             return r && [...r.cells].map((c) => c.textContent)",
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(row[6], "2025-09-24", "{row}");
    // Where the provider's day was not found, the day the table found the model gone, said as such.
    browser
        .eval("const i = document.querySelector('#price-search'); i.value = '405B'; i.dispatchEvent(new Event('input')); return true")
        .await;
    let row = browser
        .wait_for(
            "Llama 3.1 405B's price",
            "const r = [...document.querySelectorAll('#price-table tr')].find((r) => r.textContent.includes('405B')); \
             return r && [...r.cells].map((c) => c.textContent)",
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(row[6], "by 2026-12-04", "{row}");
}
