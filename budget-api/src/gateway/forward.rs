//! Forwarding a reserved call to its upstream and settling it: whole or streamed, with the provider's
//! secret, the upstream's failures answered in the client's API's shape, and the settlement retried
//! until it lands. Runs in a task of its own (see [`super::call`]).

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use budget_events::domain::allocation::Allocation;
use budget_events::ErrorCode;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::call::Prepared;
use super::ledger::{self, Settled, Usage};
use super::sse::{self, SseSplitter};
use super::upstreams::Dialect;
use super::{anthropic, openai, GatewayError};
use crate::state::AppState;

/// The version of Anthropic's API sent when the client names none.
const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The upstream request, with the provider's secret (never the client's key).
fn upstream_request(p: &Prepared) -> reqwest::RequestBuilder {
    let u = &p.upstream;
    let mut request = u.client.post(format!("{}{}", u.base_url, p.api.path())).json(&p.body);
    match u.dialect {
        Dialect::Openai => {
            if let Some(secret) = &u.secret {
                request = request.bearer_auth(secret.expose());
            }
        }
        Dialect::Anthropic => {
            if let Some(secret) = &u.secret {
                request = request.header("x-api-key", secret.expose());
            }
            if !p.anthropic_headers.iter().any(|(name, _)| name == "anthropic-version") {
                request = request.header("anthropic-version", ANTHROPIC_VERSION);
            }
            for (name, value) in &p.anthropic_headers {
                request = request.header(name, value);
            }
        }
    }
    request
}

/// The upstream could not be reached or went silent: 502 or 504, in the client's API's shape.
fn unreachable(p: &Prepared, e: &reqwest::Error) -> GatewayError {
    let provider = &p.upstream.provider;
    if e.is_timeout() {
        GatewayError::new(
            StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::Unavailable,
            format!(
                "the upstream `{provider}` did not answer within {:?}; the call was given up and its reservation released, retry later",
                p.upstream.timeout
            ),
        )
    } else {
        GatewayError::new(
            StatusCode::BAD_GATEWAY,
            ErrorCode::Unavailable,
            format!(
                "the upstream `{provider}` cannot be reached ({}); its reservation was released, retry later",
                without_url(e)
            ),
        )
    }
}

/// The upstream's answer broke off after it began: the provider may bill the call, so it was recorded
/// at its reservation (the most it could cost); 502 in the client's API's shape.
fn cut_off(p: &Prepared, e: &reqwest::Error) -> GatewayError {
    GatewayError::new(
        StatusCode::BAD_GATEWAY,
        ErrorCode::Unavailable,
        format!(
            "the answer of the upstream `{}` broke off ({}); the call was recorded at its reservation, the most it could cost",
            p.upstream.provider,
            without_url(e)
        ),
    )
}

/// reqwest's message without the URL (a base URL can carry a token in its query).
fn without_url(e: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut last = None;
    while let Some(s) = source {
        last = Some(s.to_string());
        source = s.source();
    }
    last.unwrap_or_else(|| "connection failed".to_string())
}

/// A whole answer, built in the forwarding task (an `HttpResponse` cannot cross tasks).
pub(super) struct Reply {
    status: u16,
    content_type: Option<String>,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Reply {
    /// An upstream's own error answer, passed on as it came (it is already in its API's shape).
    fn pass_through(status: reqwest::StatusCode, content_type: Option<String>, body: Vec<u8>) -> Self {
        Reply { status: status.as_u16(), content_type, headers: Vec::new(), body }
    }

    /// A successful answer with the call's figures.
    fn settled(
        content_type: Option<String>,
        allocation: &Allocation,
        settled: Option<&Settled>,
        body: Vec<u8>,
    ) -> Self {
        let mut headers = vec![("x-budget-allocation-id", allocation.allocation_id.to_string())];
        if let Some(s) = settled {
            headers.push(("x-budget-cost", cost_text(s)));
            headers.push(("x-budget-remaining", s.remaining.to_string()));
        }
        Reply { status: 200, content_type, headers, body }
    }

    /// Adds the reservation's `x-budget-warning` headers to a successful answer (an upstream's error
    /// answer is passed on as it came).
    pub fn warn(mut self, warnings: Vec<String>) -> Self {
        if self.status == 200 {
            self.headers.extend(warnings.into_iter().map(|w| ("x-budget-warning", w)));
        }
        self
    }

    pub fn into_response(self) -> HttpResponse {
        let mut response = HttpResponse::build(StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_GATEWAY));
        response.content_type(self.content_type.unwrap_or_else(|| "application/json".to_string()));
        for header in self.headers {
            response.append_header(header);
        }
        response.body(self.body)
    }
}

