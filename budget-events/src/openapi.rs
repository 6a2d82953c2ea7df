//! The exact shape of the wire types' fields, for the API's OpenAPI document (feature `openapi`):
//! what each validator accepts, written once here next to the rules, so that a schema-driven client
//! (or fuzzer) never sends a request the document allows and the server refuses for a reason the
//! document could have said. Rules JSON Schema cannot express (a timestamp not in the future,
//! `cached_input_tokens` ≤ `input_tokens`) are in the field descriptions.

use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type};

use crate::domain::names::{Component, ContextId, Model, OperationId, Provider, SessionId, TaskType, UserId};

/// Printable text with at least one non-space character (names are trimmed, and control characters
/// are refused).
pub const NAME_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$";

/// A validated name of at most `max` characters.
pub fn name(max: usize, nullable: bool) -> Schema {
    ObjectBuilder::new()
        .schema_type(types(Type::String, nullable))
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(NAME_PATTERN))
        .into()
}

fn types(ty: Type, nullable: bool) -> utoipa::openapi::schema::SchemaType {
    if nullable {
        utoipa::openapi::schema::SchemaType::from_iter([ty, Type::Null])
    } else {
        ty.into()
    }
}

macro_rules! name_schemas {
    ($($required:ident, $optional:ident, $ty:ty;)*) => {$(
        pub fn $required() -> Schema {
            name(<$ty>::MAX_LEN, false)
        }
        pub fn $optional() -> Schema {
            name(<$ty>::MAX_LEN, true)
        }
    )*};
}

name_schemas! {
    provider, optional_provider, Provider;
    model, optional_model, Model;
    component, optional_component, Component;
    task_type, optional_task_type, TaskType;
    context_id, optional_context_id, ContextId;
    session_id, optional_session_id, SessionId;
    user_id, optional_user_id, UserId;
    operation_id, optional_operation_id, OperationId;
}

/// The `component` a request acts for: required, unless the request's key is bound to a component
/// (JSON Schema cannot say "required unless"; the description does).
pub fn component_unless_bound() -> Schema {
    ObjectBuilder::new()
        .schema_type(types(Type::String, false))
        .min_length(Some(1))
        .max_length(Some(Component::MAX_LEN))
        .pattern(Some(NAME_PATTERN))
        .description(Some(
            "The calling component (codex, rhetor…). Required, unless the API key is bound to a component: left out, the request acts for that one",
        ))
        .into()
}

/// A record's `metadata`: a JSON object (at most 4 KiB as JSON; the size is checked by the server).
pub fn optional_record_metadata() -> Schema {
    ObjectBuilder::new()
        .schema_type(types(Type::Object, true))
        .description(Some("A small JSON object kept on the record (at most 4 KiB as compact JSON)"))
        .into()
}

/// One of `values`, or null when `nullable`.
pub fn one_of(values: &[&str], nullable: bool) -> Schema {
    let values: Vec<Option<&str>> = values.iter().map(|v| Some(*v)).chain(nullable.then_some(None)).collect();
    ObjectBuilder::new().schema_type(types(Type::String, nullable)).enum_values(Some(values)).into()
}

pub fn optional_tier() -> Schema {
    one_of(&["local_lightweight", "local_midweight", "remote_heavyweight"], true)
}

/// A whole number in `[min, max]` (null too when `nullable`).
pub fn integer(min: i64, max: i64, nullable: bool) -> Schema {
    ObjectBuilder::new()
        .schema_type(types(Type::Integer, nullable))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(min))
        .maximum(Some(max))
        .into()
}

pub fn tokens() -> Schema {
    integer(0, crate::domain::usage::MAX_TOKENS_PER_RECORD, false)
}

pub fn optional_tokens() -> Schema {
    integer(0, crate::domain::usage::MAX_TOKENS_PER_RECORD, true)
}

