//! The write-side rows of budgets and policies, kept in step with their events by the write path.

use crate::db::WriteTx;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use crate::domain::policy::{Policy, PolicyPeriod, PolicyType, Scope};
use crate::event::{BudgetCreated, PolicySet};
use crate::Money;

/// Every policy, enabled or not, for the write path to decide against (a statement prepared once per
/// connection: every batch runs it).
pub async fn load_all(tx: &WriteTx) -> Result<Vec<Policy>, tokio_postgres::Error> {
    let rows = tx
        .query(
            &tx.prepare_cached(
                "SELECT p.policy_id, p.budget_id, p.policy_type, p.period, p.scope, p.cost_limit, p.token_limit,
                    p.warning_threshold, p.action_threshold, p.enabled AND b.active AS enabled, p.timezone
             FROM policies p JOIN budgets b USING (budget_id) ORDER BY p.policy_id",
            )
            .await?,
            &[],
        )
        .await?;
    Ok(rows.iter().map(policy_from_row).collect())
}

fn policy_from_row(r: &Row) -> Policy {
    let event = PolicySet {
        policy_id: r.get("policy_id"),
        budget_id: r.get("budget_id"),
        policy_type: r.get::<_, String>("policy_type").parse::<PolicyType>().expect("checked by the table"),
        period: r.get::<_, String>("period").parse::<PolicyPeriod>().expect("checked by the table"),
        scope: serde_json::from_value::<Scope>(r.get("scope")).expect("scopes are written by us"),
        cost_limit: r.get::<_, Option<Decimal>>(5).map(|d| Money::new(d).expect("checked by the table")),
        token_limit: r.get("token_limit"),
        warning_threshold: r.get("warning_threshold"),
        action_threshold: r.get("action_threshold"),
        enabled: r.get("enabled"),
        timezone: r.get("timezone"),
        opening: None,
    };
    Policy::from_event(&event)
}

/// Writes a policy's row as its latest `PolicySet` says.
pub async fn save(tx: &WriteTx, p: &PolicySet) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        &tx.prepare_cached("INSERT INTO policies (policy_id, budget_id, policy_type, period, scope, scope_key, cost_limit, token_limit,
                               warning_threshold, action_threshold, enabled, timezone)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (policy_id) DO UPDATE SET
             policy_type = EXCLUDED.policy_type, cost_limit = EXCLUDED.cost_limit,
             token_limit = EXCLUDED.token_limit, warning_threshold = EXCLUDED.warning_threshold,
             action_threshold = EXCLUDED.action_threshold, enabled = EXCLUDED.enabled,
             timezone = EXCLUDED.timezone, updated_at = now()").await?,
        &[
            &p.policy_id,
            &p.budget_id,
            &p.policy_type.as_str(),
            &p.period.as_str(),
            &serde_json::to_value(&p.scope).expect("scopes serialize"),
            &p.scope.key(),
            &p.cost_limit.map(Money::amount),
            &p.token_limit,
            &p.warning_threshold,
            &p.action_threshold,
            &p.enabled,
            &p.timezone,
        ],
    )
    .await?;
    Ok(())
}

/// Applies a budget change to its row.
pub async fn update_budget(tx: &WriteTx, b: &crate::event::BudgetUpdated) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        &tx.prepare_cached(
            "UPDATE budgets SET name = COALESCE($2, name), description = COALESCE($3, description),
                            owner = COALESCE($4, owner), updated_at = now()
         WHERE budget_id = $1",
        )
        .await?,
        &[&b.budget_id, &b.name, &b.description, &b.owner],
    )
    .await?;
    Ok(())
}

pub async fn archive_budget(tx: &WriteTx, budget_id: Uuid) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        &tx.prepare_cached("UPDATE budgets SET active = false, updated_at = now() WHERE budget_id = $1").await?,
        &[&budget_id],
    )
    .await?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetRow {
    pub budget_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub owner: Option<String>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const BUDGET_COLUMNS: &str = "budget_id, name, description, owner, active, created_at, updated_at";

fn budget_from_row(r: &Row) -> BudgetRow {
    BudgetRow {
        budget_id: r.get("budget_id"),
        name: r.get("name"),
        description: r.get("description"),
        owner: r.get("owner"),
        active: r.get("active"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    }
}

pub async fn budget_by_name(
    client: &impl GenericClient,
    name: &str,
) -> Result<Option<BudgetRow>, tokio_postgres::Error> {
    let row = client.query_opt(&format!("SELECT {BUDGET_COLUMNS} FROM budgets WHERE name = $1"), &[&name]).await?;
    Ok(row.as_ref().map(budget_from_row))
}

pub async fn budget_by_id(client: &impl GenericClient, id: Uuid) -> Result<Option<BudgetRow>, tokio_postgres::Error> {
    let row = client.query_opt(&format!("SELECT {BUDGET_COLUMNS} FROM budgets WHERE budget_id = $1"), &[&id]).await?;
    Ok(row.as_ref().map(budget_from_row))
}

pub async fn list_budgets(client: &impl GenericClient) -> Result<Vec<BudgetRow>, tokio_postgres::Error> {
    let rows = client.query(&format!("SELECT {BUDGET_COLUMNS} FROM budgets ORDER BY name"), &[]).await?;
    Ok(rows.iter().map(budget_from_row).collect())
}

pub async fn insert_budget(tx: &WriteTx, b: &BudgetCreated) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        &tx.prepare_cached("INSERT INTO budgets (budget_id, name, description, owner) VALUES ($1, $2, $3, $4)").await?,
        &[&b.budget_id, &b.name, &b.description, &b.owner],
    )
    .await?;
    Ok(())
}

