//! The HTTP client every command but `start` uses, and the one-line errors it turns failures into.

use budget_api::error::ErrorBody;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::endpoint::Endpoint;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach Budget at {url}{from} — is `budget start` running? set --url or BUDGET_URL")]
    Unreachable { url: String, from: String },
    #[error("{message} ({code}, HTTP {status})")]
    Refused { status: u16, code: String, message: String },
    #[error("unexpected answer from {url}: {detail}")]
    Unexpected { url: String, detail: String },
}

pub struct Client {
    base: String,
    /// The variable `base` was built from, if any (`BUDGET_PORT`), named when it cannot be reached.
    from: Option<&'static str>,
    /// `Authorization: Bearer …`, when a key was given (marked sensitive: never in a debug log).
    authorization: Option<hyper::header::HeaderValue>,
    transport: Transport,
}

/// How requests travel. A plain `http://` URL (the usual, local case) goes over hyper alone: building
/// reqwest's client makes OpenSSL load the system's CA certificates, which took ~55 ms of a 70 ms
/// `budget status` (perf; 10 ms without them) and is never used without TLS.
enum Transport {
    Plain(PlainClient),
    Tls(reqwest::Client),
}

type PlainClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<bytes::Bytes>,
>;

/// An answer whose body is read as it arrives.
pub struct Response {
    status: u16,
    url: String,
    body: Body,
}

enum Body {
    Plain(hyper::body::Incoming),
    Tls(reqwest::Response),
}

impl Response {
    /// The next piece of the body, or `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<bytes::Bytes>, ClientError> {
        let unexpected = |detail: String| ClientError::Unexpected { url: self.url.clone(), detail };
        match &mut self.body {
            Body::Tls(r) => r.chunk().await.map_err(|e| unexpected(e.to_string())),
            Body::Plain(incoming) => {
                use http_body_util::BodyExt;
                loop {
                    match incoming.frame().await {
                        None => return Ok(None),
                        Some(Err(e)) => return Err(unexpected(e.to_string())),
                        Some(Ok(frame)) => {
                            if let Ok(data) = frame.into_data() {
                                return Ok(Some(data));
                            }
                        }
                    }
                }
            }
        }
    }

    async fn bytes(mut self) -> Result<Vec<u8>, ClientError> {
        let mut all = Vec::new();
        while let Some(chunk) = self.chunk().await? {
            all.extend_from_slice(&chunk);
        }
        Ok(all)
    }
}

impl Client {
    /// A client of the API at `endpoint`, sending `api_key` (if any) with every request.
    pub fn new(endpoint: &Endpoint, api_key: Option<&str>) -> Self {
        let authorization = api_key.map(str::trim).filter(|k| !k.is_empty()).map(|key| {
            let mut value = hyper::header::HeaderValue::from_str(&format!("Bearer {key}"))
                .unwrap_or_else(|_| hyper::header::HeaderValue::from_static(""));
            value.set_sensitive(true);
            value
        });
        let base = endpoint.url.trim_end_matches('/').to_string();
        let transport = if base.to_ascii_lowercase().starts_with("https://") {
            Transport::Tls(reqwest::Client::builder().build().expect("an HTTPS client builds"))
        } else {
            let executor = hyper_util::rt::TokioExecutor::new();
            Transport::Plain(hyper_util::client::legacy::Client::builder(executor).build_http())
        };
        Client { base, from: endpoint.from, authorization, transport }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<T, ClientError> {
        self.send(self.request("GET", path, query, None).await?).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ClientError> {
        self.send(self.request("POST", path, &[], Some(self.json(body)?)).await?).await
    }

    pub async fn patch<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ClientError> {
        self.send(self.request("PATCH", path, &[], Some(self.json(body)?)).await?).await
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
    pub async fn get_stream(&self, path: &str, query: &[(&str, String)]) -> Result<Response, ClientError> {
        self.open(self.request("GET", path, query, None).await?).await
    }

    /// A POST whose body the caller reads as it arrives.
    pub async fn post_stream<B: Serialize>(&self, path: &str, body: &B) -> Result<Response, ClientError> {
        self.open(self.request("POST", path, &[], Some(self.json(body)?)).await?).await
    }

    fn json<B: Serialize>(&self, body: &B) -> Result<Vec<u8>, ClientError> {
        serde_json::to_vec(body).map_err(|e| ClientError::Unexpected { url: self.base.clone(), detail: e.to_string() })
    }

    /// Sends a request; the answer's body is left to read.
    async fn request(
        &self,
        method: &'static str,
        path: &str,
        query: &[(&str, String)],
        json: Option<Vec<u8>>,
    ) -> Result<Response, ClientError> {
        let mut url = format!("{}{path}", self.base);
        if !query.is_empty() {
            let encoded = serde_urlencoded::to_string(query)
                .map_err(|e| ClientError::Unexpected { url: url.clone(), detail: e.to_string() })?;
            url = format!("{url}?{encoded}");
        }
        match &self.transport {
            Transport::Tls(http) => {
                let mut request = http.request(method.parse().expect("a method"), &url);
                if let Some(auth) = &self.authorization {
                    request = request.header(reqwest::header::AUTHORIZATION, auth.clone());
                }
                if let Some(body) = json {
                    request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
                }
                let response = request.send().await.map_err(|e| self.failed_tls(e))?;
                Ok(Response { status: response.status().as_u16(), url, body: Body::Tls(response) })
            }
            Transport::Plain(http) => {
                let mut request = hyper::Request::builder().method(method).uri(&url);
                if let Some(auth) = &self.authorization {
                    request = request.header(hyper::header::AUTHORIZATION, auth.clone());
                }
                if json.is_some() {
                    request = request.header(hyper::header::CONTENT_TYPE, "application/json");
                }
                let request = request
                    .body(http_body_util::Full::new(bytes::Bytes::from(json.unwrap_or_default())))
                    .map_err(|e| ClientError::Unexpected { url: url.clone(), detail: e.to_string() })?;
                let response = http.request(request).await.map_err(|e| {
                    if e.is_connect() {
                        self.unreachable()
                    } else {
                        ClientError::Unexpected { url: self.base.clone(), detail: e.to_string() }
                    }
                })?;
                let status = response.status().as_u16();
                Ok(Response { status, url, body: Body::Plain(response.into_body()) })
            }
        }
    }

    fn unreachable(&self) -> ClientError {
        let from = self.from.map(|v| format!(" (from {v})")).unwrap_or_default();
        ClientError::Unreachable { url: self.base.clone(), from }
    }

    async fn open(&self, response: Response) -> Result<Response, ClientError> {
        if (200..300).contains(&response.status) {
            return Ok(response);
        }
        let status = response.status;
        Err(refused(status, &response.bytes().await?))
    }

    fn failed_tls(&self, e: reqwest::Error) -> ClientError {
        if e.is_connect() || e.is_timeout() {
            self.unreachable()
        } else {
            ClientError::Unexpected { url: self.base.clone(), detail: e.to_string() }
        }
    }

    async fn send<T: DeserializeOwned>(&self, response: Response) -> Result<T, ClientError> {
        let status = response.status;
        let bytes = response.bytes().await?;
        if !(200..300).contains(&status) && status != 503 {
            return Err(refused(status, &bytes));
        }
        match serde_json::from_slice(&bytes) {
            Ok(answer) => Ok(answer),
            // A 503 is an answer where the route says so (health: the database is down), else an error.
            Err(_) if status == 503 => Err(refused(503, &bytes)),
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
