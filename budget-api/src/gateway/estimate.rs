//! How many input tokens a request can cost at most, before the model's tokenizer has seen it.
//!
//! The bound: the byte-level BPE tokenizers of OpenAI, Anthropic, Llama 3 and Mistral's later models
//! (and SentencePiece with byte fallback) make every token of at least one byte, so a prompt has no
//! more tokens than bytes. What the model reads (each message's text, tool definitions, the schema of
//! a structured answer) is all inside the request's JSON, and the JSON around it (quotes, keys, braces)
//! is longer than the few special tokens a chat template adds per message; so the request's size in
//! bytes bounds its input tokens. Images and audio are the exception, billed by size, not bytes: each
//! such part counts [`MEDIA_TOKENS`] instead of its bytes. The bound is loose (English prose is about
//! four bytes a token), which only reserves more than is spent: the rest is released at settlement.

use serde_json::Value;

/// What one image or audio part reserves: above what OpenAI's GPT-4o family (1,445 for a
/// 2048×768 high-detail image) and Anthropic (about 1,600 for the largest image it takes) bill for one.
pub const MEDIA_TOKENS: i64 = 2_000;

/// The input-token bound of a request body (see the module's doc).
pub fn input_tokens(body: &Value) -> i64 {
    match body {
        Value::Object(map) => {
            map.iter()
                .map(|(k, v)| if is_media(k, v) { MEDIA_TOKENS } else { k.len() as i64 + 4 + input_tokens(v) })
                .sum::<i64>()
                + 2
        }
        Value::Array(items) => items.iter().map(|v| input_tokens(v) + 1).sum::<i64>() + 2,
        Value::String(s) => s.len() as i64 + 2,
        other => other.to_string().len() as i64,
    }
}

/// An image or audio part: OpenAI's `image_url` / `input_audio` / `file`, Anthropic's `source` of an
/// image or document block.
fn is_media(key: &str, value: &Value) -> bool {
    matches!(key, "image_url" | "input_audio" | "file")
        || (key == "source" && value.get("type").and_then(Value::as_str).is_some_and(|t| t == "base64" || t == "url"))
}

/// Embedding inputs: token-id arrays are counted exactly, text by the bytes bound.
pub fn embedding_tokens(input: &Value) -> i64 {
    match input {
        Value::String(s) => s.len() as i64 + 1,
        Value::Number(_) => 1,
        Value::Array(items) => items.iter().map(embedding_tokens).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_bound_is_above_the_bytes_of_the_text_and_counts_media_by_allowance() {
        let text = "Ünïcödé prose, about four bytes a token.";
        let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": text}]});
        let bound = input_tokens(&body);
        assert!(bound >= text.len() as i64 + 4, "at least the text's bytes and a template's tokens");
        assert!(bound <= serde_json::to_string(&body).unwrap().len() as i64 * 2);

        let image = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{}", "A".repeat(100_000))}}
        ]}]});
        let b = input_tokens(&image);
        assert!((MEDIA_TOKENS..MEDIA_TOKENS + 200).contains(&b), "an image costs its allowance, not its bytes: {b}");

        assert_eq!(embedding_tokens(&json!([[1, 2, 3], [4]])), 4, "token ids are exact");
        assert_eq!(embedding_tokens(&json!(["ab", "c"])), 5);
    }
}
