//! One gateway call, from the client's request to its reservation: read, route, bound, reserve; then
//! [`super::forward`] forwards and settles it in a task of its own, so that finishes even when the
//! client goes away.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use budget_events::ErrorCode;
use serde_json::Value;
use tokio::sync::oneshot;

use super::forward::{stream_call, whole_call, Answered};
use super::ledger::{self, CallFacts, Remaining};
use super::upstreams::{Dialect, Upstream};
use super::{openai, Api, GatewayError};
use crate::state::AppState;

/// The largest request body the gateway forwards (images travel inside it).
const MAX_BODY: usize = 32 * 1024 * 1024;

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
pub(super) struct Prepared {
    pub api: Api,
    pub upstream: Upstream,
    pub body: Value,
    pub stream: bool,
    /// The client asked for OpenAI's final usage chunk itself (else it is read and not forwarded).
    pub client_asked_usage: bool,
    pub anthropic_headers: Vec<(String, String)>,
    pub facts: CallFacts,
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
    let reserved = ledger::reserve(&state, &prepared.facts).await?;
    let warnings = ledger::warnings(&state, &reserved, &prepared.facts).await;
    let allocation = reserved.allocation;
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
                let mut response = HttpResponse::Ok();
                response
                    .content_type("text/event-stream")
                    .insert_header(("Cache-Control", "no-cache"))
                    .insert_header(("x-budget-allocation-id", allocation_id.to_string()))
                    .insert_header(("x-budget-reserved", estimated.normalize().to_string()))
                    .insert_header(("x-budget-remaining", reserved_remaining.to_string()));
                for w in warnings {
                    response.append_header(("x-budget-warning", w));
                }
                Ok(response.streaming(body))
            }
            Ok(Answered::Whole(reply)) => Ok(reply.warn(warnings).into_response()),
            Ok(Answered::Failed(e)) => Err(e),
            Err(_) => Err(internal()),
        }
    } else {
        // Its own task: a client that hangs up does not stop the settlement.
        match tokio::spawn(whole_call(state, prepared, allocation)).await {
            Ok(result) => result.map(|reply| reply.warn(warnings).into_response()),
            Err(_) => Err(internal()),
        }
    }
}

pub(super) fn internal() -> GatewayError {
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
    // A key bound to a component speaks for it; otherwise the header may name one.
    let bound = match &caller {
        crate::auth::Caller::Key(k) => k.component.clone(),
        _ => None,
    };
    let component = bound.or_else(|| header("x-budget-component")).unwrap_or_else(|| "gateway".to_string());
    let user_id = header("x-budget-user-id").or_else(|| match api {
        Api::Messages => body["metadata"]["user_id"].as_str().filter(|u| !u.trim().is_empty()).map(String::from),
        _ => body["user"].as_str().filter(|u| !u.trim().is_empty()).map(String::from),
    });
    let facts = CallFacts {
        provider: upstream.provider.clone(),
        model,
        component,
        context_id: header("x-budget-context-id").unwrap_or_else(|| format!("call-{}", uuid::Uuid::now_v7())),
        task_type: header("x-budget-task-type").unwrap_or_else(|| api.task_type().to_string()),
        user_id,
        session_id: header("x-budget-session-id"),
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
        [] => {
            // A name no provider prices may be a typo of one an upstream's provider does.
            let mut near = String::new();
            if priced.is_empty() {
                let book = budget_events::store::prices::in_effect(&**client, chrono::Utc::now())
                    .await
                    .map_err(crate::error::ApiError::from)?;
                let offered = book.iter().filter(|v| upstreams.get(&v.spec.provider).is_some());
                if let Some(name) = budget_events::domain::price::closest(asked, offered.map(|v| v.spec.model.as_str()))
                {
                    near = format!("; did you mean `{name}`?");
                }
            }
            Err(GatewayError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                format!(
                    "no upstream serves `{asked}`: the price book prices it under {} and BUDGET_UPSTREAMS has {}{near}; call it as provider/model, or price it with `budget prices set`",
                    if priced.is_empty() { "no provider".to_string() } else { priced.join(", ") },
                    upstreams.providers().collect::<Vec<_>>().join(", ")
                ),
            ))
        }
        many => Err(GatewayError::bad_request(format!(
            "`{asked}` is priced under several upstreams; name one: {}",
            many.iter().map(|u| format!("{}/{asked}", u.provider)).collect::<Vec<_>>().join(", ")
        ))),
    }
}
