//! Configuration in one place: every `BUDGET_*` variable the service reads, its default, and its
//! validation. `budget start` calls [`Settings::from_env`]; tests build [`Settings::new`] and change
//! fields. The README's configuration table lists exactly [`VARIABLES`] (a test checks).

use std::path::PathBuf;

use budget_events::db::DbConfig;
use budget_events::domain::allocation::AllocationDefaults;
use budget_events::domain::policy::TierMap;

pub const DEFAULT_HOST: &str = "127.0.0.1";
pub const DEFAULT_PORT: u16 = 8013;

#[derive(Debug, Clone)]
pub struct Settings {
    pub host: String,
    /// 0 picks a free port (tests).
    pub port: u16,
    pub database: DbConfig,
    pub pool_size: usize,
    /// Seconds that in-flight requests get to finish on shutdown.
    pub shutdown_timeout: u64,
    /// Tiers of calls whose clients do not give one (`BUDGET_TIER_MAP`).
    pub tiers: TierMap,
    /// Provider names a deployment uses for the price book's (`BUDGET_PROVIDER_ALIASES`, e.g.
    /// `{"google": "gemini"}`): applied to every name as it comes in.
    pub provider_aliases: std::collections::BTreeMap<String, String>,
    /// How often expired allocations are swept.
    pub sweep_interval: std::time::Duration,
    /// Tokens an allocation reserves when it names none (`BUDGET_ALLOCATION_DEFAULTS`).
    pub allocation_defaults: AllocationDefaults,
    /// Apply the bundled price table when the price book is empty (tests that count events turn it off).
    pub bundled_prices: bool,
    /// What pre-flight checks and allocations do for a model without a price (`BUDGET_UNPRICED`).
    pub unpriced: UnpricedPolicy,
    /// LiteLLM-format price files or URLs imported at start and every `price_refresh`
    /// (`BUDGET_PRICE_SOURCES`, `BUDGET_PRICE_REFRESH`).
    pub price_sources: Vec<String>,
    pub price_refresh: std::time::Duration,
    /// Alert receivers (`BUDGET_ALERT_WEBHOOKS`) and how deliveries retry.
    pub webhooks: Vec<budget_projections::alerts::Webhook>,
    pub webhook_delivery: budget_projections::webhooks::DeliveryPolicy,
    /// An hour's spend above this multiple of the average hour with spend in the 24 before it raises `spend_spike`
    /// (`BUDGET_SPIKE_MULTIPLE`).
    pub spike_multiple: rust_decimal::Decimal,
    /// WebSocket pacing: each connection's queue, send timeout and ping interval.
    pub ws: crate::ws::session::WsSettings,
    /// The assistant's LLM for narratives (`BUDGET_ASSISTANT_LLM_URL`, `_MODEL`, `_API_KEY`).
    pub assistant_llm: Option<crate::assistant::narrative::LlmSettings>,
    /// The most one usage record may cost, in USD (`BUDGET_MAX_RECORD_COST`).
    pub max_record_cost: rust_decimal::Decimal,
    /// Who may call the API, and from where (`BUDGET_ADMIN_KEY`, `BUDGET_ALLOW_UNAUTHENTICATED`,
    /// `BUDGET_ALLOWED_HOSTS`, `BUDGET_CORS_ORIGINS`, `BUDGET_RATE_LIMIT`).
    pub security: crate::auth::SecuritySettings,
    /// Gateway mode (`BUDGET_UPSTREAMS`, `BUDGET_GATEWAY_MAX_TOKENS`).
    pub gateway: crate::gateway::GatewaySettings,
    /// Tests only (`BUDGET_FAULT`): the background task that panics right after start, to prove that a
    /// dead task stops the process.
    pub fault: Option<String>,
}

