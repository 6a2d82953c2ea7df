//! The in-process load generator: concurrent clients speaking HTTP and WebSocket to the service as
//! real clients do (an API key, an `Idempotency-Key` on every write), timing each request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::stats::Latencies;

/// One call of the component the usage phases write for: no `cost`, so the server prices it.
pub fn call(component: &str) -> Value {
    json!({"provider": "openai", "model": "gpt-4o", "component": component, "input_tokens": 1200,
           "output_tokens": 340})
}

/// What a write phase saw.
#[derive(Debug, Default)]
pub struct Written {
    pub per_second: f64,
    pub latencies: Latencies,
    /// Record ids the service acknowledged.
    pub acknowledged: Vec<Uuid>,
    /// Retries sent with a key already used, and how many came back as the first answer.
    pub retries: usize,
    pub retries_replayed: usize,
}

fn record_id(v: &Value) -> anyhow::Result<Uuid> {
    v["record_id"].as_str().and_then(|s| s.parse().ok()).ok_or_else(|| anyhow::anyhow!("no record_id in {v}"))
}

/// `clients` clients send `records` single-record `POST /api/usage`s between them; every 100th is
/// sent again with its key (a client retrying after a lost answer), untimed.
pub async fn usage_single(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    clients: usize,
    records: usize,
) -> anyhow::Result<Written> {
    let next = Arc::new(AtomicUsize::new(0));
    let run = Uuid::now_v7().simple().to_string();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url, key, next, run) = (http.clone(), url.to_string(), key.to_string(), next.clone(), run.clone());
        tasks.push(tokio::spawn(async move {
            let mut w = Written::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= records {
                    break;
                }
                let idempotency = format!("bench-{run}-{i}");
                let send = || {
                    http.post(format!("{url}/api/usage"))
                        .bearer_auth(&key)
                        .header("Idempotency-Key", &idempotency)
                        .json(&call("bench"))
                        .send()
                };
                let t = Instant::now();
                let r = send().await?;
                anyhow::ensure!(r.status().as_u16() == 201, "POST /api/usage answered {}", r.status());
                let body: Value = r.json().await?;
                w.latencies.push(t.elapsed());
                let id = record_id(&body)?;
                w.acknowledged.push(id);
                if i % 100 == 0 {
                    let again = send().await?;
                    let replayed = again.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
                    let same = record_id(&again.json::<Value>().await?)? == id;
                    w.retries += 1;
                    w.retries_replayed += usize::from(replayed && same);
                }
            }
            anyhow::Ok(w)
        }));
    }
    let mut all = Written::default();
    for t in tasks {
        let w = t.await??;
        all.latencies.extend(w.latencies);
        all.acknowledged.extend(w.acknowledged);
        all.retries += w.retries;
        all.retries_replayed += w.retries_replayed;
    }
    all.per_second = records as f64 / start.elapsed().as_secs_f64();
    Ok(all)
}

/// `clients` clients send `records` records in `POST /api/usage/batch`es of `per_request`, each with
/// its own key.
pub async fn usage_batch(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    clients: usize,
    records: usize,
    per_request: usize,
) -> anyhow::Result<Written> {
    let requests = records.div_ceil(per_request);
    let next = Arc::new(AtomicUsize::new(0));
    let run = Uuid::now_v7().simple().to_string();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url, key, next, run) = (http.clone(), url.to_string(), key.to_string(), next.clone(), run.clone());
        tasks.push(tokio::spawn(async move {
            let mut w = Written::default();
            let body = json!({"records": vec![call("bench"); per_request]});
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                let t = Instant::now();
                let r = http
                    .post(format!("{url}/api/usage/batch"))
                    .bearer_auth(&key)
                    .header("Idempotency-Key", format!("bench-batch-{run}-{i}"))
                    .json(&body)
                    .send()
                    .await?;
                anyhow::ensure!(r.status().is_success(), "POST /api/usage/batch answered {}", r.status());
                let body: Value = r.json().await?;
                w.latencies.push(t.elapsed());
                for result in body["results"].as_array().into_iter().flatten() {
                    w.acknowledged.push(record_id(result)?);
                }
            }
            anyhow::Ok(w)
        }));
    }
    let mut all = Written::default();
    for t in tasks {
        let w = t.await??;
        all.latencies.extend(w.latencies);
        all.acknowledged.extend(w.acknowledged);
    }
    all.per_second = all.acknowledged.len() as f64 / start.elapsed().as_secs_f64();
    Ok(all)
}

/// What the reservation phase saw.
#[derive(Debug, Default)]
pub struct Reserved {
    pub per_second: f64,
    pub latencies: Latencies,
    pub admitted: usize,
    pub refused: usize,
}

