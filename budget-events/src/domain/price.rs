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

    /// A price file's (LiteLLM's format), read from disk or a URL.
    pub fn imported(self) -> bool {
        matches!(self, PriceSource::File | PriceSource::Url)
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
    /// Writing input to a prompt cache (LiteLLM's `cache_creation_input_token_cost`); the input rate
    /// when absent.
    #[serde(default, with = "crate::money::optional_decimal_json", skip_serializing_if = "Option::is_none")]
    pub cache_creation_per_token: Option<Decimal>,
    /// Reasoning (thinking) output, where a provider bills it apart from the answer (LiteLLM's
    /// `output_cost_per_reasoning_token`); the output rate when absent.
    #[serde(default, with = "crate::money::optional_decimal_json", skip_serializing_if = "Option::is_none")]
    pub reasoning_per_token: Option<Decimal>,
    /// Higher rates for calls whose input is above a size (`…_above_200k_tokens`), lowest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tiers: Vec<PriceTier>,
    /// A fixed fee per request, if the provider charges one.
    #[serde(default)]
    pub per_request: Option<Money>,
    #[serde(default)]
    pub context_window: Option<i64>,
    /// code, reasoning, vision, tool_use… (for the assistant).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The day its provider stops serving the model, where the price's source says (LiteLLM's
    /// `deprecation_date`); the bundled table's days are its own (`price_book::retirement`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retires_on: Option<chrono::NaiveDate>,
}

impl PriceSpec {
    /// Whether two specs charge the same (capabilities, context window and retirement day describe;
    /// [`PriceSpec::same_description`] compares them).
    pub fn same_price(&self, other: &PriceSpec) -> bool {
        self.input_per_token == other.input_per_token
            && self.output_per_token == other.output_per_token
            && self.cached_input_per_token == other.cached_input_per_token
            && self.cache_creation_per_token == other.cache_creation_per_token
            && self.reasoning_per_token == other.reasoning_per_token
            && self.tiers == other.tiers
            && self.per_request == other.per_request
    }

    /// Whether two specs say the same of their model beyond its charges: capabilities, context window,
    /// retirement day.
    pub fn same_description(&self, other: &PriceSpec) -> bool {
        self.capabilities == other.capabilities
            && self.context_window == other.context_window
            && self.retires_on == other.retires_on
    }

    /// The rates a call with `input_tokens` of input pays: the highest tier it is above, else the base.
    /// A tier's rate it does not give is the base one; reasoning, which tiers do not price, is the
    /// price's reasoning rate, else the tier's output rate.
    pub fn rates_for(&self, input_tokens: i64) -> Rates {
        let base = Rates {
            input: self.input_per_token,
            output: self.output_per_token,
            cached_input: self.cached_input_per_token.unwrap_or(self.input_per_token),
            cache_creation: self.cache_creation_per_token.unwrap_or(self.input_per_token),
            reasoning: self.reasoning_per_token.unwrap_or(self.output_per_token),
        };
        match self.tiers.iter().rev().find(|t| input_tokens > t.above_input_tokens) {
            None => base,
            Some(t) => {
                let output = t.output_per_token.unwrap_or(base.output);
                Rates {
                    input: t.input_per_token,
                    output,
                    cached_input: t.cached_input_per_token.unwrap_or(t.input_per_token),
                    cache_creation: t.cache_creation_per_token.unwrap_or(t.input_per_token),
                    reasoning: self.reasoning_per_token.unwrap_or(output),
                }
            }
        }
    }
}

/// Rates above an input size: a call whose input is above `above_input_tokens` pays these for all its
/// tokens (as the providers that publish such tiers bill).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceTier {
    pub above_input_tokens: i64,
    #[serde(with = "crate::money::decimal_json")]
    pub input_per_token: Decimal,
    #[serde(default, with = "crate::money::optional_decimal_json", skip_serializing_if = "Option::is_none")]
    pub output_per_token: Option<Decimal>,
    #[serde(default, with = "crate::money::optional_decimal_json", skip_serializing_if = "Option::is_none")]
    pub cached_input_per_token: Option<Decimal>,
    #[serde(default, with = "crate::money::optional_decimal_json", skip_serializing_if = "Option::is_none")]
    pub cache_creation_per_token: Option<Decimal>,
}

