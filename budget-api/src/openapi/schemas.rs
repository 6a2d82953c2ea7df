//! Schemas of query parameters and bodies that only the API validates (the wire types of
//! `budget-events` describe themselves in `budget_events::openapi`): each says exactly what the
//! handler accepts, so the document and the validation cannot tell different stories.

use budget_events::openapi::{integer, one_of};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

/// A page size from 1 to `max`.
fn limit(max: i64) -> Schema {
    integer(1, max, true)
}

pub fn limit_500() -> Schema {
    limit(500)
}

pub fn limit_1000() -> Schema {
    limit(1000)
}

pub fn limit_5000() -> Schema {
    limit(5000)
}

pub fn offset() -> Schema {
    integer(0, crate::routes::paging::MAX_OFFSET, true)
}

pub fn severity() -> Schema {
    one_of(&["info", "warning", "error"], true)
}

pub fn alert_type() -> Schema {
    one_of(&crate::routes::alerts::ALERT_TYPES, true)
}

pub fn allocation_state() -> Schema {
    one_of(&["active", "released", "expired", "exhausted", "all"], true)
}

pub fn export_format() -> Schema {
    one_of(&["csv", "jsonl"], true)
}

pub fn projection() -> Schema {
    let mut names = crate::routes::replay::PROJECTIONS.to_vec();
    names.push("all");
    one_of(&names, true)
}

/// Comma-separated items of `items` (blank items are ignored; blank means all).
fn comma_list(items: &[&str]) -> Schema {
    let item = format!("({})", items.join("|"));
    let pattern = format!(r"^[\s,]*({item}[\s,]*)*$");
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([Type::String, Type::Null]))
        .pattern(Some(pattern))
        .into()
}

/// One dimension usage can be split by.
pub fn dimension() -> Schema {
    one_of(&budget_projections::usage_rollups::DIMENSIONS, true)
}

pub fn event_types() -> Schema {
    comma_list(&budget_events::event::EVENT_TYPES)
}

pub fn dimensions() -> Schema {
    comma_list(&budget_projections::usage_rollups::DIMENSIONS)
}

/// Days of usage a query covers.
pub fn days() -> Schema {
    integer(1, crate::routes::usage_query::MAX_DAYS as i64, true)
}

/// Text with at least one character that is not a space.
pub fn non_blank() -> Schema {
    ObjectBuilder::new().schema_type(Type::String).pattern(Some(r"\S")).into()
}

/// Tokens of a call: 0 to 1,000,000,000.
pub fn tokens() -> Schema {
    integer(0, budget_events::domain::usage::MAX_TOKENS_PER_RECORD, false)
}

/// Tokens of a call that must have some: 1 to 1,000,000,000.
pub fn some_tokens() -> Schema {
    integer(1, budget_events::domain::usage::MAX_TOKENS_PER_RECORD, false)
}

/// How many models or alternatives to return: 1 to 1,000.
pub fn count() -> Schema {
    integer(1, MAX_COUNT as i64, true)
}

/// The most models or alternatives one answer lists.
pub const MAX_COUNT: usize = 1000;

/// Calls per day: 1 to 1,000,000,000.
pub fn calls_per_day() -> Schema {
    integer(1, crate::assistant::recommend::MAX_CALLS_PER_DAY, true)
}

/// Days the assistant looks back: 1 to 365.
pub fn assistant_days() -> Schema {
    integer(1, 365, false)
}

/// A USD amount above 0.
pub fn positive_money() -> Schema {
    use utoipa::openapi::schema::OneOfBuilder;
    let digits = budget_events::money::MONEY_INTEGER_DIGITS;
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .exclusive_minimum(Some(0))
                .exclusive_maximum(Some(10f64.powi(digits as i32))),
        )
        .item(ObjectBuilder::new().schema_type(Type::String).pattern(Some(format!(
            r"^(?=.*[1-9])[0-9]{{1,{digits}}}(\.[0-9]{{1,{}}})?$",
            budget_events::money::MONEY_SCALE
        ))))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .build()
        .into()
}

/// Who acknowledges an alert: 1 to 200 printable characters.
pub fn acknowledger() -> Schema {
    budget_events::openapi::name(200, true)
}

pub fn budget_name() -> Schema {
    budget_events::openapi::name(128, true)
}

pub fn required_budget_name() -> Schema {
    budget_events::openapi::name(128, false)
}

pub fn budget_description() -> Schema {
    budget_events::openapi::name(1000, true)
}

pub fn budget_owner() -> Schema {
    budget_events::openapi::name(200, true)
}

/// What a price is per: `1M` (default), `1K` or `token` (and their spellings).
pub fn price_unit() -> Schema {
    one_of(&["1M", "1m", "M", "m", "million", "1K", "1k", "K", "k", "thousand", "token", "1"], true)
}

/// A key's name: 1 to 128 printable characters.
pub fn key_name() -> Schema {
    budget_events::openapi::name(128, true)
}

/// A key's lifetime: `90d`, `12h`, `30m` (at most 3660 days).
pub fn key_lifetime() -> Schema {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([Type::String, Type::Null]))
        .pattern(Some(r"^([1-9][0-9]{0,2}d|[1-9][0-9]{0,3}h|[1-9][0-9]{0,4}m)$"))
        .into()
}
