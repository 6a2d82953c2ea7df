//! What every write route reads from a request besides its body: the idempotency key (the
//! `Idempotency-Key` header, or a `request_id` in the body) and the metadata stored with its events.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use budget_events::store::idempotency::{Canonical, IdempotencyKey, KeyError};
use budget_events::ErrorCode;
use budget_events::EventMetadata;
use serde::Serialize;

use crate::error::ApiError;

const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// On the answer to a retry that got its first outcome back: nothing was written this time.
pub const REPLAYED_HEADER: &str = "Idempotent-Replayed";

/// A keyed write's answer: `status` the first time; for a retry answered with the first outcome,
/// 200 with `Idempotent-Replayed: true`, whatever the first status was, on every write route alike.
pub fn answer(status: StatusCode, replayed: bool) -> HttpResponseBuilder {
    if replayed {
        let mut builder = HttpResponse::Ok();
        builder.insert_header((REPLAYED_HEADER, "true"));
        builder
    } else {
        HttpResponse::build(status)
    }
}

/// The request's idempotency key for an operation of `scope`, hashed with `body`. The header and the
/// body's `request_id` are two ways to send the same key; they may not disagree.
pub fn keyed(
    req: &HttpRequest,
    request_id: Option<&str>,
    scope: &str,
    body: &impl Serialize,
) -> Result<Option<IdempotencyKey>, ApiError> {
    chosen(req, request_id)?.map(|k| key(scope, k, body)).transpose()
}

/// [`keyed`], for a body that serializes canonically already (a usage record or batch): the same
/// key, hashed without building a JSON tree of the body first.
pub fn keyed_canonical(
    req: &HttpRequest,
    request_id: Option<&str>,
    scope: &str,
    body: &impl Canonical,
) -> Result<Option<IdempotencyKey>, ApiError> {
    chosen(req, request_id)?.map(|k| key_canonical(scope, k, body)).transpose()
}

/// The key the client sent, in the header or as the body's `request_id`.
fn chosen<'a>(req: &'a HttpRequest, request_id: Option<&'a str>) -> Result<Option<&'a str>, ApiError> {
    let header = match req.headers().get(IDEMPOTENCY_HEADER) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            ApiError::bad_request(
                ErrorCode::InvalidIdempotencyKey,
                "the Idempotency-Key header must be printable ASCII",
            )
        })?),
    };
    match (header, request_id) {
        (Some(h), Some(r)) if h.trim() != r.trim() => Err(ApiError::bad_request(
            ErrorCode::ConflictingIdempotencyKeys,
            "the Idempotency-Key header and request_id differ; send one of them, or the same value in both",
        )),
        (h, r) => Ok(h.or(r)),
    }
}

/// An idempotency key a client gave, checked.
pub fn key(scope: &str, key: &str, body: &impl Serialize) -> Result<IdempotencyKey, ApiError> {
    IdempotencyKey::new(scope, key, body).map_err(invalid)
}

/// [`key`], for a body that serializes canonically already.
pub fn key_canonical(scope: &str, key: &str, body: &impl Canonical) -> Result<IdempotencyKey, ApiError> {
    IdempotencyKey::new_canonical(scope, key, body).map_err(invalid)
}

fn invalid(e: KeyError) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidIdempotencyKey, e.to_string())
}

/// Who asked and the request's id (`X-Request-Id`), kept with the events. With a key, the actor is
/// the key (its name, and its id); `X-Budget-Actor` then only says on whose behalf. Without keys
/// (the service runs open), `X-Budget-Actor` is all there is.
pub fn metadata(req: &HttpRequest) -> EventMetadata {
    let header =
        |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(|s| s.chars().take(200).collect());
    let caller = crate::auth::caller(req);
    let (actor, on_behalf_of) = match caller.actor() {
        Some(key) => (Some(key), header("X-Budget-Actor")),
        None => (header("X-Budget-Actor"), None),
    };
    EventMetadata {
        actor,
        key_id: caller.key_id(),
        on_behalf_of,
        request_id: header("X-Request-Id"),
        ..Default::default()
    }
}
