//! Prices as people write them (per 1M or 1K tokens) and as files bring them (the bundled table,
//! LiteLLM's `model_prices_and_context_window.json`), turned into exact per-token specs.

use budget_events::domain::policy::Tier;
use budget_events::domain::price::{PriceSource, PriceSpec, PriceTier, PriceVersion};
use budget_events::domain::{Model, Provider};
use budget_events::money::optional_decimal_json;
use budget_events::Money;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The bundled default price table.
pub const BUNDLED: &str = include_str!("../prices/bundled.json");

/// A price as a person writes it: USD per `per` tokens (1M by default).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceInput {
    #[schema(schema_with = budget_events::openapi::provider)]
    pub provider: String,
    #[schema(schema_with = budget_events::openapi::model)]
    pub model: String,
    /// USD per `per` input tokens.
    #[serde(with = "optional_decimal_json", default)]
    #[schema(value_type = f64)]
    pub input: Option<Decimal>,
    #[serde(with = "optional_decimal_json", default)]
    #[schema(value_type = f64)]
    pub output: Option<Decimal>,
    #[serde(with = "optional_decimal_json", default)]
    #[schema(value_type = Option<f64>)]
    pub cached_input: Option<Decimal>,
    /// `1M` (default), `1K` or `token`.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::schemas::price_unit)]
    pub per: Option<String>,
    /// A fixed fee per request, USD.
    #[serde(default)]
    #[schema(value_type = Option<f64>)]
    pub per_request: Option<Money>,
    /// When the price takes effect (default: now).
    #[serde(default)]
    pub effective_from: Option<DateTime<Utc>>,
    #[serde(default)]
    pub context_window: Option<i64>,
    #[serde(default)]
    pub capabilities: Option<Vec<String>>,
}

/// Tokens a `per` unit stands for.
pub fn unit(per: Option<&str>) -> Result<Decimal, String> {
    match per.unwrap_or("1M").trim().to_ascii_lowercase().as_str() {
        "1m" | "m" | "million" => Ok(Decimal::from(1_000_000)),
        "1k" | "k" | "thousand" => Ok(Decimal::from(1_000)),
        "token" | "1" => Ok(Decimal::ONE),
        other => Err(format!("per `{other}` is not a unit; use 1M, 1K or token")),
    }
}

impl PriceInput {
    pub fn to_spec(&self, default_per: Option<&str>) -> Result<PriceSpec, String> {
        let provider = Provider::parse(&self.provider).map_err(|e| e.to_string())?;
        let model = Model::parse(&self.model).map_err(|e| e.to_string())?;
        let per = unit(self.per.as_deref().or(default_per))?;
        let rate = |field: &str, v: Option<Decimal>| -> Result<Option<Decimal>, String> {
            match v {
                Some(d) if d.is_sign_negative() => Err(format!("{field} is {d}; prices are zero or more")),
                Some(d) => Ok(Some((d / per).normalize())),
                None => Ok(None),
            }
        };
        let input = rate("input", self.input)?.ok_or("input is required: USD per `per` input tokens")?;
        let output = rate("output", self.output)?.ok_or("output is required: USD per `per` output tokens")?;
        if input.scale() > 18 || output.scale() > 18 {
            return Err("a per-token price has more than 18 decimal places; give fewer digits".into());
        }
        Ok(PriceSpec {
            provider: provider.to_string(),
            model: model.to_string(),
            input_per_token: input,
            output_per_token: output,
            cached_input_per_token: rate("cached_input", self.cached_input)?,
            cache_creation_per_token: None,
            reasoning_per_token: None,
            tiers: Vec::new(),
            per_request: self.per_request,
            context_window: self.context_window,
            capabilities: self.capabilities.clone().unwrap_or_default(),
            retires_on: None,
        })
    }
}

#[derive(Debug, Deserialize)]
struct BundledTable {
    checked: String,
    effective_from: DateTime<Utc>,
    per: String,
    models: Vec<PriceInput>,
    /// `provider/model` → the day its provider stops serving it.
    #[serde(default)]
    retirements: std::collections::BTreeMap<String, NaiveDate>,
    /// `provider/model` → a day by which it was no longer served, where its provider's day is unknown.
    #[serde(default)]
    retired_by: std::collections::BTreeMap<String, NaiveDate>,
}

