//! One WebSocket connection: a welcome, the replay of `?since=`, then the live feed of its topics, and
//! the client's own messages (subscription, unsubscription, authentication, heartbeat).
//!
//! The connection never holds the hub up: it reads the hub's broadcast at its own pace, and when it
//! falls more than its queue behind (a client that does not read) it gets an error frame and is closed.
//! A send that the client does not take within the send timeout closes it too. The server pings, and
//! drops a connection from which nothing (not even a pong) arrived for three ping intervals.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};
use budget_events::db::DbPool;
use budget_events::store;
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::broadcast::{self, error::RecvError};

use crate::ws::hub::{Hub, Mark};
use crate::ws::message::{alert_update, updates_for, Envelope, Origin, Update, TOPICS};

/// How a connection is paced.
#[derive(Debug, Clone, Copy)]
pub struct WsSettings {
    /// Messages a connection may fall behind before it is disconnected. The hub sends up to a few
    /// hundred updates per step of the log, so this leaves a reading client ample room.
    pub queue: usize,
    /// How long one send may wait for a client that does not read.
    pub send_timeout: Duration,
    /// How often the server pings.
    pub ping_interval: Duration,
}

impl Default for WsSettings {
    fn default() -> Self {
        WsSettings { queue: 8192, send_timeout: Duration::from_secs(10), ping_interval: Duration::from_secs(15) }
    }
}

/// Largest client message accepted.
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

pub struct Connection {
    pub session: Session,
    pub stream: AggregatedMessageStream,
    pub hub: Hub,
    pub pool: DbPool,
    pub settings: WsSettings,
    pub topic: &'static str,
    pub since: Option<i64>,
    /// Checks a key sent in an `authentication` message.
    pub gate: actix_web::web::Data<crate::auth::guard::Gate>,
}

enum Flow {
    Continue,
    Close(Option<CloseReason>),
}

impl Connection {
    /// Serves the connection until it ends; says why it ended (`client`: the client closed or went
    /// away; `slow_consumer`, `no_pong`, `send_failed`, `replay_failed`, `shutdown`: the server dropped it).
    pub async fn run(mut self) -> &'static str {
        let (first, mark) = self.hub.subscribe(self.topic);
        let mut feeds: Feeds = BTreeMap::from([(self.topic, first)]);
        let mut topics: BTreeSet<String> = BTreeSet::from([self.topic.to_string()]);
        let welcome = Envelope::new(
            "budget_update",
            Some(self.topic),
            json!({
                "message": "connected to Budget",
                "topics": topics,
                "available_topics": TOPICS,
                "position": mark.cursor.position,
            }),
            Some(mark.cursor.position),
        );
        if self.send(&welcome.text()).await.is_err() {
            return "send_failed";
        }
        if let Some(since) = self.since {
            if let Err(reason) = self.replay(since, mark, &topics).await {
                let _ = self.send(&Envelope::error(reason).text()).await;
                let _ = self.session.close(None).await;
                return "replay_failed";
            }
        }
        let mut ping = tokio::time::interval(self.settings.ping_interval);
        ping.tick().await;
        let mut last_heard = Instant::now();
        let (flow, ended) = loop {
            tokio::select! {
                incoming = self.stream.next() => {
                    last_heard = Instant::now();
                    match incoming {
                        None => break (Flow::Close(None), "client"),
                        Some(Err(e)) => break (Flow::Close(Some(CloseReason { code: CloseCode::Protocol, description: Some(e.to_string()) })), "client"),
                        Some(Ok(message)) => match self.on_client(message, &mut topics, &mut feeds).await {
                            Flow::Continue => {}
                            close => break (close, "client"),
                        },
                    }
                }
                update = recv_any(&mut feeds) => match update {
                    Ok(update) => {
                        if !wanted(&update, &topics, mark) {
                            continue;
                        }
                        if self.send(&update.text).await.is_err() {
                            break (Flow::Close(None), "send_failed");
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        let reason = format!(
                            "this connection fell {missed} messages behind (a client must read as fast as updates arrive); reconnect with ?since=POSITION to replay what was missed"
                        );
                        let _ = self.send(&Envelope::error(reason).text()).await;
                        break (Flow::Close(Some(CloseReason { code: CloseCode::Policy, description: Some("slow consumer".into()) })), "slow_consumer");
                    }
                    Err(RecvError::Closed) => break (Flow::Close(Some(CloseCode::Away.into())), "shutdown"),
                },
                _ = ping.tick() => {
                    if last_heard.elapsed() > self.settings.ping_interval * 3 {
                        break (Flow::Close(Some(CloseReason { code: CloseCode::Away, description: Some("no pong".into()) })), "no_pong");
                    }
                    if self.session.ping(b"budget").await.is_err() {
                        break (Flow::Close(None), "send_failed");
                    }
                }
            }
        };
        if let Flow::Close(reason) = flow {
            let _ = tokio::time::timeout(self.settings.send_timeout, self.session.close(reason)).await;
        }
        ended
    }

    /// Sends one text frame, or fails when the client has gone or does not take it in time.
    async fn send(&mut self, text: &str) -> Result<(), ()> {
        match tokio::time::timeout(self.settings.send_timeout, self.session.text(text.to_string())).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }

    /// Sends what was appended after `since` up to the hub's mark, oldest first.
    async fn replay(&mut self, since: i64, mark: Mark, topics: &BTreeSet<String>) -> Result<(), String> {
        let client = self.pool.get().await.map_err(|e| format!("cannot replay: {e}"))?;
        let mut after = since;
        loop {
            let events = store::read_since(&**client, after, mark.cursor, 500).await.map_err(|e| e.to_string())?;
            let Some(last) = events.iter().map(|e| e.position).max() else { break };
            let updates = updates_for(&**client, &events, &|t| topics.contains(t)).await.map_err(|e| e.to_string())?;
            for update in updates.iter().filter(|u| topics.contains(u.topic)) {
                self.send(&update.text).await.map_err(|_| "the client stopped reading".to_string())?;
            }
            if events.len() < 500 {
                break;
            }
            after = last;
        }
        if topics.contains(crate::ws::message::BUDGET_ALERTS) {
            let missed = budget_projections::alerts::raised_since(&**client, since, mark.alert_seq)
                .await
                .map_err(|e| e.to_string())?;
            for alert in &missed {
                self.send(&alert_update(alert).text).await.map_err(|_| "the client stopped reading".to_string())?;
            }
        }
        Ok(())
    }

    async fn on_client(
        &mut self,
        message: AggregatedMessage,
        topics: &mut BTreeSet<String>,
        feeds: &mut Feeds,
    ) -> Flow {
        let text = match message {
            AggregatedMessage::Text(text) => text,
            AggregatedMessage::Ping(bytes) => {
                return if self.session.pong(&bytes).await.is_ok() { Flow::Continue } else { Flow::Close(None) };
            }
            AggregatedMessage::Pong(_) => return Flow::Continue,
            AggregatedMessage::Close(reason) => return Flow::Close(reason),
            AggregatedMessage::Binary(_) => {
                return self.reply(Envelope::error("binary frames are not understood; send JSON text frames")).await;
            }
        };
        if text.len() > MAX_CLIENT_MESSAGE {
            return self.reply(Envelope::error(format!("message larger than {MAX_CLIENT_MESSAGE} bytes"))).await;
        }
        let envelope: Envelope = match serde_json::from_str(&text) {
            Ok(e) => e,
            Err(e) => {
                let reason = format!(
                    "not a message: {e}; send {{\"type\": \"subscription\", \"payload\": {{\"topic\": \"budget_events\"}}}}"
                );
                return self.reply(Envelope::error(reason)).await;
            }
        };
        let topic_of =
            |e: &Envelope| e.payload.get("topic").and_then(|t| t.as_str()).or(e.topic.as_deref()).map(String::from);
        let reply = match envelope.kind.as_str() {
            "subscription" | "unsubscription" => match topic_of(&envelope) {
                Some(topic) if TOPICS.contains(&topic.as_str()) => {
                    let known = TOPICS.into_iter().find(|t| *t == topic).expect("checked above");
                    if envelope.kind == "subscription" {
                        topics.insert(topic.clone());
                        feeds.entry(known).or_insert_with(|| self.hub.subscribe(known).0);
                    } else {
                        topics.remove(&topic);
                        feeds.remove(known);
                    }
                    Envelope::new(&envelope.kind, Some(&topic), json!({"success": true, "topic": topic}), None)
                }
                Some(topic) => Envelope::error(format!("unknown topic `{topic}`; topics are {}", TOPICS.join(", "))),
                None => {
                    Envelope::error(format!("{} needs payload.topic (one of {})", envelope.kind, TOPICS.join(", ")))
                }
            },
            "authentication" => {
                let client_id = envelope.payload.get("client_id").cloned().unwrap_or(serde_json::Value::Null);
                // The upgrade passed the guard (with a key when keys are required); a key sent here is
                // checked too, and a bad one ends the connection.
                if let Some(secret) =
                    envelope.payload.get("api_key").and_then(|k| k.as_str()).filter(|k| !k.trim().is_empty())
                {
                    if let Err(e) = self.gate.identify(&self.pool, secret, false).await {
                        let answer = json!({"success": false, "client_id": client_id, "error": e.to_string()});
                        let _ = self.send(&Envelope::new("authentication", None, answer, None).text()).await;
                        let reason = CloseReason { code: CloseCode::Policy, description: Some("bad API key".into()) };
                        return Flow::Close(Some(reason));
                    }
                }
                tracing::debug!(%client_id, "WebSocket client authenticated");
                Envelope::new("authentication", None, json!({"success": true, "client_id": client_id}), None)
            }
            "heartbeat" => {
                Envelope::new("heartbeat", None, json!({"status": "ok", "server_time": chrono::Utc::now()}), None)
            }
            other => Envelope::error(format!(
                "unknown message type `{other}`; send subscription, unsubscription, authentication or heartbeat"
            )),
        };
        self.reply(reply).await
    }

    async fn reply(&mut self, envelope: Envelope) -> Flow {
        if self.send(&envelope.text()).await.is_ok() {
            Flow::Continue
        } else {
            Flow::Close(None)
        }
    }
}

/// A receiver per subscribed topic.
type Feeds = BTreeMap<&'static str, broadcast::Receiver<Arc<Update>>>;

/// The next update of any subscribed topic (waits forever when none is subscribed).
async fn recv_any(feeds: &mut Feeds) -> Result<Arc<Update>, RecvError> {
    if feeds.is_empty() {
        return std::future::pending().await;
    }
    // `recv` is cancel-safe: the futures not chosen lose nothing.
    let pending: Vec<_> = feeds.values_mut().map(|r| Box::pin(r.recv())).collect();
    futures_util::future::select_all(pending).await.0
}

/// Whether a live update goes to this connection: its topic is subscribed, and the replay did not
/// already send it (everything up to the mark was replayed or predates the connection).
fn wanted(update: &Arc<Update>, topics: &BTreeSet<String>, mark: Mark) -> bool {
    topics.contains(update.topic)
        && match update.origin {
            Origin::Log(cursor) => cursor > mark.cursor,
            Origin::Alert(seq) => seq > mark.alert_seq,
        }
}