fn cost_text(s: &Settled) -> String {
    s.cost.map_or("unpriced".to_string(), |c| c.amount().normalize().to_string())
}

/// Settles, retrying while the database is away: the usage record is keyed by the allocation, so a
/// retry never counts it twice. Gives up (logged) after about a minute; the reservation then expires.
async fn settle_surely(
    state: &AppState,
    p: &Prepared,
    allocation: &Allocation,
    usage: Option<Usage>,
) -> Option<Settled> {
    let (usage, source) = match usage {
        Some(u) => (u, "upstream"),
        // Nothing reported: the most the upstream may bill, which is what was reserved.
        None => {
            (Usage { input: p.facts.input_tokens, output: p.facts.output_tokens, ..Usage::default() }, "reservation")
        }
    };
    let mut wait = std::time::Duration::from_millis(250);
    for attempt in 1..=8 {
        match ledger::settle(state, allocation, &p.facts, usage, source).await {
            Ok(settled) => return Some(settled),
            Err(e) => {
                tracing::warn!(attempt, allocation_id = %allocation.allocation_id, error = %e, "gateway settlement failed; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(15));
            }
        }
    }
    tracing::error!(allocation_id = %allocation.allocation_id, "gateway settlement gave up; the reservation will expire");
    None
}

async fn release(state: &AppState, p: &Prepared, allocation: &Allocation) {
    if let Err(e) = ledger::release(state, allocation, &p.facts.metadata).await {
        tracing::warn!(allocation_id = %allocation.allocation_id, error = %e, "could not release a gateway reservation; it will expire");
    }
}

/// A call answered in one piece.
pub(super) async fn whole_call(
    state: std::sync::Arc<AppState>,
    p: Prepared,
    allocation: Allocation,
) -> Result<Reply, GatewayError> {
    let sent = upstream_request(&p).send().await;
    let answer = match sent {
        Ok(r) => r,
        Err(e) => {
            release(&state, &p, &allocation).await;
            return Err(unreachable(&p, &e));
        }
    };
    let status = answer.status();
    let content_type = answer.headers().get("content-type").and_then(|v| v.to_str().ok()).map(String::from);
    let bytes = match answer.bytes().await {
        Ok(b) => b.to_vec(),
        Err(e) => {
            // Cut off mid-answer: the upstream may bill it, so the worst case is settled.
            let _ = settle_surely(&state, &p, &allocation, None).await;
            return Err(cut_off(&p, &e));
        }
    };
    if !status.is_success() {
        release(&state, &p, &allocation).await;
        return Ok(Reply::pass_through(status, content_type, bytes));
    }
    let reported = serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| match p.api.dialect() {
        Dialect::Openai => openai::usage(&v),
        Dialect::Anthropic => anthropic::usage_of(&v["usage"]),
    });
    let settled = settle_surely(&state, &p, &allocation, reported).await;
    Ok(Reply::settled(content_type, &allocation, settled.as_ref(), bytes))
}

/// What a streaming call answers first.
pub(super) enum Answered {
    /// The upstream streams: these bytes follow.
    Stream(mpsc::Receiver<Vec<u8>>),
    /// The upstream answered in one piece (an error, or a server that does not stream).
    Whole(Reply),
    Failed(GatewayError),
}

