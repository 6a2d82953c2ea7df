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
    /// A client of the API at `base`, sending `api_key` (if any) with every request.
    pub fn new(base: &str, api_key: Option<&str>) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = api_key.map(str::trim).filter(|k| !k.is_empty()) {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
                .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static(""));
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder().default_headers(headers).build().expect("a plain HTTP client builds");
        Client { base: base.trim_end_matches('/').to_string(), http }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<T, ClientError> {
        let request = self.http.get(format!("{}{path}", self.base)).query(query);
        self.send(request).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ClientError> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body)).await
    }

    /// Remembers the log position a write answered with, for [`Client::last_write`].
    pub fn remember_write(&self, position: Option<i64>) {
        if let Some(position) = position {
            LastWrite::save(&self.base, position);
        }
    }

    /// The log position of this user's last write to this server, if it was made in the last minute: a
    /// read of a projection (alerts, usage) passes it as `min_position`, so a command run right after
    /// another sees that one's write (`budget alerts acknowledge` then `budget alerts list`).
    pub fn last_write(&self) -> Option<i64> {
        LastWrite::load(&self.base)
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
        match serde_json::from_slice(&bytes) {
            Ok(answer) => Ok(answer),
            // A 503 is an answer where the route says so (health: the database is down), else an error.
            Err(_) if status.as_u16() == 503 => Err(refused(503, &bytes)),
            Err(e) => Err(ClientError::Unexpected { url: self.base.clone(), detail: e.to_string() }),
        }
    }
}

/// The last write's position per server, one small file each under the user's state directory
/// (`$XDG_STATE_HOME/budget`, or `~/.local/state/budget`). Best effort: without a writable directory
/// reads simply do not wait.
struct LastWrite;

impl LastWrite {
    /// How long a write is worth waiting for: reads that come later see it anyway.
    const FRESH_SECONDS: u64 = 60;

    fn path(base: &str) -> Option<std::path::PathBuf> {
        let dir = std::env::var_os("XDG_STATE_HOME")
            .filter(|d| !d.is_empty())
            .map(std::path::PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".local/state")))?;
        let name: String = base.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        Some(dir.join("budget").join(format!("last-write-{name}")))
    }

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }

    fn save(base: &str, position: i64) {
        if let Some(path) = Self::path(base) {
            let _ = path.parent().map(std::fs::create_dir_all);
            let _ = std::fs::write(path, format!("{position} {}", Self::now()));
        }
    }

    fn load(base: &str) -> Option<i64> {
        let text = std::fs::read_to_string(Self::path(base)?).ok()?;
        let (position, at) = text.trim().split_once(' ')?;
        let at: u64 = at.parse().ok()?;
        (Self::now().saturating_sub(at) <= Self::FRESH_SECONDS).then(|| position.parse().ok()).flatten()
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
