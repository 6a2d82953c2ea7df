//! Anthropic's wire format: the usage of a message (whole or streamed) and the error shape its SDKs
//! parse. Anthropic counts cache reads and writes beside `input_tokens`; Budget counts them as parts of
//! the input.

use serde_json::{json, Value};

use super::ledger::Usage;
use super::sse::SseEvent;

/// The usage object of a message or of a `message_start` event.
pub fn usage_of(u: &Value) -> Option<Usage> {
    let plain = u["input_tokens"].as_i64()?;
    let cache_read = u["cache_read_input_tokens"].as_i64().unwrap_or(0);
    let cache_creation = u["cache_creation_input_tokens"].as_i64().unwrap_or(0);
    Some(Usage {
        input: plain + cache_read + cache_creation,
        cached_input: cache_read,
        cache_creation,
        output: u["output_tokens"].as_i64().unwrap_or(0),
        reasoning: 0,
    })
}

/// What a streamed event means to the gateway.
pub enum Seen {
    Forward,
    /// `message_stop`: held until the call is settled.
    End,
}

/// Reads one streamed event: `message_start` carries the input, each `message_delta` the output so far.
pub fn observe(event: &SseEvent, usage: &mut Option<Usage>) -> Seen {
    let kind = event.event.as_deref().unwrap_or("");
    if kind == "message_stop" {
        return Seen::End;
    }
    let Ok(data) = serde_json::from_str::<Value>(&event.data) else { return Seen::Forward };
    match kind {
        "message_start" => {
            if let Some(u) = usage_of(&data["message"]["usage"]) {
                *usage = Some(u);
            }
        }
        "message_delta" => {
            if let (Some(u), Some(output)) = (usage.as_mut(), data["usage"]["output_tokens"].as_i64()) {
                u.output = output;
                // Newer API versions repeat the input figures here; they are final.
                if let Some(updated) = usage_of(&data["usage"]) {
                    *u = updated;
                }
            }
        }
        _ => {}
    }
    Seen::Forward
}

/// Anthropic's error shape: `{"type": "error", "error": {"type", "message"}}`.
pub fn error_body(status: u16, message: &str) -> Value {
    let kind = match status {
        400 | 413 | 415 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        504 => "timeout_error",
        _ => "api_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_reads_and_writes_are_parts_of_the_input() {
        let u = json!({"input_tokens": 10, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20,
                       "output_tokens": 5});
        assert_eq!(
            usage_of(&u),
            Some(Usage { input: 130, cached_input: 100, cache_creation: 20, output: 5, reasoning: 0 })
        );
        let mut seen = None;
        let start = SseEvent {
            raw: vec![],
            event: Some("message_start".into()),
            data: json!({"message": {"usage": {"input_tokens": 9, "output_tokens": 1}}}).to_string(),
        };
        let delta = SseEvent {
            raw: vec![],
            event: Some("message_delta".into()),
            data: json!({"usage": {"output_tokens": 42}}).to_string(),
        };
        observe(&start, &mut seen);
        observe(&delta, &mut seen);
        assert_eq!(seen.map(|u| (u.input, u.output)), Some((9, 42)));
    }
}
