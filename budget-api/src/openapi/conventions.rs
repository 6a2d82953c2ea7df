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
        for (path, item) in openapi.paths.paths.iter_mut() {
            let names_something = path.contains('{');
            for op in
                [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete].into_iter().flatten()
            {
                add(op, "400", "Invalid input; the error names the field or parameter and how to fix it");
                if names_something {
                    add(op, "404", "Nothing has that id or name; the message says where to list them");
                }
                if op.request_body.is_some() {
                    add(op, "413", "The body is larger than this route accepts");
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