/// The bundled table: when it was checked, when its prices apply from, and the prices.
pub fn bundled() -> (String, DateTime<Utc>, Vec<PriceSpec>) {
    let table: BundledTable = serde_json::from_str(BUNDLED).expect("the bundled price table is valid JSON");
    let specs =
        table.models.iter().map(|m| m.to_spec(Some(&table.per)).expect("the bundled prices are valid")).collect();
    (table.checked, table.effective_from, specs)
}

/// When a model stops being served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Retirement {
    pub day: NaiveDate,
    /// Whether `day` is its provider's; else the model was found no longer served by then, which is
    /// all that is said of it ("retired by").
    pub known: bool,
}

impl Retirement {
    /// "retired" or "retires", as said on `today`.
    pub fn verb(&self, today: NaiveDate) -> &'static str {
        retire_verb(self.day, today)
    }

    /// "on 2025-10-22", or "by 2026-12-04" where the provider's day is unknown.
    pub fn when(&self) -> String {
        format!("{} {}", if self.known { "on" } else { "by" }, self.day)
    }
}

/// The retirement of each bundled model (the table's `retirements` and `retired_by`), by provider and
/// model.
static RETIREMENTS: std::sync::LazyLock<std::collections::BTreeMap<(String, String), Retirement>> =
    std::sync::LazyLock::new(|| {
        let table: BundledTable = serde_json::from_str(BUNDLED).expect("the bundled price table is valid JSON");
        let known = table.retirements.into_iter().map(|(name, day)| (name, Retirement { day, known: true }));
        let by = table.retired_by.into_iter().map(|(name, day)| (name, Retirement { day, known: false }));
        known
            .chain(by)
            .map(|(name, retirement)| {
                let (provider, model) = name.split_once('/').expect("a retirement names provider/model");
                ((provider.to_string(), model.to_string()), retirement)
            })
            .collect()
    });

fn retirement_of(provider: &str, model: &str) -> Option<Retirement> {
    RETIREMENTS.get(&(provider.to_string(), model.to_string())).copied()
}

/// Whether the bundled table says `provider`/`model` is no longer served on `day`.
pub fn retired(provider: &str, model: &str, day: NaiveDate) -> bool {
    retirement_of(provider, model).is_some_and(|r| r.day <= day)
}

/// How far ahead a retirement counts: a model its provider retires within this many days is a poor
/// place to move calls to, and worth saying of a model calls are made to.
pub const RETIREMENT_NOTICE_DAYS: i64 = 90;

/// When `v`'s source says its model stops being served: the bundled table's day for its own prices,
/// an imported file's for its; a price someone set says the model is in use.
pub fn retirement(v: &PriceVersion) -> Option<Retirement> {
    match v.source {
        PriceSource::Bundled => retirement_of(&v.spec.provider, &v.spec.model),
        // An imported file's own day (LiteLLM's deprecation_date).
        PriceSource::File | PriceSource::Url => v.spec.retires_on.map(|day| Retirement { day, known: true }),
        PriceSource::Manual => None,
    }
}

/// The retirement of `v`'s model if it is past or within [`RETIREMENT_NOTICE_DAYS`] of `at`.
pub fn retiring(v: &PriceVersion, at: DateTime<Utc>) -> Option<Retirement> {
    retirement(v).filter(|r| r.day <= at.date_naive() + chrono::Days::new(RETIREMENT_NOTICE_DAYS as u64))
}

/// The verb for a retirement `day` as said on `today`: "retired" once it has come, else "retires".
pub fn retire_verb(day: NaiveDate, today: NaiveDate) -> &'static str {
    if day <= today {
        "retired"
    } else {
        "retires"
    }
}

