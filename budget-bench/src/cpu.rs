//! Where a phase's CPU went, per record: the service's process, the bench's own (the load generator),
//! PostgreSQL's backends serving the bench's database (when PostgreSQL runs on this machine), and the
//! rest of the machine (the kernel's threads, PostgreSQL's own background processes, anything else).
//!
//! Throughput on a shared machine drifts by a third within minutes, so two builds compared by their
//! records per second need many alternating runs. CPU time per record drifts less (it still follows
//! the machine's speed), and it says which part to look at: the load generator, the service and
//! PostgreSQL share the cores, so the machine's rate is its cores divided by what one record costs
//! them all. The same split of a ceiling's turns says what PostgreSQL spends on one row of its own
//! (`budget bench`: the service's backends spent as much per single record as the one-row ceiling's
//! spent per transaction). Read from Linux's `/proc` (`/proc/stat` for the machine, `/proc/<pid>/stat`
//! for a process; a backend is found by the database name in its title); elsewhere there is no line.

use std::collections::BTreeMap;

/// Linux reports CPU time in `/proc` in units of `USER_HZ`, which is 100 on every architecture it
/// exposes to user space (`sysconf(_SC_CLK_TCK)`).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time used so far, in ticks: by the whole machine (busy and idle), by the service's process, by
/// this one and by each of PostgreSQL's backends of the bench's database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuSample {
    busy: u64,
    idle: u64,
    service: u64,
    own: u64,
    backends: BTreeMap<u32, u64>,
}

/// CPU time spent between samples, in ticks, added up over the turns of a phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuSpent {
    busy: u64,
    idle: u64,
    service: u64,
    own: u64,
    /// What the backends spent; `None` when none was seen: PostgreSQL on another machine has no
    /// backends here, and its share is then part of nothing this machine can split.
    postgres: Option<u64>,
}

impl CpuSample {
    /// A sample now, with `service` the pid of the service's process and `database` the bench's
    /// database; `None` where `/proc` is not Linux's.
    pub fn take(service: Option<u32>, database: &str) -> Option<CpuSample> {
        let (busy, idle) = machine(&std::fs::read_to_string("/proc/stat").ok()?)?;
        let service = service.and_then(|pid| process(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?))?;
        let own = process(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
        Some(CpuSample { busy, idle, service, own, backends: backends(database) })
    }

    /// What was spent between `before` and `self`. A backend that started in between counts whole; one
    /// that ended in between is not counted (the service's pools and the ceiling's clients outlive a turn).
    pub fn spent_since(&self, before: &CpuSample) -> CpuSpent {
        let postgres = (!self.backends.is_empty()).then(|| {
            self.backends
                .iter()
                .map(|(pid, ticks)| ticks.saturating_sub(before.backends.get(pid).copied().unwrap_or(0)))
                .sum()
        });
        CpuSpent {
            busy: self.busy.saturating_sub(before.busy),
            idle: self.idle.saturating_sub(before.idle),
            service: self.service.saturating_sub(before.service),
            own: self.own.saturating_sub(before.own),
            postgres,
        }
    }
}

impl CpuSpent {
    pub fn plus(self, more: CpuSpent) -> CpuSpent {
        let postgres = match (self.postgres, more.postgres) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
        CpuSpent {
            busy: self.busy + more.busy,
            idle: self.idle + more.idle,
            service: self.service + more.service,
            own: self.own + more.own,
            postgres,
        }
    }

    /// One line on the CPU the machine spent per `unit` (record, request) of `who`, `count` of them; the
    /// bench's own process is named `own` (the load generator, or the ceiling's client).
    pub fn per_unit(&self, who: &str, count: usize, unit: &str, own: &str) -> String {
        let per_unit = |ticks: u64| ticks as f64 / TICKS_PER_SECOND * 1e6 / count.max(1) as f64;
        let rest = self.busy.saturating_sub(self.service + self.own + self.postgres.unwrap_or(0));
        let idle_share = 100.0 * self.idle as f64 / (self.busy + self.idle).max(1) as f64;
        let rest_is = match self.postgres {
            Some(postgres) => format!("PostgreSQL's backends {:.0}, the rest of the machine", per_unit(postgres)),
            None => "PostgreSQL and the rest of the machine".to_string(),
        };
        format!(
            "{who}: {:.0} µs of CPU per {unit} in all (service {:.0}, {own} {:.0}, {rest_is} {:.0}); the cores \
             were idle {idle_share:.0} % of the time",
            per_unit(self.busy),
            per_unit(self.service),
            per_unit(self.own),
            per_unit(rest),
        )
    }
}

/// CPU ticks of each PostgreSQL backend connected to `database`, found by the title PostgreSQL gives
/// its backends (`postgres: [cluster: ]user database host(port) state`, in `/proc/<pid>/cmdline`).
fn backends(database: &str) -> BTreeMap<u32, u64> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return BTreeMap::new() };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let title = std::fs::read(entry.path().join("cmdline")).ok()?;
            if !serves(&String::from_utf8_lossy(&title), database) {
                return None;
            }
            Some((pid, process(&std::fs::read_to_string(entry.path().join("stat")).ok()?)?))
        })
        .collect()
}