/// A non-negative USD amount, at most `max` (a power of ten), with at most 18 decimal places: a JSON
/// number, or the same as a decimal string.
pub fn money(max: i64, nullable: bool) -> Schema {
    let digits = max.ilog10();
    let number = ObjectBuilder::new()
        .schema_type(Type::Number)
        .minimum(Some(0))
        .maximum(Some(max))
        .description(Some(format!("at most {} decimal places", crate::money::MONEY_SCALE)));
    let text = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!(r"^[0-9]{{1,{digits}}}(\.[0-9]{{1,{}}})?$", crate::money::MONEY_SCALE)));
    let mut one = OneOfBuilder::new().item(number).item(text);
    if nullable {
        one = one.item(ObjectBuilder::new().schema_type(Type::Null));
    }
    one.build().into()
}

/// A record's cost: at most the default `BUDGET_MAX_RECORD_COST`.
pub fn optional_record_cost() -> Schema {
    money(crate::domain::usage::MAX_RECORD_COST, true)
}

/// `90s`, `15m`, `2h`, `1d` or a number of seconds: more than 0 and at most 31 days.
pub fn optional_ttl() -> Schema {
    let max = crate::domain::allocation::MAX_TTL.num_seconds();
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^([1-9][0-9]{0,5}s|[1-9][0-9]{0,3}m|[1-9][0-9]?h|[1-9]d|[12][0-9]d|3[01]d)$")),
        )
        .item(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)).maximum(Some(max)))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .build()
        .into()
}

fn wire_names<T: Copy>(all: &[T], name: fn(T) -> &'static str) -> Vec<&'static str> {
    all.iter().map(|v| name(*v)).collect()
}

/// hourly, daily, weekly, monthly, per_session or per_task.
pub fn policy_period() -> Schema {
    use crate::domain::policy::PolicyPeriod;
    one_of(&wire_names(PolicyPeriod::ALL, PolicyPeriod::as_str), false)
}

pub fn optional_policy_period() -> Schema {
    use crate::domain::policy::PolicyPeriod;
    one_of(&wire_names(PolicyPeriod::ALL, PolicyPeriod::as_str), true)
}

/// ignore, warn, soft_limit or hard_limit.
pub fn optional_policy_type() -> Schema {
    use crate::domain::policy::PolicyType;
    one_of(&wire_names(PolicyType::ALL, PolicyType::as_str), true)
}

/// hourly, daily, weekly or monthly (usage buckets).
pub fn usage_period() -> Schema {
    one_of(&["hourly", "daily", "weekly", "monthly"], false)
}

pub fn optional_usage_period() -> Schema {
    one_of(&["hourly", "daily", "weekly", "monthly"], true)
}

/// A threshold: a fraction of the limit above 0 and at most 1, in steps of 0.0001.
pub fn optional_threshold() -> Schema {
    ObjectBuilder::new()
        .schema_type(types(Type::Number, true))
        .exclusive_minimum(Some(0))
        .maximum(Some(1))
        .multiple_of(Some(0.0001))
        .into()
}

/// An IANA timezone name (`Europe/Berlin`, `UTC`).
pub fn optional_timezone() -> Schema {
    let names: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
    one_of(&names, true)
}

/// A budget's name: 1 to 128 printable characters.
pub fn optional_budget_name() -> Schema {
    name(128, true)
}

/// A limit in USD (exact decimal).
pub fn optional_limit() -> Schema {
    money(10i64.pow(crate::money::MONEY_INTEGER_DIGITS), true)
}

pub fn optional_token_limit() -> Schema {
    integer(0, i64::MAX, true)
}

/// 1 (low) to 10 (critical).
pub fn optional_priority() -> Schema {
    integer(1, 10, true)
}

/// Tokens a reservation holds: 1 to 1,000,000,000.
pub fn optional_reserved_tokens() -> Schema {
    integer(1, crate::domain::usage::MAX_TOKENS_PER_RECORD, true)
}

/// An idempotency key: 1 to 200 printable characters.
pub fn optional_request_id() -> Schema {
    name(crate::store::idempotency::MAX_KEY_LEN, true)
}

/// RFC 3339, or a date and time without a zone (read as UTC).
pub fn optional_timestamp() -> Schema {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?$"))
                .description(Some("without a zone: read as UTC")),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .build()
        .into()
}