/// Per-token rates of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    pub input: Decimal,
    pub output: Decimal,
    pub cached_input: Decimal,
    pub cache_creation: Decimal,
    pub reasoning: Decimal,
}

/// A call's tokens: `cached_input` (read from a prompt cache) and `cache_creation_input` (written to
/// it) are parts of `input`; `reasoning` is the part of `output` the model spent thinking (OpenAI's
/// `completion_tokens_details.reasoning_tokens`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub input: i64,
    pub cached_input: i64,
    pub cache_creation_input: i64,
    pub output: i64,
    pub reasoning: i64,
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
    #[serde(default, with = "crate::money::decimal_json")]
    pub cache_creation_cost: Decimal,
    #[serde(with = "crate::money::decimal_json")]
    pub output_cost: Decimal,
    #[serde(default, with = "crate::money::decimal_json")]
    pub reasoning_cost: Decimal,
    #[serde(with = "crate::money::decimal_json")]
    pub request_cost: Decimal,
    #[serde(with = "crate::money::decimal_json")]
    pub total_cost: Decimal,
}

/// The cost of a call: `cached_input_tokens` are the part of `input_tokens` served from cache, priced at
/// the cached rate (the input rate when the model has none). Exact; the total is rounded to money's 18
/// decimal places only if it has more.
pub fn cost(spec: &PriceSpec, input_tokens: i64, cached_input_tokens: i64, output_tokens: i64) -> Cost {
    cost_of(
        spec,
        Tokens {
            input: input_tokens,
            cached_input: cached_input_tokens,
            cache_creation_input: 0,
            output: output_tokens,
            reasoning: 0,
        },
    )
}

/// [`cost`] with every part: tier by input size, cache reads and writes, reasoning.
pub fn cost_of(spec: &PriceSpec, t: Tokens) -> Cost {
    cost_of_calls(spec, t, 1)
}

/// The cost of `calls` calls that used the tokens `t` between them, each of their average size: the
/// tier is the average call's and a per-request price is paid by every call. (The assistant knows a
/// month of calls only by its sums; a month of 10,000-token calls is not one 300,000-token call.)
pub fn cost_of_calls(spec: &PriceSpec, t: Tokens, calls: i64) -> Cost {
    let calls = calls.max(1);
    let rates = spec.rates_for(t.input / calls);
    let cached = t.cached_input.clamp(0, t.input);
    let creation = t.cache_creation_input.clamp(0, t.input - cached);
    let input_cost = rates.input * Decimal::from(t.input - cached - creation);
    let cached_input_cost = rates.cached_input * Decimal::from(cached);
    let cache_creation_cost = rates.cache_creation * Decimal::from(creation);
    let reasoning = t.reasoning.clamp(0, t.output);
    let output_cost = rates.output * Decimal::from(t.output - reasoning);
    let reasoning_cost = rates.reasoning * Decimal::from(reasoning);
    let request_cost = spec.per_request.map_or(Decimal::ZERO, |p| p.amount() * Decimal::from(calls)).normalize();
    let total_cost =
        (input_cost + cached_input_cost + cache_creation_cost + output_cost + reasoning_cost + request_cost)
            .round_dp(crate::money::MONEY_SCALE)
            .normalize();
    Cost {
        input_cost: input_cost.normalize(),
        cached_input_cost: cached_input_cost.normalize(),
        cache_creation_cost: cache_creation_cost.normalize(),
        output_cost: output_cost.normalize(),
        reasoning_cost: reasoning_cost.normalize(),
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
        let base = base.to_string();
        if !names.contains(&base) {
            names.push(base);
        }
    }
    names
}