/// Every variable the service and the CLI read, as the README's configuration table lists them.
pub const VARIABLES: &[&str] = &[
    "BUDGET_HOST",
    "BUDGET_PORT",
    "BUDGET_DATABASE_URL",
    "BUDGET_DATA_DIR",
    "BUDGET_URL",
    "BUDGET_LOG",
    "BUDGET_LOG_FORMAT",
    "BUDGET_RUNTIME_THREADS",
    "BUDGET_ALLOCATION_DEFAULTS",
    "BUDGET_TIER_MAP",
    "BUDGET_PROVIDER_ALIASES",
    "BUDGET_UNPRICED",
    "BUDGET_PRICE_SOURCES",
    "BUDGET_PRICE_REFRESH",
    "BUDGET_ALERT_WEBHOOKS",
    "BUDGET_SPIKE_MULTIPLE",
    "BUDGET_MAX_RECORD_COST",
    "BUDGET_ASSISTANT_LLM_URL",
    "BUDGET_ASSISTANT_MODEL",
    "BUDGET_ASSISTANT_API_KEY",
    "BUDGET_ADMIN_KEY",
    "BUDGET_API_KEY",
    "BUDGET_ALLOW_UNAUTHENTICATED",
    "BUDGET_ALLOWED_HOSTS",
    "BUDGET_CORS_ORIGINS",
    "BUDGET_RATE_LIMIT",
    "BUDGET_UPSTREAMS",
    "BUDGET_GATEWAY_MAX_TOKENS",
    "BUDGET_FAULT",
    "BUDGET_TEST_DATABASE_URL",
];

/// The background tasks `BUDGET_FAULT` may name.
pub const TASKS: &[&str] =
    &["usage_rollups", "alerts", "sweeper", "webhooks", "price_sources", "ws_hub", "log_notifier"];

/// A variable whose value cannot be used, with what to set instead.
#[derive(Debug, thiserror::Error)]
#[error("{variable} is `{value}`; {fix}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub value: String,
    pub fix: String,
}

impl ConfigError {
    fn new(variable: &'static str, value: &str, fix: impl Into<String>) -> Self {
        ConfigError { variable, value: value.to_string(), fix: fix.into() }
    }
}

/// Where the service keeps its data: a PostgreSQL it is given, or a private cluster it runs itself.
#[derive(Debug, Clone)]
pub enum DatabaseLocation {
    /// `BUDGET_DATABASE_URL`.
    Url(Box<DbConfig>),
    /// `BUDGET_DATA_DIR`, or the default data directory when unset.
    Private(Option<PathBuf>),
}

impl DatabaseLocation {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    pub fn from_lookup(var: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        match var("BUDGET_DATABASE_URL").filter(|v| !v.trim().is_empty()) {
            Some(url) => {
                budget_events::db::parse_config(&url).map(|c| DatabaseLocation::Url(Box::new(c))).map_err(|e| {
                    ConfigError::new(
                        "BUDGET_DATABASE_URL",
                        "(hidden)",
                        format!("{e}; use postgres://user:pass@host:5432/budget, or unset it for a private cluster"),
                    )
                })
            }
            None => Ok(DatabaseLocation::Private(var("BUDGET_DATA_DIR").filter(|v| !v.is_empty()).map(PathBuf::from))),
        }
    }
}

/// `BUDGET_LOG`: the log filter (`tracing` syntax), `info` by default.
pub fn log_filter() -> String {
    std::env::var("BUDGET_LOG").ok().filter(|v| !v.trim().is_empty()).unwrap_or_else(|| "info".into())
}

/// `BUDGET_LOG_FORMAT`: how log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// For people: one readable line per event (the default).
    Text,
    /// For log pipelines: one JSON object per line, with the request's span (its `request_id`).
    Json,
}

/// Reads `BUDGET_LOG_FORMAT` (`text`, the default, or `json`).
pub fn log_format() -> Result<LogFormat, ConfigError> {
    let value = std::env::var("BUDGET_LOG_FORMAT").unwrap_or_default();
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(ConfigError::new("BUDGET_LOG_FORMAT", &value, "use text or json")),
    }
}

pub use budget_events::decide::UnpricedPolicy;