/// A streaming call: forwards each event as it comes, reads the usage, holds the stream's last event
/// until the call is settled (so a client that has read to the end finds the usage recorded), and then
/// sends the figures as an SSE comment before it. A client that goes away stops receiving, not reading:
/// the upstream is read to its end and what it reported is settled.
pub(super) async fn stream_call(
    state: std::sync::Arc<AppState>,
    p: Prepared,
    allocation: Allocation,
    answer: oneshot::Sender<Answered>,
) {
    let mut upstream = match upstream_request(&p).send().await {
        Ok(r) => r,
        Err(e) => {
            release(&state, &p, &allocation).await;
            let _ = answer.send(Answered::Failed(unreachable(&p, &e)));
            return;
        }
    };
    let status = upstream.status();
    let content_type = upstream.headers().get("content-type").and_then(|v| v.to_str().ok()).map(String::from);
    let streams = content_type.as_deref().is_some_and(|c| c.starts_with("text/event-stream"));
    if !status.is_success() || !streams {
        let bytes = upstream.bytes().await.map(|b| b.to_vec());
        let response = match bytes {
            Ok(bytes) if !status.is_success() => {
                release(&state, &p, &allocation).await;
                Answered::Whole(Reply::pass_through(status, content_type, bytes))
            }
            Ok(bytes) => {
                let reported = serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| match p.api.dialect() {
                    Dialect::Openai => openai::usage(&v),
                    Dialect::Anthropic => anthropic::usage_of(&v["usage"]),
                });
                let settled = settle_surely(&state, &p, &allocation, reported).await;
                Answered::Whole(Reply::settled(content_type, &allocation, settled.as_ref(), bytes))
            }
            Err(e) => {
                let _ = settle_surely(&state, &p, &allocation, None).await;
                Answered::Failed(cut_off(&p, &e))
            }
        };
        let _ = answer.send(response);
        return;
    }

    let (tx, rx) = mpsc::channel::<Vec<u8>>(64);
    if answer.send(Answered::Stream(rx)).is_err() {
        // The client left before the stream began; the upstream is still read and settled.
    }
    let mut splitter = SseSplitter::default();
    let mut usage: Option<Usage> = None;
    let mut held: Vec<Vec<u8>> = Vec::new();
    let mut client_here = true;
    loop {
        let chunk = match upstream.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(allocation_id = %allocation.allocation_id, error = %without_url(&e), "upstream stream broke off");
                break;
            }
        };
        for event in splitter.push(&chunk) {
            let keep = match p.api.dialect() {
                Dialect::Openai => match openai::observe(&event, p.client_asked_usage, &mut usage) {
                    openai::Seen::Forward => true,
                    openai::Seen::Drop => false,
                    openai::Seen::End => {
                        held.push(event.raw);
                        continue;
                    }
                },
                Dialect::Anthropic => match anthropic::observe(&event, &mut usage) {
                    anthropic::Seen::Forward => true,
                    anthropic::Seen::End => {
                        held.push(event.raw);
                        continue;
                    }
                },
            };
            if keep && client_here {
                // A full queue waits for the client (the upstream waits with it); a closed one: it left.
                client_here = tx.send(event.raw).await.is_ok();
            }
        }
    }
    if let Some(rest) = splitter.finish() {
        if client_here {
            client_here = tx.send(rest.raw).await.is_ok();
        }
    }
    let settled = settle_surely(&state, &p, &allocation, usage).await;
    if client_here {
        if let Some(s) = &settled {
            let figures = format!("x-budget-cost: {}; x-budget-remaining: {}", cost_text(s), s.remaining);
            let _ = tx.send(sse::comment(&figures)).await;
        }
        for bytes in held {
            if tx.send(bytes).await.is_err() {
                break;
            }
        }
    }
}
