//! What every route can answer, added to the OpenAPI document in one place so that no route's
//! annotation can forget it: the document must describe every status the server returns (a fuzzer
//! checks it, `tests/api/contract.rs`).
//!
//! - 400 everywhere: any query, path or body can be malformed (`invalid_parameter`, `invalid_json`,
//!   `validation_failed`, `invalid_id`…);
//! - 404 where the path names something (`not_found`);
//! - 413 where there is a body (`payload_too_large`);
//! - 409 where the route takes an `Idempotency-Key` (`idempotency_key_reused`), whose header is
//!   printable ASCII of at most 200 characters;
//! - 401, 403 and 429 where the route needs a key (declared next to the route, `security`), 415 where
//!   there is a body, 421 everywhere (a `Host` that is not ours);
//! - 500 (`internal_error`, with the request id only) and 503 (`database_unavailable`,
//!   `projection_lag`) everywhere;
//! - ids in paths are UUIDs (`format: uuid`), except context ids, which are the client's own text.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, Response, ResponseBuilder};
use utoipa::Modify;

pub struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            crate::auth::access::SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key (`bgt_…`), as `Authorization: Bearer KEY` or `X-API-Key: KEY`; each route names \
                         the scope it needs (read < write < admin). Not needed while the service runs open \
                         (loopback, no keys configured).",
                    ))
                    .build(),
            ),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            let names_something = path.contains('{');
            for op in
                [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete].into_iter().flatten()
            {
                add(op, "400", "Invalid input; the error names the field or parameter and how to fix it");
                if needs_key(op) {
                    add(op, "401", "No API key, or one that is unknown, revoked or expired");
                    add(op, "403", "The key lacks the route's scope, is bound to another component, or the web origin is not listed");
                    add(op, "429", "Too many requests for this key; see Retry-After");
                }
                add(op, "421", "The Host header is not one of the service's names (BUDGET_ALLOWED_HOSTS)");
                if names_something {
                    add(op, "404", "Nothing has that id or name; the message says where to list them");
                }
                if op.request_body.is_some() {
                    add(op, "413", "The body is larger than this route accepts");
                    add(op, "415", "The body is not JSON (Content-Type must be application/json)");
                }
                if declares_idempotency_key(op) {
                    add(op, "409", "idempotency_key_reused: this key was used for a different request; use a new key");
                }
                add(op, "500", "Internal error; the body carries the request id for the server log, never the cause");
                add(
                    op,
                    "503",
                    "The database is unreachable (retry), or a projection did not reach min_position in time",
                );
                for parameter in op.parameters.iter_mut().flatten() {
                    if let RefOr::T(p) = parameter {
                        if p.parameter_in == ParameterIn::Header && p.name == IDEMPOTENCY_KEY {
                            // What `request::keyed` accepts: printable ASCII, not blank, at most 200.
                            p.schema = Some(RefOr::T(
                                ObjectBuilder::new()
                                    .schema_type(Type::String)
                                    .max_length(Some(budget_events::store::idempotency::MAX_KEY_LEN))
                                    .pattern(Some(r"^[\x20-\x7e]*[\x21-\x7e][\x20-\x7e]*$"))
                                    .into(),
                            ));
                        }
                        if p.parameter_in == ParameterIn::Path && p.name.ends_with("_id") && p.name != "context_id" {
                            p.schema = Some(RefOr::T(
                                ObjectBuilder::new()
                                    .schema_type(Type::String)
                                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                                    .into(),
                            ));
                        }
                    }
                }
            }
        }
    }
}

const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

fn needs_key(op: &Operation) -> bool {
    let op = serde_json::to_value(op).expect("an operation serializes");
    matches!(crate::auth::access::declared(&op), Some(crate::auth::access::Declared::Scope(_)))
}

fn declares_idempotency_key(op: &Operation) -> bool {
    op.parameters.iter().flatten().any(|p| matches!(p, RefOr::T(p) if p.name == IDEMPOTENCY_KEY))
}

fn add(op: &mut Operation, status: &str, description: &str) {
    op.responses.responses.entry(status.to_string()).or_insert_with(|| error_response(description));
}

fn error_response(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content("application/json", Content::new(Some(Ref::from_schema_name("ErrorBody"))))
            .build(),
    )
}
