//! A fresh database for each test, created from a migrated template.
//!
//! The server is `BUDGET_TEST_DATABASE_URL` when set (CI points it at the machine's PostgreSQL),
//! otherwise a private throwaway cluster under the temp directory, started once and shared by every
//! test process (nextest runs each test in its own process), and stopped by a small reaper once no
//! test process that used it has been alive for a few seconds. The template is named after a fingerprint
//! of the migrations, so changing a migration builds a new one. Each test's database is dropped when
//! its `TestDb` is dropped.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_postgres::{Config, NoTls};
use uuid::Uuid;

use super::embedded::{EmbeddedError, EmbeddedOptions, EmbeddedPostgres};
use super::{migrate, pool};

/// One test's private database.
pub struct TestDb {
    pub config: Config,
    pub pool: Pool,
    name: String,
    admin: Config,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let admin = server_config();
        let template = ensure_template(&admin).await;
        let name = format!("budget_test_{}", Uuid::new_v4().simple());
        let client = connect(&admin).await;
        // Two CREATE DATABASE … TEMPLATE at the same instant can see each other as "using" the template.
        let mut attempt = 0;
        loop {
            match client.batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}")).await {
                Ok(()) => break,
                Err(e) if attempt < 50 && e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot create test database {name}: {e}"),
            }
        }
        let mut config = admin.clone();
        config.dbname(&name);
        let pool = pool(&config, 8);
        TestDb { config, pool, name, admin }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database as a connection string `budget start` accepts.
    pub fn connection_string(&self) -> String {
        super::conninfo(&self.config)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        self.pool.close();
        let admin = self.admin.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop runs inside the test's runtime, which cannot be blocked on; use a runtime of our own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let (client, conn) = admin.connect(NoTls).await.ok()?;
                tokio::spawn(conn);
                client.batch_execute(&sql).await.ok()
            })
        })
        .join();
    }
}

fn server_config() -> Config {
    if let Ok(url) = std::env::var("BUDGET_TEST_DATABASE_URL") {
        return url.parse().expect("BUDGET_TEST_DATABASE_URL is not a valid PostgreSQL URL");
    }
    shared_cluster().config()
}

/// The private cluster shared by all test processes.
fn shared_cluster() -> EmbeddedPostgres {
    let dir = std::env::temp_dir().join(format!("budget-test-pg-{}", uid()));
    join_cluster(&dir, std::process::id(), REAPER_IDLE_SECONDS).unwrap_or_else(|e| {
        panic!("cannot start a private PostgreSQL for tests ({e}); or set BUDGET_TEST_DATABASE_URL")
    })
}

/// How long the private cluster outlives the last test process that used it: long enough for cargo
/// to start the next test binary, short enough that nothing is left running after `cargo test`.
const REAPER_IDLE_SECONDS: u32 = 10;

/// Starts (or joins) the cluster under `dir` on behalf of process `user`, and makes sure a reaper
/// stops it once no registered user has been alive for `idle_seconds`.
///
/// Registration, start and the reaper's check-and-stop all happen under one file lock, so the reaper
/// never stops a cluster that a process has just joined.
pub fn join_cluster(dir: &Path, user: u32, idle_seconds: u32) -> Result<EmbeddedPostgres, EmbeddedError> {
    std::fs::create_dir_all(dir)?;
    let lock_path = dir.with_extension("lock");
    let lock = std::fs::File::create(&lock_path)?;
    lock.lock()?;
    let users = dir.with_extension("users");
    std::fs::create_dir_all(&users)?;
    std::fs::write(users.join(user.to_string()), b"")?;
    let pg = EmbeddedPostgres::start(dir, &EmbeddedOptions { unsafe_fast: true })?;
    let reaper_pid = dir.with_extension("reaper");
    let reaper_alive = std::fs::read_to_string(&reaper_pid)
        .ok()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).ok())
        .is_some_and(|stat| !stat.contains(") Z "));
    if !reaper_alive {
        let stop = pg.stop_command();
        let child = Command::new("sh")
            .arg("-c")
            .arg(REAPER)
            .arg("budget-test-reaper")
            .arg(&lock_path)
            .arg(&users)
            .arg(idle_seconds.to_string())
            .arg(&reaper_pid)
            .arg(stop.get_program())
            .args(stop.get_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        std::fs::write(&reaper_pid, child.id().to_string())?;
    }
    drop(lock);
    Ok(pg)
}

/// Once a second, under the lock: forget registered processes that have exited; after
/// `idle_seconds` with none alive, stop the cluster and exit. Arguments: lock file, users directory,
/// idle seconds, own pid file, then the stop command.
const REAPER: &str = r#"
lock=$1 users=$2 idle_limit=$3 pidfile=$4
shift 4
exec 9>>"$lock"
idle=0
while sleep 1; do
  flock 9
  alive=0
  for f in "$users"/*; do
    [ -e "$f" ] || continue
    if kill -0 "${f##*/}" 2>/dev/null; then alive=1; else rm -f "$f"; fi
  done
  if [ "$alive" = 1 ]; then idle=0; else idle=$((idle + 1)); fi
  if [ "$idle" -ge "$idle_limit" ]; then
    "$@"
    rm -f "$pidfile"
    exit 0
  fi
  flock -u 9
done
"#;

fn uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0)
}

async fn connect(config: &Config) -> tokio_postgres::Client {
    let (client, conn) =
        config.connect(NoTls).await.unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL server: {e}"));
    tokio::spawn(conn);
    client
}

/// Creates `budget_tpl_<fingerprint>` once per migration set, under an advisory lock.
async fn ensure_template(admin: &Config) -> String {
    let template = format!("budget_tpl_{}", migrate::fingerprint());
    let client = connect(admin).await;
    client.execute("SELECT pg_advisory_lock(74616270)", &[]).await.expect("template lock");
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&template])
        .await
        .expect("pg_database")
        .is_some();
    if !exists {
        // Build under a temporary name and rename, so a crash never leaves a half-migrated template.
        let building = format!("{template}_building");
        client.batch_execute(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)")).await.expect("drop");
        client.batch_execute(&format!("CREATE DATABASE {building}")).await.expect("create template");
        let mut config = admin.clone();
        config.dbname(&building);
        let (mut tpl, conn) = config.connect(NoTls).await.expect("connect to template");
        let handle = tokio::spawn(conn);
        migrate::migrate(&mut tpl).await.unwrap_or_else(|e| panic!("migrations failed: {e}"));
        drop(tpl);
        let _ = handle.await;
        client.batch_execute(&format!("ALTER DATABASE {building} RENAME TO {template}")).await.expect("rename");
    }
    client.execute("SELECT pg_advisory_unlock(74616270)", &[]).await.expect("template unlock");
    template
}

/// Where the private test cluster lives (for tests of the launcher itself).
pub fn scratch_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("budget-scratch-{}-{name}", Uuid::new_v4().simple()))
}
