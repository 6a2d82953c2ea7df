//! A usage record: what one LLM call spent, as a client reports it, and its validation.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::names::{Component, ContextId, Model, NameError, OperationId, Provider, SessionId, TaskType, UserId};
use super::policy::Tier;
use crate::money::Money;

/// The most tokens one record may carry on each side; far above any real call, far below overflow.
pub const MAX_TOKENS_PER_RECORD: i64 = 1_000_000_000;

/// The most one record may cost, in USD, unless `BUDGET_MAX_RECORD_COST` says otherwise. No single LLM
/// call costs more; a larger figure is a unit mistake (micro-dollars, cents). Sums are unconstrained
/// `NUMERIC` columns and `Decimal`s, so no number of valid records can overflow a rollup or an account.
pub const MAX_RECORD_COST: i64 = 1_000_000;
/// The highest `BUDGET_MAX_RECORD_COST` may be set to (below one amount's bound of 10^10 USD).
pub const MAX_RECORD_COST_CEILING: i64 = 100_000_000;
/// How far in the future a client clock may be before a timestamp is refused.
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);

/// A usage record as it arrives on the wire (`POST /api/usage`, and each item of a batch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UsageInput {
    /// `openai`, `anthropic`, `ollama`…
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::provider))]
    pub provider: String,
    /// `gpt-4o`, `claude-sonnet-4-5`…
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::model))]
    pub model: String,
    /// The calling component: `codex`, `rhetor`…; a key bound to a component names its own when this
    /// is left out.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::component_unless_bound))]
    pub component: String,
    /// What the call was for; `default` when absent.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_task_type))]
    pub task_type: Option<String>,
    /// The task the spending belongs to.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_context_id))]
    pub context_id: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_session_id))]
    pub session_id: Option<String>,
    /// local_lightweight, local_midweight or remote_heavyweight; derived from provider and model when absent.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_tier))]
    pub tier: Option<String>,
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::tokens))]
    pub input_tokens: i64,
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::tokens))]
    pub output_tokens: i64,
    /// The part of input_tokens served from a prompt cache (priced at the cached rate): at most
    /// `input_tokens`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_tokens))]
    pub cached_input_tokens: Option<i64>,
    /// The part of input_tokens written to a prompt cache (priced at the cache-write rate); with
    /// `cached_input_tokens`, at most `input_tokens`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_tokens))]
    pub cache_creation_input_tokens: Option<i64>,
    /// The part of output_tokens the model spent reasoning (OpenAI's
    /// `completion_tokens_details.reasoning_tokens`), priced at the reasoning rate where the model has
    /// one: at most `output_tokens`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_tokens))]
    pub reasoning_tokens: Option<i64>,
    /// USD, exact decimal (number or string), at most 18 decimal places and at most
    /// `BUDGET_MAX_RECORD_COST` ($1,000,000 by default). Absent: priced from the price book at the
    /// record's time, or kept as unpriced when the model has no price.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_record_cost))]
    pub cost: Option<Money>,
    /// When the call happened (RFC 3339, converted to UTC; a time without a zone is read as UTC), at
    /// most 5 minutes ahead of the server's clock; defaults to the time it is recorded.
    #[serde(default, deserialize_with = "crate::timestamp::optional")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_timestamp))]
    pub timestamp: Option<DateTime<Utc>>,
    /// Idempotency key for this record (the `Idempotency-Key` header does the same).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_request_id))]
    pub request_id: Option<String>,
    /// The allocation this call used: the record settles against its reservation.
    #[serde(default)]
    pub allocation_id: Option<uuid::Uuid>,
    /// The end user the call was made for: limits scoped to a user (`--user alice`) count it.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_user_id))]
    pub user_id: Option<String>,
    /// The caller's id for the operation the call was part of (kept on the record, not a scope).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_operation_id))]
    pub operation_id: Option<String>,
    /// A small JSON object kept on the record and returned by audit and export (at most 4 KiB).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_record_metadata))]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// [`UsageInput`] as its idempotency key hashes it: the same fields, declared in sorted order, so that
