//! The price book: list, read (with `?at=`), history, set, update (bundled table or a LiteLLM file,
//! with `dry_run`), and cost calculation.

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use budget_events::domain::price::{self, PriceSource, PriceVersion};
use budget_events::ledger::PricesCommand;
use budget_events::money::{decimal_json, optional_decimal_json};
use budget_events::store::prices;
use budget_events::ErrorCode;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::body;
use crate::error::ApiError;
use crate::price_book::{self, PriceInput};
use crate::query::Query;
use crate::request::metadata;
use crate::state::AppState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PriceView {
    pub provider: String,
    pub model: String,
    pub version_id: uuid::Uuid,
    #[serde(with = "decimal_json")]
    #[schema(value_type = f64)]
    pub input_per_1m: Decimal,
    #[serde(with = "decimal_json")]
    #[schema(value_type = f64)]
    pub output_per_1m: Decimal,
    #[serde(with = "optional_decimal_json")]
    #[schema(value_type = Option<f64>)]
    pub cached_input_per_1m: Option<Decimal>,
    /// Writing input to a prompt cache; the input rate when null.
    #[serde(default, with = "optional_decimal_json")]
    #[schema(value_type = Option<f64>)]
    pub cache_creation_per_1m: Option<Decimal>,
    /// Reasoning output, where billed apart; the output rate when null.
    #[serde(default, with = "optional_decimal_json")]
    #[schema(value_type = Option<f64>)]
    pub reasoning_per_1m: Option<Decimal>,
    #[serde(with = "decimal_json")]
    #[schema(value_type = f64)]
    pub input_per_1k: Decimal,
    #[serde(with = "decimal_json")]
    #[schema(value_type = f64)]
    pub output_per_1k: Decimal,
    #[serde(with = "decimal_json")]
    #[schema(value_type = f64)]
    pub input_per_token: Decimal,
    #[serde(with = "decimal_json")]
    #[schema(value_type = f64)]
    pub output_per_token: Decimal,
    #[schema(value_type = Option<f64>)]
    pub per_request: Option<budget_events::Money>,
    pub effective_from: DateTime<Utc>,
    pub effective_to: Option<DateTime<Utc>>,
    /// bundled, file, url or manual.
    pub source: String,
    pub context_window: Option<i64>,
    pub capabilities: Vec<String>,
    /// The day its provider stops serving the model, as the price's source gives it (the bundled
    /// table, or an imported file's `deprecation_date`; a hand-set price has none); recommendations
    /// leave the model out from 90 days before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retires_on: Option<chrono::NaiveDate>,
    /// Where the provider's day is unknown: a day by which the model was no longer served (the
    /// bundled table found it gone from LiteLLM's file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_by: Option<chrono::NaiveDate>,
}