impl Settings {
    pub fn new(host: impl Into<String>, port: u16, database: DbConfig) -> Self {
        Settings {
            host: host.into(),
            port,
            database,
            pool_size: 16,
            shutdown_timeout: 30,
            tiers: TierMap::default(),
            provider_aliases: Default::default(),
            sweep_interval: std::time::Duration::from_secs(5),
            allocation_defaults: AllocationDefaults::default(),
            bundled_prices: true,
            unpriced: UnpricedPolicy::Record,
            price_sources: Vec::new(),
            price_refresh: std::time::Duration::from_secs(24 * 3600),
            webhooks: Vec::new(),
            webhook_delivery: Default::default(),
            spike_multiple: rust_decimal::Decimal::from(3),
            ws: Default::default(),
            assistant_llm: None,
            max_record_cost: rust_decimal::Decimal::from(budget_events::domain::usage::MAX_RECORD_COST),
            security: Default::default(),
            gateway: Default::default(),
            fault: None,
        }
    }

    /// The defaults of [`Settings::new`] with every `BUDGET_*` variable that is set applied and checked,
    /// for the database the caller found (see [`DatabaseLocation`]).
    pub fn from_env(database: DbConfig) -> Result<Self, ConfigError> {
        Self::from_lookup(database, &|name| std::env::var(name).ok())
    }

