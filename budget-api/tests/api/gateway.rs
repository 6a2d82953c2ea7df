//! Gateway mode: the official SDKs through `/v1` against a fake provider; a storm of concurrent calls
//! against a hard limit; upstreams that are down, failing or slow; provider secrets kept in.

use std::time::Duration;

use budget_api::gateway::upstreams::Upstreams;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::{json, Value};

use crate::fake_upstream::{FakeUpstream, ANTHROPIC_SECRET, OPENAI_SECRET};
use crate::helpers::{spawn_app_with, TestApp};

const ADMIN: &str = "test-bootstrap-admin-key-0123456789abcdef";

/// The service with the bundled prices, an admin key, and the fake as its `openai` and `anthropic`.
async fn gateway_app() -> (TestApp, FakeUpstream) {
    let fake = FakeUpstream::start().await;
    let upstreams = fake.upstreams_json();
    let app = spawn_app_with(move |s| {
        s.bundled_prices = true;
        s.security.admin_key = Some(ADMIN.into());
        s.gateway.upstreams = Upstreams::parse(&upstreams, &|name| match name {
            "FAKE_OPENAI_KEY" => Some(OPENAI_SECRET.into()),
            "FAKE_ANTHROPIC_KEY" => Some(ANTHROPIC_SECRET.into()),
            _ => None,
        })
        .unwrap();
    })
    .await;
    let price = json!({"provider": "openai", "model": "text-embedding-3-small", "input": "0.02", "output": "0"});
    let r = app.http.post(app.url("/api/prices")).bearer_auth(ADMIN).json(&price).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    (app, fake)
}

/// A write key bound to `component`.
async fn key_for(app: &TestApp, component: &str) -> String {
    let body = json!({"scope": "write", "component": component, "name": component});
    let r = app.http.post(app.url("/api/keys")).bearer_auth(ADMIN).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    r.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_string()
}

