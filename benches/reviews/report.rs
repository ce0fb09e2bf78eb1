//! The table the bench prints, its targets, and `target/bench/reviews.json`.

use std::time::Instant;

use serde_json::{json, Value};

use crate::load::kib;
use crate::support;
use crate::Plan;

pub struct Report {
    lines: Vec<String>,
    verdicts: Vec<(String, bool)>,
    pub json: serde_json::Map<String, Value>,
}

impl Report {
    /// A report headed by the machine and the plan.
    pub fn new(plan: &Plan) -> Report {
        let m = machine();
        let mut r = Report {
            lines: Vec::new(),
            verdicts: Vec::new(),
            json: serde_json::Map::new(),
        };
        r.line(format!(
            "kube-ldap-webhook benchmarks{}: {} CPUs ({}), {} GiB, Linux {}; {} LDAP users",
            if plan.quick {
                " (QUICK: smoke run, not for quoting)"
            } else {
                ""
            },
            m["nproc"],
            m["cpu"].as_str().unwrap_or(""),
            m["mem_gib"],
            m["kernel"].as_str().unwrap_or(""),
            plan.users
        ));
        r.json.insert("machine".into(), m);
        r.json.insert("quick".into(), json!(plan.quick));
        r.json.insert("users".into(), json!(plan.users));
        r
    }

    pub fn line(&mut self, s: String) {
        println!("{s}");
        self.lines.push(s);
    }

    /// A target line: `what` measured `value` against `target`, met or not.
    pub fn target(&mut self, what: &str, value: String, target: &str, met: bool) {
        let verdict = if met { "MET" } else { "MISSED" };
        self.line(format!(
            "   => {what}: {value}   target {target}   {verdict}"
        ));
        self.verdicts
            .push((format!("{what}: {value} (target {target})"), met));
    }

    /// The count of targets met, and the JSON written to `target/bench/reviews.json`.
    pub fn finish(mut self, started: Instant) {
        self.line(String::new());
        let met = self.verdicts.iter().filter(|(_, m)| *m).count();
        self.line(format!(
            "targets met: {met}/{}   (total {:.0}s)",
            self.verdicts.len(),
            started.elapsed().as_secs_f64()
        ));
        let targets = self
            .verdicts
            .iter()
            .map(|(w, m)| json!({"target": w, "met": m}))
            .collect();
        self.json.insert("targets".into(), Value::Array(targets));
        self.json.insert("table".into(), json!(self.lines));
        let out = support::repo().join("target/bench");
        std::fs::create_dir_all(&out).unwrap();
        let path = out.join("reviews.json");
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(&Value::Object(self.json)).unwrap(),
        )
        .unwrap();
        println!("wrote {}", path.display());
    }
}

pub fn f0(x: f64) -> String {
    format!("{x:.0}")
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| kib(l.strip_prefix("MemTotal:")?))
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": model,
        "mem_gib": (mem_kib as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "kernel": kernel.trim(),
    })
}
