//! Request bodies: read with a size cap, parsed with the path of the field at fault.
//!
//! We read raw bytes instead of using `web::Json`, so that a missing `Content-Type` is accepted, and so
//! that every failure becomes our JSON error with a message that names the field. (`curl -d` without
//! `-H 'Content-Type: application/json'` sends a form type, which the guard refuses with a 415 that
//! says so: a page on another site can post forms and text without asking, JSON it cannot.)

use actix_web::web;
use budget_events::ErrorCode;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Reads at most `limit` bytes of body.
pub async fn read(mut payload: web::Payload, limit: usize) -> Result<web::Bytes, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::bad_request(ErrorCode::InvalidBody, format!("could not read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Parses JSON; the error names the field (`records[3].input_tokens: invalid type…`). Malformed JSON is
/// `invalid_json`; well-formed JSON with a wrong, missing or unknown field is `validation_failed`.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(ErrorCode::InvalidJson, "the request body is empty; send a JSON object"));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let parsed = serde_path_to_error::deserialize(&mut *de);
    if let Err(e) = &parsed {
        // JSON Schema calls 348.0 an integer; so do we (a client computing token counts as floats).
        // Only tried when the body did not parse as sent, so good bodies pay nothing for it.
        if e.inner().is_data() {
            if let Some(v) = with_whole_floats_as_integers(body) {
                return Ok(v);
            }
        }
    }
    let value = parsed.map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let code = if inner.is_data() { ErrorCode::ValidationFailed } else { ErrorCode::InvalidJson };
        // A field's error is found by its path; where serde was in the text says nothing more
        // ("amounts must be zero or more at line 1 column 34"). Malformed JSON keeps it.
        let located = format!(" at line {} column {}", inner.line(), inner.column());
        let text = inner.to_string();
        let text = if inner.is_data() { text.strip_suffix(&located).unwrap_or(&text) } else { &text };
        // "missing field `provider`" is the field's own error: named by its path, as a wrong one is.
        if let Some(field) = text.strip_prefix("missing field `").and_then(|t| t.strip_suffix('`')) {
            let path = if path == "." || path.is_empty() { field.to_string() } else { format!("{path}.{field}") };
            let message = format!("{path} is missing; it is required");
            return ApiError::BadRequest { code, message, details: Some(serde_json::json!({ "path": path })) };
        }
        let inner = in_words(text);
        let message = if path == "." || path.is_empty() {
            format!("the body is not valid: {inner}")
        } else {
            format!("{path}: {inner}")
        };
        ApiError::BadRequest { code, message, details: Some(serde_json::json!({ "path": path })) }
    })?;
    // `{…}{…}` must not parse as its first value with the rest silently dropped.
    de.end().map_err(|e| {
        ApiError::bad_request(
            ErrorCode::InvalidJson,
            format!("unexpected data after the JSON value ({e}); send one JSON value per request, or use POST /api/usage/batch for many records"),
        )
    })?;
    Ok(value)
}

/// The body again, with every number that is a whole number written as a float (`348.0`, `1e3`)
/// rewritten as an integer, if it then parses as `T`.
fn with_whole_floats_as_integers<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    fn rewrite(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Number(n) => {
                let text = n.to_string();
                if text.contains(['.', 'e', 'E']) {
                    let d = if text.contains(['e', 'E']) {
                        rust_decimal::Decimal::from_scientific(&text).ok()
                    } else {
                        rust_decimal::Decimal::from_str_exact(&text).ok()
                    };
                    if let Some(whole) = d.filter(|d| d.fract().is_zero()).and_then(|d| i64::try_from(d).ok()) {
                        *n = whole.into();
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(rewrite),
            serde_json::Value::Object(fields) => fields.values_mut().for_each(rewrite),
            _ => {}
        }
    }
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    rewrite(&mut value);
    serde_json::from_value(value).ok()
}

/// serde's Rust type names in words a client understands: `expected i64` is "expected a whole number".
fn in_words(message: &str) -> String {
    const TYPES: [(&str, &str); 12] = [
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected u16", "expected a whole number from 0 to 65,535"),
        ("expected u32", "expected a whole number from 0 to 4,294,967,295"),
        ("expected u64", "expected a whole number of 0 or more"),
        ("expected usize", "expected a whole number of 0 or more"),
        ("expected i8", "expected a whole number from -128 to 127"),
        ("expected i16", "expected a whole number from -32,768 to 32,767"),
        ("expected i32", "expected a whole number from -2,147,483,648 to 2,147,483,647"),
        ("expected i64", "expected a whole number"),
        ("expected isize", "expected a whole number"),
        ("expected f32", "expected a number"),
        ("expected f64", "expected a number"),
    ];
    // No name is the start of another (`expected i16`, `expected i128`), so plain replacing is exact.
    TYPES.iter().fold(message.to_string(), |out, (rust, words)| out.replace(rust, words))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        tokens: Option<i64>,
        days: Option<u32>,
        priority: Option<i16>,
        share: Option<f64>,
    }

    fn message(body: &str) -> String {
        match parse::<Body>(body.as_bytes()) {
            Err(crate::error::ApiError::BadRequest { message, .. }) => message,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn a_wrong_type_is_named_in_words_not_rust_types() {
        assert_eq!(message(r#"{"tokens": "12"}"#), r#"tokens: invalid type: string "12", expected a whole number"#);
        assert!(message(r#"{"days": -1}"#).contains("expected a whole number from 0 to 4,294,967,295"));
        assert!(message(r#"{"priority": 40000}"#).contains("expected a whole number from -32,768 to 32,767"));
        assert!(message(r#"{"share": "x"}"#).contains("expected a number"));
    }

    /// A field's error names the field; where serde found it in the text ("at line 1 column 18") only
    /// helps with JSON that does not parse, so only that keeps it.
    #[test]
    fn only_malformed_json_says_where_in_the_text() {
        assert_eq!(
            message(r#"{"days": -1}"#),
            "days: invalid value: integer `-1`, expected a whole number from 0 to 4,294,967,295"
        );
        assert!(message(r#"{"days": }"#).ends_with("at line 1 column 10"), "{}", message(r#"{"days": }"#));
    }

    /// A missing field is named by its path, as a wrong one is, in a record of a batch too.
    #[test]
    fn a_missing_field_is_named_by_its_path() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Record {
            provider: String,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Batch {
            records: Vec<Record>,
        }
        let refused = |body: &str| match parse::<Batch>(body.as_bytes()) {
            Err(crate::error::ApiError::BadRequest { message, details, .. }) => (message, details.unwrap()),
            other => panic!("{body}: {other:?}"),
        };
        let (message, details) = refused(r#"{"records": [{"provider": "openai"}, {}]}"#);
        assert_eq!(message, "records[1].provider is missing; it is required");
        assert_eq!(details["path"], "records[1].provider");
        let (message, details) = refused("{}");
        assert_eq!((message.as_str(), &details["path"]), ("records is missing; it is required", &"records".into()));
    }
}
