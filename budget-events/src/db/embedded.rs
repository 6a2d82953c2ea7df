//! A private PostgreSQL cluster, so that `budget start` needs no setup beyond an installed server.
//!
//! It finds the server binaries (on PATH, via `pg_config`, or under `/usr/lib/postgresql/*/bin`),
//! creates a cluster in a data directory on first use, keeps it across restarts, and listens only on a
//! Unix socket inside that directory, so it never collides with another server's port. PostgreSQL
//! refuses to run as root; run as root, the cluster is owned by and run as the `postgres` OS user.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The OS user a cluster runs as when we are root.
const POSTGRES_USER: &str = "postgres";
/// The socket's port number; only names the socket file, nothing listens on TCP.
const SOCKET_PORT: u16 = 5432;

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("no PostgreSQL server binaries found (looked for initdb and pg_ctl on PATH, via pg_config, and under /usr/lib/postgresql/*/bin). Install them (Debian/Ubuntu: apt-get install postgresql) or set BUDGET_DATABASE_URL to an existing database")]
    NoBinaries,
    #[error("running as root, the cluster must run as the `postgres` OS user, which does not exist here. Install the postgresql package (it creates that user) or set BUDGET_DATABASE_URL")]
    NoPostgresUser,
    #[error("the data directory {dir} is not reachable by the `postgres` user ({parent} is private to root); set BUDGET_DATA_DIR to a directory such as /var/lib/budget")]
    Unreachable { dir: PathBuf, parent: PathBuf },
    #[error("{step} failed: {detail}")]
    Command { step: String, detail: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone, Default)]
pub struct EmbeddedOptions {
    /// Trade durability for speed: `initdb --no-sync`, `fsync=off`. For throwaway test clusters only.
    pub unsafe_fast: bool,
}

/// A running private cluster. Dropping it does not stop it; call [`EmbeddedPostgres::stop`].
#[derive(Debug)]
pub struct EmbeddedPostgres {
    bin_dir: PathBuf,
    pgdata: PathBuf,
    socket_dir: PathBuf,
    run_as_postgres: bool,
    started_here: bool,
}

impl EmbeddedPostgres {
    /// Starts the cluster in `data_dir` (creating it on first use), or joins it if it already runs.
    pub fn start(data_dir: &Path, options: &EmbeddedOptions) -> Result<Self, EmbeddedError> {
        let bin_dir = find_binaries()?;
        let run_as_postgres = is_root();
        if run_as_postgres && !user_exists(POSTGRES_USER) {
            return Err(EmbeddedError::NoPostgresUser);
        }
        std::fs::create_dir_all(data_dir)?;
        let data_dir = data_dir.canonicalize()?;
        let pgdata = data_dir.join("pgdata");
        let socket_dir = data_dir.join("run");
        std::fs::create_dir_all(&socket_dir)?;
        if run_as_postgres {
            check_reachable(&data_dir)?;
            // Not recursive: pgdata is created by initdb as `postgres`, and a running cluster's files must
            // not be touched.
            run("chown data directory", Command::new("chown").arg(POSTGRES_USER).arg(&data_dir).arg(&socket_dir))?;
        }
        let mut pg = EmbeddedPostgres { bin_dir, pgdata, socket_dir, run_as_postgres, started_here: false };

        if !pg.pgdata.join("PG_VERSION").exists() {
            let mut initdb = pg.command("initdb");
            initdb.arg("-D").arg(&pg.pgdata).args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"]);
            if options.unsafe_fast {
                initdb.arg("--no-sync");
            }
            run("initdb", &mut initdb)?;
            tracing::info!(pgdata = %pg.pgdata.display(), "created a private PostgreSQL cluster");
        }

        if pg.is_running() {
            tracing::info!(pgdata = %pg.pgdata.display(), "joined the private PostgreSQL cluster already running");
            return Ok(pg);
        }
        let mut server_opts =
            format!("-c listen_addresses='' -k {} -p {SOCKET_PORT} -c max_connections=200", pg.socket_dir.display());
        if options.unsafe_fast {
            server_opts.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        let log = pg.pgdata.parent().unwrap_or(&pg.pgdata).join("postgres.log");
        let mut start = pg.command("pg_ctl");
        start
            .arg("-D")
            .arg(&pg.pgdata)
            .arg("-o")
            .arg(server_opts)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "start"]);
        run("pg_ctl start", &mut start).map_err(|e| match e {
            EmbeddedError::Command { step, detail } => {
                EmbeddedError::Command { step, detail: format!("{detail} (server log: {})", log.display()) }
            }
            other => other,
        })?;
        pg.started_here = true;
        tracing::info!(socket = %pg.socket_dir.display(), "started the private PostgreSQL cluster");
        Ok(pg)
    }

    /// Connection settings for the `postgres` database of this cluster.
    pub fn config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config.host_path(&self.socket_dir).port(SOCKET_PORT).user("postgres").dbname("postgres");
        config
    }

    pub fn is_running(&self) -> bool {
        self.command("pg_ctl").arg("-D").arg(&self.pgdata).arg("status").output().is_ok_and(|o| o.status.success())
    }

    /// Whether this process started the cluster (and so should stop it).
    pub fn started_here(&self) -> bool {
        self.started_here
    }

    /// Fast shutdown: open sessions are ended, committed data is kept.
    pub fn stop(&self) -> Result<(), EmbeddedError> {
        run("pg_ctl stop", &mut self.stop_command()).map(|_| ())
    }

    /// The command [`EmbeddedPostgres::stop`] runs, for a process that stops the cluster later.
    pub fn stop_command(&self) -> Command {
        let mut stop = self.command("pg_ctl");
        stop.arg("-D").arg(&self.pgdata).args(["-m", "fast", "-w", "stop"]);
        stop
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin_dir.join(program);
        if self.run_as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", POSTGRES_USER, "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }
}

