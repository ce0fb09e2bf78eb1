//! What the cost, growth and soak benches share: latency samples, readings of a process
//! from /proc, and the JSON file each bench leaves in target/bench/.

use std::error::Error;
use std::time::Duration;

use serde_json::{json, Value};

pub type BenchResult<T = ()> = Result<T, Box<dyn Error>>;

/// `KLW_BENCH_QUICK=1`: a short smoke run, not for quoting.
pub fn quick() -> bool {
    std::env::var("KLW_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Whether `KLW_BENCH_ONLY` (a comma-separated list of sections) leaves `section` in; all
/// are in without it.
pub fn runs(section: &str) -> bool {
    std::env::var("KLW_BENCH_ONLY")
        .ok()
        .filter(|v| !v.is_empty())
        .is_none_or(|v| v.split(',').any(|s| s.trim() == section))
}

/// Latency samples, in nanoseconds.
#[derive(Default, Clone)]
pub struct Lat(pub Vec<u64>);

impl Lat {
    pub fn push(&mut self, d: Duration) {
        self.0.push(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// The `p`th percentile in microseconds (nearest rank); NaN without samples.
    pub fn us(&self, p: f64) -> f64 {
        let mut v = self.0.clone();
        v.sort_unstable();
        let Some(last) = v.len().checked_sub(1) else {
            return f64::NAN;
        };
        let rank = ((p / 100.0) * last as f64).round() as usize;
        v[rank.min(last)] as f64 / 1000.0
    }

    pub fn p50(&self) -> f64 {
        self.us(50.0)
    }

    pub fn p99(&self) -> f64 {
        self.us(99.0)
    }

    pub fn to_json(&self) -> Value {
        json!({"n": self.0.len(), "p50_us": self.p50(), "p90_us": self.us(90.0),
               "p99_us": self.p99(), "max_us": self.us(100.0)})
    }
}

/// A `/proc/PID/status` field in KiB (`VmRSS:`, `VmHWM:`); 0 when unreadable.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Open file descriptors of `pid`.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Writes `value` to `target/bench/{name}.json`: the path.
pub fn write_json(name: &str, value: &Value) -> BenchResult<std::path::PathBuf> {
    let out = crate::support::repo().join("target/bench");
    std::fs::create_dir_all(&out)?;
    let path = out.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(value)?)?;
    Ok(path)
}

/// `MET` or `MISSED`.
pub fn verdict(met: bool) -> &'static str {
    if met {
        "MET"
    } else {
        "MISSED"
    }
}

/// CPU time of every thread of `pid` in seconds, to the nanosecond (the scheduler's own
/// account in /proc/PID/task/*/schedstat; /proc/PID/stat counts 10 ms ticks, too coarse
/// for a block of fast requests). Threads that have ended are not counted.
pub fn cpu_precise(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let ns: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    ns as f64 / 1e9
}