impl From<&PriceVersion> for PriceView {
    fn from(v: &PriceVersion) -> Self {
        let m = Decimal::from(1_000_000);
        let k = Decimal::from(1_000);
        let s = &v.spec;
        let retirement = crate::price_book::retirement(v);
        PriceView {
            provider: s.provider.clone(),
            model: s.model.clone(),
            version_id: v.version_id,
            input_per_1m: (s.input_per_token * m).normalize(),
            output_per_1m: (s.output_per_token * m).normalize(),
            cached_input_per_1m: s.cached_input_per_token.map(|c| (c * m).normalize()),
            cache_creation_per_1m: s.cache_creation_per_token.map(|c| (c * m).normalize()),
            reasoning_per_1m: s.reasoning_per_token.map(|c| (c * m).normalize()),
            input_per_1k: (s.input_per_token * k).normalize(),
            output_per_1k: (s.output_per_token * k).normalize(),
            input_per_token: s.input_per_token,
            output_per_token: s.output_per_token,
            per_request: s.per_request,
            effective_from: v.effective_from,
            effective_to: v.effective_to,
            source: v.source.as_str().to_string(),
            context_window: s.context_window,
            capabilities: s.capabilities.clone(),
            retires_on: retirement.filter(|r| r.known).map(|r| r.day),
            retired_by: retirement.filter(|r| !r.known).map(|r| r.day),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PriceQuery {
    pub provider: Option<String>,
    pub model: Option<String>,
    /// Only prices whose `provider/model` contains this text (any case).
    pub search: Option<String>,
    /// The prices in effect at this time (default now).
    pub at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PriceList {
    pub at: DateTime<Utc>,
    pub prices: Vec<PriceView>,
}

/// The prices in effect now (or at `at`).
#[utoipa::path(tag = "prices", params(PriceQuery), responses((status = 200, body = PriceList)), security(("api_key" = ["read"])))]
#[get("/api/prices")]
pub async fn list(state: web::Data<AppState>, q: Query<PriceQuery>) -> Result<HttpResponse, ApiError> {
    let at = q.at.unwrap_or_else(Utc::now);
    let search = q.search.as_deref().map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty());
    let client = state.pool.get().await?;
    let prices = prices::in_effect(&**client, at)
        .await?
        .iter()
        .filter(|v| q.provider.as_deref().is_none_or(|p| p == v.spec.provider))
        .filter(|v| q.model.as_deref().is_none_or(|m| m == v.spec.model))
        .filter(|v| {
            search.as_deref().is_none_or(|s| format!("{}/{}", v.spec.provider, v.spec.model).to_lowercase().contains(s))
        })
        .map(PriceView::from)
        .collect();
    Ok(HttpResponse::Ok().json(PriceList { at, prices }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AtQuery {
    pub at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResolvedPrice {
    /// The name the model resolved to (exact, provider-stripped, or undated base).
    pub resolved_model: String,
    #[serde(flatten)]
    pub price: PriceView,
}

pub(crate) async fn resolve_at(
    state: &AppState,
    provider: &str,
    model: &str,
    at: DateTime<Utc>,
) -> Result<(PriceVersion, String), ApiError> {
    let provider = &state.provider(provider);
    let client = state.pool.get().await?;
    let versions = prices::versions_for_model(&**client, provider, model).await?;
    match price::resolve(&versions, provider, model, at) {
        Some((v, name)) => Ok((v.clone(), name)),
        None => {
            let fix = or_else(
                misspelled(&**client, provider, model, at).await?,
                "set one with POST /api/prices or `budget prices set`".into(),
            );
            Err(ApiError::NotFound(format!(
                "no price for {provider}/{model} at {} (looked for {}); {fix}",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                price::candidates(provider, model).join(", ")
            )))
        }
    }
}

/// The `provider/model` the price book prices at `at` that `provider/model` (which it does not) looks
/// like a typo of, for a "did you mean" (`gtp-4o` → `openai/gpt-4o`).
pub(crate) async fn misspelled(
    client: &impl tokio_postgres::GenericClient,
    provider: &str,
    model: &str,
    at: DateTime<Utc>,
) -> Result<Option<String>, ApiError> {
    let book = prices::in_effect(client, at).await?;
    let book: Vec<(&str, &str)> = book.iter().map(|v| (v.spec.provider.as_str(), v.spec.model.as_str())).collect();
    Ok(price::did_you_mean(provider, model, &book))
}

/// What a check or reservation of `provider`/`model` is told when its price's source (the bundled
/// table, an imported file) has the model retired at `at`, or retiring within the notice: calls to it
/// fail. A price someone set says the model is served (by a gateway, say), and is told nothing.
pub(crate) async fn retirement_note(
    client: &impl tokio_postgres::GenericClient,
    provider: &str,
    model: &str,
    at: DateTime<Utc>,
) -> Result<Option<String>, ApiError> {
    let versions = prices::versions_for_model(client, provider, model).await?;
    let Some(r) = price::resolve(&versions, provider, model, at).and_then(|(v, _)| crate::price_book::retiring(v, at))
    else {
        return Ok(None);
    };
    let how = if r.day <= at.date_naive() {
        format!("{provider}/{model} is retired: its provider retired it {}, so calls to it fail", r.when())
    } else {
        format!("{provider}/{model} retires {}: its provider stops serving it then, so calls to it will fail", r.when())
    };
    Ok(Some(format!("{how}; `budget recommend` ranks the models that can take them")))
}

/// `fix`, after "did you mean `near`?" when there is a name the typo may be of.
pub(crate) fn or_else(near: Option<String>, fix: String) -> String {
    match near {
        Some(name) => format!("did you mean {name}? Else {fix}"),
        None => fix,
    }
}

/// The price of one model in effect now (or at `at`), with the name it resolved to.
#[utoipa::path(tag = "prices", params(AtQuery), responses((status = 200, body = ResolvedPrice), (status = 404, body = crate::error::ErrorBody)), security(("api_key" = ["read"])))]
#[get("/api/prices/{provider}/{model}")]
pub async fn get(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    q: Query<AtQuery>,
) -> Result<HttpResponse, ApiError> {
    let (provider, model) = path.into_inner();
    let (v, resolved_model) = resolve_at(&state, &provider, &model, q.at.unwrap_or_else(Utc::now)).await?;
    Ok(HttpResponse::Ok().json(ResolvedPrice { resolved_model, price: PriceView::from(&v) }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PriceHistory {
    pub provider: String,
    pub model: String,
    pub versions: Vec<PriceView>,
}

/// Every version of a model's price, oldest first.
#[utoipa::path(tag = "prices", responses((status = 200, body = PriceHistory), (status = 404, body = crate::error::ErrorBody)), security(("api_key" = ["read"])))]
#[get("/api/prices/history/{provider}/{model}")]
pub async fn history(state: web::Data<AppState>, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    let (provider, model) = path.into_inner();
    let provider = state.provider(&provider);
    let client = state.pool.get().await?;
    let versions: Vec<PriceView> =
        prices::history(&**client, &provider, &model).await?.iter().map(PriceView::from).collect();
    if versions.is_empty() {
        return Err(ApiError::NotFound(format!(
            "{provider}/{model} has no prices; see what is priced with `budget prices list` or GET /api/prices"
        )));
    }
    Ok(HttpResponse::Ok().json(PriceHistory { provider, model, versions }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PriceChange {
    pub success: bool,
    pub dry_run: bool,
    /// `provider/model` of prices that are new.
    pub added: Vec<String>,
    /// `provider/model` of prices that differ from the version in effect.
    pub changed: Vec<String>,
    pub unchanged: usize,
    /// Entries of the source skipped (imports): in all, and by reason.
    pub skipped: usize,
    #[serde(default)]
    pub skipped_by_reason: std::collections::BTreeMap<String, usize>,
    /// Entries of the source for a provider/model already given with the same price (imports).
    #[serde(default)]
    pub merged: usize,
    /// Entries for one provider/model with different prices, and which one was kept (imports).
    #[serde(default)]
    pub conflicts: Vec<price_book::Conflict>,
    pub effective_from: DateTime<Utc>,
    pub source: String,
    /// The write's log position, for `min_position` on reads of projections (absent on a replay or a
    /// change that wrote nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
}

async fn apply(
    state: &AppState,
    req: &HttpRequest,
    imported: price_book::Imported,
    effective_from: DateTime<Utc>,
    source: PriceSource,
    dry_run: bool,
) -> Result<PriceChange, ApiError> {
    let skipped = imported.skipped_total();
    let price_book::Imported { specs, skipped: skipped_by_reason, merged, conflicts } = imported;
    let command = PricesCommand { prices: specs, effective_from, source, key: None, metadata: metadata(req) };
    let (outcome, position) = if dry_run {
        (budget_events::writer::dry_run(&state.pool, command).await?, None)
    } else {
        state.writer.submit_at(command).await?
    };
    Ok(PriceChange {
        success: true,
        dry_run,
        added: outcome.added,
        changed: outcome.changed,
        unchanged: outcome.unchanged,
        skipped,
        skipped_by_reason,
        merged,
        conflicts,
        effective_from,
        source: source.as_str().to_string(),
        position,
    })
}

/// Set one model's price (a new version; the previous one ends where it starts).
#[utoipa::path(tag = "prices", request_body = PriceInput, responses((status = 200, body = PriceChange), (status = 400, body = crate::error::ErrorBody), (status = 409, description = "price_version_exists: another price of the model takes effect at that time", body = crate::error::ErrorBody)), security(("api_key" = ["admin"])))]
#[post("/api/prices")]
pub async fn set(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let mut input: PriceInput = body::parse(&body::read(payload, 16 * 1024).await?)?;
    input.provider = state.provider(&input.provider);
    let spec = input
        .to_spec(None)
        .map_err(|e| ApiError::bad_request(ErrorCode::ValidationFailed, format!("{e}; nothing was changed")))?;
    let at = input.effective_from.unwrap_or_else(Utc::now);
    let one = price_book::Imported { specs: vec![spec], ..Default::default() };
    Ok(HttpResponse::Ok().json(apply(&state, &req, one, at, PriceSource::Manual, false).await?))
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    /// A LiteLLM `model_prices_and_context_window.json` document; without it, the bundled table.
    #[schema(value_type = Option<Object>)]
    pub litellm: Option<serde_json::Value>,
    /// `file` or `url`: where the document came from (default file).
    pub source: Option<String>,
    /// Show what would change and write nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// When the new prices take effect (default now).
    pub effective_from: Option<DateTime<Utc>>,
}

/// Apply the bundled table, or import a LiteLLM-format document; `dry_run` shows the diff only.
#[utoipa::path(tag = "prices", request_body = Option<UpdateRequest>, responses((status = 200, body = PriceChange), (status = 400, body = crate::error::ErrorBody), (status = 409, description = "price_version_exists: another price of a model takes effect at that time", body = crate::error::ErrorBody)), security(("api_key" = ["admin"])))]
#[post("/api/prices/update")]
pub async fn update(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let bytes = body::read(payload, 32 * 1024 * 1024).await?;
    let request: UpdateRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        UpdateRequest { litellm: None, source: None, dry_run: false, effective_from: None }
    } else {
        body::parse(&bytes)?
    };
    let at = request.effective_from.unwrap_or_else(Utc::now);
    let (imported, source) = match &request.litellm {
        None => (price_book::Imported { specs: price_book::bundled().2, ..Default::default() }, PriceSource::Bundled),
        Some(doc) => {
            let imported = price_book::parse_litellm(&doc.to_string()).map_err(|e| {
                ApiError::bad_request(ErrorCode::InvalidPriceFile, format!("the price file was rejected whole: {e}"))
            })?;
            let source = match request.source.as_deref() {
                None | Some("file") => PriceSource::File,
                Some("url") => PriceSource::Url,
                Some(other) => {
                    return Err(ApiError::bad_request(
                        ErrorCode::ValidationFailed,
                        format!("source `{other}` is not file or url"),
                    ))
                }
            };
            (imported, source)
        }
    };
    Ok(HttpResponse::Ok().json(apply(&state, &req, imported, at, source, request.dry_run).await?))
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CalculateRequest {
    pub provider: String,
    pub model: String,
    #[schema(schema_with = crate::openapi::schemas::tokens)]
    pub input_tokens: i64,
    #[serde(default)]
    #[schema(schema_with = crate::openapi::schemas::tokens)]
    pub output_tokens: i64,
    /// The part of input_tokens served from cache.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::schemas::tokens)]
    pub cached_input_tokens: i64,
    /// The part of input_tokens written to the cache.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::schemas::tokens)]
    pub cache_creation_input_tokens: i64,
    /// The part of output_tokens spent reasoning.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::schemas::tokens)]
    pub reasoning_tokens: i64,
    /// Price at this time (default now).
    pub at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CalculateResponse {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub cost: price::Cost,
    pub price_version: uuid::Uuid,
    pub resolved_model: String,
    pub provider: String,
    pub model: String,
}

/// The cost of a call under the price in effect (exact decimals).
#[utoipa::path(tag = "prices", request_body = CalculateRequest, responses((status = 200, body = CalculateResponse), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)), security(("api_key" = ["read"])))]
#[post("/api/prices/calculate")]
pub async fn calculate(state: web::Data<AppState>, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let r: CalculateRequest = body::parse(&body::read(payload, 16 * 1024).await?)?;
    let max = budget_events::domain::usage::MAX_TOKENS_PER_RECORD;
    for (field, v) in [
        ("input_tokens", r.input_tokens),
        ("output_tokens", r.output_tokens),
        ("cached_input_tokens", r.cached_input_tokens),
        ("cache_creation_input_tokens", r.cache_creation_input_tokens),
        ("reasoning_tokens", r.reasoning_tokens),
    ] {
        if !(0..=max).contains(&v) {
            return Err(ApiError::bad_request(ErrorCode::ValidationFailed, format!("{field} is {v}; use 0 to {max}")));
        }
    }
    if r.cached_input_tokens + r.cache_creation_input_tokens > r.input_tokens {
        return Err(ApiError::bad_request(
            ErrorCode::ValidationFailed,
            "cached_input_tokens and cache_creation_input_tokens are parts of input_tokens; together they cannot be larger",
        ));
    }
    if r.reasoning_tokens > r.output_tokens {
        return Err(ApiError::bad_request(
            ErrorCode::ValidationFailed,
            "reasoning_tokens is the part of output_tokens spent reasoning; it cannot be larger",
        ));
    }
    let (v, resolved_model) = resolve_at(&state, &r.provider, &r.model, r.at.unwrap_or_else(Utc::now)).await?;
    let tokens = price::Tokens {
        input: r.input_tokens,
        cached_input: r.cached_input_tokens,
        cache_creation_input: r.cache_creation_input_tokens,
        output: r.output_tokens,
        reasoning: r.reasoning_tokens,
    };
    let cost = price::cost_of(&v.spec, tokens);
    Ok(HttpResponse::Ok().json(CalculateResponse {
        cost,
        price_version: v.version_id,
        resolved_model,
        provider: r.provider,
        model: r.model,
    }))
}
