//! A fake LLM provider speaking OpenAI's and Anthropic's APIs, streaming included, for the gateway's
//! tests. It bills every answer at its cap (`max_tokens`, × `n`), the most a real one could, and its
//! prompt tokens are the words of the messages plus 3 per message. Models choose misbehaviour:
//! `slow-…` answers after 3 s, `broken-…` answers 500 in the API's error shape, `long-…` streams its
//! events 300 ms apart, `cut-…` breaks its answer off after its first part (no usage reported).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use futures_util::StreamExt;
use serde_json::{json, Value};

/// The secrets the fake expects: the gateway must send these, never the client's key.
pub const OPENAI_SECRET: &str = "sk-fake-openai-secret-0123456789";
pub const ANTHROPIC_SECRET: &str = "sk-ant-fake-secret-0123456789";

#[derive(Clone, Default)]
pub struct Seen {
    /// (path, the credential header it came with, body) of every request.
    pub requests: Arc<Mutex<Vec<(String, String, Value)>>>,
}

pub struct FakeUpstream {
    /// Base URL, `http://127.0.0.1:PORT/v1`.
    pub base_url: String,
    pub seen: Seen,
}

impl FakeUpstream {
    pub async fn start() -> FakeUpstream {
        let seen = Seen::default();
        let data = web::Data::new(seen.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                .route("/v1/chat/completions", web::post().to(chat))
                .route("/v1/embeddings", web::post().to(embeddings))
                .route("/v1/messages", web::post().to(messages))
        })
        .workers(2)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        FakeUpstream { base_url: format!("http://127.0.0.1:{port}/v1"), seen }
    }

    /// `BUDGET_UPSTREAMS` naming this fake for both providers (and a dead one).
    pub fn upstreams_json(&self) -> String {
        json!({
            "openai": {"base_url": self.base_url, "api_key_env": "FAKE_OPENAI_KEY", "timeout": "1s"},
            "anthropic": {"base_url": self.base_url, "api_key_env": "FAKE_ANTHROPIC_KEY", "timeout": "1s"},
            "down": {"base_url": "http://127.0.0.1:9/v1"},
        })
        .to_string()
    }
}

fn credential(req: &HttpRequest) -> String {
    let h = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    format!("authorization={};x-api-key={}", h("authorization"), h("x-api-key"))
}

fn words(body: &Value) -> i64 {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let text: i64 = messages
        .iter()
        .map(|m| match &m["content"] {
            Value::String(s) => s.split_whitespace().count() as i64,
            Value::Array(parts) => {
                parts.iter().filter_map(|p| p["text"].as_str()).map(|t| t.split_whitespace().count() as i64).sum()
            }
            _ => 0,
        })
        .sum();
    let system = body["system"].as_str().map_or(0, |s| s.split_whitespace().count() as i64);
    text + system + 3 * messages.len() as i64
}

fn sse(model: &str, events: Vec<String>) -> HttpResponse {
    let pause = Duration::from_millis(if model.starts_with("long-") { 300 } else { 5 });
    let stream = futures_util::stream::unfold(events.into_iter(), move |mut it| async move {
        let next = it.next()?;
        tokio::time::sleep(pause).await;
        Some((Ok::<_, actix_web::Error>(web::Bytes::from(next)), it))
    });
    HttpResponse::Ok().content_type("text/event-stream").streaming(stream)
}

async fn misbehave(model: &str) -> Option<u16> {
    if model.starts_with("slow-") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    model.starts_with("broken-").then_some(500)
}