async fn hard_limit(app: &TestApp, usd: &str) {
    let policy = json!({"period": "daily", "type": "hard_limit", "cost_limit": usd});
    let r = app.http.post(app.url("/api/policies")).bearer_auth(ADMIN).json(&policy).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

/// The usage records in the log, in order.
async fn records(app: &TestApp) -> Vec<Value> {
    let client = app.db.pool.get().await.unwrap();
    let rows = client
        .query("SELECT payload::json FROM events WHERE event_type = 'UsageRecorded' ORDER BY position", &[])
        .await
        .unwrap();
    rows.iter().map(|r| r.get::<_, Value>(0)).collect()
}

/// (active allocations, pending cost over every account): both 0 once every call is settled.
async fn pending(app: &TestApp) -> (i64, Decimal) {
    let client = app.db.pool.get().await.unwrap();
    let active: i64 =
        client.query_one("SELECT count(*) FROM allocations WHERE state = 'active'", &[]).await.unwrap().get(0);
    let pending: Decimal =
        client.query_one("SELECT coalesce(sum(pending_cost), 0) FROM policy_accounts", &[]).await.unwrap().get(0);
    (active, pending)
}

/// The last usage record, once its call is settled: nothing active, nothing pending (waits up to 10 s).
async fn settled(app: &TestApp) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let (Some(r), (0, pending)) = (records(app).await.pop(), pending(app).await) {
            if pending.is_zero() {
                return r;
            }
        }
        assert!(std::time::Instant::now() < deadline, "the call was never settled: {:?}", pending(app).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run_sdks(app: &TestApp, key: &str, mode: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/gateway_sdks.py");
    let output =
        tokio::process::Command::new("python3").args([script, &app.address, key, mode]).kill_on_drop(true).output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("the SDK script finishes")
        .expect("python3 runs (CI installs the openai and anthropic packages)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test]
async fn the_official_sdks_call_through_the_gateway_and_each_call_is_a_usage_record() {
    let (app, fake) = gateway_app().await;
    let key = key_for(&app, "sdk-app").await;
    let out = run_sdks(&app, &key, "calls").await;

    // What the SDKs got: the fake's answers and usage, with Budget's figures in the headers.
    assert_eq!(out["chat"]["content"], "Hello from the fake");
    assert_eq!(
        (out["chat"]["usage"]["prompt_tokens"].as_i64(), out["chat"]["usage"]["completion_tokens"].as_i64()),
        (Some(9), Some(50))
    );
    // gpt-4o at $2.50 / $10 per 1M: 9 × 0.0000025 + 50 × 0.00001.
    assert_eq!(out["chat"]["cost"], "0.0005225");
    assert_eq!(out["chat"]["remaining"], "unlimited");
    assert_eq!(out["stream"]["text"], "Hello from the fake");
    assert_eq!(out["stream_usage"]["completion_tokens"], 30, "asked for, the usage chunk is forwarded");
    assert_eq!(
        (out["embeddings"]["n"].as_i64(), out["embeddings"]["usage"]["prompt_tokens"].as_i64()),
        (Some(2), Some(5))
    );
    assert_eq!(out["messages"]["text"], "Hello from the fake");
    assert_eq!(out["messages"]["usage"]["output_tokens"], 60);
    assert_eq!(out["messages_stream"]["text"], "Hello from the fake");
    let models: Vec<&str> = out["models"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    assert!(
        models.contains(&"gpt-4o") && models.contains(&"claude-sonnet-4") && models.contains(&"text-embedding-3-small")
    );
    assert!(!models.iter().any(|m| m.starts_with("gemini")), "models without an upstream are not listed: {models:?}");

    // Each call is an ordinary usage record with the upstream's token counts (Anthropic's cache reads
    // counted as part of the input), the key's component, settled against its reservation.
    let records = records(&app).await;
    let seen: Vec<(String, i64, i64, i64)> = records
        .iter()
        .map(|r| {
            assert_eq!(r["component"], "sdk-app");
            assert!(r["settlement"]["allocation_id"].is_string(), "settled against its reservation: {r}");
            assert_eq!(r["metadata"]["usage_source"], "upstream");
            let t = |f: &str| r[f].as_i64().unwrap_or(0);
            (r["model"].as_str().unwrap().to_string(), t("input_tokens"), t("cached_input_tokens"), t("output_tokens"))
        })
        .collect();
    let expected = [
        ("gpt-4o", 9, 0, 50),
        ("gpt-4o", 6, 0, 40),
        ("gpt-4o", 6, 0, 30),
        ("text-embedding-3-small", 5, 0, 0),
        ("claude-sonnet-4", 9, 4, 60),
        ("claude-sonnet-4", 5, 2, 30),
    ];
    let expected: Vec<(String, i64, i64, i64)> =
        expected.iter().map(|(m, a, b, c)| (m.to_string(), *a, *b, *c)).collect();
    assert_eq!(seen, expected);
    assert_eq!(records[0]["cost"].to_string(), "0.0005225");
    assert_eq!(pending(&app).await, (0, Decimal::ZERO), "every reservation was settled and released");
    // The first call's reservation: its 50-token cap and its prompt counted with gpt-4o's tokenizer
    // (9 tokens as billed; the bound adds the JSON around them), well below the bytes bound (~150).
    let client = app.db.pool.get().await.unwrap();
    let reserved: i64 = client
        .query_one("SELECT tokens_allocated FROM allocations ORDER BY created_at LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    assert!((50 + 9..50 + 80).contains(&reserved), "reserved {reserved}");

    // The fake got the provider secrets, never the Budget key; no answer or event carries a secret.
    let requests = fake.seen.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 6);
    assert!(requests.iter().all(|(_, credential, _)| !credential.contains(&key)));
    let client = app.db.pool.get().await.unwrap();
    let leaked: i64 = client
        .query_one(
            "SELECT count(*) FROM events WHERE payload::text LIKE '%' || $1 || '%' OR metadata::text LIKE '%' || $1 || '%'
                 OR payload::text LIKE '%' || $2 || '%' OR metadata::text LIKE '%' || $2 || '%'",
            &[&OPENAI_SECRET, &ANTHROPIC_SECRET],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leaked, 0);
    let answers = out.to_string();
    assert!(!answers.contains(OPENAI_SECRET) && !answers.contains(ANTHROPIC_SECRET));
}

#[tokio::test]
async fn refused_calls_get_402_in_each_sdks_error_shape_and_are_not_retried() {
    let (app, fake) = gateway_app().await;
    hard_limit(&app, "0.001").await;
    let key = key_for(&app, "sdk-app").await;
    let out = run_sdks(&app, &key, "refused").await;

    let openai = &out["openai"];
    assert_eq!((openai["refused"].as_bool(), openai["status"].as_i64()), (Some(true), Some(402)), "{out}");
    assert_eq!(openai["body"]["code"], "budget_exceeded", "{out}");
    assert!(openai["body"]["message"].as_str().unwrap().contains("hard limit"), "{out}");
    let anthropic = &out["anthropic"];
    assert_eq!((anthropic["refused"].as_bool(), anthropic["status"].as_i64()), (Some(true), Some(402)), "{out}");
    assert_eq!(anthropic["body"]["type"], "error");
    assert_eq!(anthropic["body"]["error"]["type"], "billing_error", "{out}");
    // Retry-After: when the daily window resets.
    let retry: i64 = openai["retry_after"].as_str().unwrap().parse().unwrap();
    assert!((1..=86_401).contains(&retry), "{retry}");

    // Nothing was forwarded (the SDKs did not retry into the upstream either) or spent.
    assert!(fake.seen.requests.lock().unwrap().is_empty());
    assert!(records(&app).await.is_empty());
    assert_eq!(pending(&app).await, (0, Decimal::ZERO));
}

/// 500 concurrent calls, half of them streaming, against a $1 hard limit, with an upstream that bills
/// every answer at its cap: the settled total stays within the limit, every refusal is a 402 with the
/// refusal's body, and nothing is left reserved.
#[tokio::test]
async fn a_storm_of_concurrent_calls_never_overspends_a_hard_limit() {
    let (app, _fake) = gateway_app().await;
    hard_limit(&app, "1").await;
    let key = key_for(&app, "storm").await;
    let calls = (0..500).map(|i| {
        let (http, url, key) = (app.http.clone(), app.url("/v1/chat/completions"), key.clone());
        tokio::spawn(async move {
            let stream = i % 2 == 0;
            let body = json!({"model": "gpt-4o", "max_tokens": 2000, "stream": stream,
                              "messages": [{"role": "user", "content": format!("call number {i}")}]});
            let r = http.post(url).bearer_auth(key).json(&body).send().await.unwrap();
            let status = r.status().as_u16();
            let header = |name: &str| r.headers().get(name).map(|v| v.to_str().unwrap().to_string());
            let (retry, remaining) = (header("x-should-retry"), header("x-budget-remaining"));
            (status, stream, retry, remaining, r.text().await.unwrap())
        })
    });
    let (mut admitted, mut refused) = (0, 0);
    for call in futures_util::future::join_all(calls).await {
        let (status, stream, retry, remaining, body) = call.unwrap();
        if status == 200 {
            // Stream or not, the room left under the $1 limit.
            let room: Decimal = remaining.unwrap().parse().unwrap();
            assert!(room >= Decimal::ZERO && room <= dec!(1), "{room}");
        }
        match status {
            200 if stream => {
                assert!(body.contains("Hello") && body.trim_end().ends_with("data: [DONE]"), "{body}");
                assert!(body.contains(": x-budget-cost: 0.02"), "the settled cost comes before [DONE]: {body}");
                admitted += 1;
            }
            200 => admitted += 1,
            402 => {
                let body: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
                assert_eq!(retry.as_deref(), Some("false"));
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(admitted + refused, 500);
    assert!(admitted >= 40 && refused >= 400, "admitted {admitted}, refused {refused}");

    let records = records(&app).await;
    assert_eq!(records.len(), admitted, "one record per answered call");
    let total: Decimal = records.iter().map(|r| r["cost"].to_string().parse::<Decimal>().unwrap()).sum();
    assert!(total <= dec!(1), "settled {total} under a $1 hard limit");
    assert!(records.iter().all(|r| r["output_tokens"] == 2000), "the upstream billed every cap");
    assert_eq!(pending(&app).await, (0, Decimal::ZERO), "nothing is left pending");
    // Every account is still the fold of the log (reservations, settlements and releases).
    let replay = app.http.post(app.url("/api/replay")).bearer_auth(ADMIN).json(&json!({})).send().await.unwrap();
    let replay = replay.text().await.unwrap();
    let done: Value = serde_json::from_str(replay.lines().last().unwrap()).unwrap();
    assert_eq!(done["differences"], 0, "{replay}");
    eprintln!("storm: {admitted} admitted, {refused} refused, settled ${total} of $1");
}

#[tokio::test]
async fn an_upstream_down_failing_or_slow_gets_its_error_shape_and_the_reservation_back() {
    let (app, fake) = gateway_app().await;
    let key = key_for(&app, "sdk-app").await;
    let call = |path: &'static str, body: Value| {
        let (http, url, key) = (app.http.clone(), app.url(path), key.clone());
        async move {
            let r = http.post(url).bearer_auth(key).json(&body).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let chat = |model: &str| json!({"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});

    let (status, body) = call("/v1/chat/completions", chat("down/some-model")).await;
    assert_eq!(status, 502, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("`down` cannot be reached"), "{body}");
    let (status, body) = call("/v1/chat/completions", chat("openai/broken-model")).await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (500, Some("the fake provider broke")),
        "passed on as it came"
    );
    let (status, body) = call("/v1/messages", chat("anthropic/broken-model")).await;
    assert_eq!((status, body["error"]["type"].as_str()), (500, Some("api_error")));
    let started = std::time::Instant::now();
    let (status, body) = call("/v1/chat/completions", chat("openai/slow-model")).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["type"], "api_error");
    assert!(started.elapsed() < Duration::from_millis(2900), "gave up at the upstream's 1 s timeout");
    let (status, body) = call(
        "/v1/messages",
        json!({"model": "anthropic/slow-model", "max_tokens": 10, "stream": true,
        "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!((status, body["error"]["type"].as_str()), (504, Some("timeout_error")), "{body}");

    // Every reservation was released, nothing was recorded.
    let client = app.db.pool.get().await.unwrap();
    let states: Vec<String> = app.column("SELECT state FROM allocations ORDER BY created_at").await;
    assert_eq!(states, vec!["released"; 5]);
    assert!(records(&app).await.is_empty());
    assert_eq!(pending(&app).await, (0, Decimal::ZERO));

    // Calls that cannot be routed say what to do, in the API's shape, and reserve nothing.
    let (status, body) = call("/v1/chat/completions", chat("no-such-model")).await;
    assert_eq!(status, 404);
    assert!(body["error"]["message"].as_str().unwrap().contains("call it as provider/model"), "{body}");
    assert!(!body["error"]["message"].as_str().unwrap().contains("did you mean"), "{body}");
    // A typo of a priced model is answered with the name it misspells.
    let (status, body) = call("/v1/chat/completions", chat("gtp-4o-mini")).await;
    assert_eq!(status, 404);
    assert!(body["error"]["message"].as_str().unwrap().contains("; did you mean `gpt-4o-mini`?"), "{body}");
    let (status, body) = call("/v1/chat/completions", chat("claude-sonnet-4")).await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("call /v1/messages"), "{body}");
    let (status, body) = call("/v1/messages", json!({"messages": []})).await;
    assert_eq!((status, body["type"].as_str()), (400, Some("error")), "{body}");
    assert_eq!(client.query_one("SELECT count(*) FROM allocations", &[]).await.unwrap().get::<_, i64>(0), 5);

    // No answer named a provider secret.
    let requests = fake.seen.requests.lock().unwrap().clone();
    assert!(requests.iter().all(|(_, c, _)| c.contains(OPENAI_SECRET) || c.contains(ANTHROPIC_SECRET) || c.is_empty()));
}

/// A client that hangs up mid-stream: the gateway reads the upstream to its end and settles what it
/// billed, and nothing stays reserved.
#[tokio::test]
async fn a_client_that_hangs_up_mid_stream_is_settled_at_what_the_upstream_billed() {
    let (app, fake) = gateway_app().await;
    let key = key_for(&app, "sdk-app").await;
    let body = json!({"model": "openai/long-model", "max_tokens": 700, "stream": true,
                      "messages": [{"role": "user", "content": "a long answer please"}]});
    let mut r = app.http.post(app.url("/v1/chat/completions")).bearer_auth(&key).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers().contains_key("x-budget-reserved"));
    let first = r.chunk().await.unwrap().expect("a first event");
    assert!(String::from_utf8_lossy(&first).contains("chat.completion.chunk"));
    drop(r); // hang up: the upstream still has about 1.5 s of events to send

    // Settled: the record is in the log and the release that follows it (the same writer batch, or the
    // next one) has left nothing reserved.
    let record = settled(&app).await;
    assert_eq!((record["input_tokens"].as_i64(), record["output_tokens"].as_i64()), (Some(7), Some(700)), "{record}");
    assert_eq!(record["metadata"]["usage_source"], "upstream");
    assert_eq!(fake.seen.requests.lock().unwrap().len(), 1);
}

/// A key revoked while its call streams: the upstream bills the call, so it is settled and recorded
/// all the same (the write path refuses new work from a revoked key, not the record of admitted work);
/// the key's next call is refused.
#[tokio::test]
async fn a_call_whose_key_is_revoked_mid_stream_is_still_settled() {
    let (app, _fake) = gateway_app().await;
    let body = json!({"scope": "write", "component": "sdk-app"});
    let created: Value =
        app.http.post(app.url("/api/keys")).bearer_auth(ADMIN).json(&body).send().await.unwrap().json().await.unwrap();
    let (key, key_id) = (created["secret"].as_str().unwrap(), created["key_id"].as_str().unwrap());
    let call = json!({"model": "openai/long-model", "max_tokens": 700, "stream": true,
                      "messages": [{"role": "user", "content": "a long answer please"}]});
    let mut r = app.http.post(app.url("/v1/chat/completions")).bearer_auth(key).json(&call).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.chunk().await.unwrap().expect("a first event");
    let revoked =
        app.http.post(app.url(&format!("/api/keys/{key_id}/revoke"))).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(revoked.status().as_u16(), 200);
    while r.chunk().await.unwrap().is_some() {}

    let record = settled(&app).await;
    assert_eq!((record["input_tokens"].as_i64(), record["output_tokens"].as_i64()), (Some(7), Some(700)), "{record}");
    let again = app.http.post(app.url("/v1/chat/completions")).bearer_auth(key).json(&call).send().await.unwrap();
    assert_eq!(again.status().as_u16(), 401);
}

/// An upstream whose answer breaks off after it began may bill the call, and reported no usage: the
/// call is recorded at its reservation (the most it could cost), whole or streamed, and nothing stays
/// reserved.
#[tokio::test]
async fn an_answer_that_breaks_off_is_recorded_at_its_reservation() {
    let (app, _fake) = gateway_app().await;
    let key = key_for(&app, "sdk-app").await;
    let body = |stream: bool| {
        json!({"model": "openai/cut-model", "max_tokens": 10, "stream": stream,
                                     "messages": [{"role": "user", "content": "hi"}]})
    };
    let r = app.http.post(app.url("/v1/chat/completions")).bearer_auth(&key).json(&body(false)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 502);
    let answer: Value = r.json().await.unwrap();
    assert!(answer["error"]["message"].as_str().unwrap().contains("recorded at its reservation"), "{answer}");

    let r = app.http.post(app.url("/v1/chat/completions")).bearer_auth(&key).json(&body(true)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let streamed = r.text().await.unwrap();
    assert!(streamed.contains("Hel") && streamed.contains(": x-budget-cost: "), "{streamed}");

    let records = records(&app).await;
    assert_eq!(records.len(), 2);
    let allocations = app.db.pool.get().await.unwrap();
    for (record, reserved) in records
        .iter()
        .zip(allocations.query("SELECT tokens_allocated FROM allocations ORDER BY created_at", &[]).await.unwrap())
    {
        assert_eq!(record["metadata"]["usage_source"], "reservation", "{record}");
        let tokens = record["input_tokens"].as_i64().unwrap() + record["output_tokens"].as_i64().unwrap();
        assert_eq!((record["output_tokens"].as_i64(), tokens), (Some(10), reserved.get::<_, i64>(0)), "{record}");
    }
    assert_eq!(pending(&app).await, (0, Decimal::ZERO));
}

/// `X-Budget-Session-Id` puts a call in its session: its reservation holds room under the session's
/// per-session limits and its record counts there (the gateway knew no sessions, so a per-session
/// hard limit never saw its calls).
#[tokio::test]
async fn a_calls_session_header_puts_it_under_its_per_session_limit() {
    let (app, _fake) = gateway_app().await;
    let policy = json!({"period": "per_session", "type": "hard_limit", "cost_limit": "0.03"});
    let r = app.http.post(app.url("/api/policies")).bearer_auth(ADMIN).json(&policy).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let key = key_for(&app, "sessions").await;
    // Each call reserves and is billed $0.02 (2,000 output tokens of gpt-4o at $10 per 1M).
    let call = |session: Option<&'static str>| {
        let (http, url, key) = (app.http.clone(), app.url("/v1/chat/completions"), key.clone());
        async move {
            let body = json!({"model": "gpt-4o", "max_tokens": 2000, "messages": [{"role": "user", "content": "hi"}]});
            let mut request = http.post(url).bearer_auth(key).json(&body);
            if let Some(s) = session {
                request = request.header("X-Budget-Session-Id", s);
            }
            request.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(call(Some("s-1")).await, 200);
    assert_eq!(settled(&app).await["session_id"], "s-1");
    assert_eq!(call(Some("s-1")).await, 402, "$0.02 spent and $0.02 more would pass the session's $0.03");
    assert_eq!(call(Some("s-2")).await, 200, "another session has its own room");
    assert_eq!(call(None).await, 200, "a call in no session falls under no per-session limit");
}

#[tokio::test]
async fn a_call_past_a_soft_limit_carries_the_warning_and_a_cheaper_model() {
    let (app, _fake) = gateway_app().await;
    let policy = json!({"period": "daily", "type": "soft_limit", "cost_limit": "0.03", "provider": "openai"});
    let r = app.http.post(app.url("/api/policies")).bearer_auth(ADMIN).json(&policy).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let key = key_for(&app, "soft").await;
    // Each call reserves and is billed $0.02 (2,000 output tokens of gpt-4o at $10 per 1M).
    let call = |stream: bool| {
        let (http, url, key) = (app.http.clone(), app.url("/v1/chat/completions"), key.clone());
        async move {
            let body = json!({"model": "gpt-4o", "max_tokens": 2000, "stream": stream,
                              "messages": [{"role": "user", "content": "hi"}]});
            let r = http.post(url).bearer_auth(key).json(&body).send().await.unwrap();
            let warnings: Vec<String> =
                r.headers().get_all("x-budget-warning").iter().map(|v| v.to_str().unwrap().to_string()).collect();
            (r.status().as_u16(), warnings, r.text().await.unwrap())
        }
    };
    let (status, warnings, _) = call(false).await;
    assert_eq!((status, warnings.len()), (200, 0), "$0.02 of $0.03 is under the limit: {warnings:?}");
    for stream in [false, true] {
        let (status, warnings, body) = call(stream).await;
        assert_eq!(status, 200, "a soft limit does not refuse: {body}");
        assert!(
            warnings
                .iter()
                .any(|w| w.starts_with("daily soft_limit policy on provider=openai (budget default): with it, ")
                    && w.contains(" of $0.03 (")
                    && w.ends_with("over the limit")),
            "stream {stream}: {warnings:?}"
        );
        assert!(
            warnings.iter().any(|w| w.starts_with("soft limit: ")
                && w.contains("instead of $0.02")
                && w.contains(" for this call")),
            "stream {stream}: {warnings:?}"
        );
    }
}
