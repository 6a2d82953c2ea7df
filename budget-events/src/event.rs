//! The events of the log: typed, versioned, and decoded strictly.
//!
//! Every fact the service knows is one of these. Each variant has a stable `event_type` name and a
//! `schema_version`; a reader that meets a name or version it does not know reports an error instead of
//! skipping the event, because a skipped event is a number that can no longer be explained.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::policy::{PolicyPeriod, PolicyType, Scope, Tier};
use crate::domain::usage::CostSource;
use crate::domain::{Component, ContextId, Model, OperationId, Provider, SessionId, TaskType, UserId};
use crate::money::Money;

/// Every event type this build reads; any other is an error, never a skip.
pub const EVENT_TYPES: [&str; 14] = [
    "ApiKeyCreated",
    "ApiKeyRevoked",
    "BudgetRefused",
    "AlertAcknowledged",
    "PriceSet",
    "UsageRepriced",
    "UsageRecorded",
    "BudgetCreated",
    "BudgetUpdated",
    "BudgetArchived",
    "PolicySet",
    "AllocationCreated",
    "AllocationReleased",
    "AllocationExpired",
];

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    UsageRecorded(UsageRecorded),
    BudgetCreated(BudgetCreated),
    BudgetUpdated(BudgetUpdated),
    BudgetArchived(BudgetArchived),
    PolicySet(PolicySet),
    AllocationCreated(AllocationCreated),
    AllocationReleased(AllocationResolved),
    AllocationExpired(AllocationResolved),
    PriceSet(PriceSet),
    UsageRepriced(UsageRepriced),
    BudgetRefused(BudgetRefused),
    AlertAcknowledged(AlertAcknowledged),
    ApiKeyCreated(ApiKeyCreated),
    ApiKeyRevoked(ApiKeyRevoked),
}

/// An API key was created: who may do what from now on. Only the secret's SHA-256 is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyCreated {
    pub key_id: Uuid,
    pub secret_hash: String,
    /// The secret's first characters, to recognise it in a list.
    pub prefix: String,
    #[serde(default)]
    pub name: Option<String>,
    pub scope: crate::domain::keys::KeyScope,
    /// A key bound to a component records usage and reserves for that component only.
    #[serde(default)]
    pub component: Option<Component>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// An API key was revoked: refused from now on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyRevoked {
    pub key_id: Uuid,
}

/// A reservation or pre-flight check that a hard limit refused. Nothing was reserved or spent; the
/// refusal is kept so that alerts can count refusals per window and so that it can be explained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetRefused {
    /// `allocation` or `check`.
    pub source: String,
    pub component: String,
    #[serde(default)]
    pub context_id: Option<String>,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    pub refusals: Vec<crate::decide::Refusal>,
}

/// A person acknowledged an alert (raised by the alerts projection; its id is derived from what it is
/// about, so the acknowledgement finds it again after a rebuild).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertAcknowledged {
    pub alert_id: Uuid,
    #[serde(default)]
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: DateTime<Utc>,
}

/// A usage record's cost corrected to the price version now in effect at its time (`budget prices
/// reprice`). The record's own event stays as it was; its cost is the last correction's `cost`, and
/// every account it was posted to moves by `delta`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageRepriced {
    pub record_id: Uuid,
    pub provider: Provider,
    pub model: Model,
    pub component: Component,
    pub task_type: TaskType,
    pub occurred_at: DateTime<Utc>,
    pub previous_cost: Money,
    pub previous_price_version: Option<Uuid>,
    pub cost: Money,
    /// `cost - previous_cost`: negative when the new price is lower.
    #[serde(with = "crate::money::decimal_json")]
    pub delta: rust_decimal::Decimal,
    pub price_version: Uuid,
    pub resolved_model: String,
    /// The record's postings: the accounts the delta moved.
    pub postings: Vec<Posting>,
    /// The record's end user (the usage rollups find the record's row by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
}

/// A new version of a model's price, in effect from `effective_from` until the next version's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceSet {
    pub version_id: Uuid,
    pub spec: crate::domain::price::PriceSpec,
    pub effective_from: DateTime<Utc>,
    pub source: crate::domain::price::PriceSource,
}

