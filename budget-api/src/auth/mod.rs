//! Who may call the API, and from where.
//!
//! Threat model: we defend against (1) anyone who can reach the port without a key: with keys, every
//! route needs one of the scope declared next to the route; (2) a component whose key leaked: a key
//! bound to a component records usage and reserves for that component only; (3) web pages the
//! operator visits: JSON routes refuse non-JSON bodies (415, so no "simple request" CSRF), the `Host`
//! header must be one of the service's names (DNS rebinding), cross-origin requests and WebSocket
//! upgrades are refused unless their origin is listed (`BUDGET_CORS_ORIGINS`); (4) a client that
//! floods: a token bucket per key (per address when open). We do not terminate TLS: put a reverse
//! proxy in front for that. Secrets are never logged, stored (only SHA-256) or returned after creation.
//!
//! [`access`] says what each route needs (from the OpenAPI document), [`guard`] checks each request,
//! [`rate`] meters them; handlers get the [`Caller`].

pub mod access;
pub mod guard;
pub mod rate;

use actix_web::{FromRequest, HttpMessage, HttpRequest};
use budget_events::domain::keys::KeyScope;
use budget_events::store::keys::KeyRow;
use budget_events::ErrorCode;

use crate::error::ApiError;

pub use rate::RateLimit;

/// The security settings (`BUDGET_ADMIN_KEY` … `BUDGET_RATE_LIMIT`).
#[derive(Debug, Clone, Default)]
pub struct SecuritySettings {
    /// A bootstrap admin key from the environment (a Compose secret, say), never stored.
    pub admin_key: Option<String>,
    /// Run without keys on a non-loopback address.
    pub allow_unauthenticated: bool,
    /// Names the `Host` header may carry; default: the bind address, localhost, 127.0.0.1 and [::1].
    pub allowed_hosts: Option<Vec<String>>,
    /// Origins browsers may call from (CORS and WebSocket).
    pub cors_origins: Vec<String>,
    pub rate_limit: RateLimit,
}

/// Who is calling: no one in particular (the service runs open), the bootstrap key, or a key.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No keys are configured and the service listens on loopback (or is explicitly open).
    Open,
    /// `BUDGET_ADMIN_KEY`.
    Bootstrap,
    Key(Box<KeyRow>),
}

impl Caller {
    pub fn scope(&self) -> KeyScope {
        match self {
            Caller::Open | Caller::Bootstrap => KeyScope::Admin,
            Caller::Key(k) => k.scope,
        }
    }

    /// The name events record as their actor.
    pub fn actor(&self) -> Option<String> {
        match self {
            Caller::Open => None,
            Caller::Bootstrap => Some("BUDGET_ADMIN_KEY".into()),
            Caller::Key(k) => Some(k.name.clone().unwrap_or_else(|| format!("key {}", k.key_id))),
        }
    }

    pub fn key_id(&self) -> Option<uuid::Uuid> {
        match self {
            Caller::Key(k) => Some(k.key_id),
            _ => None,
        }
    }

    /// The component a request acts for: the one it names, else its key's; refused when neither names
    /// one, or when a bound key would act for another component. `field` gives the request's path to it,
    /// made only for the error (a batch checks up to 10,000 records).
    pub fn speak_for(&self, component: &mut String, field: impl FnOnce() -> String) -> Result<(), ApiError> {
        if component.trim().is_empty() {
            let own = match self {
                Caller::Key(k) => k.component.clone(),
                Caller::Open | Caller::Bootstrap => None,
            };
            *component = own.ok_or_else(|| {
                let field = field();
                let problem = format!("{field} is missing: name the calling component (codex, say), or send with a key bound to one (`budget keys create --scope write --component codex`)");
                ApiError::validation([(field, problem)], "nothing was written")
            })?;
        }
        self.may_act_for(component)
    }

    /// Refuses a component-bound key acting for another component.
    pub fn may_act_for(&self, component: &str) -> Result<(), ApiError> {
        match self {
            Caller::Key(k) => match k.component.as_deref() {
                Some(own) if own != component.trim() => Err(ApiError::Forbidden {
                    code: ErrorCode::Forbidden,
                    message: format!(
                        "this key is bound to component `{own}` and cannot act for `{}`; use that component's own key",
                        component.trim()
                    ),
                }),
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }
}

impl FromRequest for Caller {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(Ok(caller(req)))
    }
}

/// The caller the guard authenticated (open when the guard did not run, as for tests of handlers).
pub fn caller(req: &HttpRequest) -> Caller {
    req.extensions().get::<Caller>().cloned().unwrap_or(Caller::Open)
}
