//! One gateway call, from the client's request to its settled answer: route, bound, reserve, forward,
//! settle. The forwarding and the settlement run in a task of their own, so they finish even when the
//! client goes away.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use budget_events::domain::allocation::Allocation;
use budget_events::ErrorCode;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::ledger::{self, CallFacts, Remaining, Settled, Usage};
use super::sse::{self, SseSplitter};
use super::upstreams::{Dialect, Upstream};
use super::{anthropic, openai, Api, GatewayError};
use crate::state::AppState;

/// The largest request body the gateway forwards (images travel inside it).
const MAX_BODY: usize = 32 * 1024 * 1024;
/// The version of Anthropic's API sent when the client names none.
const ANTHROPIC_VERSION: &str = "2023-06-01";

pub async fn chat_completions(state: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    handle(state, req, payload, Api::ChatCompletions).await
}

pub async fn embeddings(state: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    handle(state, req, payload, Api::Embeddings).await
}

pub async fn messages(state: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    handle(state, req, payload, Api::Messages).await
}

async fn handle(state: web::Data<AppState>, req: HttpRequest, payload: web::Payload, api: Api) -> HttpResponse {
    match run(state, &req, payload, api).await {
        Ok(response) => response,
        Err(e) => e.respond(api),
    }
}

/// A call ready to forward.
struct Prepared {
    api: Api,
    upstream: Upstream,
    body: Value,
    stream: bool,
    /// The client asked for OpenAI's final usage chunk itself (else it is read and not forwarded).
    client_asked_usage: bool,
    anthropic_headers: Vec<(String, String)>,
    facts: CallFacts,
}

async fn run(
    state: web::Data<AppState>,
    req: &HttpRequest,
    payload: web::Payload,
    api: Api,
) -> Result<HttpResponse, GatewayError> {
    let bytes = crate::body::read(payload, MAX_BODY).await?;
    let body: Value = serde_json::from_slice(&bytes).map_err(|e| {
        GatewayError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidJson, format!("the body is not JSON: {e}"))
    })?;
    let prepared = prepare(&state, req, body, api).await?;
    let allocation = ledger::reserve(&state, &prepared.facts).await?;
    let state = state.into_inner();
    if prepared.stream {
        let reserved_remaining = ledger::remaining(&state, &allocation).await.unwrap_or(Remaining::Unlimited);
        let (answer_tx, answer_rx) = oneshot::channel();
        let allocation_id = allocation.allocation_id;
        let estimated = allocation.estimated_cost;
        tokio::spawn(stream_call(state, prepared, allocation, answer_tx));
        match answer_rx.await {
            Ok(Answered::Stream(chunks)) => {
                let body = futures_util::stream::unfold(chunks, |mut rx| async move {
                    rx.recv().await.map(|b| (Ok::<_, actix_web::Error>(web::Bytes::from(b)), rx))
                });
                Ok(HttpResponse::Ok()
                    .content_type("text/event-stream")
                    .insert_header(("Cache-Control", "no-cache"))
                    .insert_header(("x-budget-allocation-id", allocation_id.to_string()))
                    .insert_header(("x-budget-reserved", estimated.normalize().to_string()))
                    .insert_header(("x-budget-remaining", reserved_remaining.to_string()))
                    .streaming(body))
            }
            Ok(Answered::Whole(reply)) => Ok(reply.into_response()),
            Ok(Answered::Failed(e)) => Err(e),
            Err(_) => Err(internal()),
        }
    } else {
        // Its own task: a client that hangs up does not stop the settlement.
        match tokio::spawn(whole_call(state, prepared, allocation)).await {
            Ok(result) => result.map(Reply::into_response),
            Err(_) => Err(internal()),
        }
    }
}

fn internal() -> GatewayError {
    GatewayError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::InternalError, "the gateway failed; retry the call")
}

