//! A request whose handling panics is answered like any internal error: 500 `internal_error` with
//! the request id to report, the panic's message in the log and never in the answer. Without this
//! the panic ended the connection's task and the client saw the connection close with no answer at
//! all (found when a zero limit made `POST /api/assistant/analyze` divide by zero).

use std::panic::AssertUnwindSafe;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::middleware::Next;
use actix_web::ResponseError;
use futures_util::FutureExt;

use crate::error::ApiError;

/// The middleware: inside the request id's (so the answer and the log name it), around the guard
/// and every handler. The answer is built here, where the request id is known, and returned as an
/// error that carries it (the request itself went into the handler that panicked).
pub async fn catch(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    match AssertUnwindSafe(next.call(req)).catch_unwind().await {
        Ok(handled) => handled,
        Err(panic) => {
            let error = ApiError::Internal(format!("panicked: {}", crate::supervision::panic_message(panic)));
            let mut answer = error.error_response();
            if let Some(id) = crate::request_id::current().and_then(|id| id.parse().ok()) {
                answer.headers_mut().insert(actix_web::http::header::HeaderName::from_static("x-request-id"), id);
            }
            Err(InternalError::from_response("a request handler panicked", answer).into())
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use actix_web::middleware::from_fn;
    use actix_web::{web, App, HttpResponse, HttpServer};

    /// A handler with a bug: it divides by zero.
    pub(crate) async fn divides_by_zero() -> HttpResponse {
        let zero = rust_decimal::Decimal::ZERO;
        HttpResponse::Ok().body((rust_decimal::Decimal::ONE / zero).to_string())
    }

    /// A real server on port 0 (the bar for HTTP tests), with the two middlewares as `startup` orders
    /// them and a handler that divides by zero. What the metrics make of it is
    /// `metrics::tests::a_request_whose_handler_panicked_is_counted_as_its_500`.
    #[actix_web::test]
    async fn a_handler_that_panics_is_answered_500_with_a_request_id() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = HttpServer::new(|| {
            App::new()
                .wrap(from_fn(super::catch))
                .wrap(from_fn(crate::request_id::tag))
                .route("/fine", web::get().to(|| async { HttpResponse::Ok().body("fine") }))
                .route("/boom", web::get().to(divides_by_zero))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        let http = reqwest::Client::new();

        let answer = http.get(format!("{url}/boom")).send().await.expect("an answer, not a closed connection");
        assert_eq!(answer.status().as_u16(), 500);
        let header = answer.headers().get("x-request-id").expect("a request id").to_str().unwrap().to_string();
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body["error"]["code"], "internal_error", "{body}");
        assert_eq!(body["error"]["details"]["request_id"], header.as_str(), "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(&header) && !message.contains("zero"), "the cause leaked: {message}");
        // The same server, and its one worker, go on answering.
        let answer = http.get(format!("{url}/fine")).send().await.unwrap();
        assert_eq!((answer.status().as_u16(), answer.text().await.unwrap()), (200, "fine".to_string()));
        handle.stop(true).await;
    }
}
