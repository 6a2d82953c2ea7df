//! `POST /api/replay`: fold the log into fresh tables, compare with the live projections row by row,
//! optionally swap them in, and check the enforcement accounts against a fold of the log. Streams
//! JSON lines: `progress` while folding, a `projection` result each, `accounts`, then `done`.

use actix_web::{post, web, HttpResponse};
use budget_events::audit;
use budget_events::ErrorCode;
use budget_projections::alerts::Alerts;
use budget_projections::replay::{replay as replay_projection, Progress, ReplayReport};
use budget_projections::usage_rollups::UsageRollups;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use utoipa::ToSchema;

use crate::body;
use crate::error::ApiError;
use crate::state::AppState;

/// Every projection a replay can rebuild.
pub const PROJECTIONS: [&str; 2] = ["usage_rollups", "alerts"];

#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// One projection's name, or `all` (the default).
    pub projection: Option<String>,
    /// Replace the live tables with the replayed ones (atomically).
    #[serde(default)]
    pub swap: bool,
}

/// Replays projections and verifies the accounts; the answer is a stream of JSON lines.
#[utoipa::path(tag = "audit", request_body = ReplayRequest, responses((status = 200, description = "JSON lines: progress, projection, accounts, done", content_type = "application/x-ndjson"), (status = 400, body = crate::error::ErrorBody)))]
#[post("/api/replay")]
pub async fn replay(state: web::Data<AppState>, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let bytes = body::read(payload, 4096).await?;
    let request: ReplayRequest =
        if bytes.iter().all(u8::is_ascii_whitespace) { ReplayRequest::default() } else { body::parse(&bytes)? };
    let names: Vec<&'static str> = match request.projection.as_deref() {
        None | Some("all") => PROJECTIONS.to_vec(),
        Some(name) => match PROJECTIONS.iter().find(|p| **p == name) {
            Some(p) => vec![*p],
            None => {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidParameter,
                    format!("no projection `{name}`; use one of {} or all", PROJECTIONS.join(", ")),
                ))
            }
        },
    };
    let (lines, receiver) = mpsc::unbounded_channel::<Value>();
    let state = state.into_inner();
    tokio::spawn(async move {
        let mut differing = 0i64;
        for name in names {
            let report = run_one(&state, name, request.swap, &lines).await;
            match report {
                Ok(report) => {
                    differing += report.differing_rows();
                    let _ = lines.send(
                        json!({"type": "projection", "report": report, "differing_rows": report.differing_rows()}),
                    );
                }
                Err(e) => {
                    let _ = lines.send(json!({"type": "error", "projection": name, "message": e.to_string()}));
                    return;
                }
            }
        }
        match verify_accounts(&state).await {
            Ok(accounts) => {
                differing += accounts["differences"].as_array().map_or(0, |d| d.len() as i64);
                let _ = lines.send(accounts);
            }
            Err(e) => {
                let _ = lines.send(json!({"type": "error", "projection": "accounts", "message": e}));
                return;
            }
        }
        let _ = lines.send(json!({"type": "done", "differences": differing}));
    });
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let line = receiver.recv().await?;
        Some((Ok::<_, actix_web::Error>(web::Bytes::from(format!("{line}\n"))), receiver))
    });
    Ok(HttpResponse::Ok().content_type("application/x-ndjson").streaming(stream))
}

async fn run_one(
    state: &AppState,
    name: &'static str,
    swap: bool,
    lines: &mpsc::UnboundedSender<Value>,
) -> Result<ReplayReport, budget_projections::ProjectionError> {
    let mut last = std::time::Instant::now();
    let progress = |p: Progress| {
        // At most a few lines a second.
        if last.elapsed().as_millis() >= 200 || p.events as i64 >= p.total {
            last = std::time::Instant::now();
            let _ = lines.send(json!({"type": "progress", "progress": p}));
        }
    };
    match name {
        "usage_rollups" => replay_projection(&UsageRollups, &state.pool, swap, progress).await,
        _ => {
            let alerts =
                Alerts { spike_multiple: state.alerts.spike_multiple, webhooks: state.alerts.webhooks.clone() };
            replay_projection(&alerts, &state.pool, swap, progress).await
        }
    }
}

/// The enforcement accounts against a fold of the log, both read in one snapshot.
async fn verify_accounts(state: &AppState) -> Result<Value, String> {
    let mut client = state.pool.get().await.map_err(|e| e.to_string())?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let stored = audit::stored_accounts(&*tx).await.map_err(|e| e.to_string())?;
    let fold = audit::fold_snapshot(&*tx).await.map_err(|e| e.to_string())?;
    let differences: Vec<Value> = audit::account_differences(&stored, &fold.accounts)
        .into_iter()
        .take(100)
        .map(|((policy_id, window), s, f)| {
            json!({
                "policy_id": policy_id,
                "window": window,
                "stored": {"posted_cost": s.posted_cost.normalize().to_string(), "posted_tokens": s.posted_tokens, "records": s.records,
                           "pending_cost": s.pending_cost.normalize().to_string(), "pending_tokens": s.pending_tokens},
                "folded": {"posted_cost": f.posted_cost.normalize().to_string(), "posted_tokens": f.posted_tokens, "records": f.records,
                           "pending_cost": f.pending_cost.normalize().to_string(), "pending_tokens": f.pending_tokens},
            })
        })
        .collect();
    Ok(json!({"type": "accounts", "accounts": stored.len(), "events": fold.events, "differences": differences}))
}
