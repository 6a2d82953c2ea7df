//! What the service needs to start: where to listen and which database to use.

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
    /// An hour's spend above this multiple of the trailing hourly average raises `spend_spike`
    /// (`BUDGET_SPIKE_MULTIPLE`).
    pub spike_multiple: rust_decimal::Decimal,
    /// WebSocket pacing: each connection's queue, send timeout and ping interval.
    pub ws: crate::ws::session::WsSettings,
    /// The assistant's LLM for narratives (`BUDGET_ASSISTANT_LLM_URL`, `_MODEL`, `_API_KEY`).
    pub assistant_llm: Option<crate::assistant::narrative::LlmSettings>,
}

/// `BUDGET_UNPRICED`: `record` (default) lets calls to an unpriced model count tokens only; `reject`
/// fails closed: a check or allocation for such a model is refused wherever a cost-limited hard policy
/// applies, since that limit could not see what the call spends. Usage itself is always recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UnpricedPolicy {
    #[default]
    Record,
    Reject,
}

impl UnpricedPolicy {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "" | "record" => Ok(UnpricedPolicy::Record),
            "reject" => Ok(UnpricedPolicy::Reject),
            other => Err(format!("BUDGET_UNPRICED is `{other}`; use record or reject")),
        }
    }
}

impl Settings {
    pub fn new(host: impl Into<String>, port: u16, database: DbConfig) -> Self {
        Settings {
            host: host.into(),
            port,
            database,
            pool_size: 16,
            shutdown_timeout: 30,
            tiers: TierMap::default(),
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
        }
    }
}