/// Whether a call of `model` (as sent to `provider`) is a call of the model `name`: the same name, its
/// `provider/` form, or a dated snapshot of either ([`candidates`], without allocating): what a limit
/// scoped to `name` counts.
pub fn is_model(provider: &str, model: &str, name: &str) -> bool {
    if model == name {
        return true;
    }
    let stripped = model.strip_prefix(provider).and_then(|rest| rest.strip_prefix('/')).unwrap_or(model);
    stripped == name || undated(stripped) == Some(name)
}

/// [`is_model`] as a SQL condition, for the reads that filter by model (usage reports, record lists,
/// the audit, allocation lists): `model` and `provider` are the call's column expressions, `name` the
/// filter's (a parameter such as `$3`). So a filter lists the records a limit on that model counts.
pub fn is_model_sql(provider: &str, model: &str, name: &str) -> String {
    let stripped = format!(
        "(CASE WHEN starts_with({model}, {provider} || '/') THEN substr({model}, length({provider}) + 2) ELSE {model} END)"
    );
    format!(
        "({model} = {name} OR {name} IN ({stripped}, \
         regexp_replace({stripped}, '^(.+)(-[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}|-20[0-9]{{6}})$', '\\1')))"
    )
}

/// The name of `known` that `name` looks like a typo of (`claude-3-5-sonet` → `claude-3-5-sonnet`,
/// `gtp-4o` → `gpt-4o`, `opnai` → `openai`), for a "did you mean": at most one edit (two neighbours
/// swapped count as one) per five characters, up to three, ignoring case; a dated snapshot is
/// compared by the model it is a snapshot of. The nearest wins, then the first in name order.
/// A name that differs from a known one only in its version numbers (`claude-opus-4-7` beside
/// `claude-opus-4-1`, `gpt-5.4` beside `gpt-5`) is another model, not a typo of it: its price is
/// not the known one's.
pub fn closest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let asked = undated(name).unwrap_or(name).to_lowercase();
    let allowed = (asked.chars().count() / 5).clamp(1, 3);
    let family = without_versions(&asked);
    known
        .into_iter()
        .filter(|k| !k.eq_ignore_ascii_case(name))
        .filter(|k| without_versions(&k.to_lowercase()) != family)
        .map(|k| (strsim::osa_distance(&asked, &k.to_lowercase()), k))
        .filter(|(distance, _)| *distance <= allowed)
        .min_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(b.1)))
        .map(|(_, k)| k)
}

/// `name` with each version number (digits, and digits joined by `.` or `-`: `4-7`, `5.4`, `3.1`)
/// as `#`: what two versions of one model have in common (`claude-opus-#`, `gpt-#-nano`).
fn without_versions(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        if !c.is_ascii_digit() {
            out.push(c);
            continue;
        }
        out.push('#');
        loop {
            match chars.peek() {
                Some(d) if d.is_ascii_digit() => drop(chars.next()),
                // A separator belongs to the number only when a digit follows it.
                Some('.' | '-') => {
                    let mut ahead = chars.clone();
                    ahead.next();
                    if ahead.peek().is_some_and(|d| d.is_ascii_digit()) {
                        chars.next();
                    } else {
                        break;
                    }
                }
                _ => break,
            }
        }
    }
    out
}

/// The `provider/model` of `book` (pairs in effect) that a call of `provider/model` the book does not
/// price looks like a typo of: the provider as given if the book has it, else the one it misspells;
/// then the model as given if that provider prices it (by [`candidates`]), else the one it misspells.
pub fn did_you_mean(provider: &str, model: &str, book: &[(&str, &str)]) -> Option<String> {
    let providers: std::collections::BTreeSet<&str> = book.iter().map(|(p, _)| *p).collect();
    let p = if providers.contains(provider) { provider } else { closest(provider, providers.iter().copied())? };
    let models: Vec<&str> = book.iter().filter(|(bp, _)| *bp == p).map(|(_, m)| *m).collect();
    let named = candidates(p, model).iter().any(|c| models.contains(&c.as_str()));
    let m = if named { model } else { closest(model, models.iter().copied())? };
    (p != provider || m != model).then(|| format!("{p}/{m}"))
}

