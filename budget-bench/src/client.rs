//! The load generator's HTTP client: one keep-alive HTTP/1.1 connection per simulated client, with
//! what every request repeats (host, key) prepared once.
//!
//! The load generator shares the cores with the service and PostgreSQL, so what it spends per request
//! is taken from what it measures. Through reqwest it spent 64-68 µs of CPU per single record (a fifth
//! of the machine's 334-366 µs, by `budget bench`'s CPU line), parsing a URL and checking a connection
//! out of a pool on every request; on a connection of its own, 34-42 µs. Real clients run elsewhere.

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// One connection to the service, authenticated with one API key.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    host: HeaderValue,
    authorization: HeaderValue,
}

/// A response: its status, whether it was an idempotent replay, and its body.
pub struct Answer {
    pub status: u16,
    pub replayed: bool,
    pub body: Bytes,
}

impl Answer {
    /// An error for an answer the load did not expect: its status and the server's explanation.
    pub fn unexpected(&self, what: &str) -> anyhow::Error {
        anyhow::anyhow!("{what} answered {}: {}", self.status, String::from_utf8_lossy(&self.body))
    }

    /// The body as JSON of type `T`, or an error that quotes it.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> anyhow::Result<T> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("unexpected answer {}: {}", self.status, String::from_utf8_lossy(&self.body)))
    }
}

impl Connection {
    /// Connects to `url` (`http://host:port`) as the holder of `key`.
    pub async fn open(url: &str, key: &str) -> anyhow::Result<Connection> {
        let authority = url.strip_prefix("http://").with_context(|| format!("{url} is not an http:// URL"))?;
        let stream = tokio::net::TcpStream::connect(authority).await.with_context(|| format!("connecting to {url}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // Drives the socket; it ends when `sender` is dropped or the server closes the connection (which
        // the next request then reports).
        tokio::spawn(connection);
        Ok(Connection {
            sender,
            host: HeaderValue::from_str(authority)?,
            authorization: HeaderValue::from_str(&format!("Bearer {key}"))?,
        })
    }

    /// `POST path` with a JSON `body` and an `Idempotency-Key`.
    pub async fn post(&mut self, path: &str, idempotency: &str, body: Bytes) -> anyhow::Result<Answer> {
        let request = Request::post(path)
            .header(HOST, self.host.clone())
            .header(AUTHORIZATION, self.authorization.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", idempotency)
            .body(Full::new(body))?;
        self.sender.ready().await.with_context(|| format!("POST {path}: the connection closed"))?;
        let response = self.sender.send_request(request).await.with_context(|| format!("POST {path}"))?;
        let status = response.status().as_u16();
        let replayed = response.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer { status, replayed, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unexpected_answer_says_its_status_and_the_servers_reason() {
        let answer = Answer { status: 429, replayed: false, body: Bytes::from_static(b"{\"error\":\"rate_limited\"}") };
        assert_eq!(
            answer.unexpected("POST /api/usage").to_string(),
            "POST /api/usage answered 429: {\"error\":\"rate_limited\"}"
        );
    }
}