    /// [`Settings::from_env`] over any source of variables (tests pass a map).
    pub fn from_lookup(database: DbConfig, var: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let mut s = Settings::new(DEFAULT_HOST, DEFAULT_PORT, database);
        if let Some(host) = var("BUDGET_HOST") {
            s.host = host.trim().to_string();
        }
        if let Some(port) = var("BUDGET_PORT") {
            s.port = port.trim().parse().map_err(|_| {
                ConfigError::new("BUDGET_PORT", &port, "use a port number, 0 to 65535 (0 picks a free one)")
            })?;
        }
        if let Some(map) = var("BUDGET_TIER_MAP") {
            s.tiers = TierMap::parse(&map).map_err(|e| ConfigError::new("BUDGET_TIER_MAP", &map, e))?;
        }
        if let Some(aliases) = var("BUDGET_PROVIDER_ALIASES") {
            let parsed: std::collections::BTreeMap<String, String> = serde_json::from_str(&aliases).map_err(|e| {
                ConfigError::new(
                    "BUDGET_PROVIDER_ALIASES",
                    &aliases,
                    format!("{e}; use a JSON object such as {{\"google\": \"gemini\"}}"),
                )
            })?;
            s.provider_aliases =
                parsed.into_iter().map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
        }
        if let Some(sizes) = var("BUDGET_ALLOCATION_DEFAULTS") {
            s.allocation_defaults = AllocationDefaults::parse(&sizes)
                .map_err(|e| ConfigError::new("BUDGET_ALLOCATION_DEFAULTS", &sizes, e))?;
        }
        if let Some(unpriced) = var("BUDGET_UNPRICED") {
            s.unpriced =
                UnpricedPolicy::parse(&unpriced).map_err(|e| ConfigError::new("BUDGET_UNPRICED", &unpriced, e))?;
        }
        if let Some(sources) = var("BUDGET_PRICE_SOURCES") {
            s.price_sources = crate::price_sources::parse_sources(&sources);
        }
        if let Some(every) = var("BUDGET_PRICE_REFRESH") {
            let seconds =
                budget_events::period::parse_duration_seconds(&every).filter(|s| *s >= 60).ok_or_else(|| {
                    ConfigError::new("BUDGET_PRICE_REFRESH", &every, "use a duration of at least 1m, e.g. 6h or 1d")
                })?;
            s.price_refresh = std::time::Duration::from_secs(seconds as u64);
        }
        if let Some(hooks) = var("BUDGET_ALERT_WEBHOOKS") {
            s.webhooks = budget_projections::alerts::Webhook::parse_list(&hooks)
                .map_err(|e| ConfigError::new("BUDGET_ALERT_WEBHOOKS", &hooks, e))?;
        }
        if let Some(multiple) = var("BUDGET_SPIKE_MULTIPLE") {
            s.spike_multiple = multiple
                .trim()
                .parse::<rust_decimal::Decimal>()
                .ok()
                .filter(|m| *m > rust_decimal::Decimal::ONE)
                .ok_or_else(|| ConfigError::new("BUDGET_SPIKE_MULTIPLE", &multiple, "use a number above 1, e.g. 3"))?;
        }
        if let Some(url) = var("BUDGET_ASSISTANT_LLM_URL") {
            let model = var("BUDGET_ASSISTANT_MODEL").ok_or_else(|| {
                ConfigError::new(
                    "BUDGET_ASSISTANT_MODEL",
                    "",
                    "BUDGET_ASSISTANT_LLM_URL is set, so name the model to ask",
                )
            })?;
            s.assistant_llm = Some(crate::assistant::narrative::LlmSettings {
                url,
                model,
                api_key: var("BUDGET_ASSISTANT_API_KEY"),
                timeout: std::time::Duration::from_secs(30),
            });
        }
        if let Some(max) = var("BUDGET_MAX_RECORD_COST") {
            let ceiling = budget_events::domain::usage::MAX_RECORD_COST_CEILING;
            s.max_record_cost = max
                .trim()
                .parse::<rust_decimal::Decimal>()
                .ok()
                .filter(|m| *m > rust_decimal::Decimal::ZERO && *m <= rust_decimal::Decimal::from(ceiling))
                .ok_or_else(|| {
                    ConfigError::new("BUDGET_MAX_RECORD_COST", &max, format!("use USD above 0 and at most {ceiling}"))
                })?;
        }
        if let Some(key) = var("BUDGET_ADMIN_KEY") {
            if key.trim().chars().count() < 32 {
                return Err(ConfigError::new(
                    "BUDGET_ADMIN_KEY",
                    "(hidden)",
                    "use at least 32 random characters, e.g. the output of `openssl rand -hex 32`",
                ));
            }
            s.security.admin_key = Some(key.trim().to_string());
        }
        if let Some(allow) = var("BUDGET_ALLOW_UNAUTHENTICATED") {
            s.security.allow_unauthenticated = match allow.trim() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => return Err(ConfigError::new("BUDGET_ALLOW_UNAUTHENTICATED", &allow, "use true or false")),
            };
        }
        if let Some(hosts) = var("BUDGET_ALLOWED_HOSTS") {
            s.security.allowed_hosts =
                Some(hosts.split(',').map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()).collect());
        }
        if let Some(origins) = var("BUDGET_CORS_ORIGINS") {
            s.security.cors_origins = origins
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_string())
                .filter(|o| !o.is_empty())
                .collect();
            if let Some(bad) =
                s.security.cors_origins.iter().find(|o| !(o.starts_with("http://") || o.starts_with("https://")))
            {
                return Err(ConfigError::new(
                    "BUDGET_CORS_ORIGINS",
                    bad,
                    "list origins such as https://ops.example.com, comma-separated",
                ));
            }
        }
        if let Some(rate) = var("BUDGET_RATE_LIMIT") {
            s.security.rate_limit =
                crate::auth::RateLimit::parse(&rate).map_err(|e| ConfigError::new("BUDGET_RATE_LIMIT", &rate, e))?;
        }
        if let Some(upstreams) = var("BUDGET_UPSTREAMS") {
            // Secrets are read from the variables it names, through the same lookup.
            s.gateway.upstreams = crate::gateway::upstreams::Upstreams::parse(&upstreams, &var)
                .map_err(|e| ConfigError::new("BUDGET_UPSTREAMS", "(hidden)", e))?;
        }
        if let Some(cap) = var("BUDGET_GATEWAY_MAX_TOKENS") {
            s.gateway.default_max_tokens =
                cap.trim().parse::<i64>().ok().filter(|c| (1..=1_000_000).contains(c)).ok_or_else(|| {
                    ConfigError::new(
                        "BUDGET_GATEWAY_MAX_TOKENS",
                        &cap,
                        "use a number of tokens from 1 to 1,000,000, e.g. 4096",
                    )
                })?;
        }
        if let Some(task) = var("BUDGET_FAULT") {
            if !TASKS.contains(&task.trim()) {
                return Err(ConfigError::new(
                    "BUDGET_FAULT",
                    &task,
                    format!("tests only: name one of {}", TASKS.join(", ")),
                ));
            }
            s.fault = Some(task.trim().to_string());
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let database = budget_events::db::parse_config("postgres://postgres@127.0.0.1/budget").unwrap();
        Settings::from_lookup(database, &|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let s = settings(&[]).unwrap();
        assert_eq!((s.host.as_str(), s.port, s.unpriced), (DEFAULT_HOST, DEFAULT_PORT, UnpricedPolicy::Record));
        assert_eq!(s.price_refresh, std::time::Duration::from_secs(24 * 3600));
    }

    #[test]
    fn each_bad_value_is_refused_naming_its_variable_and_the_fix() {
        for (name, value) in [
            ("BUDGET_PORT", "80a"),
            ("BUDGET_UNPRICED", "maybe"),
            ("BUDGET_PRICE_REFRESH", "10s"),
            ("BUDGET_SPIKE_MULTIPLE", "0.5"),
            ("BUDGET_TIER_MAP", "{not json"),
            ("BUDGET_ALLOCATION_DEFAULTS", "[]"),
            ("BUDGET_ALLOCATION_DEFAULTS", r#"{"chat": 0}"#),
            ("BUDGET_FAULT", "nothing"),
            ("BUDGET_MAX_RECORD_COST", "0"),
            ("BUDGET_MAX_RECORD_COST", "1000000000"),
            ("BUDGET_GATEWAY_MAX_TOKENS", "0"),
        ] {
            let e = settings(&[(name, value)]).expect_err(name);
            assert_eq!(e.variable, name);
            let prefix = format!("{name} is `{value}`; ");
            assert!(e.to_string().starts_with(&prefix), "{e}");
            assert!(!e.to_string()[prefix.len()..].contains(name), "the variable named once: {e}");
        }
        // The variable and its value once: the part at fault, and what to give.
        let e = settings(&[("BUDGET_ALERT_WEBHOOKS", "https://a.example/h,notaurl")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "BUDGET_ALERT_WEBHOOKS is `https://a.example/h,notaurl`; `notaurl` is not an http(s) URL; give URLs separated by commas, or slack:URL for Slack"
        );
        let e = settings(&[("BUDGET_ASSISTANT_LLM_URL", "http://127.0.0.1:11434/v1")]).unwrap_err();
        assert_eq!(e.variable, "BUDGET_ASSISTANT_MODEL");
        // An upstream whose key variable is unset; the value is not echoed (it may hold a URL's token).
        let upstreams = r#"{"openai": {"base_url": "https://api.openai.com/v1", "api_key_env": "NO_SUCH_KEY"}}"#;
        let e = settings(&[("BUDGET_UPSTREAMS", upstreams)]).unwrap_err();
        assert_eq!(e.to_string(), "BUDGET_UPSTREAMS is `(hidden)`; `openai` takes its key from NO_SUCH_KEY, which is not set; export NO_SUCH_KEY, or remove api_key_env for an upstream without a key");
        let s = settings(&[("BUDGET_UPSTREAMS", upstreams), ("NO_SUCH_KEY", "sk-1")]).unwrap();
        assert_eq!(s.gateway.upstreams.providers().collect::<Vec<_>>(), ["openai"]);
    }

    #[test]
    fn set_values_are_used() {
        let s = settings(&[("BUDGET_PORT", "9000"), ("BUDGET_UNPRICED", "reject"), ("BUDGET_PRICE_REFRESH", "6h")])
            .unwrap();
        assert_eq!((s.port, s.unpriced), (9000, UnpricedPolicy::Reject));
        assert_eq!(s.price_refresh, std::time::Duration::from_secs(6 * 3600));
    }

    /// The README's configuration table and [`VARIABLES`] name the same variables, in both directions.
    #[test]
    fn the_readme_table_lists_every_variable() {
        let readme = include_str!("../../README.md");
        let table = readme.split("### Configuration").nth(1).expect("README has a Configuration section");
        let table = table.split("\n## ").next().unwrap();
        let mut documented: Vec<String> = table
            .lines()
            .filter(|l| l.starts_with("| `BUDGET_"))
            .flat_map(|l| {
                l.split('|')
                    .nth(1)
                    .unwrap()
                    .split('`')
                    .filter(|w| w.starts_with("BUDGET_"))
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .collect();
        documented.sort();
        let mut known: Vec<String> = VARIABLES.iter().map(|v| v.to_string()).collect();
        known.sort();
        assert_eq!(documented, known, "README's configuration table and configuration::VARIABLES differ");
    }
}