/// `serde_json` writes the canonical JSON of [`crate::store::idempotency::request_hash`] directly.
/// Built by destructuring the input, so a field added to `UsageInput` without one here does not compile.
#[derive(Serialize)]
pub struct CanonicalUsageInput<'a> {
    allocation_id: &'a Option<uuid::Uuid>,
    cache_creation_input_tokens: &'a Option<i64>,
    cached_input_tokens: &'a Option<i64>,
    component: &'a str,
    context_id: &'a Option<String>,
    cost: &'a Option<Money>,
    input_tokens: i64,
    metadata: &'a Option<serde_json::Map<String, serde_json::Value>>,
    model: &'a str,
    operation_id: &'a Option<String>,
    output_tokens: i64,
    provider: &'a str,
    reasoning_tokens: &'a Option<i64>,
    request_id: &'a Option<String>,
    session_id: &'a Option<String>,
    task_type: &'a Option<String>,
    tier: &'a Option<String>,
    timestamp: &'a Option<DateTime<Utc>>,
    user_id: &'a Option<String>,
}

impl crate::store::idempotency::Canonical for CanonicalUsageInput<'_> {}

impl UsageInput {
    pub fn canonical(&self) -> CanonicalUsageInput<'_> {
        let UsageInput {
            provider,
            model,
            component,
            task_type,
            context_id,
            session_id,
            tier,
            input_tokens,
            output_tokens,
            cached_input_tokens,
            cache_creation_input_tokens,
            reasoning_tokens,
            cost,
            timestamp,
            request_id,
            allocation_id,
            user_id,
            operation_id,
            metadata,
        } = self;
        CanonicalUsageInput {
            allocation_id,
            cache_creation_input_tokens,
            cached_input_tokens,
            component,
            context_id,
            cost,
            input_tokens: *input_tokens,
            metadata,
            model,
            operation_id,
            output_tokens: *output_tokens,
            provider,
            reasoning_tokens,
            request_id,
            session_id,
            task_type,
            tier,
            timestamp,
            user_id,
        }
    }
}

/// The most a record's `metadata` may take, as compact JSON.
pub const MAX_METADATA_BYTES: usize = 4096;

/// Where a record's cost came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CostSource {
    /// The client reported the cost.
    Client,
    /// Priced from the price book at the record's time (`price_version`).
    PriceBook,
    /// No cost was given and no price was applied: the record counts tokens, cost 0.
    Unpriced,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TokenCount(i64);

impl TokenCount {
    pub fn get(self) -> i64 {
        self.0
    }
}

/// A validated usage record: the command that becomes a `UsageRecorded` event.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordUsage {
    pub provider: Provider,
    pub model: Model,
    pub component: Component,
    pub task_type: TaskType,
    pub context_id: Option<ContextId>,
    pub session_id: Option<SessionId>,
    pub tier: Tier,
    pub input_tokens: TokenCount,
    pub output_tokens: TokenCount,
    pub cached_input_tokens: i64,
    pub cache_creation_input_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost: Option<Money>,
    pub occurred_at: DateTime<Utc>,
    pub allocation_id: Option<uuid::Uuid>,
    pub user_id: Option<UserId>,
    pub operation_id: Option<OperationId>,
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// One problem with one field of a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .errors.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join("; "))]
pub struct UsageValidationError {
    pub errors: Vec<FieldError>,
}

impl RecordUsage {
    /// Validates every field and reports every problem at once, not only the first.
    pub fn validate(input: &UsageInput, now: DateTime<Utc>) -> Result<Self, UsageValidationError> {
        Self::validate_with(input, now, rust_decimal::Decimal::from(MAX_RECORD_COST))
    }

