//! `budget bench --gateway`: what the gateway adds to a call. A fake provider runs in the bench's
//! process and answers at once; the same chat completion is sent to it directly and then through the
//! gateway (`budget start` with `BUDGET_UPSTREAMS` naming it), each open-loop at a fixed rate, and the
//! difference of their latency percentiles is the gateway's overhead: authenticate, route, reserve
//! (a writer commit), forward, settle and release (commits), answer.

use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::{json, Value};

use crate::stats::Latencies;

/// The fake provider's secret; it refuses calls without it, so the gateway's forwarding is checked too.
pub const FAKE_SECRET: &str = "sk-bench-fake-provider";

/// Starts the fake provider on a free port; returns its base URL (`…/v1`).
pub fn fake_provider() -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/v1", listener.local_addr()?);
    let server = HttpServer::new(|| App::new().route("/v1/chat/completions", web::post().to(answer)))
        .workers(1)
        .listen(listener)?
        .run();
    tokio::spawn(server);
    Ok(url)
}

async fn answer(req: actix_web::HttpRequest, body: web::Json<Value>) -> HttpResponse {
    let expected = format!("Bearer {FAKE_SECRET}");
    if req.headers().get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return HttpResponse::Unauthorized()
            .json(json!({"error": {"message": "bad key", "type": "invalid_request_error"}}));
    }
    let cap = body["max_completion_tokens"].as_i64().or(body["max_tokens"].as_i64()).unwrap_or(16);
    HttpResponse::Ok().json(json!({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": cap, "total_tokens": 12 + cap},
    }))
}

/// The chat completion both phases send.
pub fn request() -> Value {
    json!({"model": "gpt-4o", "max_tokens": 64, "messages": [{"role": "user", "content": "Say ok."}]})
}

/// What one open-loop phase saw.
#[derive(Debug, Default)]
pub struct Sent {
    pub latencies: Latencies,
    pub ok: usize,
    pub failed: usize,
    /// The first failure's status and body, to say why.
    pub first_failure: Option<String>,
}

/// Sends `request()` to `url` every `1/rate` s for `seconds` (open loop: a slow answer does not delay
/// the next request), with `key` as the bearer; times each from its send.
pub async fn open_loop(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    rate: usize,
    seconds: f64,
) -> anyhow::Result<Sent> {
    let n = (rate as f64 * seconds).round() as usize;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let mut calls = Vec::with_capacity(n);
    for i in 0..n {
        tokio::time::sleep_until(start + interval * i as u32).await;
        let request = http.post(url).bearer_auth(key).header("X-Budget-Component", "bench-gateway").json(&request());
        calls.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = request.send().await;
            let outcome = match r {
                Ok(r) if r.status().is_success() => r.bytes().await.map(|_| None).map_err(anyhow::Error::from),
                Ok(r) => {
                    let status = r.status();
                    Ok(Some(format!("{status}: {}", r.text().await.unwrap_or_default())))
                }
                Err(e) => Ok(Some(e.to_string())),
            };
            (t.elapsed(), outcome)
        }));
    }
    let mut sent = Sent::default();
    for call in calls {
        let (elapsed, outcome) = call.await?;
        match outcome? {
            None => {
                sent.ok += 1;
                sent.latencies.push(elapsed);
            }
            Some(why) => {
                sent.failed += 1;
                sent.first_failure.get_or_insert(why);
            }
        }
    }
    Ok(sent)
}
