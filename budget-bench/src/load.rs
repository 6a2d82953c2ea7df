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

/// Closed-loop load: `clients` tasks take the next of `n` request numbers until none is left and run
/// `work` on it; returns every result and the seconds it all took.
async fn fan_out<T, F, Fut>(clients: usize, n: usize, work: F) -> anyhow::Result<(Vec<T>, f64)>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let (next, work) = (Arc::new(AtomicUsize::new(0)), Arc::new(work));
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (next, work) = (next.clone(), work.clone());
            tokio::spawn(async move {
                let mut done = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return anyhow::Ok(done);
                    }
                    done.push(work(i).await?);
                }
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((all, start.elapsed().as_secs_f64()))
}

/// A client of the service: its address and key, and this run's prefix for idempotency keys.
#[derive(Clone)]
struct Caller {
    http: reqwest::Client,
    url: String,
    key: String,
    run: String,
}

impl Caller {
    fn new(http: &reqwest::Client, url: &str, key: &str) -> Caller {
        Caller {
            http: http.clone(),
            url: url.to_string(),
            key: key.to_string(),
            run: Uuid::now_v7().simple().to_string(),
        }
    }

    fn post(&self, path: &str, idempotency: String, body: &Value) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.key)
            .header("Idempotency-Key", format!("bench-{}-{idempotency}", self.run))
            .json(body)
    }
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
    let caller = Caller::new(http, url, key);
    let (results, seconds) = fan_out(clients, records, move |i| {
        let caller = caller.clone();
        async move {
            let t = Instant::now();
            let r = caller.post("/api/usage", format!("single-{i}"), &call("bench")).send().await?;
            anyhow::ensure!(r.status().as_u16() == 201, "POST /api/usage answered {}", r.status());
            let id = record_id(&r.json::<Value>().await?)?;
            let took = t.elapsed();
            let mut replayed = None;
            if i % 100 == 0 {
                let again = caller.post("/api/usage", format!("single-{i}"), &call("bench")).send().await?;
                let header = again.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
                replayed = Some(header && record_id(&again.json::<Value>().await?)? == id);
            }
            anyhow::Ok((took, id, replayed))
        }
    })
    .await?;
    let mut w = Written { per_second: records as f64 / seconds, ..Written::default() };
    for (took, id, replayed) in results {
        w.latencies.push(took);
        w.acknowledged.push(id);
        if let Some(same) = replayed {
            w.retries += 1;
            w.retries_replayed += usize::from(same);
        }
    }
    Ok(w)
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
    let caller = Caller::new(http, url, key);
    let body = Arc::new(json!({"records": vec![call("bench"); per_request]}));
    let (results, seconds) = fan_out(clients, records.div_ceil(per_request), move |i| {
        let (caller, body) = (caller.clone(), body.clone());
        async move {
            let t = Instant::now();
            let r = caller.post("/api/usage/batch", format!("batch-{i}"), &body).send().await?;
            anyhow::ensure!(r.status().is_success(), "POST /api/usage/batch answered {}", r.status());
            let answer: Value = r.json().await?;
            let ids: Vec<Uuid> =
                answer["results"].as_array().into_iter().flatten().map(record_id).collect::<anyhow::Result<_>>()?;
            anyhow::Ok((t.elapsed(), ids))
        }
    })
    .await?;
    let mut w = Written::default();
    for (took, ids) in results {
        w.latencies.push(took);
        w.acknowledged.extend(ids);
    }
    w.per_second = w.acknowledged.len() as f64 / seconds;
    Ok(w)
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
    let caller = Caller::new(http, url, key);
    let component = component.to_string();
    let (results, seconds) = fan_out(clients, requests, move |i| {
        let caller = caller.clone();
        let body = json!({"context_id": format!("task-{i}"), "component": component, "tokens": tokens});
        async move {
            let t = Instant::now();
            let answer = caller.post("/api/allocations", format!("reserve-{i}"), &body).send().await?;
            let admitted = match answer.status().as_u16() {
                201 => true,
                402 => false,
                other => anyhow::bail!("POST /api/allocations answered {other}: {}", answer.text().await?),
            };
            anyhow::Ok((t.elapsed(), admitted))
        }
    })
    .await?;
    let mut r = Reserved { per_second: requests as f64 / seconds, ..Reserved::default() };
    for (took, admitted) in results {
        r.latencies.push(took);
        if admitted {
            r.admitted += 1;
        } else {
            r.refused += 1;
        }
    }
    Ok(r)
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
    let caller = Caller::new(http, url, key);
    let mut tasks = Vec::new();
    for s in 0..senders {
        let caller = caller.clone();
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for i in (s..total).step_by(senders) {
                tick.tick().await;
                let r = caller.post("/api/usage", format!("ws-{i}"), &call("bench")).send().await?;
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
