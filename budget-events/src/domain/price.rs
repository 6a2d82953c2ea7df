//! The price book: what a model's tokens cost, in exact decimals per token, versioned by the time a
//! price takes effect. Nothing is edited in place: a new version ends the previous one.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Money;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceSource {
    Bundled,
    File,
    Url,
    Manual,
}

impl PriceSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PriceSource::Bundled => "bundled",
            PriceSource::File => "file",
            PriceSource::Url => "url",
            PriceSource::Manual => "manual",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [PriceSource::Bundled, PriceSource::File, PriceSource::Url, PriceSource::Manual]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// A price to set: per-token USD amounts, exact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceSpec {
    pub provider: String,
    pub model: String,
    #[serde(with = "crate::money::decimal_json")]
    pub input_per_token: Decimal,
    #[serde(with = "crate::money::decimal_json")]
    pub output_per_token: Decimal,
    #[serde(default, with = "crate::money::optional_decimal_json")]
    pub cached_input_per_token: Option<Decimal>,
    /// A fixed fee per request, if the provider charges one.
    #[serde(default)]
    pub per_request: Option<Money>,
    #[serde(default)]
    pub context_window: Option<i64>,
    /// code, reasoning, vision, tool_use… (for the assistant).
    #[serde(default)]
    pub capabilities: Vec<String>,
}

impl PriceSpec {
    /// Whether two specs charge the same (capabilities and context window are descriptive).
    pub fn same_price(&self, other: &PriceSpec) -> bool {
        self.input_per_token == other.input_per_token
            && self.output_per_token == other.output_per_token
            && self.cached_input_per_token == other.cached_input_per_token
            && self.per_request == other.per_request
    }
}

/// A version of a price, in effect over `[effective_from, effective_to)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceVersion {
    pub version_id: Uuid,
    #[serde(flatten)]
    pub spec: PriceSpec,
    pub effective_from: DateTime<Utc>,
    pub effective_to: Option<DateTime<Utc>>,
    pub source: PriceSource,
}

impl PriceVersion {
    pub fn in_effect_at(&self, t: DateTime<Utc>) -> bool {
        self.effective_from <= t && self.effective_to.is_none_or(|end| t < end)
    }
}

/// A call's cost under a price, split by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cost {
    #[serde(with = "crate::money::decimal_json")]
    pub input_cost: Decimal,
    #[serde(with = "crate::money::decimal_json")]
    pub cached_input_cost: Decimal,
    #[serde(with = "crate::money::decimal_json")]
    pub output_cost: Decimal,
    #[serde(with = "crate::money::decimal_json")]
    pub request_cost: Decimal,
    #[serde(with = "crate::money::decimal_json")]
    pub total_cost: Decimal,
}

/// The cost of a call: `cached_input_tokens` are the part of `input_tokens` served from cache, priced at
/// the cached rate (the input rate when the model has none). Exact; the total is rounded to the money
/// columns' 10 decimal places only if it has more.
pub fn cost(spec: &PriceSpec, input_tokens: i64, cached_input_tokens: i64, output_tokens: i64) -> Cost {
    let cached = cached_input_tokens.clamp(0, input_tokens);
    let input_cost = spec.input_per_token * Decimal::from(input_tokens - cached);
    let cached_input_cost = spec.cached_input_per_token.unwrap_or(spec.input_per_token) * Decimal::from(cached);
    let output_cost = spec.output_per_token * Decimal::from(output_tokens);
    let request_cost = spec.per_request.map_or(Decimal::ZERO, Money::amount);
    let total_cost =
        (input_cost + cached_input_cost + output_cost + request_cost).round_dp(crate::money::MONEY_SCALE).normalize();
    Cost {
        input_cost: input_cost.normalize(),
        cached_input_cost: cached_input_cost.normalize(),
        output_cost: output_cost.normalize(),
        request_cost,
        total_cost,
    }
}

/// The names to look a model up under, most specific first: as given, without a `provider/` prefix, and
/// without a dated snapshot suffix (`gpt-4o-2024-08-06` → `gpt-4o`, `claude-3-5-sonnet-20241022` →
/// `claude-3-5-sonnet`).
pub fn candidates(provider: &str, model: &str) -> Vec<String> {
    let mut names = vec![model.to_string()];
    let stripped = model.strip_prefix(&format!("{provider}/")).unwrap_or(model).to_string();
    if !names.contains(&stripped) {
        names.push(stripped.clone());
    }
    if let Some(base) = undated(&stripped) {
        if !names.contains(&base) {
            names.push(base);
        }
    }
    names
}