/// The model `model` is a dated snapshot of (`gpt-4o-2024-08-06` → `gpt-4o`, `claude-3-5-sonnet-20241022`
/// → `claude-3-5-sonnet`), if it is one.
pub fn undated(model: &str) -> Option<&str> {
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
                return Some(base);
            }
        }
    }
    // -YYYYMMDD
    if splits_at(9) {
        let (base, tail) = model.split_at(model.len() - 9);
        if let Some(date) = tail.strip_prefix('-') {
            if date.len() == 8 && digits(date) && date.starts_with("20") {
                return Some(base);
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

    #[test]
    fn another_version_of_a_model_is_not_a_typo_of_it() {
        // claude-opus-4-7 priced as claude-opus-4-1 would cost three times what it does ($15/$75 against
        // $5/$25 per 1M): a newer version is another model, not a misspelling.
        let models = ["claude-opus-4-1", "claude-3-5-sonnet", "gpt-5", "gpt-5-nano", "gpt-4o", "o3-mini", "llama3.1"];
        assert_eq!(closest("claude-opus-4-7", models), None);
        assert_eq!(closest("claude-opus-4-7-20260416", models), None);
        assert_eq!(closest("claude-3-7-sonnet", models), None);
        assert_eq!(closest("gpt-5.4", models), None);
        assert_eq!(closest("gpt-5.4-nano", models), None);
        assert_eq!(closest("o4-mini", models), None);
        assert_eq!(closest("llama3.2", models), None);
        // A letter in a number's place, or a misspelled word beside a version, is still a typo.
        assert_eq!(closest("gpt-40", models), Some("gpt-4o"));
        assert_eq!(closest("claude-opus-4-l", models), Some("claude-opus-4-1"));
        assert_eq!(closest("claude-opsu-4-1", models), Some("claude-opus-4-1"));
        let book = [("anthropic", "claude-opus-4-1")];
        assert_eq!(did_you_mean("anthropic", "claude-opus-4-7", &book), None);
    }

    #[test]
    fn a_typo_finds_the_name_it_misspells() {
        let models = ["claude-3-5-sonnet", "claude-3-5-haiku", "gpt-4o", "gpt-4o-mini", "gpt-4.1"];
        assert_eq!(closest("claude-3-5-sonet", models), Some("claude-3-5-sonnet"));
        assert_eq!(closest("claude-3-5-sonet-20241022", models), Some("claude-3-5-sonnet"));
        assert_eq!(closest("gtp-4o", models), Some("gpt-4o"));
        assert_eq!(closest("GPT-4o", models), None, "the name itself, in another case, is no typo");
        assert_eq!(closest("gpt-4o", models), None, "a known name is not a typo of another");
        assert_eq!(closest("llama-3", models), None, "too far from every name");
        assert_eq!(closest("opnai", ["openai", "anthropic"]), Some("openai"));
        assert_eq!(closest("x", ["y"]), Some("y"), "one edit is allowed even in a short name");
        assert_eq!(closest("", ["openai"]), None);
        let book = [("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-3-5-sonnet")];
        assert_eq!(did_you_mean("opnai", "gpt-4o", &book).as_deref(), Some("openai/gpt-4o"));
        assert_eq!(did_you_mean("opnai", "gpt-4o-2024-08-06", &book).as_deref(), Some("openai/gpt-4o-2024-08-06"));
        assert_eq!(
            did_you_mean("anthropic", "claude-3-5-sonet", &book).as_deref(),
            Some("anthropic/claude-3-5-sonnet")
        );
        assert_eq!(did_you_mean("openai", "claude-3-5-sonnet", &book), None, "another provider's model is no typo");
        assert_eq!(did_you_mean("openai", "gpt-4o", &book), None, "priced as given");
        assert_eq!(did_you_mean("acme", "gpt-4o", &book), None);
    }

    #[test]
    fn a_model_is_its_name_its_provider_form_and_its_snapshots() {
        for model in ["gpt-4o", "openai/gpt-4o", "gpt-4o-2024-08-06", "openai/gpt-4o-2024-08-06"] {
            assert!(is_model("openai", model, "gpt-4o"), "{model}");
            assert!(candidates("openai", model).contains(&"gpt-4o".to_string()), "the same rule as pricing: {model}");
        }
        for model in ["gpt-4o-mini", "gpt-4", "azure/gpt-4o", "gpt-4o-2024"] {
            assert!(!is_model("openai", model, "gpt-4o"), "{model}");
        }
        assert!(is_model("anthropic", "claude-3-5-sonnet-20241022", "claude-3-5-sonnet"));
        // A snapshot's limit is the snapshot's alone.
        assert!(!is_model("openai", "gpt-4o", "gpt-4o-2024-08-06"));
    }

    fn spec(input_per_1m: Decimal, output_per_1m: Decimal) -> PriceSpec {
        PriceSpec {
            provider: "openai".into(),
            model: "gpt-4".into(),
            input_per_token: input_per_1m / dec!(1000000),
            output_per_token: output_per_1m / dec!(1000000),
            cached_input_per_token: None,
            cache_creation_per_token: None,
            reasoning_per_token: None,
            tiers: vec![],
            per_request: None,
            context_window: None,
            capabilities: vec![],
            retires_on: None,
        }
    }

    #[test]
    fn reasoning_is_a_part_of_the_output_at_its_own_rate() {
        // 500 output of which 200 reasoning: 300 at $10 and 200 at $40 per 1M.
        let mut s = spec(dec!(1), dec!(10));
        let t = Tokens { output: 500, reasoning: 200, ..Tokens::default() };
        assert_eq!(cost_of(&s, t).total_cost, dec!(0.005), "without a reasoning rate, all output at the output rate");
        s.reasoning_per_token = Some(dec!(40) / dec!(1000000));
        let c = cost_of(&s, t);
        assert_eq!((c.output_cost, c.reasoning_cost, c.total_cost), (dec!(0.003), dec!(0.008), dec!(0.011)));
        // A tier prices the answer; reasoning keeps the price's reasoning rate.
        s.tiers = vec![PriceTier {
            above_input_tokens: 1000,
            input_per_token: dec!(2) / dec!(1000000),
            output_per_token: Some(dec!(20) / dec!(1000000)),
            cached_input_per_token: None,
            cache_creation_per_token: None,
        }];
        let c = cost_of(&s, Tokens { input: 2000, ..t });
        assert_eq!((c.output_cost, c.reasoning_cost), (dec!(0.006), dec!(0.008)));
    }

    #[test]
    fn a_cost_keeps_18_decimals() {
        let s = spec(dec!(0.000025), dec!(0));
        assert_eq!(cost(&s, 1, 0, 0).total_cost, dec!(0.000000000025));
        let s = PriceSpec { input_per_token: dec!(0.0000000000000000001), ..s };
        assert_eq!(cost(&s, 4, 0, 0).total_cost, dec!(0), "beyond 18 decimals rounds");
        assert_eq!(cost(&s, 5, 0, 0).total_cost, dec!(0), "half to even");
        assert_eq!(cost(&s, 6, 0, 0).total_cost, dec!(0.000000000000000001));
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
    fn many_calls_pay_their_own_tier_and_request_price() {
        // $1/1M, $2/1M above 100,000 input tokens a call, and $0.01 a request.
        let mut s = spec(dec!(1), dec!(1));
        s.tiers = vec![PriceTier {
            above_input_tokens: 100_000,
            input_per_token: dec!(2) / dec!(1000000),
            output_per_token: None,
            cached_input_per_token: None,
            cache_creation_per_token: None,
        }];
        s.per_request = Some(Money::new(dec!(0.01)).unwrap());
        let month = Tokens { input: 300_000, ..Tokens::default() };
        // Thirty calls of 10,000: the base rate, thirty requests.
        let c = cost_of_calls(&s, month, 30);
        assert_eq!((c.input_cost, c.request_cost, c.total_cost), (dec!(0.3), dec!(0.3), dec!(0.6)));
        // One call of 300,000: the tier's rate, one request.
        assert_eq!(cost_of(&s, month).total_cost, dec!(0.61));
        assert_eq!(cost_of_calls(&s, month, 0), cost_of(&s, month), "no calls counts as one");
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
