//! The service under test: `budget start` as a child process on the bench's database, so its memory
//! is its own (the load generator runs in the bench's process) and a second one can run beside it.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// A running `budget start`, stopped when dropped.
pub struct Server {
    child: Child,
    pub url: String,
}

impl Server {
    /// Starts `exe start` on a free port of 127.0.0.1 against `database` (a `host=… dbname=…` string)
    /// with the bootstrap admin key `admin_key`; waits until `/health` answers.
    pub async fn start(exe: &Path, database: &str, admin_key: &str) -> anyhow::Result<Server> {
        Self::start_with(exe, database, admin_key, &[]).await
    }

    /// [`Server::start`] with more environment variables (the gateway's upstreams).
    pub async fn start_with(
        exe: &Path,
        database: &str,
        admin_key: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(exe)
            .envs(env.iter().copied())
            .args(["start", "--host", "127.0.0.1", "--port", &port.to_string(), "--database-url", database])
            .env("BUDGET_ADMIN_KEY", admin_key)
            .env("BUDGET_RATE_LIMIT", "off")
            .env("BUDGET_LOG", "warn")
            .env_remove("BUDGET_DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let server = Server { child, url: format!("http://127.0.0.1:{port}") };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(format!("{}/health", server.url)).send().await {
                if r.status().is_success() {
                    return Ok(server);
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "`budget start` did not answer /health within 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The process's resident memory, in MB (Linux).
    pub fn rss_mb(&self) -> Option<f64> {
        let pid = self.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kb: f64 =
            status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb / 1024.0)
    }

    /// Stops the process (SIGKILL: the bench's figures are taken; nothing is left to flush).
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
