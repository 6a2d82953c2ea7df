//! `POST /api/keys`, `GET /api/keys`, `POST /api/keys/{key_id}/revoke`: API keys, admin only; and
//! `GET /api/keys/current`, the caller's own key (read). The secret is in the creation answer and
//! nowhere else, ever.

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use budget_events::domain::keys::{display_prefix, new_secret, secret_hash, KeyScope};
use budget_events::domain::names::Component;
use budget_events::event::ApiKeyCreated;
use budget_events::ledger::{CreateKeyCommand, LastAdmin, RevokeKeyCommand};
use budget_events::store::keys::{self, KeyRow};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Caller;
use crate::body;
use crate::error::ApiError;
use crate::request::metadata;
use crate::routes::policies::parse_id;
use crate::state::AppState;

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// read, write or admin.
    #[schema(value_type = String, example = "write")]
    pub scope: KeyScope,
    /// Bind a write key to one component: it records usage and reserves for that component only
    /// (read and admin keys are bound to none).
    #[serde(default)]
    #[schema(schema_with = budget_events::openapi::optional_component)]
    pub component: Option<String>,
    /// What the key is for (`codex on build-3`).
    #[serde(default)]
    #[schema(schema_with = crate::openapi::schemas::key_name)]
    pub name: Option<String>,
    /// Lifetime: `90d`, `12h`… (default: no expiry).
    #[serde(default)]
    #[schema(schema_with = crate::openapi::schemas::key_lifetime)]
    pub expires: Option<String>,
}

/// A key as listed: never its secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    pub key_id: Uuid,
    /// The secret's first characters, to recognise it.
    pub prefix: String,
    pub name: Option<String>,
    #[schema(value_type = String)]
    pub scope: KeyScope,
    pub component: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// Not revoked and not expired.
    pub active: bool,
}

impl From<&KeyRow> for KeyView {
    fn from(k: &KeyRow) -> Self {
        KeyView {
            key_id: k.key_id,
            prefix: k.prefix.clone(),
            name: k.name.clone(),
            scope: k.scope,
            component: k.component.clone(),
            created_at: k.created_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
            last_used_at: k.last_used_at,
            active: k.is_active(Utc::now()),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: KeyView,
    /// The secret: shown this once, stored nowhere (only its hash). Keep it like a password.
    pub secret: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

/// Create a key. The answer holds its secret, once.
#[utoipa::path(tag = "keys", request_body = NewKey, responses((status = 201, body = CreatedKey)), security(("api_key" = ["admin"])))]
#[post("/api/keys")]
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let input: NewKey = body::parse(&body::read(payload, 4096).await?)?;
    let mut problems = Vec::new();
    let component = match &input.component {
        // Binding is what stops a leaked write key from spending for others; a read key spends
        // nothing, and an admin key could create itself an unbound one, so binding those would
        // only look like protection.
        Some(_) if input.scope != KeyScope::Write => {
            problems.push((
                "component".into(),
                format!(
                    "only a write key is bound to a component (a {} key {}); leave component out, or create it with `--scope write`",
                    input.scope.as_str(),
                    if input.scope == KeyScope::Read { "records nothing" } else { "could create itself an unbound key" }
                ),
            ));
            None
        }
        Some(c) => Component::parse(c).map_err(|e| problems.push(("component".into(), e.to_string()))).ok(),
        None => None,
    };
    let name = input.name.as_deref().map(str::trim).map(str::to_string);
    if name.as_deref().is_some_and(|n| n.is_empty() || n.chars().count() > 128 || n.chars().any(char::is_control)) {
        problems.push(("name".into(), "name must be 1 to 128 printable characters".into()));
    }
    let expires_at = match &input.expires {
        Some(e) => match budget_events::period::parse_duration_seconds(e).filter(|s| *s > 0 && *s <= 3660 * 86_400) {
            Some(seconds) => Some(Utc::now() + Duration::seconds(seconds)),
            None => {
                problems.push((
                    "expires".into(),
                    format!("expires `{e}` is not a lifetime; use e.g. 90d, 12h (at most 3660d)"),
                ));
                None
            }
        },
        None => None,
    };
    if !problems.is_empty() {
        return Err(ApiError::validation(problems, "no key was created"));
    }
    let secret = new_secret();
    let key = ApiKeyCreated {
        key_id: Uuid::now_v7(),
        secret_hash: secret_hash(&secret),
        prefix: display_prefix(&secret),
        name,
        scope: input.scope,
        component,
        expires_at,
    };
    let outcome = state.writer.submit(CreateKeyCommand { key, metadata: metadata(&req) }).await?;
    Ok(HttpResponse::Created().json(CreatedKey { key: KeyView::from(&outcome.key), secret }))
}

/// Every key, newest first, without secrets.
#[utoipa::path(tag = "keys", responses((status = 200, body = KeyList)), security(("api_key" = ["admin"])))]
#[get("/api/keys")]
pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let client = state.pool.get().await?;
    let keys = keys::list(&**client).await?;
    Ok(HttpResponse::Ok().json(KeyList { keys: keys.iter().map(KeyView::from).collect() }))
}

/// Who the caller is, as the guard saw it: what a page shows after sign-in and which actions it offers.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CurrentCaller {
    /// True when the service runs without keys (anyone who reaches it may do everything).
    pub open: bool,
    /// What this caller may do: read, write or admin.
    #[schema(value_type = String)]
    pub scope: KeyScope,
    /// The name events record as the actor (none when open).
    pub actor: Option<String>,
    /// The key (none when open or for BUDGET_ADMIN_KEY).
    pub key_id: Option<Uuid>,
    /// The component a bound key acts for.
    pub component: Option<String>,
}

/// The key this request carries: its scope, name and component (never its secret).
#[utoipa::path(tag = "keys", responses((status = 200, body = CurrentCaller)), security(("api_key" = ["read"])))]
#[get("/api/keys/current")]
pub async fn current(caller: Caller) -> HttpResponse {
    HttpResponse::Ok().json(CurrentCaller {
        open: matches!(caller, Caller::Open),
        scope: caller.scope(),
        actor: caller.actor(),
        key_id: caller.key_id(),
        component: match &caller {
            Caller::Key(k) => k.component.clone(),
            _ => None,
        },
    })
}

/// Revoke a key: refused at once, by every process. The last active admin key is not revoked (409
/// `last_admin_key`) while keys stay required without it, unless a bootstrap key (`BUDGET_ADMIN_KEY`)
/// stands in.
#[utoipa::path(tag = "keys", responses((status = 200, body = KeyView), (status = 409, body = crate::error::ErrorBody, description = "the last active admin key")), security(("api_key" = ["admin"])))]
#[post("/api/keys/{key_id}/revoke")]
pub async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key_id = parse_id("key", &path)?;
    // As `Gate::keys_required` decides whether keys are needed once none is active.
    let gate = req.app_data::<web::Data<crate::auth::guard::Gate>>().expect("the gate is app data");
    let last_admin = if gate.settings.admin_key.is_some() {
        LastAdmin::Revocable
    } else if gate.loopback || gate.settings.allow_unauthenticated {
        LastAdmin::RevocableAlone
    } else {
        LastAdmin::Kept
    };
    let outcome = state.writer.submit(RevokeKeyCommand { key_id, last_admin, metadata: metadata(&req) }).await?;
    if outcome.already {
        tracing::debug!(%key_id, "key was revoked before");
    }
    Ok(HttpResponse::Ok().json(KeyView::from(&outcome.key)))
}