/// The prices of `in_effect` whose models can still be called at `at`, and for a while: what the
/// assistant and the cheaper alternatives choose among. A retired model keeps its price (records
/// still name it) but is not worth recommending, nor one its provider retires within the notice, nor
/// an imported entry that is not [`offered`].
pub fn callable(mut in_effect: Vec<PriceVersion>, at: DateTime<Utc>) -> Vec<PriceVersion> {
    in_effect.retain(|v| retiring(v, at).is_none() && offered(v));
    in_effect
}

/// Whether a price is one to offer a call: any price set by hand or bundled, but of an imported file
/// only a model that writes text (its tier tag, given at import) at a price. LiteLLM's file prices
/// embeddings, images and audio beside chat models, and gives $0 for free tiers, LoRA adapters and
/// entries it has no price for: recommend ranked those first.
pub fn offered(v: &PriceVersion) -> bool {
    if !v.source.imported() {
        return true;
    }
    let tier = v.spec.capabilities.iter().find_map(|c| c.parse::<Tier>().ok());
    let priced = !(v.spec.input_per_token.is_zero() && v.spec.output_per_token.is_zero());
    match tier {
        Some(Tier::LocalLightweight | Tier::LocalMidweight) => true,
        Some(Tier::RemoteHeavyweight) => priced,
        None => false,
    }
}

/// What an import found.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Imported {
    #[serde(skip)]
    pub specs: Vec<PriceSpec>,
    /// Entries skipped, by reason (`no token prices (image_generation)`, …).
    pub skipped: std::collections::BTreeMap<String, usize>,
    /// Entries that name the same provider/model as another with the same price (`deepseek-chat` and
    /// `deepseek/deepseek-chat`): kept once.
    pub merged: usize,
    /// Entries that name the same provider/model as another with a different price: the more specific
    /// key (`provider/model` over the bare name, then the longer, then the first in order) is kept.
    pub conflicts: Vec<Conflict>,
}

/// The tiers of an entry: `input_cost_per_token_above_200k_tokens` and its output, cache-read and
/// cache-write twins (the `_priority`, `_batches` and `_flex` service classes are not imported).
fn tiers(
    entry: &serde_json::Map<String, serde_json::Value>,
    number: &dyn Fn(&str) -> Result<Option<Decimal>, String>,
) -> Result<Vec<PriceTier>, String> {
    let mut tiers = Vec::new();
    for key in entry.keys() {
        let Some(size) = key.strip_prefix("input_cost_per_token_above_").and_then(|k| k.strip_suffix("k_tokens"))
        else {
            continue;
        };
        let Ok(thousands) = size.parse::<i64>() else { continue };
        let field = |part: &str| number(&format!("{part}_above_{size}k_tokens"));
        let Some(input) = field("input_cost_per_token")? else { continue };
        tiers.push(PriceTier {
            above_input_tokens: thousands * 1000,
            input_per_token: input,
            output_per_token: field("output_cost_per_token")?,
            cached_input_per_token: field("cache_read_input_token_cost")?,
            cache_creation_per_token: field("cache_creation_input_token_cost")?,
        });
    }
    tiers.sort_by_key(|t| t.above_input_tokens);
    Ok(tiers)
}

/// Two entries of a file for one provider/model with different prices, and the one kept.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct Conflict {
    pub price: String,
    pub kept: String,
    pub dropped: String,
}

impl Imported {
    pub fn skipped_total(&self) -> usize {
        self.skipped.values().sum()
    }
}