/// A policy with its budget's name, for listings.
#[derive(Debug, Clone)]
pub struct PolicyRow {
    pub policy: Policy,
    pub budget_name: String,
    /// False once its budget is archived: the policy then counts nothing, whatever its own flag says.
    pub budget_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl PolicyRow {
    /// Whether the policy counts new usage and checks: enabled, in a budget not archived (as the
    /// write path loads it, `load_all`).
    pub fn counts(&self) -> bool {
        self.policy.enabled && self.budget_active
    }
}

/// Policies with their budget names, oldest first.
pub async fn list(client: &impl GenericClient) -> Result<Vec<PolicyRow>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT p.policy_id, p.budget_id, p.policy_type, p.period, p.scope, p.cost_limit, p.token_limit,
                    p.warning_threshold, p.action_threshold, p.enabled, p.timezone, b.name AS budget_name, b.active AS budget_active,
                    p.created_at, p.updated_at
             FROM policies p JOIN budgets b USING (budget_id)
             ORDER BY p.created_at, p.policy_id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| PolicyRow {
            policy: policy_from_row(r),
            budget_name: r.get("budget_name"),
            budget_active: r.get("budget_active"),
            created_at: r.get("created_at"),
            updated_at: r.get("updated_at"),
        })
        .collect())
}

/// An account with its window bounds, for status.
#[derive(Debug, Clone)]
pub struct WindowAccount {
    pub policy_id: Uuid,
    pub window_key: String,
    pub window_start: Option<DateTime<Utc>>,
    pub window_end: Option<DateTime<Utc>>,
    pub account: crate::domain::policy::Account,
}

/// The accounts of the given (policy, window) pairs that exist; those with no usage yet have no row.
pub async fn accounts(
    client: &impl GenericClient,
    keys: &[(Uuid, String)],
) -> Result<Vec<WindowAccount>, tokio_postgres::Error> {
    let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
    let windows: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
    let rows = client
        .query(
            "SELECT a.policy_id, a.window_key, a.window_start, a.window_end, a.posted_cost, a.posted_tokens,
                    a.pending_cost, a.pending_tokens, a.records
             FROM policy_accounts a JOIN unnest($1::uuid[], $2::text[]) AS k(p, w) ON a.policy_id = k.p AND a.window_key = k.w",
            &[&ids, &windows],
        )
        .await?;
    Ok(rows.iter().map(window_account).collect())
}

/// The least room (cost limit − posted − pending) among the given windows of enabled hard-limited
/// policies with a cost limit; none when no such window has an account.
pub async fn tightest_hard_cost_room(
    client: &impl GenericClient,
    keys: &[(Uuid, String)],
) -> Result<Option<rust_decimal::Decimal>, tokio_postgres::Error> {
    let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
    let windows: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
    let row = client
        .query_one(
            "SELECT min(p.cost_limit - a.posted_cost - a.pending_cost)
             FROM policy_accounts a JOIN unnest($1::uuid[], $2::text[]) AS k(p, w) ON a.policy_id = k.p AND a.window_key = k.w
             JOIN policies p ON p.policy_id = a.policy_id
             WHERE p.enabled AND p.policy_type = 'hard_limit' AND p.cost_limit IS NOT NULL",
            &[&ids, &windows],
        )
        .await?;
    Ok(row.get(0))
}

/// The most recently used windows of a per-session or per-task policy.
pub async fn recent_accounts(
    client: &impl GenericClient,
    policy_id: Uuid,
    limit: i64,
) -> Result<Vec<WindowAccount>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT policy_id, window_key, window_start, window_end, posted_cost, posted_tokens, pending_cost,
                    pending_tokens, records
             FROM policy_accounts WHERE policy_id = $1 ORDER BY updated_at DESC, window_key LIMIT $2",
            &[&policy_id, &limit],
        )
        .await?;
    Ok(rows.iter().map(window_account).collect())
}

/// How many windows (accounts) each of `policy_ids` has.
pub async fn window_counts(
    client: &impl GenericClient,
    policy_ids: &[Uuid],
) -> Result<Vec<(Uuid, i64)>, tokio_postgres::Error> {
    if policy_ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT policy_id, count(*) FROM policy_accounts WHERE policy_id = ANY($1) GROUP BY policy_id",
            &[&policy_ids],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Every account, with its window bounds.
pub async fn all_accounts(client: &impl GenericClient) -> Result<Vec<WindowAccount>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT policy_id, window_key, window_start, window_end, posted_cost, posted_tokens, pending_cost,
                    pending_tokens, records
             FROM policy_accounts",
            &[],
        )
        .await?;
    Ok(rows.iter().map(window_account).collect())
}

fn window_account(r: &Row) -> WindowAccount {
    WindowAccount {
        policy_id: r.get("policy_id"),
        window_key: r.get("window_key"),
        window_start: r.get("window_start"),
        window_end: r.get("window_end"),
        account: crate::domain::policy::Account {
            posted_cost: r.get("posted_cost"),
            posted_tokens: r.get("posted_tokens"),
            pending_cost: r.get("pending_cost"),
            pending_tokens: r.get("pending_tokens"),
            records: r.get("records"),
        },
    }
}
