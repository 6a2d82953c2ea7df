//! Query strings, parsed so that an error names the parameter at fault and what was sent. actix's
//! `web::Query` answers `?days=abc` with "Query deserialize error: invalid digit found in string",
//! which leaves the client to guess which of its parameters was wrong, and why.

use std::future::{ready, Ready};
use std::ops::Deref;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use budget_events::ErrorCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A route's query parameters (in place of `web::Query`).
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T> Query<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Query<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(parse(req.query_string()).map(Query))
    }
}

/// Parses a query string; the error is `days is `abc`: expected a whole number; see /api/docs …`.
pub fn parse<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let pairs = form_urlencoded::parse(query.as_bytes());
    serde_path_to_error::deserialize(serde_urlencoded::Deserializer::new(pairs)).map_err(|e| {
        let name = e.path().to_string();
        let reason = e.into_inner().to_string();
        let given = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| *k == name).map(|(_, v)| v.into_owned());
        let message = match given {
            Some(value) => format!("{name} is `{value}`: {}", in_words(&reason, &value)),
            None => reason,
        };
        ApiError::bad_request(ErrorCode::InvalidParameter, format!("{message}; see /api/docs for the parameters"))
    })
}

/// What the parsers of numbers and times say, in words a client understands. The type the parameter
/// wanted is not in those messages, only how its text failed; a leading minus that fails as a whole
/// number can only be a parameter that takes none.
fn in_words(reason: &str, value: &str) -> String {
    const TIME: [&str; 6] = [
        "input contains invalid characters",
        "premature end of input",
        "trailing input",
        "input is out of range",
        "input is not enough for unique date and time",
        "no possible date and time matching input",
    ];
    let negative_whole =
        value.strip_prefix('-').is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
    match reason {
        "invalid digit found in string" if negative_whole => "expected a whole number of 0 or more".into(),
        "invalid digit found in string" => "expected a whole number".into(),
        "cannot parse integer from empty string" => "expected a whole number, and it is empty".into(),
        "number too large to fit in target type" | "number too small to fit in target type" => {
            format!("{reason} (a whole number of this parameter's range)")
        }
        "invalid float literal" => "expected a number".into(),
        r if TIME.contains(&r) => format!("expected a time in RFC 3339, such as 2026-11-30T10:00:00Z ({r})"),
        other => other.to_string(),
    }
}

/// Why a time range `since`..`until` selects nothing because it is the wrong way round, naming both
/// times as read (a date is its midnight, UTC), or `None` when it is a range.
pub fn backwards(
    since: Option<chrono::DateTime<chrono::Utc>>,
    until: Option<chrono::DateTime<chrono::Utc>>,
) -> Option<String> {
    let (since, until) = (since?, until?);
    let at = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    (until <= since).then(|| format!("until {} is not later than since {}; swap them", at(until), at(since)))
}