async fn chat(req: HttpRequest, seen: web::Data<Seen>, body: web::Json<Value>) -> HttpResponse {
    let body = body.into_inner();
    seen.requests.lock().unwrap().push(("/v1/chat/completions".into(), credential(&req), body.clone()));
    let model = body["model"].as_str().unwrap_or("").to_string();
    if misbehave(&model).await.is_some() {
        return HttpResponse::InternalServerError()
            .json(json!({"error": {"message": "the fake provider broke", "type": "server_error", "code": null}}));
    }
    if credential(&req) != format!("authorization=Bearer {OPENAI_SECRET};x-api-key=") {
        return HttpResponse::Unauthorized()
            .json(json!({"error": {"message": "bad key", "type": "invalid_request_error"}}));
    }
    if model.starts_with("cut-") {
        let first = if body["stream"].as_bool() == Some(true) {
            format!(
                "data: {}\n\n",
                json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1,
                "model": model, "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": null}]})
            )
        } else {
            "{\"id\": \"chatcmpl-fake\", \"choices\": [".to_string()
        };
        let parts = vec![Ok(web::Bytes::from(first)), Err(actix_web::error::ErrorInternalServerError("cut"))];
        let stream = futures_util::stream::iter(parts).then(|part| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            part
        });
        let kind = if body["stream"].as_bool() == Some(true) { "text/event-stream" } else { "application/json" };
        return HttpResponse::Ok().content_type(kind).streaming(stream);
    }
    let cap = body["max_completion_tokens"].as_i64().or(body["max_tokens"].as_i64()).unwrap_or(16);
    let n = body["n"].as_i64().unwrap_or(1);
    let (prompt, completion) = (words(&body), cap * n);
    let usage = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                       "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}});
    if body["stream"].as_bool() == Some(true) {
        let chunk = |delta: Value, finish: Value| {
            format!(
                "data: {}\n\n",
                json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            )
        };
        let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
        events.extend(["Hello", " from", " the fake"].map(|t| chunk(json!({"content": t}), Value::Null)));
        events.push(chunk(json!({}), json!("stop")));
        if body["stream_options"]["include_usage"].as_bool() == Some(true) {
            events.push(format!(
                "data: {}\n\n",
                json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1,
                "model": model, "choices": [], "usage": usage})
            ));
        }
        events.push("data: [DONE]\n\n".to_string());
        return sse(&model, events);
    }
    HttpResponse::Ok().json(json!({
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": model,
        "choices": (0..n).map(|i| json!({"index": i, "message": {"role": "assistant", "content": "Hello from the fake"},
                    "finish_reason": "stop"})).collect::<Vec<_>>(),
        "usage": usage,
    }))
}

async fn embeddings(req: HttpRequest, seen: web::Data<Seen>, body: web::Json<Value>) -> HttpResponse {
    let body = body.into_inner();
    seen.requests.lock().unwrap().push(("/v1/embeddings".into(), credential(&req), body.clone()));
    let inputs: Vec<Value> = match &body["input"] {
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    };
    let tokens: i64 = inputs.iter().map(|i| i.as_str().map_or(1, |s| s.split_whitespace().count() as i64)).sum();
    HttpResponse::Ok().json(json!({
        "object": "list", "model": body["model"],
        "data": inputs.iter().enumerate().map(|(i, _)| json!({"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]})).collect::<Vec<_>>(),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
}

async fn messages(req: HttpRequest, seen: web::Data<Seen>, body: web::Json<Value>) -> HttpResponse {
    let body = body.into_inner();
    seen.requests.lock().unwrap().push(("/v1/messages".into(), credential(&req), body.clone()));
    let model = body["model"].as_str().unwrap_or("").to_string();
    if misbehave(&model).await.is_some() {
        return HttpResponse::InternalServerError()
            .json(json!({"type": "error", "error": {"type": "api_error", "message": "the fake provider broke"}}));
    }
    if credential(&req) != format!("authorization=;x-api-key={ANTHROPIC_SECRET}") {
        return HttpResponse::Unauthorized()
            .json(json!({"type": "error", "error": {"type": "authentication_error", "message": "bad key"}}));
    }
    let cap = body["max_tokens"].as_i64().unwrap_or(0);
    let input = words(&body);
    // Half of the prompt is "read from the cache", to check that Budget counts it as input.
    let (plain, cached) = (input - input / 2, input / 2);
    if body["stream"].as_bool() == Some(true) {
        let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
        let mut events = vec![
            event(
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_fake", "type": "message", "role": "assistant",
                "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": plain, "cache_read_input_tokens": cached, "cache_creation_input_tokens": 0, "output_tokens": 1}}}),
            ),
            event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
        ];
        for t in ["Hello", " from", " the fake"] {
            events.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}),
            ));
        }
        events.push(event("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
        events.push(event(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": cap}}),
        ));
        events.push(event("message_stop", json!({"type": "message_stop"})));
        return sse(&model, events);
    }
    HttpResponse::Ok().json(json!({
        "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": "Hello from the fake"}], "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": plain, "cache_read_input_tokens": cached, "cache_creation_input_tokens": 0, "output_tokens": cap},
    }))
}
