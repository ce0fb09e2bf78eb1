//! `cargo bench --bench growth` (part of `make bench`): how the cost of a review grows with
//! the work, against a real slapd and the release daemon, on 127.0.0.1 only.
//!
//! 1. cache hits with 1k, 100k and 1M cached answers (throughput, p99, RSS per entry), and
//!    LRU churn when the working set is 1.25x the capacity;
//! 2. cache misses with 10 and 10,000 distinct users;
//! 3. reviews of users in 1, 100 and 5,000 groups (directory round trips and cache hits);
//! 4. 200 concurrent first reviews of one token (single flight).
//!
//! The directory: 1M users loaded with `slapadd` (plaintext `userPassword`, the cheapest
//! check slapd has, so that the fill measures the daemon and not a hash), four users in
//! 1, 100, 1,000 and 5,000 groups, over plain `ldap://` (the fill is CPU-bound on two cores; TLS
//! to slapd would only make it slower). The 1M answers are put in the cache the only way
//! there is, one review each, 64 at a time over 4 HTTP/2 connections.
//!
//! Each curve is printed with its target, drawn as a PNG into docs/bench/ from the run's
//! own numbers, and written to `target/bench/growth.json`. `KLW_BENCH_QUICK=1`: a short
//! smoke run (100k users at most), not for quoting; `KLW_BENCH_ONLY=hits,churn,misses,
//! groups,flight`: some sections only.
#![allow(clippy::disallowed_methods)] // a real daemon and real LDAP servers run on the real clock

// The integration tests' harness, whole: this bench uses a part of it.
#[allow(dead_code, unused_imports)]
#[path = "../../tests/it/support/mod.rs"]
mod support;

#[allow(dead_code)]
#[path = "../common/mod.rs"]
mod common;

mod flight;
mod groups;
mod hits;
mod load;
mod misses;
mod plot;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{verdict, write_json, BenchResult};
use support::{Daemon, Slapd, SlapdConf};

pub const PASSWORD: &str = "bench-password";
const PEOPLE: &str = "ou=people,dc=example,dc=org";
const GROUPS: &str = "ou=groups,dc=example,dc=org";
/// The group counts of section 3; a user `grp{N}` is in the first N groups.
pub const GROUP_COUNTS: [usize; 4] = [1, 100, 1_000, 5_000];

pub struct Plan {
    pub quick: bool,
    /// Cached answers at each point of the hit curve; the last is the number of LDAP users.
    pub cached: Vec<usize>,
    pub run: Duration,
    pub rounds: usize,
    /// Requests in flight in the closed loops (HTTP/1.1, one connection each).
    pub in_flight: usize,
    pub fill_concurrency: usize,
    pub fill_budget: Duration,
}

impl Plan {
    fn new() -> Plan {
        let quick = common::quick();
        Plan {
            quick,
            cached: if quick {
                vec![1_000, 10_000, 100_000]
            } else {
                vec![1_000, 100_000, 1_000_000]
            },
            run: Duration::from_secs(if quick { 1 } else { 3 }),
            rounds: if quick { 1 } else { 3 },
            in_flight: 16,
            fill_concurrency: 64,
            fill_budget: Duration::from_secs(1200),
        }
    }

    pub fn users(&self) -> usize {
        self.cached.last().copied().unwrap_or(0)
    }
}

/// The LDAP users `user0..` (support's many_users_ldif), and `grp1` .. `grp5000`,
/// each in the first N of 5,000 groups.
fn directory_ldif(users: usize) -> String {
    let mut s = support::many_users_ldif(users, PASSWORD);
    for n in GROUP_COUNTS {
        s.push_str(&format!(
            "dn: uid=grp{n},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: grp{n}\ncn: grp{n}\nsn: {n}\nuserPassword: {PASSWORD}\n\n"
        ));
    }
    let most = GROUP_COUNTS.iter().copied().max().unwrap_or(0);
    for g in 0..most {
        s.push_str(&format!(
            "dn: cn=g{g},{GROUPS}\nobjectClass: groupOfNames\ncn: g{g}\n"
        ));
        for n in GROUP_COUNTS.iter().filter(|&&n| g < n) {
            s.push_str(&format!("member: uid=grp{n},{PEOPLE}\n"));
        }
        s.push('\n');
    }
    s
}

/// The release daemon on `slapd` with `cache` lines, at the production log level.
pub fn daemon(slapd: &Slapd, cache: &str) -> Daemon {
    let built = support::bin();
    assert!(
        built.ends_with("release/kube-ldap-webhook"),
        "benchmark the release binary (cargo bench), not {built}"
    );
    let d = Daemon::builder()
        .url(slapd.url())
        .section("cache", cache)
        .log_level("info")
        .start();
    d.wait_for_ready();
    d
}

/// What the sections share.
pub struct Ctx {
    pub plan: Plan,
    pub rt: tokio::runtime::Runtime,
    pub slapd: Slapd,
}

/// The printed lines and the targets of a run.
#[derive(Default)]
pub struct Report {
    pub json: serde_json::Map<String, Value>,
    targets: Vec<(String, bool)>,
}

impl Report {
    pub fn line(&mut self, s: String) {
        println!("{s}");
    }

    pub fn target(&mut self, what: &str, value: String, target: &str, met: bool) {
        println!("   => {what}: {value}   target {target}   {}", verdict(met));
        self.targets
            .push((format!("{what}: {value} (target {target})"), met));
    }
}

type Section = fn(&Ctx, &mut Report) -> BenchResult;

fn main() -> BenchResult {
    // The daemon as it ships: no audit stream.
    support::without_audit();
    kube_ldap_webhook::install_default_provider();
    let plan = Plan::new();
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let t0 = Instant::now();
    // 1M entries take about 750 MB of LMDB: more than the fixture's map size.
    let conf = SlapdConf {
        global: String::new(),
        database: "maxsize 4294967296\n".into(),
    };
    let slapd = Slapd::start_configured(&conf, &directory_ldif(plan.users()));
    println!(
        "growth curves{}: {} LDAP users and 5,000 groups loaded with slapadd in {:.0} s",
        if plan.quick {
            " (QUICK: smoke run, not for quoting)"
        } else {
            ""
        },
        plan.users(),
        t0.elapsed().as_secs_f64()
    );
    let cx = Ctx { plan, rt, slapd };
    let mut r = Report::default();
    let sections: [(&str, Section); 5] = [
        ("hits", hits::run),
        ("churn", hits::churn),
        ("misses", misses::run),
        ("groups", groups::run),
        ("flight", flight::run),
    ];
    for (name, section) in sections {
        if common::runs(name) {
            section(&cx, &mut r)?;
        }
    }
    let met = r.targets.iter().filter(|(_, m)| *m).count();
    println!(
        "\ntargets met: {met}/{}   (total {:.0}s)",
        r.targets.len(),
        started.elapsed().as_secs_f64()
    );
    let targets: Vec<Value> = r
        .targets
        .iter()
        .map(|(t, m)| json!({"target": t, "met": m}))
        .collect();
    r.json.insert("targets".into(), Value::Array(targets));
    r.json.insert("quick".into(), json!(cx.plan.quick));
    // A run of some sections leaves the whole run's figures alone.
    let name = if std::env::var("KLW_BENCH_ONLY").is_ok_and(|v| !v.is_empty()) {
        "growth-partial"
    } else {
        "growth"
    };
    println!(
        "wrote {}",
        write_json(name, &Value::Object(r.json))?.display()
    );
    Ok(())
}