/// Tokens (and their estimated cost) reserved for a task, pending in every window of `reservations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllocationCreated {
    pub allocation_id: Uuid,
    pub context_id: String,
    pub component: String,
    pub tier: Tier,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub task_type: String,
    pub priority: i16,
    pub tokens_allocated: i64,
    pub estimated_cost: Money,
    pub expires_at: DateTime<Utc>,
    pub reservations: Vec<Posting>,
    /// The end user it was reserved for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The request named no task type, or no tier: it reserved as if for any
    /// ([`crate::domain::allocation::CreateAllocation::task_type_open`]). Absent from older events,
    /// which reserved under their `default` task type and derived tier only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub task_type_open: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tier_open: bool,
}

/// An allocation's remaining reservation was voided: released by a client, or expired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllocationResolved {
    pub allocation_id: Uuid,
    pub released_tokens: i64,
    pub released_cost: Money,
}

/// How a usage record settled against its allocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settlement {
    pub allocation_id: Uuid,
    /// Taken from the reservation (pending → posted).
    pub settled_tokens: i64,
    pub settled_cost: Money,
    /// Used beyond what was still reserved (recorded all the same).
    pub overage_tokens: i64,
    pub overage_cost: Money,
    /// The record used up the allocation; its leftover estimated cost was voided.
    pub exhausted: bool,
    pub voided_cost: Money,
}

/// A budget: a named container of policies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetCreated {
    pub budget_id: Uuid,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
}

/// A policy's whole definition as of this event. Setting a limit again for the same budget, period and
/// scope appends another `PolicySet` to the same policy's stream; the earlier one stays in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySet {
    pub policy_id: Uuid,
    pub budget_id: Uuid,
    pub policy_type: PolicyType,
    pub period: PolicyPeriod,
    pub scope: Scope,
    pub cost_limit: Option<Money>,
    pub token_limit: Option<i64>,
    #[serde(with = "crate::money::decimal_json")]
    pub warning_threshold: rust_decimal::Decimal,
    #[serde(with = "crate::money::decimal_json")]
    pub action_threshold: rust_decimal::Decimal,
    pub enabled: bool,
    pub timezone: String,
    /// Set when the policy starts counting (created, or re-enabled): what its current window already
    /// held, so the window's account is still a fold of the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opening: Option<OpeningBalance>,
}

/// What a policy's current window already held when the policy started counting: every matching usage
/// record whose time falls in the window (with its corrections), and every matching active reservation
/// made in it. The window's account is set to these figures; the reservations named in `allocations`
/// now also pend in this window and are released from it like from their other windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpeningBalance {
    pub window: String,
    pub window_start: Option<DateTime<Utc>>,
    pub window_end: Option<DateTime<Utc>>,
    #[serde(with = "crate::money::decimal_json")]
    pub posted_cost: rust_decimal::Decimal,
    pub posted_tokens: i64,
    pub records: i64,
    #[serde(with = "crate::money::decimal_json")]
    pub pending_cost: rust_decimal::Decimal,
    pub pending_tokens: i64,
    /// Active allocations whose reservation now also pends in this window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allocations: Vec<Uuid>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// A budget's name, description or owner changed; absent fields did not change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetUpdated {
    pub budget_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// A budget stopped counting: its policies no longer match new usage or checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetArchived {
    pub budget_id: Uuid,
}

/// A policy window a usage record was posted into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    pub policy_id: Uuid,
    pub window: String,
}