/// Whether a process title is that of a PostgreSQL backend connected to `database`.
fn serves(title: &str, database: &str) -> bool {
    title.starts_with("postgres: ") && title.split_whitespace().any(|word| word == database)
}

/// Busy and idle ticks of all cores from `/proc/stat`'s first line (`cpu user nice system idle iowait
/// irq softirq steal …`): idle and iowait are idle, steal (another guest's) is neither.
fn machine(stat: &str) -> Option<(u64, u64)> {
    let fields: Vec<u64> =
        stat.lines().next()?.strip_prefix("cpu ")?.split_whitespace().map(|f| f.parse().ok()).collect::<Option<_>>()?;
    let get = |i: usize| fields.get(i).copied().unwrap_or(0);
    let idle = get(3) + get(4);
    let busy = get(0) + get(1) + get(2) + get(5) + get(6);
    Some((busy, idle))
}

/// User and system ticks of a process from its `/proc/<pid>/stat` (fields 14 and 15, counted after the
/// command name, which may itself hold spaces and parentheses).
fn process(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(busy: u64, idle: u64, service: u64, own: u64, backends: &[(u32, u64)]) -> CpuSample {
        CpuSample { busy, idle, service, own, backends: backends.iter().copied().collect() }
    }

    #[test]
    fn reads_the_machine_and_a_process() {
        let stat = "cpu  100 5 50 800 20 3 2 7 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n";
        assert_eq!(machine(stat), Some((160, 820)));
        let proc = "1234 (tokio rt (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 40 0 0 20 0 9 0 100 0 0";
        assert_eq!(process(proc), Some(290));
    }

    #[test]
    fn knows_a_backend_of_the_database_by_its_title() {
        let db = "budget_bench_0193";
        assert!(serves("postgres: 15/main: postgres budget_bench_0193 127.0.0.1(50180) idle in transaction", db));
        assert!(serves("postgres: postgres budget_bench_0193 [local] idle\0\0", db));
        assert!(!serves("postgres: 15/main: postgres budget_bench_01931 127.0.0.1(50180) idle", db));
        assert!(!serves("postgres: 15/main: walwriter ", db));
        assert!(!serves("psql budget_bench_0193", db));
    }

    #[test]
    fn splits_a_phase_per_unit() {
        let before = at(1000, 500, 200, 100, &[(7, 50), (8, 10)]);
        // 100 records: 300 busy ticks (3 s) of which service 1 s, own 0.5 s, backends 1.2 s (pid 8 went
        // away; pid 9 is new and counts whole); 100 idle ticks.
        let after = at(1300, 600, 300, 150, &[(7, 150), (9, 20)]);
        let line = after.spent_since(&before).per_unit("p", 100, "record", "load generator");
        assert_eq!(
            line,
            "p: 30000 µs of CPU per record in all (service 10000, load generator 5000, PostgreSQL's backends 12000, \
             the rest of the machine 3000); the cores were idle 25 % of the time"
        );
    }

    #[test]
    fn without_backends_postgresql_is_part_of_the_rest() {
        let spent = at(1300, 600, 300, 150, &[]).spent_since(&at(1000, 500, 200, 100, &[]));
        assert_eq!(
            spent.per_unit("p", 100, "record", "load generator"),
            "p: 30000 µs of CPU per record in all (service 10000, load generator 5000, PostgreSQL and the rest of \
             the machine 15000); the cores were idle 25 % of the time"
        );
    }

    #[test]
    fn turns_add_up_to_what_one_span_would_say() {
        // Two turns with a pause between them that must not count.
        let turns = CpuSpent::default()
            .plus(at(1100, 550, 240, 120, &[(7, 30)]).spent_since(&at(1000, 500, 200, 100, &[(7, 10)])))
            .plus(at(1500, 900, 300, 160, &[(7, 90)]).spent_since(&at(1300, 850, 240, 130, &[(7, 60)])));
        let one_span = at(300, 100, 100, 50, &[(7, 50)]).spent_since(&CpuSample::default());
        assert_eq!(one_span.postgres, Some(50));
        assert_eq!(turns, one_span);
    }

    #[test]
    fn samples_this_machine() {
        if cfg!(target_os = "linux") {
            let s = CpuSample::take(Some(std::process::id()), "no_such_database").expect("a sample on Linux");
            assert!(s.busy > 0 && s.idle > 0, "{s:?}");
            // The service here is this process, read twice a few microseconds apart.
            assert!(s.service.abs_diff(s.own) <= 2, "{s:?}");
            assert!(s.backends.is_empty(), "{s:?}");
        }
    }
}