fn undated(model: &str) -> Option<String> {
    let bytes = model.as_bytes();
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    // A date suffix is ASCII: a split inside a multi-byte character cannot start one.
    let splits_at = |len: usize| bytes.len() > len && model.is_char_boundary(bytes.len() - len);
    // -YYYY-MM-DD
    if splits_at(11) {
        let (base, tail) = model.split_at(model.len() - 11);
        if let Some(date) = tail.strip_prefix('-') {
            let parts: Vec<&str> = date.split('-').collect();
            if parts.len() == 3 && parts.iter().all(|p| digits(p)) && parts[0].len() == 4 {
                return Some(base.to_string());
            }
        }
    }
    // -YYYYMMDD
    if splits_at(9) {
        let (base, tail) = model.split_at(model.len() - 9);
        if let Some(date) = tail.strip_prefix('-') {
            if date.len() == 8 && digits(date) && date.starts_with("20") {
                return Some(base.to_string());
            }
        }
    }
    None
}

/// Every (provider, name) the given models could resolve to, once each: the keys to load the price
/// versions of a batch of records with one query.
pub fn candidate_keys<'a>(models: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<(String, String)> {
    models
        .into_iter()
        .flat_map(|(provider, model)| candidates(provider, model).into_iter().map(move |m| (provider.to_string(), m)))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The version in effect at `at` for the first of `candidates` that has one.
pub fn resolve<'v>(
    versions: &'v [PriceVersion],
    provider: &str,
    model: &str,
    at: DateTime<Utc>,
) -> Option<(&'v PriceVersion, String)> {
    candidates(provider, model).into_iter().find_map(|name| {
        versions
            .iter()
            .find(|v| v.spec.provider == provider && v.spec.model == name && v.in_effect_at(at))
            .map(|v| (v, name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn spec(input_per_1m: Decimal, output_per_1m: Decimal) -> PriceSpec {
        PriceSpec {
            provider: "openai".into(),
            model: "gpt-4".into(),
            input_per_token: input_per_1m / dec!(1000000),
            output_per_token: output_per_1m / dec!(1000000),
            cached_input_per_token: None,
            per_request: None,
            context_window: None,
            capabilities: vec![],
        }
    }

    #[test]
    fn costs_are_exact() {
        // 1,000 in + 500 out of gpt-4 at $30 / $60 per 1M = $0.03 + $0.03.
        let c = cost(&spec(dec!(30), dec!(60)), 1000, 0, 500);
        assert_eq!((c.input_cost, c.output_cost, c.total_cost), (dec!(0.03), dec!(0.03), dec!(0.06)));
        // gpt-4o with caching: 1,200 in of which 1,000 cached at $1.25, 340 out at $10.
        let mut s = spec(dec!(2.50), dec!(10));
        s.cached_input_per_token = Some(dec!(1.25) / dec!(1000000));
        let c = cost(&s, 1200, 1000, 340);
        assert_eq!(c.total_cost, dec!(0.0005) + dec!(0.00125) + dec!(0.0034));
        s.per_request = Some(Money::new(dec!(0.01)).unwrap());
        assert_eq!(cost(&s, 0, 0, 0).total_cost, dec!(0.01));
    }

    #[test]
    fn model_names_resolve_from_specific_to_general() {
        assert_eq!(
            candidates("openai", "openai/gpt-4o-2024-08-06"),
            ["openai/gpt-4o-2024-08-06", "gpt-4o-2024-08-06", "gpt-4o"]
        );
        assert_eq!(
            candidates("anthropic", "claude-3-5-sonnet-20241022"),
            ["claude-3-5-sonnet-20241022", "claude-3-5-sonnet"]
        );
        assert_eq!(candidates("openai", "gpt-4o"), ["gpt-4o"]);
        // Found by the schema fuzzer: a split inside a multi-byte character panicked the writer.
        assert_eq!(candidates("x", "½ĄĆෘ¨+_þ0vÛ"), ["½ĄĆෘ¨+_þ0vÛ"]);
        assert_eq!(candidates("x", "ෘෘෘෘ"), ["ෘෘෘෘ"]);
        assert_eq!(candidates("x", "𘸆čàÂSabcdefg"), ["𘸆čàÂSabcdefg"]);
        let t: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let v = PriceVersion {
            version_id: Uuid::nil(),
            spec: PriceSpec { model: "gpt-4o".into(), ..spec(dec!(2.5), dec!(10)) },
            effective_from: t,
            effective_to: None,
            source: PriceSource::Bundled,
        };
        let versions = [v];
        let (found, name) = resolve(&versions, "openai", "gpt-4o-2024-08-06", t).unwrap();
        assert_eq!((found.version_id, name.as_str()), (Uuid::nil(), "gpt-4o"));
        assert!(
            resolve(&versions, "openai", "gpt-4o", t - chrono::Duration::seconds(1)).is_none(),
            "not yet in effect"
        );
    }
}