/// One LLM call that happened: tokens, cost and who spent them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageRecorded {
    pub record_id: Uuid,
    pub provider: Provider,
    pub model: Model,
    pub component: Component,
    pub task_type: TaskType,
    pub context_id: Option<ContextId>,
    pub session_id: Option<SessionId>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost: Money,
    pub cost_source: CostSource,
    /// When the call happened (the client's timestamp, or the time it was recorded).
    pub occurred_at: DateTime<Utc>,
    /// Given by the client or derived from provider and model.
    #[serde(default = "default_tier")]
    pub tier: Tier,
    /// The policy windows this record was posted into (explains every account).
    #[serde(default)]
    pub postings: Vec<Posting>,
    /// Hard-limited policies whose window is beyond its limit with this record (taken there by it, or
    /// by an earlier one).
    #[serde(default)]
    pub exceeded: Vec<Uuid>,
    /// The allocation this record settled against, if it named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement: Option<Settlement>,
    /// The part of `input_tokens` served from a prompt cache.
    #[serde(default)]
    pub cached_input_tokens: i64,
    /// The part of `input_tokens` written to a prompt cache.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_creation_input_tokens: i64,
    /// The part of `output_tokens` spent reasoning.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reasoning_tokens: i64,
    /// The price-book version the record was priced with, the model name it resolved to, and the cost it
    /// computed (also kept when the client sent its own cost, so differences can be reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_version: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computed_cost: Option<Money>,
    /// The end user the call was made for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    /// The caller's operation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<OperationId>,
    /// The caller's small JSON object, kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

fn default_tier() -> Tier {
    Tier::RemoteHeavyweight
}

impl UsageRecorded {
    pub fn total_tokens(&self) -> i64 {
        self.input_tokens + self.output_tokens
    }
}

/// Who and what caused an event; stored beside the payload, never part of the decision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// Who wrote the event: the API key's name (or id), or `X-Budget-Actor` when the service runs
    /// without keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The API key that wrote the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<Uuid>,
    /// `X-Budget-Actor` sent with a key: on whose behalf the key's holder acted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("event at position {position} has type `{event_type}`, which this build does not know; upgrade budget before reading this log")]
    UnknownType { position: i64, event_type: String },
    #[error("event at position {position} is `{event_type}` version {version}, which this build does not know")]
    UnknownVersion { position: i64, event_type: String, version: i32 },
    #[error("event at position {position} (`{event_type}`) has a payload that does not decode: {source}")]
    BadPayload { position: i64, event_type: String, source: serde_json::Error },
}

