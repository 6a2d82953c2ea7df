//! The HTTP client every command but `start` uses, and the one-line errors it turns failures into.

use budget_api::error::ErrorBody;
use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach Budget at {url} — is `budget start` running? set --url or BUDGET_URL")]
    Unreachable { url: String },
    #[error("{message} ({code}, HTTP {status})")]
    Refused { status: u16, code: String, message: String },
    #[error("unexpected answer from {url}: {detail}")]
    Unexpected { url: String, detail: String },
}

pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str) -> Self {
        Client { base: base.trim_end_matches('/').to_string(), http: reqwest::Client::new() }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<T, ClientError> {
        let request = self.http.get(format!("{}{path}", self.base)).query(query);
        self.send(request).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ClientError> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body)).await
    }

    /// A GET whose body the caller reads as it arrives (exports, replays); errors as for [`Client::get`].
    pub async fn get_stream(&self, path: &str, query: &[(&str, String)]) -> Result<reqwest::Response, ClientError> {
        self.open(self.http.get(format!("{}{path}", self.base)).query(query)).await
    }

    /// A POST whose body the caller reads as it arrives.
    pub async fn post_stream<B: Serialize>(&self, path: &str, body: &B) -> Result<reqwest::Response, ClientError> {
        self.open(self.http.post(format!("{}{path}", self.base)).json(body)).await
    }

    async fn open(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let response = request.send().await.map_err(|e| self.failed(e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| self.failed(e))?;
        Err(refused(status, &bytes))
    }

    fn failed(&self, e: reqwest::Error) -> ClientError {
        if e.is_connect() || e.is_timeout() {
            ClientError::Unreachable { url: self.base.clone() }
        } else {
            ClientError::Unexpected { url: self.base.clone(), detail: e.to_string() }
        }
    }

    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, ClientError> {
        let response = request.send().await.map_err(|e| self.failed(e))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Unexpected { url: self.base.clone(), detail: e.to_string() })?;
        if !status.is_success() && status.as_u16() != 503 {
            return Err(refused(status.as_u16(), &bytes));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Unexpected { url: self.base.clone(), detail: e.to_string() })
    }
}

/// The API's JSON error as a one-line refusal (a body that is not one, from a proxy say, as it came).
fn refused(status: u16, bytes: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(ErrorBody { error }) => ClientError::Refused { status, code: error.code, message: error.message },
        Err(_) => ClientError::Refused {
            status,
            code: "unknown".into(),
            message: String::from_utf8_lossy(bytes).into_owned(),
        },
    }
}
