//! OpenAI's wire format: where a request says its cap and stream options, where an answer reports its
//! usage (whole or streamed), and the error shape its SDKs parse.

use serde_json::{json, Value};

use super::ledger::Usage;
use super::sse::SseEvent;

/// `usage` of a chat completion, a streamed chunk or an embedding answer.
pub fn usage(answer: &Value) -> Option<Usage> {
    let u = answer.get("usage").filter(|u| u.is_object())?;
    Some(Usage {
        input: u["prompt_tokens"].as_i64()?,
        cached_input: u["prompt_tokens_details"]["cached_tokens"].as_i64().unwrap_or(0),
        cache_creation: 0,
        output: u["completion_tokens"].as_i64().unwrap_or(0),
        reasoning: u["completion_tokens_details"]["reasoning_tokens"].as_i64().unwrap_or(0),
    })
}

/// The answer's cap: the smaller of `max_completion_tokens` and `max_tokens` when the client sent one.
pub fn client_cap(body: &Value) -> Option<i64> {
    [body.get("max_completion_tokens"), body.get("max_tokens")].into_iter().flatten().filter_map(Value::as_i64).min()
}

/// How many answers a chat request asks for (`n`), each up to the cap.
pub fn choices(body: &Value) -> i64 {
    body.get("n").and_then(Value::as_i64).unwrap_or(1).max(1)
}

/// Asks a streaming upstream for its final usage chunk; says whether the client had asked for it.
pub fn request_stream_usage(body: &mut Value) -> bool {
    let asked = body["stream_options"]["include_usage"].as_bool() == Some(true);
    if !body.get("stream_options").is_some_and(Value::is_object) {
        body["stream_options"] = json!({});
    }
    body["stream_options"]["include_usage"] = Value::Bool(true);
    asked
}

/// What a streamed event means to the gateway.
pub enum Seen {
    /// Forward it.
    Forward,
    /// The usage-only chunk the client did not ask for: read, not forwarded.
    Drop,
    /// `data: [DONE]`: held until the call is settled.
    End,
}

/// Reads one streamed event, taking its usage.
pub fn observe(event: &SseEvent, client_asked_usage: bool, usage: &mut Option<Usage>) -> Seen {
    if event.data.trim() == "[DONE]" {
        return Seen::End;
    }
    let Ok(chunk) = serde_json::from_str::<Value>(&event.data) else { return Seen::Forward };
    if let Some(u) = self::usage(&chunk) {
        *usage = Some(u);
        let only_usage = chunk["choices"].as_array().is_some_and(Vec::is_empty);
        if only_usage && !client_asked_usage {
            return Seen::Drop;
        }
    }
    Seen::Forward
}

/// OpenAI's error shape: `{"error": {"message", "type", "param", "code"}}`.
pub fn error_body(status: u16, code: &str, message: &str) -> Value {
    let kind = match status {
        400 | 404 | 413 | 415 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "budget_exceeded",
        403 => "permission_error",
        429 => "rate_limit_error",
        _ => "api_error",
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_caps_and_stream_options() {
        let answer = json!({"usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19,
            "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 3}}});
        assert_eq!(
            usage(&answer),
            Some(Usage { input: 12, cached_input: 4, cache_creation: 0, output: 7, reasoning: 3 })
        );
        assert_eq!(usage(&json!({"usage": null})), None);
        assert_eq!(client_cap(&json!({"max_tokens": 50, "max_completion_tokens": 80})), Some(50));
        assert_eq!(choices(&json!({"n": 3})), 3);
        let mut body = json!({"stream": true});
        assert!(!request_stream_usage(&mut body));
        assert_eq!(body["stream_options"]["include_usage"], true);
    }
}