    /// [`RecordUsage::validate`] with a bound on the record's cost other than the default.
    pub fn validate_with(
        input: &UsageInput,
        now: DateTime<Utc>,
        max_cost: rust_decimal::Decimal,
    ) -> Result<Self, UsageValidationError> {
        let mut errors = Vec::new();
        let mut name_err = |e: NameError| {
            let field = match &e {
                NameError::Empty { field }
                | NameError::TooLong { field, .. }
                | NameError::ControlCharacter { field } => field.to_string(),
            };
            errors.push(FieldError { field, message: e.to_string() });
        };
        let provider = Provider::parse(&input.provider).map_err(&mut name_err).ok();
        let model = Model::parse(&input.model).map_err(&mut name_err).ok();
        let component = Component::parse(&input.component).map_err(&mut name_err).ok();
        let task_type = match &input.task_type {
            Some(t) => TaskType::parse(t).map_err(&mut name_err).ok(),
            None => Some(TaskType::default_type()),
        };
        let context_id = optional(&input.context_id, ContextId::parse, &mut name_err);
        let session_id = optional(&input.session_id, SessionId::parse, &mut name_err);
        let user_id = optional(&input.user_id, UserId::parse, &mut name_err);
        let operation_id = optional(&input.operation_id, OperationId::parse, &mut name_err);
        if let Some(size) = input.metadata.as_ref().map(|m| serde_json::to_vec(m).map_or(usize::MAX, |v| v.len())) {
            if size > MAX_METADATA_BYTES {
                errors.push(FieldError {
                    field: "metadata".into(),
                    message: format!(
                        "metadata is {size} bytes as JSON; the limit is {MAX_METADATA_BYTES}: keep ids and labels there, not payloads"
                    ),
                });
            }
        }

        let mut tokens = |field: &str, value: i64| {
            if !(0..=MAX_TOKENS_PER_RECORD).contains(&value) {
                errors.push(FieldError {
                    field: field.to_string(),
                    message: format!("{field} is {value}; it must be a whole number from 0 to {MAX_TOKENS_PER_RECORD}"),
                });
                None
            } else {
                Some(TokenCount(value))
            }
        };
        let input_tokens = tokens("input_tokens", input.input_tokens);
        let output_tokens = tokens("output_tokens", input.output_tokens);
        let cached = input.cached_input_tokens.unwrap_or(0);
        if !(0..=input.input_tokens.max(0)).contains(&cached) {
            errors.push(FieldError {
                field: "cached_input_tokens".into(),
                message: format!(
                    "cached_input_tokens is {cached}; it is the cached part of input_tokens, from 0 to {}",
                    input.input_tokens
                ),
            });
        }
        let creation = input.cache_creation_input_tokens.unwrap_or(0);
        if !(0..=(input.input_tokens - cached).max(0)).contains(&creation) {
            errors.push(FieldError {
                field: "cache_creation_input_tokens".into(),
                message: format!(
                    "cache_creation_input_tokens is {creation}; it is the part of input_tokens written to the cache, from 0 to input_tokens - cached_input_tokens ({})",
                    (input.input_tokens - cached).max(0)
                ),
            });
        }
        let reasoning = input.reasoning_tokens.unwrap_or(0);
        if !(0..=input.output_tokens.max(0)).contains(&reasoning) {
            errors.push(FieldError {
                field: "reasoning_tokens".into(),
                message: format!(
                    "reasoning_tokens is {reasoning}; it is the part of output_tokens spent reasoning, from 0 to {}",
                    input.output_tokens.max(0)
                ),
            });
        }
        let tier = match &input.tier {
            Some(t) => {
                t.parse::<Tier>().map_err(|message| errors.push(FieldError { field: "tier".into(), message })).ok()
            }
            None => Some(Tier::derive(&input.provider, &input.model)),
        };

        if let Some(cost) = input.cost.filter(|c| c.amount() > max_cost) {
            errors.push(FieldError {
                field: "cost".into(),
                message: format!(
                    "cost is {cost}, above the {} one call may cost (BUDGET_MAX_RECORD_COST); send the call's cost in USD, not micro-dollars or cents",
                    crate::display::dollars(max_cost)
                ),
            });
        }
        let occurred_at = input.timestamp.unwrap_or(now);
        if occurred_at > now + MAX_CLOCK_SKEW {
            errors.push(FieldError {
                field: "timestamp".into(),
                message: format!(
                    "timestamp {occurred_at} is in the future (server time {now}); send the time the call happened, in UTC"
                ),
            });
        }

        match (provider, model, component, task_type, input_tokens, output_tokens, tier) {
            (Some(provider), Some(model), Some(component), Some(task_type), Some(i), Some(o), Some(tier))
                if errors.is_empty() =>
            {
                Ok(RecordUsage {
                    provider,
                    model,
                    component,
                    task_type,
                    context_id: context_id.flatten(),
                    session_id: session_id.flatten(),
                    tier,
                    input_tokens: i,
                    output_tokens: o,
                    cached_input_tokens: cached,
                    cache_creation_input_tokens: creation,
                    reasoning_tokens: reasoning,
                    cost: input.cost,
                    occurred_at,
                    allocation_id: input.allocation_id,
                    user_id: user_id.flatten(),
                    operation_id: operation_id.flatten(),
                    metadata: input.metadata.clone(),
                })
            }
            _ => Err(UsageValidationError { errors }),
        }
    }
}