/// `clients` clients ask for `requests` reservations of `tokens` each on one hot window
/// (`component`); 201 is admitted, 402 refused, anything else an error.
pub async fn reservations(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    clients: usize,
    requests: usize,
    tokens: i64,
    component: &str,
) -> anyhow::Result<Reserved> {
    let next = Arc::new(AtomicUsize::new(0));
    let run = Uuid::now_v7().simple().to_string();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url, key, next, run) = (http.clone(), url.to_string(), key.to_string(), next.clone(), run.clone());
        let component = component.to_string();
        tasks.push(tokio::spawn(async move {
            let mut r = Reserved::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                let t = Instant::now();
                let answer = http
                    .post(format!("{url}/api/allocations"))
                    .bearer_auth(&key)
                    .header("Idempotency-Key", format!("bench-reserve-{run}-{i}"))
                    .json(&json!({"context_id": format!("task-{i}"), "component": component, "tokens": tokens}))
                    .send()
                    .await?;
                match answer.status().as_u16() {
                    201 => r.admitted += 1,
                    402 => r.refused += 1,
                    other => anyhow::bail!("POST /api/allocations answered {other}: {}", answer.text().await?),
                }
                r.latencies.push(t.elapsed());
            }
            anyhow::Ok(r)
        }));
    }
    let mut all = Reserved::default();
    for t in tasks {
        let r = t.await??;
        all.latencies.extend(r.latencies);
        all.admitted += r.admitted;
        all.refused += r.refused;
    }
    all.per_second = requests as f64 / start.elapsed().as_secs_f64();
    Ok(all)
}

/// A WebSocket client subscribed to `usage_updates`: when each message (by log position) arrived.
async fn listen(
    ws_url: String,
    ready: tokio::sync::oneshot::Sender<()>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Vec<(i64, Instant)>> {
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url.as_str()).await?;
    let subscribe = json!({"type": "subscription", "payload": {"topic": "usage_updates"}});
    ws.send(tokio_tungstenite::tungstenite::Message::Text(subscribe.to_string().into())).await?;
    let mut ready = Some(ready);
    let mut seen = Vec::new();
    let mut stop = stop;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            m = ws.next() => {
                let Some(m) = m else { anyhow::bail!("the WebSocket closed during the run") };
                if let tokio_tungstenite::tungstenite::Message::Text(t) = m? {
                    let v: Value = serde_json::from_str(&t)?;
                    if v["type"] == "subscription" {
                        if let Some(r) = ready.take() { let _ = r.send(()); }
                    } else if v["type"] == "usage_update" {
                        if let Some(p) = v["position"].as_i64() { seen.push((p, Instant::now())); }
                    }
                }
            }
        }
    }
    let _ = ws.close(None).await;
    Ok(seen)
}

/// Delivery latency per listener: records are written at `rate` per second for `seconds` through
/// `url`; each listener (one per WebSocket URL, e.g. on a second server process) reports, for every
/// acknowledged record, the time from its acknowledgement (just after its commit) to the first
/// `usage_update` at or past its position (0 when the update came before the answer).
pub async fn ws_delivery(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    ws_urls: &[String],
    rate: usize,
    seconds: f64,
) -> anyhow::Result<(Vec<Latencies>, Vec<Uuid>)> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut listeners = Vec::new();
    for u in ws_urls {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        listeners.push(tokio::spawn(listen(u.clone(), ready_tx, stop_rx.clone())));
        ready_rx.await.map_err(|_| anyhow::anyhow!("a WebSocket listener did not subscribe"))?;
    }
    // Senders pace themselves: `senders` of them, each every `senders / rate` seconds.
    let senders = 16.min(rate.max(1));
    let total = (rate as f64 * seconds) as usize;
    let every = Duration::from_secs_f64(senders as f64 / rate as f64);
    let run = Uuid::now_v7().simple().to_string();
    let mut tasks = Vec::new();
    for s in 0..senders {
        let (http, url, key, run) = (http.clone(), url.to_string(), key.to_string(), run.clone());
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for i in (s..total).step_by(senders) {
                tick.tick().await;
                let r = http
                    .post(format!("{url}/api/usage"))
                    .bearer_auth(&key)
                    .header("Idempotency-Key", format!("bench-ws-{run}-{i}"))
                    .json(&call("bench"))
                    .send()
                    .await?;
                anyhow::ensure!(r.status().as_u16() == 201, "POST /api/usage answered {}", r.status());
                let body: Value = r.json().await?;
                let at = Instant::now();
                let position = body["position"].as_i64().ok_or_else(|| anyhow::anyhow!("no position in {body}"))?;
                acks.push((position, at, record_id(&body)?));
            }
            anyhow::Ok(acks)
        }));
    }
    let mut acks = Vec::new();
    for t in tasks {
        acks.extend(t.await??);
    }
    // Give the last updates time to arrive.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let _ = stop_tx.send(true);
    let mut per_listener = Vec::new();
    for l in listeners {
        let seen = l.await??;
        let mut latencies = Latencies::default();
        for (position, acked, _) in &acks {
            let first = seen.partition_point(|(p, _)| p < position);
            let Some((_, arrived)) = seen.get(first) else {
                anyhow::bail!("a WebSocket listener never saw position {position}");
            };
            latencies.push(arrived.saturating_duration_since(*acked));
        }
        per_listener.push(latencies);
    }
    Ok((per_listener, acks.into_iter().map(|(_, _, id)| id).collect()))
}
