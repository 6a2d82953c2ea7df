//! The dashboard at `/`: one HTML page, its script, style and icon, compiled into the binary so the
//! page works offline and always matches the API it calls. The page is not part of the API (it is
//! not in the OpenAPI document) and carries no data: it reads everything through the same REST and
//! WebSocket routes, with the same keys, as any other client. Its sources are `budget-api/dashboard/`.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

/// Scripts and styles from this origin only, and connections (REST and WebSocket) to it only: an
/// injected string cannot run or send data elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

const ASSETS: [(&str, &str, &str); 4] = [
    ("/", "text/html; charset=utf-8", include_str!("../dashboard/index.html")),
    ("/ui/app.js", "text/javascript; charset=utf-8", include_str!("../dashboard/app.js")),
    ("/ui/app.css", "text/css; charset=utf-8", include_str!("../dashboard/app.css")),
    ("/ui/favicon.svg", "image/svg+xml", include_str!("../dashboard/favicon.svg")),
];

pub fn configure(cfg: &mut web::ServiceConfig) {
    for (path, content_type, body) in ASSETS {
        cfg.route(
            path,
            web::get().to(move || async move {
                HttpResponse::Ok()
                    .insert_header((header::CONTENT_TYPE, content_type))
                    // The binary is the version: revalidate so a restart with a new build shows at once.
                    .insert_header((header::CACHE_CONTROL, "no-cache"))
                    .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
                    .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                    .insert_header((header::REFERRER_POLICY, "no-referrer"))
                    .body(body)
            }),
        );
    }
}