pub fn parse_litellm(text: &str) -> Result<Imported, String> {
    let doc: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let entries = doc.as_object().ok_or("the file must be a JSON object of model name → entry")?;
    let mut imported = Imported::default();
    // (provider, model) → (the key it came from, its price), in the file's order.
    let mut by_name: std::collections::BTreeMap<(String, String), (String, PriceSpec)> = Default::default();
    for (key, entry) in entries {
        if key == "sample_spec" {
            continue;
        }
        let entry = entry.as_object().ok_or_else(|| format!("`{key}`: the entry is not an object"))?;
        let number = |field: &str| -> Result<Option<Decimal>, String> {
            match entry.get(field) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::Number(n)) => {
                    let text = n.to_string();
                    let d = if text.contains(['e', 'E']) {
                        Decimal::from_scientific(&text)
                    } else {
                        Decimal::from_str_exact(&text)
                    }
                    .map_err(|_| format!("`{key}`.{field}: `{text}` is not a decimal number"))?;
                    if d.is_sign_negative() {
                        return Err(format!("`{key}`.{field}: {d} is negative"));
                    }
                    Ok(Some(d.normalize()))
                }
                Some(other) => Err(format!("`{key}`.{field}: expected a number, found {other}")),
            }
        };
        let (Some(input), Some(output)) = (number("input_cost_per_token")?, number("output_cost_per_token")?) else {
            let mode = entry.get("mode").and_then(|m| m.as_str()).unwrap_or("no mode");
            *imported.skipped.entry(format!("no per-token input and output price ({mode})")).or_default() += 1;
            continue;
        };
        let provider = entry
            .get("litellm_provider")
            .and_then(|v| v.as_str())
            .ok_or_else(|| format!("`{key}`: litellm_provider is missing"))?;
        let model = key.strip_prefix(&format!("{provider}/")).unwrap_or(key);
        let mut capabilities: Vec<String> = entry
            .iter()
            .filter(|(k, v)| k.starts_with("supports_") && v.as_bool() == Some(true))
            .map(|(k, _)| match &k["supports_".len()..] {
                "function_calling" => "tool_use".to_string(),
                other => other.to_string(),
            })
            .collect();
        // What the file cannot say: a model that writes text runs in a tier (the tag the assistant
        // offers models by: embedding, image and audio entries are priced, never offered), and a chat
        // model writes code (the file has no flag for it; every chat model of the bundled table but
        // one does).
        let mode = entry.get("mode").and_then(|m| m.as_str()).unwrap_or_default();
        if matches!(mode, "chat" | "responses" | "completion") {
            capabilities.push(Tier::derive(provider, model).as_str().to_string());
        }
        if matches!(mode, "chat" | "responses") && !capabilities.iter().any(|c| c == "code") {
            capabilities.push("code".to_string());
        }
        let (Ok(provider), Ok(model)) = (Provider::parse(provider), Model::parse(model)) else {
            *imported.skipped.entry("provider or model name not usable".into()).or_default() += 1;
            continue;
        };
        let spec =
            PriceSpec {
                provider: provider.to_string(),
                model: model.to_string(),
                input_per_token: input,
                output_per_token: output,
                cached_input_per_token: number("cache_read_input_token_cost")?,
                cache_creation_per_token: number("cache_creation_input_token_cost")?,
                reasoning_per_token: number("output_cost_per_reasoning_token")?,
                tiers: tiers(entry, &number)?,
                per_request: number("input_cost_per_request")?
                    .map(|d| Money::new(d.round_dp(budget_events::money::MONEY_SCALE)))
                    .transpose()
                    .map_err(|e| format!("`{key}`.input_cost_per_request: {e}"))?,
                context_window: entry.get("max_input_tokens").and_then(|v| v.as_i64()),
                capabilities,
                retires_on: match entry.get("deprecation_date") {
                    None | Some(serde_json::Value::Null) => None,
                    Some(day) => Some(day.as_str().and_then(|d| d.parse::<NaiveDate>().ok()).ok_or_else(|| {
                        format!("`{key}`.deprecation_date: expected a day (YYYY-MM-DD), found {day}")
                    })?),
                },
            };
        let name = (spec.provider.clone(), spec.model.clone());
        match by_name.get(&name) {
            None => drop(by_name.insert(name, (key.clone(), spec))),
            Some((_, kept)) if kept.same_price(&spec) => imported.merged += 1,
            Some((kept_key, _)) => {
                let price = format!("{}/{}", name.0, name.1);
                let specific = |k: &str| (k.starts_with(&format!("{}/", name.0)), k.len());
                let conflict = if specific(key) > specific(kept_key) {
                    let dropped = kept_key.clone();
                    by_name.insert(name, (key.clone(), spec));
                    Conflict { price, kept: key.clone(), dropped }
                } else {
                    Conflict { price, kept: kept_key.clone(), dropped: key.clone() }
                };
                imported.conflicts.push(conflict);
            }
        }
    }
    imported.specs = by_name.into_values().map(|(_, spec)| spec).collect();
    Ok(imported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_table_is_valid_and_exact() {
        let (checked, _, specs) = bundled();
        assert!(!checked.is_empty() && specs.len() > 30);
        let gpt4 = specs.iter().find(|s| s.model == "gpt-4").unwrap();
        assert_eq!(gpt4.input_per_token.to_string(), "0.00003");
        assert!(specs.iter().any(|s| s.provider == "ollama" && s.input_per_token.is_zero()));
    }

    #[test]
    fn litellm_files_import_or_are_rejected_whole() {
        let ok = r#"{"sample_spec": {"input_cost_per_token": 0},
            "gpt-4o": {"litellm_provider": "openai", "input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05,
                       "cache_read_input_token_cost": 1.25e-06, "max_input_tokens": 128000, "supports_vision": true,
                       "supports_function_calling": true},
            "dall-e-3": {"litellm_provider": "openai", "output_cost_per_image": 0.04}}"#;
        let imported = parse_litellm(ok).unwrap();
        assert_eq!((imported.specs.len(), imported.skipped_total()), (1, 1));
        let s = &imported.specs[0];
        assert_eq!(
            (s.input_per_token.to_string(), s.output_per_token.to_string()),
            ("0.0000025".into(), "0.00001".into())
        );
        assert_eq!(s.capabilities, ["tool_use", "vision"]);
        assert!(parse_litellm(
            r#"{"m": {"litellm_provider": "x", "input_cost_per_token": "cheap", "output_cost_per_token": 1}}"#
        )
        .unwrap_err()
        .contains("`m`.input_cost_per_token"));
        assert!(parse_litellm("{\n  \"m\": {,\n}").unwrap_err().contains("line 2"));
        let dated = r#"{"m": {"litellm_provider": "x", "input_cost_per_token": 1, "output_cost_per_token": 1,
                              "deprecation_date": "2027-01-14"}}"#;
        assert_eq!(parse_litellm(dated).unwrap().specs[0].retires_on, "2027-01-14".parse().ok());
        let e = parse_litellm(&dated.replace("2027-01-14", "soon")).unwrap_err();
        assert_eq!(e, "`m`.deprecation_date: expected a day (YYYY-MM-DD), found \"soon\"");
    }

    /// Two keys for one provider/model: merged when the price is the same, else the `provider/model`
    /// key wins over the bare one, whichever comes first, and the conflict is reported.
    #[test]
    fn entries_for_one_model_are_merged_or_the_more_specific_wins() {
        let file = |first: &str, second: &str| {
            format!(
                r#"{{"{first}": {{"litellm_provider": "deepseek", "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}},
                 "{second}": {{"litellm_provider": "deepseek", "input_cost_per_token": 3e-06, "output_cost_per_token": 2e-06}}}}"#
            )
        };
        for (a, b) in [("deepseek-chat", "deepseek/deepseek-chat"), ("deepseek/deepseek-chat", "deepseek-chat")] {
            let imported = parse_litellm(&file(a, b)).unwrap();
            assert_eq!(imported.specs.len(), 1);
            let kept = imported.specs[0].input_per_token.to_string();
            let expected = if a.contains('/') { "0.000001" } else { "0.000003" };
            assert_eq!(kept, expected, "the provider/model key wins ({a} then {b})");
            assert_eq!(imported.conflicts[0].kept, "deepseek/deepseek-chat");
        }
        let same = r#"{"deepseek-chat": {"litellm_provider": "deepseek", "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06},
                       "deepseek/deepseek-chat": {"litellm_provider": "deepseek", "input_cost_per_token": 0.000001, "output_cost_per_token": 2e-06}}"#;
        let imported = parse_litellm(same).unwrap();
        assert_eq!((imported.specs.len(), imported.merged, imported.conflicts.len()), (1, 1, 0));
    }
}