fn optional<T>(
    raw: &Option<String>,
    parse: fn(&str) -> Result<T, NameError>,
    on_err: &mut impl FnMut(NameError),
) -> Option<Option<T>> {
    match raw {
        None => Some(None),
        Some(s) => parse(s).map_err(on_err).ok().map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> UsageInput {
        serde_json::from_str(
            r#"{"provider":"openai","model":"gpt-4o","component":"codex","context_id":"task-123",
                "task_type":"coding","input_tokens":1200,"output_tokens":340,"cost":0.0064}"#,
        )
        .unwrap()
    }

    #[test]
    fn the_request_hash_is_the_sha256_of_the_sorted_json_and_stays_so() {
        use crate::store::idempotency::{canonical_hash, request_hash};
        // Computed outside Rust (Python's json.dumps with sort_keys and compact separators): a hash
        // stored with a key must not change, or a retry after an upgrade is refused as a new request.
        let pinned = "642d1ac7b5ad787f2337f8e751f475ab773c425287588f8080f70b23088e6b5d";
        assert_eq!(request_hash(&input()), pinned);
        assert_eq!(canonical_hash(&input().canonical()), pinned);
    }

    #[test]
    fn the_canonical_view_hashes_like_the_generic_path_with_every_field_set() {
        use crate::store::idempotency::{canonical_hash, request_hash};
        let full: UsageInput = serde_json::from_str(
            r#"{"provider":"anthropic","model":"claude-sonnet-4-5","component":"r\u00e9sum\"e\n",
                "task_type":"chat","context_id":"ctx-1","session_id":"s-1","tier":"remote_heavyweight",
                "input_tokens":1234,"output_tokens":567,"cached_input_tokens":1000,
                "cache_creation_input_tokens":200,"reasoning_tokens":100,"cost":"0.000000000000000001",
                "timestamp":"2026-11-30T12:00:00+01:00","request_id":"req-1",
                "allocation_id":"0192f3c4-0000-7000-8000-000000000001","user_id":"alice",
                "operation_id":"op-9","metadata":{"z":1,"a":{"y":[1,2.50,{"b":null,"a":true}],"x":"é"}}}"#,
        )
        .unwrap();
        let mut sparse = input();
        sparse.cost = None;
        for input in [full, input(), sparse] {
            assert_eq!(canonical_hash(&input.canonical()), request_hash(&input), "{input:?}");
        }
    }

    #[test]
    fn a_good_record_validates() {
        let r = RecordUsage::validate(&input(), Utc::now()).unwrap();
        assert_eq!(r.provider.as_str(), "openai");
        assert_eq!(r.input_tokens.get(), 1200);
        assert_eq!(r.cost.unwrap().to_string(), "0.0064");
    }

    #[test]
    fn every_problem_is_reported() {
        let mut bad = input();
        bad.provider = " ".into();
        bad.input_tokens = -1;
        bad.timestamp = Some(Utc::now() + Duration::hours(1));
        let err = RecordUsage::validate(&bad, Utc::now()).unwrap_err();
        let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["provider", "input_tokens", "timestamp"]);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<UsageInput>(
            r#"{"provider":"a","model":"b","component":"c","input_tokens":1,"output_tokens":1,"tokens":3}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `tokens`"), "{err}");
    }
}
