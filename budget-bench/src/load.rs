//! The in-process load generator: concurrent clients speaking HTTP and WebSocket to the service as
//! real clients do (an API key, an `Idempotency-Key` on every write), timing each request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::client::Connection;
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
    /// How long the phase took (the sum of its turns, for a phase measured in turns).
    pub seconds: f64,
    pub latencies: Latencies,
    /// Record ids the service acknowledged.
    pub acknowledged: Vec<Uuid>,
    /// Retries sent with a key already used, and how many came back as the first answer.
    pub retries: usize,
    pub retries_replayed: usize,
}

impl Written {
    /// Adds a later turn of the same phase: its rate is then that of both turns together.
    pub fn add(&mut self, turn: Written) {
        self.seconds += turn.seconds;
        self.latencies.extend(turn.latencies);
        self.acknowledged.extend(turn.acknowledged);
        self.retries += turn.retries;
        self.retries_replayed += turn.retries_replayed;
        self.per_second = if self.seconds > 0.0 { self.acknowledged.len() as f64 / self.seconds } else { 0.0 };
    }
}

/// Closed-loop load: `clients` tasks, each on a connection of its own to `url`, take the next of `n`
/// request numbers until none is left and run `work` on it; returns every result and the seconds it
/// all took (the connections are opened before the clock starts).
async fn fan_out<T, F, Fut>(url: &str, key: &str, clients: usize, n: usize, work: F) -> anyhow::Result<(Vec<T>, f64)>
where
    T: Send + 'static,
    F: Fn(Connection, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<(Connection, T)>> + Send + 'static,
{
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        connections.push(Connection::open(url, key).await?);
    }
    let (next, work) = (Arc::new(AtomicUsize::new(0)), Arc::new(work));
    let start = Instant::now();
    let tasks: Vec<_> = connections
        .into_iter()
        .map(|mut connection| {
            let (next, work) = (next.clone(), work.clone());
            tokio::spawn(async move {
                let mut done = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return anyhow::Ok(done);
                    }
                    let (back, result) = work(connection, i).await?;
                    connection = back;
                    done.push(result);
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

/// This run's prefix for idempotency keys, so that a kept database can be benched again.
fn run_prefix() -> String {
    format!("bench-{}", Uuid::now_v7().simple())
}

/// What `POST /api/usage` answers with that the checks need.
#[derive(Deserialize)]
struct Recorded {
    record_id: Uuid,
    position: Option<i64>,
}

/// `POST /api/usage/batch`'s answer: one result per record.
#[derive(Deserialize)]
struct BatchRecorded {
    results: Vec<Recorded>,
}

fn body(v: &Value) -> Bytes {
    Bytes::from(v.to_string())
}

/// `clients` clients send `records` single-record `POST /api/usage`s between them; every 100th is
/// sent again with its key (a client retrying after a lost answer), untimed.
pub async fn usage_single(url: &str, key: &str, clients: usize, records: usize) -> anyhow::Result<Written> {
    let (run, record) = (run_prefix(), body(&call("bench")));
    let (results, seconds) = fan_out(url, key, clients, records, move |mut c, i| {
        let (key, record) = (format!("{run}-single-{i}"), record.clone());
        async move {
            let t = Instant::now();
            let answer = c.post("/api/usage", &key, record.clone()).await?;
            if answer.status != 201 {
                return Err(answer.unexpected("POST /api/usage"));
            }
            let id = answer.json::<Recorded>()?.record_id;
            let took = t.elapsed();
            let mut replayed = None;
            if i % 100 == 0 {
                let again = c.post("/api/usage", &key, record).await?;
                replayed = Some(again.replayed && again.json::<Recorded>()?.record_id == id);
            }
            anyhow::Ok((c, (took, id, replayed)))
        }
    })
    .await?;
    let mut w = Written { per_second: records as f64 / seconds, seconds, ..Written::default() };
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
    url: &str,
    key: &str,
    clients: usize,
    records: usize,
    per_request: usize,
) -> anyhow::Result<Written> {
    let run = run_prefix();
    let batch = body(&json!({"records": vec![call("bench"); per_request]}));
    let (results, seconds) = fan_out(url, key, clients, records.div_ceil(per_request), move |mut c, i| {
        let (key, batch) = (format!("{run}-batch-{i}"), batch.clone());
        async move {
            let t = Instant::now();
            let answer = c.post("/api/usage/batch", &key, batch).await?;
            if !(200..300).contains(&answer.status) {
                return Err(answer.unexpected("POST /api/usage/batch"));
            }
            let ids: Vec<Uuid> = answer.json::<BatchRecorded>()?.results.into_iter().map(|r| r.record_id).collect();
            anyhow::Ok((c, (t.elapsed(), ids)))
        }
    })
    .await?;
    let mut w = Written::default();
    for (took, ids) in results {
        w.latencies.push(took);
        w.acknowledged.extend(ids);
    }
    w.per_second = w.acknowledged.len() as f64 / seconds;
    w.seconds = seconds;
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
    url: &str,
    key: &str,
    clients: usize,
    requests: usize,
    tokens: i64,
    component: &str,
) -> anyhow::Result<Reserved> {
    let (run, component) = (run_prefix(), component.to_string());
    let (results, seconds) = fan_out(url, key, clients, requests, move |mut c, i| {
        let key = format!("{run}-reserve-{i}");
        let request = body(&json!({"context_id": format!("task-{i}"), "component": component, "tokens": tokens}));
        async move {
            let t = Instant::now();
            let answer = c.post("/api/allocations", &key, request).await?;
            let admitted = match answer.status {
                201 => true,
                402 => false,
                _ => return Err(answer.unexpected("POST /api/allocations")),
            };
            anyhow::Ok((c, (t.elapsed(), admitted)))
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
    let (run, record) = (run_prefix(), body(&call("bench")));
    let mut tasks = Vec::new();
    for s in 0..senders {
        let mut c = Connection::open(url, key).await?;
        let (run, record) = (run.clone(), record.clone());
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for i in (s..total).step_by(senders) {
                tick.tick().await;
                let answer = c.post("/api/usage", &format!("{run}-ws-{i}"), record.clone()).await?;
                if answer.status != 201 {
                    return Err(answer.unexpected("POST /api/usage"));
                }
                let at = Instant::now();
                let recorded: Recorded = answer.json()?;
                let position = recorded.position.context("no position in the answer")?;
                acks.push((position, at, recorded.record_id));
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
