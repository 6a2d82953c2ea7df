//! `GET /v1/models`: the priced models that have an upstream, in OpenAI's list shape, or Anthropic's
//! when the client sends `anthropic-version` (as Anthropic's SDKs do).

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::{Api, GatewayError};
use crate::state::AppState;

pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let anthropic = req.headers().contains_key("anthropic-version");
    match models(&state).await {
        Ok(models) if anthropic => {
            let data: Vec<Value> = models
                .iter()
                .map(|(id, _, since)| {
                    json!({"type": "model", "id": id, "display_name": id, "created_at": since.to_rfc3339()})
                })
                .collect();
            let (first, last) = (data.first().map(|m| m["id"].clone()), data.last().map(|m| m["id"].clone()));
            HttpResponse::Ok().json(json!({"data": data, "has_more": false, "first_id": first, "last_id": last}))
        }
        Ok(models) => {
            let data: Vec<Value> = models
                .iter()
                .map(|(id, provider, since)| {
                    json!({"id": id, "object": "model", "created": since.timestamp(), "owned_by": provider})
                })
                .collect();
            HttpResponse::Ok().json(json!({"object": "list", "data": data}))
        }
        Err(e) => e.respond(if anthropic { Api::Messages } else { Api::ChatCompletions }),
    }
}

/// (id, provider, priced since): a model priced under one configured provider is listed by its name,
/// one priced under several as `provider/model` for each.
async fn models(state: &AppState) -> Result<Vec<(String, String, chrono::DateTime<chrono::Utc>)>, GatewayError> {
    let upstreams = &state.gateway.upstreams;
    let client = state.pool.get().await.map_err(crate::error::ApiError::from)?;
    let prices = budget_events::store::prices::in_effect(&**client, chrono::Utc::now())
        .await
        .map_err(crate::error::ApiError::from)?;
    let served: Vec<_> = prices.iter().filter(|v| upstreams.get(&v.spec.provider).is_some()).collect();
    Ok(served
        .iter()
        .map(|v| {
            let shared = served.iter().filter(|o| o.spec.model == v.spec.model).count() > 1;
            let id = if shared { format!("{}/{}", v.spec.provider, v.spec.model) } else { v.spec.model.clone() };
            (id, v.spec.provider.clone(), v.effective_from)
        })
        .collect())
}
