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

use tokio::sync::mpsc;
use utoipa::ToSchema;

use crate::body;
use crate::error::ApiError;
use crate::routes::audit::Figures;
use crate::state::AppState;

/// Every projection a replay can rebuild.
pub const PROJECTIONS: [&str; 2] = ["usage_rollups", "alerts"];

/// One line of the replay's JSON-lines answer, tagged by `type`. Read it with [`ReplayLine::parse`].
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ReplayLine {
    /// A few times a second while a projection refolds.
    Progress { progress: Progress },
    /// A projection refolded and compared with its live tables.
    Projection { report: ReplayReport, differing_rows: i64 },
    /// The enforcement accounts compared with the fold of the log (at most 100 differences listed).
    Accounts { accounts: usize, events: usize, differences: Vec<AccountDifference> },
    /// The replay stopped here.
    Error { projection: String, message: String },
    /// The last line: the differences found in all.
    Done { differences: i64 },
}

impl ReplayLine {
    /// Decodes one line. The tag is read first and each part decoded on its own: serde's internally
    /// tagged enums buffer their fields, and a buffered number cannot pass through serde_json's
    /// exact-number mode (`arbitrary_precision`), which money needs.
    pub fn parse(line: &[u8]) -> serde_json::Result<ReplayLine> {
        use serde::de::Error;
        use serde_json::{from_value, Value};
        let mut v: Value = serde_json::from_slice(line)?;
        let mut take = |k: &str| v.get_mut(k).map(Value::take).unwrap_or(Value::Null);
        let kind = take("type");
        Ok(match kind.as_str().unwrap_or_default() {
            "progress" => ReplayLine::Progress { progress: from_value(take("progress"))? },
            "projection" => ReplayLine::Projection {
                report: from_value(take("report"))?,
                differing_rows: from_value(take("differing_rows"))?,
            },
            "accounts" => ReplayLine::Accounts {
                accounts: from_value(take("accounts"))?,
                events: from_value(take("events"))?,
                differences: from_value(take("differences"))?,
            },
            "error" => {
                ReplayLine::Error { projection: from_value(take("projection"))?, message: from_value(take("message"))? }
            }
            "done" => ReplayLine::Done { differences: from_value(take("differences"))? },
            other => return Err(serde_json::Error::custom(format!("unknown replay line type `{other}`"))),
        })
    }
}

/// An enforcement account that differs from the fold of the log.
#[derive(Debug, Serialize, Deserialize)]
pub struct AccountDifference {
    pub policy_id: uuid::Uuid,
    pub window: String,
    pub stored: Figures,
    pub folded: Figures,
}

#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// One projection's name, or `all` (the default).
    #[schema(schema_with = crate::openapi::schemas::projection)]
    pub projection: Option<String>,
    /// Replace the live tables with the replayed ones (atomically).
    #[serde(default)]
    pub swap: bool,
}

/// Replays projections and verifies the accounts; the answer is a stream of JSON lines.
#[utoipa::path(tag = "audit", request_body = Option<ReplayRequest>, responses((status = 200, description = "JSON lines: progress, projection, accounts, done", content_type = "application/x-ndjson"), (status = 400, body = crate::error::ErrorBody)), security(("api_key" = ["admin"])))]
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
    let (lines, receiver) = mpsc::unbounded_channel::<ReplayLine>();
    let state = state.into_inner();
    tokio::spawn(async move {
        let mut differing = 0i64;
        for name in names {
            let report = run_one(&state, name, request.swap, &lines).await;
            match report {
                Ok(report) => {
                    differing += report.differing_rows();
                    let differing_rows = report.differing_rows();
                    let _ = lines.send(ReplayLine::Projection { report, differing_rows });
                }
                Err(e) => {
                    let _ = lines.send(ReplayLine::Error { projection: name.into(), message: e.to_string() });
                    return;
                }
            }
        }
        match verify_accounts(&state).await {
            Ok(accounts) => {
                if let ReplayLine::Accounts { differences, .. } = &accounts {
                    differing += differences.len() as i64;
                }
                let _ = lines.send(accounts);
            }
            Err(e) => {
                let _ = lines.send(ReplayLine::Error { projection: "accounts".into(), message: e });
                return;
            }
        }
        let _ = lines.send(ReplayLine::Done { differences: differing });
    });
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let line = receiver.recv().await?;
        let text = serde_json::to_string(&line).expect("replay lines serialize");
        Some((Ok::<_, actix_web::Error>(web::Bytes::from(format!("{text}\n"))), receiver))
    });
    Ok(HttpResponse::Ok().content_type("application/x-ndjson").streaming(stream))
}

async fn run_one(
    state: &AppState,
    name: &'static str,
    swap: bool,
    lines: &mpsc::UnboundedSender<ReplayLine>,
) -> Result<ReplayReport, budget_projections::ProjectionError> {
    let mut last = std::time::Instant::now();
    let progress = |p: Progress| {
        // At most a few lines a second.
        if last.elapsed().as_millis() >= 200 || p.events as i64 >= p.total {
            last = std::time::Instant::now();
            let _ = lines.send(ReplayLine::Progress { progress: p });
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
async fn verify_accounts(state: &AppState) -> Result<ReplayLine, String> {
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
    let differences: Vec<AccountDifference> = audit::account_differences(&stored, &fold.accounts)
        .into_iter()
        .take(100)
        .map(|((policy_id, window), s, f)| AccountDifference {
            policy_id,
            window,
            stored: Figures::from(s),
            folded: Figures::from(f),
        })
        .collect();
    Ok(ReplayLine::Accounts { accounts: stored.len(), events: fold.events, differences })
}
