//! `BUDGET_UPSTREAMS`: the providers the gateway forwards to, each with its base URL, its API dialect
//! and where its secret comes from. Secrets are read from the environment variables the configuration
//! names, held in [`Secret`] (whose `Debug` hides them) and only ever written into upstream requests.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// Which wire API an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    /// OpenAI's `/chat/completions` and `/embeddings` (OpenAI, Ollama, vLLM, most others).
    Openai,
    /// Anthropic's `/messages`.
    Anthropic,
}

/// A provider secret: never printed, logged or sent anywhere but to its upstream.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(hidden)")
    }
}

/// One upstream, ready to call.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The price book's provider name (`openai`, `anthropic`, `ollama`…).
    pub provider: String,
    /// Without a trailing slash; paths such as `/chat/completions` are appended.
    pub base_url: String,
    pub dialect: Dialect,
    pub secret: Option<Secret>,
    /// The request field that caps the answer when the client sent none: `max_completion_tokens` for
    /// OpenAI itself (its reasoning models refuse `max_tokens`), `max_tokens` elsewhere.
    pub max_tokens_field: String,
    /// How long the upstream may stay silent (connecting, or between two parts of an answer).
    pub timeout: Duration,
    pub client: reqwest::Client,
}

/// The configured upstreams by provider.
#[derive(Debug, Clone, Default)]
pub struct Upstreams(BTreeMap<String, Upstream>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamConfig {
    base_url: String,
    #[serde(default)]
    api_key_env: Option<String>,
    #[serde(default)]
    api: Option<Dialect>,
    #[serde(default)]
    max_tokens_field: Option<String>,
    #[serde(default)]
    timeout: Option<serde_json::Value>,
}

/// The silence after which an upstream is given up on, unless configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

impl Upstreams {
    /// Parses `BUDGET_UPSTREAMS` (a JSON object: provider → `{base_url, api_key_env, api, max_tokens_field,
    /// timeout}`), reading each secret through `var`. The error says what to change.
    pub fn parse(json: &str, var: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let configs: BTreeMap<String, UpstreamConfig> = serde_json::from_str(json).map_err(|e| {
            format!(
                "{e}; use a JSON object such as {{\"openai\": {{\"base_url\": \"https://api.openai.com/v1\", \
                 \"api_key_env\": \"OPENAI_API_KEY\"}}}}"
            )
        })?;
        let mut upstreams = BTreeMap::new();
        for (provider, c) in configs {
            let provider = provider.trim().to_string();
            let base_url = c.base_url.trim().trim_end_matches('/').to_string();
            if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
                return Err(format!("the base_url of `{provider}` is `{base_url}`; use an http:// or https:// URL"));
            }
            let secret = match c.api_key_env {
                None => None,
                Some(name) => match var(name.trim()).filter(|v| !v.trim().is_empty()) {
                    Some(value) => Some(Secret(value.trim().to_string())),
                    None => {
                        return Err(format!(
                            "`{provider}` takes its key from {name}, which is not set; export {name}, or remove api_key_env for an upstream without a key"
                        ))
                    }
                },
            };
            let dialect = c.api.unwrap_or(if provider == "anthropic" { Dialect::Anthropic } else { Dialect::Openai });
            let max_tokens_field = c.max_tokens_field.unwrap_or_else(|| {
                if provider == "openai" { "max_completion_tokens" } else { "max_tokens" }.to_string()
            });
            if dialect == Dialect::Anthropic && max_tokens_field != "max_tokens" {
                return Err(format!(
                    "`{provider}` speaks Anthropic's API, whose cap is max_tokens; remove max_tokens_field"
                ));
            }
            let timeout = match c.timeout {
                None => DEFAULT_TIMEOUT,
                Some(v) => budget_events::domain::allocation::parse_ttl(&v)
                    .ok()
                    .and_then(|d| d.to_std().ok())
                    .ok_or_else(|| format!("the timeout of `{provider}` is {v}; use a duration such as 30s or 5m"))?,
            };
            let client = reqwest::Client::builder()
                .connect_timeout(timeout.min(Duration::from_secs(10)))
                .read_timeout(timeout)
                .build()
                .map_err(|e| format!("cannot build an HTTP client for `{provider}`: {e}"))?;
            upstreams.insert(
                provider.clone(),
                Upstream { provider, base_url, dialect, secret, max_tokens_field, timeout, client },
            );
        }
        Ok(Upstreams(upstreams))
    }

    pub fn get(&self, provider: &str) -> Option<&Upstream> {
        self.0.get(provider)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn providers(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_read_their_secrets_and_hide_them() {
        let json = r#"{"openai": {"base_url": "https://api.openai.com/v1/", "api_key_env": "OPENAI_API_KEY"},
                       "anthropic": {"base_url": "https://api.anthropic.com/v1", "api_key_env": "ANTHROPIC_API_KEY"},
                       "ollama": {"base_url": "http://127.0.0.1:11434/v1", "timeout": "30s"}}"#;
        let var = |name: &str| (name.ends_with("_API_KEY")).then(|| format!("sk-{name}"));
        let u = Upstreams::parse(json, &var).unwrap();
        let openai = u.get("openai").unwrap();
        assert_eq!((openai.base_url.as_str(), openai.dialect), ("https://api.openai.com/v1", Dialect::Openai));
        assert_eq!(openai.max_tokens_field, "max_completion_tokens");
        assert_eq!(u.get("anthropic").unwrap().dialect, Dialect::Anthropic);
        let ollama = u.get("ollama").unwrap();
        assert_eq!((ollama.secret.is_none(), ollama.max_tokens_field.as_str()), (true, "max_tokens"));
        assert_eq!(ollama.timeout, Duration::from_secs(30));
        assert!(!format!("{u:?}").contains("sk-"), "Debug hides the secrets");
    }

    #[test]
    fn bad_upstreams_are_refused_with_the_fix() {
        let none = |_: &str| None;
        let e = Upstreams::parse(r#"{"openai": {"base_url": "x", "api_key_env": "K"}}"#, &none).unwrap_err();
        assert!(e.contains("http:// or https://"), "{e}");
        let e = Upstreams::parse(r#"{"openai": {"base_url": "https://a", "api_key_env": "K"}}"#, &none).unwrap_err();
        assert!(e.contains("K, which is not set; export K"), "{e}");
        let e = Upstreams::parse("[]", &none).unwrap_err();
        assert!(e.contains("use a JSON object"), "{e}");
    }
}
