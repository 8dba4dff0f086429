//! The machine's CPU time over a run, from Linux's `/proc/stat`: how much of it was idle, waiting
//! for the disk, or *stolen* (a virtual machine's CPU given to another guest by the host). On the
//! shared development machine the steal went from nothing to over 40 % within minutes, and with it
//! every latency figure; a run says how much it had.

/// The machine's cumulative CPU times (all cores), in the kernel's ticks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuTimes {
    idle: u64,
    iowait: u64,
    steal: u64,
    total: u64,
}

impl CpuTimes {
    /// Now, or `None` where there is no `/proc/stat` (not Linux).
    pub(crate) fn now() -> Option<Self> {
        parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// The shares of the time since `earlier`, in percent.
    pub(crate) fn since(&self, earlier: &Self) -> serde_json::Value {
        let total = self.total.saturating_sub(earlier.total).max(1) as f64;
        let share =
            |now: u64, then: u64| (now.saturating_sub(then) as f64 * 1000.0 / total).round() / 10.0;
        serde_json::json!({
            "idle_percent": share(self.idle, earlier.idle),
            "iowait_percent": share(self.iowait, earlier.iowait),
            "steal_percent": share(self.steal, earlier.steal),
        })
    }
}

/// The shares of the time since `before` (from [`CpuTimes::now`]), or why there are none.
pub(crate) fn shares_since(before: Option<CpuTimes>) -> serde_json::Value {
    match (before, CpuTimes::now()) {
        (Some(before), Some(now)) => now.since(&before),
        _ => serde_json::json!({ "not_run": "no /proc/stat on this machine" }),
    }
}

/// The first line of `/proc/stat`: `cpu user nice system idle iowait irq softirq steal guest
/// guest_nice` (guest time is already counted in user and nice).
fn parse(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let field = |i: usize| fields.get(i).copied().unwrap_or(0);
    Some(CpuTimes {
        idle: field(3),
        iowait: field(4),
        steal: field(7),
        total: (0..8).map(field).sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_come_from_the_first_cpu_line_and_leave_guest_time_out() {
        let before = parse("cpu  100 0 100 700 50 0 0 50 999 0\ncpu0 1 2 3\n").unwrap();
        let after = parse("cpu  200 0 200 1300 100 0 0 200 1999 0\n").unwrap();
        let shares = after.since(&before);
        // 1,000 ticks in all: 600 idle, 50 waiting for the disk, 150 stolen.
        assert_eq!(shares["idle_percent"], 60.0);
        assert_eq!(shares["iowait_percent"], 5.0);
        assert_eq!(shares["steal_percent"], 15.0);
    }

    #[test]
    fn a_line_that_is_not_numbers_is_no_reading() {
        assert!(parse("cpu  1 2 x 4\n").is_none());
        assert!(parse("intr 1 2 3\n").is_none());
    }
}
