//! How many input tokens a request can cost at most, before the provider has counted them.
//!
//! Two counters, one walk. With OpenAI's own tokenizer (`tiktoken-rs`, for the models it knows, called
//! through the `openai` upstream): every string of the request is counted in tokens, and every key,
//! string, item and object adds a few more for the JSON around it, which is more than the special
//! tokens a chat template adds per message (3, and 3 to prime the answer) and more than the compact
//! form tool definitions are rendered in. Without one (other providers and models), bytes: the
//! byte-level BPE tokenizers of OpenAI, Anthropic, Llama 3 and Mistral's later models (and SentencePiece
//! with byte fallback) make every token of at least one byte, so counting bytes where the walk counts
//! tokens bounds the prompt too, about four times too high for English prose. Either way images and
//! audio are billed by size, not bytes: each such part counts [`media_tokens`]. A bound too high only
//! reserves more than is spent; the rest is released at settlement.

use serde_json::Value;

/// What one image or audio part reserves: above what OpenAI bills for the largest image (GPT-4o 1,445
/// for 2048×768 at high detail, GPT-4.1-nano's patches ×2.46 about 3,780) and Anthropic (about 1,600).
pub const MEDIA_TOKENS: i64 = 4_000;

/// GPT-4o-mini bills images at 2,833 + 5,667 per 512-px tile, up to 8 tiles.
pub const MINI_MEDIA_TOKENS: i64 = 2_833 + 5_667 * 8;

/// What one image or audio part of a call to `model` reserves.
pub fn media_tokens(model: &str) -> i64 {
    if model.starts_with("gpt-4o-mini") {
        MINI_MEDIA_TOKENS
    } else {
        MEDIA_TOKENS
    }
}

/// What strings are counted in.
#[derive(Clone, Copy)]
pub enum Counter {
    /// UTF-8 bytes: a bound for any byte-level tokenizer.
    Bytes,
    /// The model's own tokenizer.
    Tokenizer(&'static tiktoken_rs::CoreBPE),
}

impl Counter {
    /// OpenAI's tokenizer for a model OpenAI serves and `tiktoken-rs` knows; bytes otherwise.
    pub fn for_model(provider: &str, model: &str) -> Counter {
        if provider != "openai" {
            return Counter::Bytes;
        }
        tiktoken_rs::tokenizer::get_tokenizer(model)
            .and_then(|t| tiktoken_rs::bpe_for_tokenizer(t).ok())
            .map_or(Counter::Bytes, Counter::Tokenizer)
    }

    pub fn is_tokenizer(&self) -> bool {
        matches!(self, Counter::Tokenizer(_))
    }

    fn count(&self, s: &str) -> i64 {
        match self {
            Counter::Bytes => s.len() as i64,
            Counter::Tokenizer(bpe) => bpe.encode_ordinary(s).len() as i64,
        }
    }
}

/// The input-token bound of a request body (see the module's doc).
/// `media` is what each image or audio part counts ([`media_tokens`]).
pub fn input_tokens(body: &Value, counter: Counter, media: i64) -> i64 {
    match body {
        Value::Object(map) => {
            map.iter()
                .map(
                    |(k, v)| {
                        if is_media(k, v) {
                            media
                        } else {
                            counter.count(k) + 4 + input_tokens(v, counter, media)
                        }
                    },
                )
                .sum::<i64>()
                + 2
        }
        Value::Array(items) => items.iter().map(|v| input_tokens(v, counter, media) + 1).sum::<i64>() + 2,
        Value::String(s) => counter.count(s) + 2,
        other => counter.count(&other.to_string()),
    }
}

/// An image or audio part: OpenAI's `image_url` / `input_audio` / `file`, Anthropic's `source` of an
/// image or document block.
fn is_media(key: &str, value: &Value) -> bool {
    matches!(key, "image_url" | "input_audio" | "file")
        || (key == "source" && value.get("type").and_then(Value::as_str).is_some_and(|t| t == "base64" || t == "url"))
}

/// Embedding inputs: token-id arrays are counted exactly, text with the counter.
pub fn embedding_tokens(input: &Value, counter: Counter) -> i64 {
    match input {
        Value::String(s) => counter.count(s) + 1,
        Value::Number(_) => 1,
        Value::Array(items) => items.iter().map(|i| embedding_tokens(i, counter)).sum(),
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
        let bound = input_tokens(&body, Counter::Bytes, MEDIA_TOKENS);
        assert!(bound >= text.len() as i64 + 4, "at least the text's bytes and a template's tokens");
        assert!(bound <= serde_json::to_string(&body).unwrap().len() as i64 * 2);

        let image = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{}", "A".repeat(100_000))}}
        ]}]});
        let b = input_tokens(&image, Counter::Bytes, media_tokens("gpt-4o"));
        assert!((MEDIA_TOKENS..MEDIA_TOKENS + 200).contains(&b), "an image costs its allowance, not its bytes: {b}");
        let mini = input_tokens(&image, Counter::Bytes, media_tokens("gpt-4o-mini"));
        assert!(mini > 48_000, "gpt-4o-mini's images are billed at up to 48,169 tokens: {mini}");

        assert_eq!(embedding_tokens(&json!([[1, 2, 3], [4]]), Counter::Bytes), 4, "token ids are exact");
        assert_eq!(embedding_tokens(&json!(["ab", "c"]), Counter::Bytes), 5);
    }

    /// With OpenAI's tokenizer the bound is the text's own tokens plus a little per message: above what
    /// OpenAI's documented count gives (3 per message, 1 per name, 3 to prime the answer), far below bytes.
    #[test]
    fn openais_tokenizer_bounds_a_chat_closely_and_from_above() {
        let counter = Counter::for_model("openai", "gpt-4o");
        assert!(counter.is_tokenizer());
        assert!(!Counter::for_model("anthropic", "claude-sonnet-4").is_tokenizer(), "not OpenAI's tokenizer");
        assert!(!Counter::for_model("openai", "some-future-model").is_tokenizer(), "unknown: bytes");
        let Counter::Tokenizer(bpe) = counter else { unreachable!() };
        let prose = "The quick brown fox jumps over the lazy dog. ".repeat(50);
        let messages =
            [("system", "You are terse."), ("user", prose.as_str()), ("assistant", "Yes."), ("user", "Again?")];
        let body = json!({"model": "gpt-4o", "messages": messages.iter().map(|(r, c)| json!({"role": r, "content": c})).collect::<Vec<_>>()});
        let documented: i64 = messages
            .iter()
            .map(|(r, c)| 3 + (bpe.encode_ordinary(r).len() + bpe.encode_ordinary(c).len()) as i64)
            .sum::<i64>()
            + 3;
        let bound = input_tokens(&body, counter, MEDIA_TOKENS);
        assert!(bound >= documented, "{bound} < {documented}");
        assert!(bound <= documented + 100, "close: {bound} against {documented}");
        assert!(input_tokens(&body, Counter::Bytes, MEDIA_TOKENS) > 3 * bound, "bytes are the loose bound");
    }
}
