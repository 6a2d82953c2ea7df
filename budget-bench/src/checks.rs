//! The correctness checks a bench run ends with. A fast figure is worth nothing if a record was lost
//! or counted twice, or a hard limit was overspent; these read the log and the accounts directly.

use serde::Serialize;
use tokio_postgres::GenericClient;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    /// The figures it compared, for people.
    pub detail: String,
}

/// Exactly once: every acknowledged record id is in the log once, nothing else is (the log holds
/// `acknowledged` usage records in all, so retries added none), and the account every record is
/// posted to counted each once (`posted`).
pub async fn exactly_once(
    client: &impl GenericClient,
    acknowledged: &[Uuid],
    policy_id: Uuid,
) -> Result<Check, tokio_postgres::Error> {
    let distinct: std::collections::BTreeSet<&Uuid> = acknowledged.iter().collect();
    let row = client
        .query_one(
            "SELECT count(*) AS logged,
                    count(DISTINCT payload::json->>'record_id') AS distinct_logged,
                    count(*) FILTER (WHERE (payload::json->>'record_id')::uuid = ANY($1)) AS acknowledged_logged
             FROM events WHERE event_type = 'UsageRecorded'",
            &[&acknowledged],
        )
        .await?;
    let (logged, distinct_logged, found): (i64, i64, i64) =
        (row.get("logged"), row.get("distinct_logged"), row.get("acknowledged_logged"));
    let posted: i64 = client
        .query_one("SELECT coalesce(sum(records), 0)::bigint FROM policy_accounts WHERE policy_id = $1", &[&policy_id])
        .await?
        .get(0);
    let n = acknowledged.len() as i64;
    let passed =
        distinct.len() == acknowledged.len() && logged == n && distinct_logged == n && found == n && posted == n;
    Ok(Check {
        name: "exactly_once",
        passed,
        detail: format!(
            "{n} acknowledged ({} distinct), {logged} in the log ({distinct_logged} distinct, {found} of them acknowledged), {posted} posted to the account",
            distinct.len()
        ),
    })
}

/// Zero overspend: on the hard-limited window, what the log reserved (admitted allocations' tokens)
/// is at most the limit, equals what the account holds, and equals what the clients were told.
pub async fn zero_overspend(
    client: &impl GenericClient,
    policy_id: Uuid,
    token_limit: i64,
    admitted_tokens: i64,
) -> Result<Check, tokio_postgres::Error> {
    let logged: i64 = client
        .query_one(
            "SELECT coalesce(sum((payload::json->>'tokens_allocated')::bigint), 0)::bigint FROM events
             WHERE event_type = 'AllocationCreated'
               AND (payload::json->'reservations')::jsonb @> jsonb_build_array(jsonb_build_object('policy_id', $1::uuid))",
            &[&policy_id],
        )
        .await?
        .get(0);
    let held: i64 = client
        .query_one(
            "SELECT coalesce(sum(posted_tokens + pending_tokens), 0)::bigint FROM policy_accounts WHERE policy_id = $1",
            &[&policy_id],
        )
        .await?
        .get(0);
    let passed = logged <= token_limit && held <= token_limit && logged == held && logged == admitted_tokens;
    Ok(Check {
        name: "zero_overspend",
        passed,
        detail: format!(
            "limit {token_limit} tokens; admitted {admitted_tokens} as told to clients, {logged} in the log, {held} held by the account"
        ),
    })
}

/// Gateway calls settled once: the log holds one usage record per answered gateway call (`answered`,
/// counting from `records_before`, the records logged before the timed phase), each settled against
/// its reservation, and no reservation is left active.
pub async fn gateway_settled_once(
    client: &impl GenericClient,
    records_before: i64,
    answered: i64,
) -> Result<Check, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM events WHERE event_type = 'UsageRecorded') AS records,
                    (SELECT count(*) FROM events WHERE event_type = 'UsageRecorded'
                       AND payload::json->'settlement'->>'allocation_id' IS NULL) AS unsettled,
                    (SELECT count(*) FROM allocations WHERE state = 'active') AS active",
            &[],
        )
        .await?;
    let (records, unsettled, active): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    Ok(Check {
        name: "gateway_settled_once",
        passed: records - records_before == answered && unsettled == 0 && active == 0,
        detail: format!(
            "{answered} answered calls, {} usage records ({unsettled} not settled against a reservation), {active} reservations still active",
            records - records_before
        ),
    })
}
