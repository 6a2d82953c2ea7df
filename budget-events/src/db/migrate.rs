//! Applies the numbered SQL files of `schema/`, each exactly once, in order, each in its own
//! transaction together with its row in `schema_migrations`.
//!
//! A failed migration rolls back whole: the database stays as the previous migration left it and the
//! error names the file. An advisory lock keeps two starting processes from migrating at once.

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

/// Every migration, in order. `schema/` is the one place tables are defined; a test checks that every
/// file there is listed here.
pub const MIGRATIONS: &[Migration] = &[
    Migration::new(1, "0001_event_log", include_str!("../../../schema/0001_event_log.sql")),
    Migration::new(2, "0002_projections", include_str!("../../../schema/0002_projections.sql")),
    Migration::new(3, "0003_budgets_and_accounts", include_str!("../../../schema/0003_budgets_and_accounts.sql")),
    Migration::new(4, "0004_allocations", include_str!("../../../schema/0004_allocations.sql")),
    Migration::new(5, "0005_prices", include_str!("../../../schema/0005_prices.sql")),
    Migration::new(6, "0006_alerts", include_str!("../../../schema/0006_alerts.sql")),
    Migration::new(7, "0007_webhook_leases", include_str!("../../../schema/0007_webhook_leases.sql")),
    Migration::new(8, "0008_wide_sums", include_str!("../../../schema/0008_wide_sums.sql")),
    Migration::new(9, "0009_api_keys", include_str!("../../../schema/0009_api_keys.sql")),
    Migration::new(10, "0010_exact_prices", include_str!("../../../schema/0010_exact_prices.sql")),
    Migration::new(11, "0011_price_parts", include_str!("../../../schema/0011_price_parts.sql")),
    Migration::new(12, "0012_user_scope", include_str!("../../../schema/0012_user_scope.sql")),
    Migration::new(13, "0013_rollups_by_user", include_str!("../../../schema/0013_rollups_by_user.sql")),
    Migration::new(14, "0014_money_scale", include_str!("../../../schema/0014_money_scale.sql")),
    Migration::new(15, "0015_reasoning_price", include_str!("../../../schema/0015_reasoning_price.sql")),
    Migration::new(16, "0016_event_text", include_str!("../../../schema/0016_event_text.sql")),
    Migration::new(17, "0017_outcome_lz4", include_str!("../../../schema/0017_outcome_lz4.sql")),
    Migration::new(18, "0018_projection_leases", include_str!("../../../schema/0018_projection_leases.sql")),
    Migration::new(19, "0019_log_horizon", include_str!("../../../schema/0019_log_horizon.sql")),
    Migration::new(20, "0020_unvalidated_text", include_str!("../../../schema/0020_unvalidated_text.sql")),
    Migration::new(21, "0021_open_scope", include_str!("../../../schema/0021_open_scope.sql")),
    Migration::new(22, "0022_price_retirement", include_str!("../../../schema/0022_price_retirement.sql")),
];

/// Arbitrary constant naming the migration lock among advisory locks.
const MIGRATION_LOCK: i64 = 0x4255_4447_4554_0001;

#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

impl Migration {
    pub const fn new(version: i32, name: &'static str, sql: &'static str) -> Self {
        Migration { version, name, sql }
    }

    pub fn checksum(&self) -> String {
        crate::display::hex(&Sha256::digest(self.sql.as_bytes()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(
        "migration {name} failed and was rolled back; the database is as the previous migration left it: {source}"
    )]
    Failed {
        name: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("migration {name} was changed after it was applied (checksum {applied} in the database, {expected} in this build); add a new migration instead of editing an applied one")]
    Changed { name: String, applied: String, expected: String },
    #[error(
        "the database has migration {version} ({name}), which this build does not know; run a newer budget against it"
    )]
    Unknown { version: i32, name: String },
    #[error("could not prepare the migrations table: {}", crate::db::error_message(.0))]
    Setup(#[from] tokio_postgres::Error),
}

/// A fingerprint of the whole migration set (names the test template database).
pub fn fingerprint() -> String {
    let mut hasher = Sha256::new();
    for m in MIGRATIONS {
        hasher.update(m.name.as_bytes());
        hasher.update(m.sql.as_bytes());
    }
    crate::display::hex(&hasher.finalize())[..16].to_string()
}

/// Brings the database up to date. Returns the names of the migrations it applied.
pub async fn migrate(client: &mut Client) -> Result<Vec<&'static str>, MigrationError> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await?;
    let result = async {
        // Created under the lock when missing (not `IF NOT EXISTS`, whose notice every later start
        // would log).
        let missing: bool = client.query_one("SELECT to_regclass('schema_migrations') IS NULL", &[]).await?.get(0);
        if missing {
            client
                .batch_execute(
                    "CREATE TABLE schema_migrations (
                        version    integer PRIMARY KEY,
                        name       text NOT NULL,
                        checksum   text NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now()
                    )",
                )
                .await?;
        }
        apply_pending(client).await
    }
    .await;
    client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await?;
    result
}

async fn apply_pending(client: &mut Client) -> Result<Vec<&'static str>, MigrationError> {
    let rows = client.query("SELECT version, name, checksum FROM schema_migrations ORDER BY version", &[]).await?;
    let mut applied = std::collections::HashSet::new();
    for row in rows {
        let (version, name, checksum): (i32, String, String) =
            (row.get("version"), row.get("name"), row.get("checksum"));
        match MIGRATIONS.iter().find(|m| m.version == version) {
            None => return Err(MigrationError::Unknown { version, name }),
            Some(m) if m.checksum() != checksum => {
                return Err(MigrationError::Changed { name, applied: checksum, expected: m.checksum() })
            }
            Some(_) => {
                applied.insert(version);
            }
        }
    }

    let mut done = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        let failed = |source| MigrationError::Failed { name: m.name, source };
        let tx = client.transaction().await?;
        tx.batch_execute(m.sql).await.map_err(failed)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &m.checksum()],
        )
        .await
        .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        // One line each at debug; the caller logs the run as one line (a new database has twenty).
        tracing::debug!(migration = m.name, "applied migration");
        done.push(m.name);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_file_is_listed_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../schema");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<String> = MIGRATIONS.iter().map(|m| format!("{}.sql", m.name)).collect();
        assert_eq!(files, listed);
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1);
            assert!(m.name.starts_with(&format!("{:04}_", m.version)));
        }
    }
}
