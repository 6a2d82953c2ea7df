//! What every request handler can reach.

use budget_events::db::DbPool;
use budget_events::domain::policy::TierMap;
use budget_events::domain::UsageInput;
use budget_events::writer::Writer;
use budget_projections::RunnerStatus;

pub struct AppState {
    pub pool: DbPool,
    pub writer: Writer,
    pub projections: RunnerStatus,
    pub tiers: TierMap,
    pub allocation_defaults: budget_events::domain::allocation::AllocationDefaults,
    pub unpriced: crate::configuration::UnpricedPolicy,
    /// The most one usage record may cost (`BUDGET_MAX_RECORD_COST`).
    pub max_record_cost: rust_decimal::Decimal,
    pub price_sources: crate::price_sources::SourceStatus,
    /// The background tasks' states, for health.
    pub tasks: crate::supervision::TaskStates,
    pub hub: crate::ws::hub::Hub,
    /// What `/metrics` serves; the writer and the request middleware count into it.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// The alerts projection's settings (a replay folds with the same ones).
    pub alerts: AlertSettings,
    /// The assistant's optional LLM (`BUDGET_ASSISTANT_LLM_URL`).
    pub assistant_llm: Option<crate::assistant::narrative::LlmSettings>,
    pub ws: crate::ws::session::WsSettings,
    /// Gateway mode's upstreams and default cap.
    pub gateway: crate::gateway::GatewaySettings,
    /// `BUDGET_PROVIDER_ALIASES`.
    pub provider_aliases: std::collections::BTreeMap<String, String>,
}

impl AppState {
    /// The price book's name for a provider a deployment calls `name` (`BUDGET_PROVIDER_ALIASES`);
    /// every provider name is passed through it as it comes in, so records, limits and prices agree.
    pub fn provider(&self, name: &str) -> String {
        self.provider_aliases.get(name.trim()).cloned().unwrap_or_else(|| name.to_string())
    }

    /// Gives a record its provider's price-book name, and without a tier the one the tier map says,
    /// so that the event stores them.
    pub fn fill_tier(&self, input: &mut UsageInput) {
        input.provider = self.provider(&input.provider);
        if input.tier.is_none() {
            input.tier = Some(self.tiers.resolve(&input.provider, &input.model).to_string());
        }
    }
}

#[derive(Debug, Clone)]
pub struct AlertSettings {
    pub spike_multiple: rust_decimal::Decimal,
    pub webhooks: Vec<budget_projections::alerts::Webhook>,
}
