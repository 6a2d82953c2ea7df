//! Server-sent events as both upstream APIs stream them: events separated by a blank line, each a
//! few `field: value` lines. The gateway reads every event (for the usage it carries) and forwards the
//! bytes it chooses, unchanged.

/// One event: its raw bytes (with the blank line that ends it) and its `event:` and `data:` fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub raw: Vec<u8>,
    pub event: Option<String>,
    pub data: String,
}

/// Splits a byte stream into events as the bytes arrive.
#[derive(Debug, Default)]
pub struct SseSplitter {
    buffer: Vec<u8>,
}

impl SseSplitter {
    /// Adds bytes and returns the events they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = event_end(&self.buffer) {
            let raw: Vec<u8> = self.buffer.drain(..end).collect();
            events.push(parse(raw));
        }
        events
    }

    /// What is left when the stream ends without a final blank line.
    pub fn finish(&mut self) -> Option<SseEvent> {
        let raw = std::mem::take(&mut self.buffer);
        (!raw.iter().all(u8::is_ascii_whitespace)).then(|| parse(raw))
    }
}

/// The end of the first complete event: after `\n\n`, `\r\n\r\n` or `\r\r`.
fn event_end(b: &[u8]) -> Option<usize> {
    (0..b.len()).find_map(|i| {
        if b[i..].starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if b[i..].starts_with(b"\n\n") || b[i..].starts_with(b"\r\r") {
            Some(i + 2)
        } else {
            None
        }
    })
}

fn parse(raw: Vec<u8>) -> SseEvent {
    let text = String::from_utf8_lossy(&raw);
    let mut event = None;
    let mut data: Vec<&str> = Vec::new();
    for line in text.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = Some(value.to_string()),
            "data" => data.push(value),
            _ => {}
        }
    }
    let data = data.join("\n");
    SseEvent { raw, event, data }
}

/// A comment line (ignored by every SSE client) carrying the gateway's figures at the end of a stream.
pub fn comment(text: &str) -> Vec<u8> {
    format!(": {text}\n\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_reads_come_out_whole() {
        let mut s = SseSplitter::default();
        assert!(s.push(b"event: message_start\ndata: {\"a\":").is_empty());
        let events = s.push(b"1}\n\ndata: [DONE]\r\n\r\ndata: x");
        assert_eq!(events.len(), 2);
        assert_eq!((events[0].event.as_deref(), events[0].data.as_str()), (Some("message_start"), "{\"a\":1}"));
        assert_eq!(events[0].raw, b"event: message_start\ndata: {\"a\":1}\n\n");
        assert_eq!(events[1].data, "[DONE]");
        assert_eq!(s.finish().map(|e| e.data), Some("x".to_string()));
    }
}