/// Routes the call, bounds it and rewrites the body for the upstream.
async fn prepare(state: &AppState, req: &HttpRequest, mut body: Value, api: Api) -> Result<Prepared, GatewayError> {
    if !body.is_object() {
        return Err(GatewayError::bad_request("the body must be a JSON object"));
    }
    let asked = body["model"]
        .as_str()
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| GatewayError::bad_request("the body names no `model`; send one, e.g. \"gpt-4o\""))?
        .to_string();
    let (upstream, model) = route(state, &asked).await?;
    if upstream.dialect != api.dialect() {
        let other = match upstream.dialect {
            Dialect::Anthropic => "/v1/messages",
            Dialect::Openai => "/v1/chat/completions",
        };
        return Err(GatewayError::bad_request(format!(
            "`{asked}` is served by `{}`, which speaks the other API; call {other}, or give `{}` an OpenAI-compatible base_url in BUDGET_UPSTREAMS with \"api\": \"openai\"",
            upstream.provider, upstream.provider
        )));
    }
    body["model"] = Value::String(model.clone());

    let default_cap = state.gateway.default_max_tokens;
    let stream = body["stream"].as_bool() == Some(true) && api != Api::Embeddings;
    let mut client_asked_usage = false;
    let output_tokens = match api {
        Api::ChatCompletions => {
            let cap = match openai::client_cap(&body) {
                Some(cap) if cap >= 1 => cap,
                Some(cap) => return Err(GatewayError::bad_request(format!("max_tokens is {cap}; ask for at least 1"))),
                None => {
                    body[upstream.max_tokens_field.as_str()] = default_cap.into();
                    default_cap
                }
            };
            if stream {
                client_asked_usage = openai::request_stream_usage(&mut body);
            }
            cap.saturating_mul(openai::choices(&body))
        }
        Api::Messages => match body["max_tokens"].as_i64() {
            Some(cap) if cap >= 1 => cap,
            Some(cap) => return Err(GatewayError::bad_request(format!("max_tokens is {cap}; ask for at least 1"))),
            None => {
                body["max_tokens"] = default_cap.into();
                default_cap
            }
        },
        Api::Embeddings => 0,
    };
    let input_tokens = input_bound(&body, api, &upstream.provider, &model).await?;

    let caller = crate::auth::caller(req);
    let header = |name: &str| {
        req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty()).map(String::from)
    };
    let component = match &caller {
        crate::auth::Caller::Key(k) if k.component.is_some() => k.component.clone().expect("checked"),
        _ => header("x-budget-component").unwrap_or_else(|| "gateway".to_string()),
    };
    caller.may_act_for(&component)?;
    let user_id = header("x-budget-user-id").or_else(|| match api {
        Api::Messages => body["metadata"]["user_id"].as_str().map(String::from),
        _ => body["user"].as_str().map(String::from),
    });
    let facts = CallFacts {
        provider: upstream.provider.clone(),
        model,
        component,
        context_id: header("x-budget-context-id").unwrap_or_else(|| format!("call-{}", uuid::Uuid::now_v7())),
        task_type: header("x-budget-task-type").unwrap_or_else(|| api.task_type().to_string()),
        user_id,
        input_tokens,
        output_tokens,
        metadata: crate::request::metadata(req),
    };
    let anthropic_headers = ["anthropic-version", "anthropic-beta"]
        .into_iter()
        .filter_map(|name| header(name).map(|v| (name.to_string(), v)))
        .collect();
    Ok(Prepared { api, upstream, body, stream, client_asked_usage, anthropic_headers, facts })
}

/// The input bound ([`super::estimate`]), off the async threads when a tokenizer reads it (loading one
/// and encoding a long prompt take milliseconds).
async fn input_bound(body: &Value, api: Api, provider: &str, model: &str) -> Result<i64, GatewayError> {
    use super::estimate::{embedding_tokens, input_tokens, media_tokens, Counter};
    let media = media_tokens(model);
    let count = move |body: &Value, counter: Counter| match api {
        Api::Embeddings => embedding_tokens(&body["input"], counter),
        _ => input_tokens(body, counter, media),
    };
    let counter = Counter::for_model(provider, model);
    if !counter.is_tokenizer() {
        return Ok(count(body, counter));
    }
    let body = body.clone();
    tokio::task::spawn_blocking(move || count(&body, counter)).await.map_err(|_| internal())
}

/// The upstream and the model name it knows: `provider/model` names both; a bare model goes to the
/// one configured provider the price book prices it under.
async fn route(state: &AppState, asked: &str) -> Result<(Upstream, String), GatewayError> {
    let upstreams = &state.gateway.upstreams;
    if upstreams.is_empty() {
        return Err(GatewayError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "this Budget has no upstreams; set BUDGET_UPSTREAMS to use it as a gateway (see the README, \"Use Budget as your gateway\")",
        ));
    }
    if let Some((prefix, model)) = asked.split_once('/') {
        if let Some(u) = upstreams.get(&state.provider(prefix)) {
            return Ok((u.clone(), model.to_string()));
        }
    }
    let client = state.pool.get().await.map_err(crate::error::ApiError::from)?;
    let priced = budget_events::store::prices::providers_of(&**client, asked, chrono::Utc::now())
        .await
        .map_err(crate::error::ApiError::from)?;
    let served: Vec<&Upstream> = priced.iter().filter_map(|p| upstreams.get(p)).collect();
    match served.as_slice() {
        [one] => Ok(((*one).clone(), asked.to_string())),
        [] => Err(GatewayError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!(
                "no upstream serves `{asked}`: the price book prices it under {} and BUDGET_UPSTREAMS has {}; call it as provider/model, or price it with `budget prices set`",
                if priced.is_empty() { "no provider".to_string() } else { priced.join(", ") },
                upstreams.providers().collect::<Vec<_>>().join(", ")
            ),
        )),
        many => Err(GatewayError::bad_request(format!(
            "`{asked}` is priced under several upstreams; name one: {}",
            many.iter().map(|u| format!("{}/{asked}", u.provider)).collect::<Vec<_>>().join(", ")
        ))),
    }
}

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
                "the upstream `{provider}` did not answer within {:?}; nothing was charged, retry later",
                p.upstream.timeout
            ),
        )
    } else {
        GatewayError::new(
            StatusCode::BAD_GATEWAY,
            ErrorCode::Unavailable,
            format!(
                "the upstream `{provider}` cannot be reached ({}); nothing was charged, retry later",
                without_url(e)
            ),
        )
    }
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
struct Reply {
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

    fn into_response(self) -> HttpResponse {
        let mut response = HttpResponse::build(StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_GATEWAY));
        response.content_type(self.content_type.unwrap_or_else(|| "application/json".to_string()));
        for header in self.headers {
            response.insert_header(header);
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
async fn whole_call(
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
            return Err(unreachable(&p, &e));
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
enum Answered {
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
async fn stream_call(
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
                Answered::Failed(unreachable(&p, &e))
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