impl Event {
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::UsageRecorded(_) => "UsageRecorded",
            Event::BudgetCreated(_) => "BudgetCreated",
            Event::BudgetUpdated(_) => "BudgetUpdated",
            Event::BudgetArchived(_) => "BudgetArchived",
            Event::PolicySet(_) => "PolicySet",
            Event::AllocationCreated(_) => "AllocationCreated",
            Event::AllocationReleased(_) => "AllocationReleased",
            Event::AllocationExpired(_) => "AllocationExpired",
            Event::PriceSet(_) => "PriceSet",
            Event::UsageRepriced(_) => "UsageRepriced",
            Event::BudgetRefused(_) => "BudgetRefused",
            Event::AlertAcknowledged(_) => "AlertAcknowledged",
            Event::ApiKeyCreated(_) => "ApiKeyCreated",
            Event::ApiKeyRevoked(_) => "ApiKeyRevoked",
        }
    }

    pub fn schema_version(&self) -> i32 {
        1
    }

    pub fn payload(&self) -> serde_json::Value {
        serde_json::from_str(&self.payload_text()).expect("a payload is JSON")
    }

    /// The payload as JSON text, written straight from the event's type.
    pub fn payload_text(&self) -> String {
        let text = match self {
            Event::UsageRecorded(e) => serde_json::to_string(e),
            Event::BudgetCreated(e) => serde_json::to_string(e),
            Event::BudgetUpdated(e) => serde_json::to_string(e),
            Event::BudgetArchived(e) => serde_json::to_string(e),
            Event::PolicySet(e) => serde_json::to_string(e),
            Event::AllocationCreated(e) => serde_json::to_string(e),
            Event::AllocationReleased(e) | Event::AllocationExpired(e) => serde_json::to_string(e),
            Event::PriceSet(e) => serde_json::to_string(e),
            Event::UsageRepriced(e) => serde_json::to_string(e),
            Event::BudgetRefused(e) => serde_json::to_string(e),
            Event::AlertAcknowledged(e) => serde_json::to_string(e),
            Event::ApiKeyCreated(e) => serde_json::to_string(e),
            Event::ApiKeyRevoked(e) => serde_json::to_string(e),
        };
        text.expect("event payloads are plain data and always serialize")
    }

    /// Decodes a stored event; `position` is only for the error message.
    pub fn decode(
        position: i64,
        event_type: &str,
        schema_version: i32,
        payload: serde_json::Value,
    ) -> Result<Event, DecodeError> {
        Self::decode_from(position, event_type, schema_version, Payload::Value(payload))
    }

    /// [`Event::decode`] from the payload's JSON text, without building a `serde_json::Value` first.
    pub fn decode_text(
        position: i64,
        event_type: &str,
        schema_version: i32,
        payload: &str,
    ) -> Result<Event, DecodeError> {
        Self::decode_from(position, event_type, schema_version, Payload::Text(payload))
    }

    fn decode_from(
        position: i64,
        event_type: &str,
        schema_version: i32,
        payload: Payload<'_>,
    ) -> Result<Event, DecodeError> {
        let bad = |source| DecodeError::BadPayload { position, event_type: event_type.to_string(), source };

        if !EVENT_TYPES.contains(&event_type) {
            return Err(DecodeError::UnknownType { position, event_type: event_type.to_string() });
        }
        if schema_version != 1 {
            return Err(DecodeError::UnknownVersion {
                position,
                event_type: event_type.to_string(),
                version: schema_version,
            });
        }
        match event_type {
            "UsageRecorded" => payload.parse().map(Event::UsageRecorded),
            "BudgetCreated" => payload.parse().map(Event::BudgetCreated),
            "BudgetUpdated" => payload.parse().map(Event::BudgetUpdated),
            "BudgetArchived" => payload.parse().map(Event::BudgetArchived),
            "AllocationCreated" => payload.parse().map(Event::AllocationCreated),
            "AllocationReleased" => payload.parse().map(Event::AllocationReleased),
            "AllocationExpired" => payload.parse().map(Event::AllocationExpired),
            "PriceSet" => payload.parse().map(Event::PriceSet),
            "UsageRepriced" => payload.parse().map(Event::UsageRepriced),
            "BudgetRefused" => payload.parse().map(Event::BudgetRefused),
            "AlertAcknowledged" => payload.parse().map(Event::AlertAcknowledged),
            "ApiKeyCreated" => payload.parse().map(Event::ApiKeyCreated),
            "ApiKeyRevoked" => payload.parse().map(Event::ApiKeyRevoked),
            _ => payload.parse().map(Event::PolicySet),
        }
        .map_err(bad)
    }
}

/// A stored payload, as a JSON tree or as its text.
enum Payload<'a> {
    Value(serde_json::Value),
    Text(&'a str),
}

impl Payload<'_> {
    fn parse<T: serde::de::DeserializeOwned>(self) -> serde_json::Result<T> {
        match self {
            Payload::Value(v) => serde_json::from_value(v),
            Payload::Text(t) => serde_json::from_str(t),
        }
    }
}

/// An event about to be appended.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event: Event,
    pub metadata: EventMetadata,
}

impl NewEvent {
    pub fn new(event: Event, metadata: EventMetadata) -> Self {
        NewEvent { event_id: Uuid::now_v7(), event, metadata }
    }
}

/// An event as read back from the log.
#[derive(Debug, Clone)]
pub struct RecordedEvent {
    pub position: i64,
    pub tx_id: u64,
    pub stream_id: String,
    pub stream_version: i64,
    pub event_id: Uuid,
    pub event: Event,
    /// Who wrote it; `None` from the reads that fold the log (the projections, the replay, the
    /// WebSocket hub), which never look at it and leave it out ([`crate::store::read`]).
    pub metadata: Option<EventMetadata>,
    pub recorded_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_types_and_versions_are_errors() {
        let e = Event::decode(7, "Mystery", 1, serde_json::json!({})).unwrap_err();
        assert!(matches!(e, DecodeError::UnknownType { position: 7, .. }));
        let e = Event::decode(8, "UsageRecorded", 9, serde_json::json!({})).unwrap_err();
        assert!(matches!(e, DecodeError::UnknownVersion { version: 9, .. }));
        let e = Event::decode(9, "UsageRecorded", 1, serde_json::json!({"x": 1})).unwrap_err();
        assert!(matches!(e, DecodeError::BadPayload { .. }));
    }
}
