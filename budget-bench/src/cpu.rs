//! Where a phase's CPU went, per record: the service's process, the bench's own (the load generator),
//! and the rest of the machine (PostgreSQL, when it runs here, and the kernel's threads).
//!
//! Throughput on a shared machine drifts by a third within minutes, so two builds compared by their
//! records per second need many alternating runs. CPU time per record drifts less (it still follows
//! the machine's speed), and it says which of the three to look at: the load generator, the service
//! and PostgreSQL share the cores, so the machine's rate is its cores divided by what one record costs
//! them all. Read from Linux's `/proc` (`/proc/stat` for the machine, `/proc/<pid>/stat` for a
//! process); elsewhere there is no line.

/// Linux reports CPU time in `/proc` in units of `USER_HZ`, which is 100 on every architecture it
/// exposes to user space (`sysconf(_SC_CLK_TCK)`).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time used so far, in ticks: by the whole machine (busy and idle), by the service's process and
/// by this one.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSample {
    busy: u64,
    idle: u64,
    service: u64,
    own: u64,
}

impl CpuSample {
    /// A sample now, with `service` the pid of the service's process; `None` where `/proc` is not Linux's.
    pub fn take(service: Option<u32>) -> Option<CpuSample> {
        let (busy, idle) = machine(&std::fs::read_to_string("/proc/stat").ok()?)?;
        let service = service.and_then(|pid| process(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?))?;
        let own = process(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
        Some(CpuSample { busy, idle, service, own })
    }

    /// What was spent between `before` and `self`, to be added up over the turns of a phase (then
    /// [`CpuSample::since`] the default sample).
    pub fn spent_since(&self, before: &CpuSample) -> CpuSample {
        CpuSample {
            busy: self.busy.saturating_sub(before.busy),
            idle: self.idle.saturating_sub(before.idle),
            service: self.service.saturating_sub(before.service),
            own: self.own.saturating_sub(before.own),
        }
    }

    pub fn plus(self, spent: CpuSample) -> CpuSample {
        CpuSample {
            busy: self.busy + spent.busy,
            idle: self.idle + spent.idle,
            service: self.service + spent.service,
            own: self.own + spent.own,
        }
    }

    /// One line on the CPU the machine spent per `unit` (record, request) between `before` and `self`,
    /// `count` of them.
    pub fn since(&self, before: &CpuSample, phase: &str, count: usize, unit: &str) -> String {
        let per_unit = |ticks: u64| ticks as f64 / TICKS_PER_SECOND * 1e6 / count.max(1) as f64;
        let busy = self.busy.saturating_sub(before.busy);
        let idle = self.idle.saturating_sub(before.idle);
        let service = self.service.saturating_sub(before.service);
        let own = self.own.saturating_sub(before.own);
        let rest = busy.saturating_sub(service + own);
        let idle_share = 100.0 * idle as f64 / (busy + idle).max(1) as f64;
        format!(
            "{phase}: {:.0} µs of CPU per {unit} in all (service {:.0}, load generator {:.0}, PostgreSQL and the \
             rest of the machine {:.0}); the cores were idle {idle_share:.0} % of the time",
            per_unit(busy),
            per_unit(service),
            per_unit(own),
            per_unit(rest),
        )
    }
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

    #[test]
    fn reads_the_machine_and_a_process() {
        let stat = "cpu  100 5 50 800 20 3 2 7 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n";
        assert_eq!(machine(stat), Some((160, 820)));
        let proc = "1234 (tokio rt (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 40 0 0 20 0 9 0 100 0 0";
        assert_eq!(process(proc), Some(290));
    }

    #[test]
    fn splits_a_phase_per_unit() {
        let before = CpuSample { busy: 1000, idle: 500, service: 200, own: 100 };
        // 100 records: 300 busy ticks (3 s) of which service 1 s, own 0.5 s; 100 idle ticks.
        let after = CpuSample { busy: 1300, idle: 600, service: 300, own: 150 };
        let line = after.since(&before, "p", 100, "record");
        assert!(
            line.starts_with("p: 30000 µs of CPU per record in all (service 10000, load generator 5000, PostgreSQL and the rest of the machine 15000); the cores were idle 25 %"),
            "{line}"
        );
    }

    #[test]
    fn turns_add_up_to_what_one_span_would_say() {
        let at = |busy, idle, service, own| CpuSample { busy, idle, service, own };
        // Two turns with a pause between them that must not count.
        let turns = CpuSample::default()
            .plus(at(1100, 550, 240, 120).spent_since(&at(1000, 500, 200, 100)))
            .plus(at(1500, 900, 300, 160).spent_since(&at(1300, 850, 240, 130)));
        assert_eq!(
            turns.since(&CpuSample::default(), "p", 100, "record"),
            at(300, 100, 100, 50).since(&CpuSample::default(), "p", 100, "record")
        );
    }

    #[test]
    fn samples_this_machine() {
        if cfg!(target_os = "linux") {
            let s = CpuSample::take(Some(std::process::id())).expect("a sample on Linux");
            assert!(s.busy > 0 && s.idle > 0, "{s:?}");
            // The service here is this process, read twice a few microseconds apart.
            assert!(s.service.abs_diff(s.own) <= 2, "{s:?}");
        }
    }
}