/// The directory holding `initdb` and `pg_ctl`.
pub fn find_binaries() -> Result<PathBuf, EmbeddedError> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(dir) = std::env::split_paths(&path).find(|d| has_both(d)) {
            return Ok(dir);
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_both(&dir) {
            return Ok(dir);
        }
    }
    // Debian's layout: /usr/lib/postgresql/<major>/bin; prefer the newest major.
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_both(&bin).then_some((major, bin))
        })
        .collect();
    candidates.sort();
    candidates.pop().map(|(_, dir)| dir).ok_or(EmbeddedError::NoBinaries)
}

/// The default data directory: `$XDG_DATA_HOME/budget` or `~/.local/share/budget`; as root,
/// `/var/lib/budget` (root's home is private, and the server runs as `postgres`).
pub fn default_data_dir() -> PathBuf {
    if is_root() {
        return PathBuf::from("/var/lib/budget");
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("budget");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/budget"),
        None => PathBuf::from(".budget"),
    }
}

/// The effective user is root. `/proc/self` is owned by the process's effective uid.
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

fn user_exists(name: &str) -> bool {
    Command::new("id").arg("-u").arg(name).output().is_ok_and(|o| o.status.success())
}

/// Every ancestor must let others traverse it, or `postgres` cannot reach the data directory.
fn check_reachable(dir: &Path) -> Result<(), EmbeddedError> {
    for parent in dir.ancestors().skip(1) {
        let mode = std::fs::metadata(parent)?.mode();
        if mode & 0o001 == 0 {
            return Err(EmbeddedError::Unreachable { dir: dir.to_path_buf(), parent: parent.to_path_buf() });
        }
    }
    Ok(())
}

fn run(step: &str, command: &mut Command) -> Result<Output, EmbeddedError> {
    let out = command.output().map_err(|e| EmbeddedError::Command { step: step.into(), detail: e.to_string() })?;
    if out.status.success() {
        Ok(out)
    } else {
        let detail =
            format!("{}{}", String::from_utf8_lossy(&out.stderr).trim(), String::from_utf8_lossy(&out.stdout).trim());
        Err(EmbeddedError::Command { step: step.into(), detail })
    }
}
