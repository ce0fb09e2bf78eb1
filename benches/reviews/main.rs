//! `make bench`: kube-ldap-webhook against the limits of its own stack, on loopback.
//!
//! One run starts a real slapd (N users, each in two groups), the release daemon binary, a
//! baseline HTTPS server on the daemon's own stack, and a load generator (hyper-rustls with a
//! client certificate) in this process, all from the tests' support (tests/it/support). Every
//! figure is a ratio against a baseline measured in the same run, so the machine's speed
//! cancels out:
//!
//! 1. cache hits vs nginx answering a fixed TokenReview on the same certificates, and vs a
//!    server on the same hyper + hyper-util + tokio-rustls stack and the same TLS config
//!    answering the same bytes (HTTP/1.1 and HTTP/2, keep-alive mTLS), at log level info
//!    and warn; then the allocations per hit, counted in the daemon's code (allocs.rs);
//! 2. cache misses vs the minimum LDAP work done with ldap3 on warm connections;
//! 3. hits with 5% misses mixed in vs hits alone, at the same fixed request rate;
//! 4. peak RSS with N cached answers vs the empty daemon;
//! 5. LDAP binds for 1,000 concurrent reviews of one token, and for a wrong-password burst.
//!
//! Section 4 runs last, on a daemon of its own. Prints a table and writes
//! `target/bench/reviews.json` (see BENCHMARKS.md for how to read them). Knobs:
//! `KLW_BENCH_QUICK=1`: a short smoke run (20,000 users, 1 s runs), not for quoting;
//! `KLW_BENCH_ONLY=hits,misses,mixed,burst,memory`: some sections only;
//! `KLW_BENCH_DAEMON_WRAPPER="valgrind --tool=callgrind"`: run the daemon under a profiler.
//! Every loop is bounded in count and in time; all traffic goes to 127.0.0.1.
#![allow(clippy::disallowed_methods)] // a real daemon and real LDAP servers run on the real clock

// The integration tests' harness, whole: this bench uses a part of it.
#[allow(dead_code, unused_imports)]
#[path = "../../tests/it/support/mod.rs"]
mod support;

mod allocs;
mod baseline;
mod burst;
mod direct;
mod hits;
mod load;
mod memory;
mod misses;
mod mixed;
mod nginx;
mod report;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use baseline::Baseline;
use load::{accepted, client, uri, user_body};
use report::Report;
use support::{Daemon, DaemonBuilder, Slapd};

/// Counts allocations in the counting daemon's role only (see allocs.rs).
#[global_allocator]
static ALLOCATOR: allocs::Counting = allocs::Counting;

const PASSWORD: &str = "bench-password";
const PEOPLE: &str = "ou=people,dc=example,dc=org";
const GROUPS: &str = "ou=groups,dc=example,dc=org";

// ---------------------------------------------------------------------------------------
// What to run
// ---------------------------------------------------------------------------------------

struct Plan {
    quick: bool,
    /// LDAP users; also the number of answers cached in the memory test.
    users: usize,
    /// Cached tokens the hit tests cycle through.
    hit_tokens: usize,
    warmup: Duration,
    /// Per measured throughput run; each server and protocol runs `rounds` times, interleaved.
    run: Duration,
    rounds: usize,
    h1_connections: usize,
    h2_connections: usize,
    h2_streams: usize,
    /// Cache misses timed one at a time, each paired with the same work done directly.
    miss_samples: usize,
    mixed_rate: u32,
    mixed_run: Duration,
    miss_percent: usize,
    coalesced: usize,
    wrong_passwords: usize,
    max_failures: u32,
    fill_concurrency: usize,
    fill_budget: Duration,
    /// `KLW_BENCH_ONLY=hits,misses,mixed,burst,memory`: a subset of the sections.
    only: Option<Vec<String>>,
}

impl Plan {
    fn new() -> Plan {
        let quick = std::env::var("KLW_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        Plan {
            quick,
            users: if quick { 20_000 } else { 100_000 },
            hit_tokens: 100,
            warmup: Duration::from_millis(if quick { 300 } else { 700 }),
            run: Duration::from_secs(if quick { 1 } else { 3 }),
            rounds: if quick { 1 } else { 3 },
            h1_connections: 16,
            h2_connections: 2,
            h2_streams: 8,
            miss_samples: if quick { 100 } else { 400 },
            mixed_rate: 2000,
            mixed_run: Duration::from_secs(if quick { 3 } else { 8 }),
            miss_percent: 5,
            coalesced: 1000,
            wrong_passwords: 50,
            max_failures: 3,
            fill_concurrency: 64,
            fill_budget: Duration::from_secs(150),
            only: std::env::var("KLW_BENCH_ONLY")
                .ok()
                .filter(|v| !v.is_empty())
                .map(|v| v.split(',').map(|s| s.trim().to_string()).collect()),
        }
    }

    fn runs(&self, section: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|s| s == section))
    }
}

// ---------------------------------------------------------------------------------------
// The directory and the daemon
// ---------------------------------------------------------------------------------------

/// Users per team group; each user is in one team and one project group.
const TEAM_SIZE: usize = 50;
const PROJECTS: usize = 2000;

fn user_dn(i: usize) -> String {
    format!("uid=user{i},{PEOPLE}")
}

/// `n` users (tests/it/support's many_users_ldif), each a member of one team and one project.
fn directory_ldif(n: usize) -> String {
    let mut s = support::many_users_ldif(n, PASSWORD);
    let group = |s: &mut String, name: &str, members: &mut dyn Iterator<Item = usize>| {
        s.push_str(&format!(
            "dn: cn={name},{GROUPS}\nobjectClass: groupOfNames\ncn: {name}\n"
        ));
        for i in members {
            s.push_str(&format!("member: {}\n", user_dn(i)));
        }
        s.push('\n');
    };
    for t in 0..n.div_ceil(TEAM_SIZE) {
        group(
            &mut s,
            &format!("team{t}"),
            &mut (t * TEAM_SIZE..((t + 1) * TEAM_SIZE).min(n)),
        );
    }
    for p in 0..PROJECTS.min(n) {
        group(
            &mut s,
            &format!("project{p}"),
            &mut (p..n).step_by(PROJECTS),
        );
    }
    s
}

/// The daemon's start with the tests' config, over ldaps to `slapd`; "info" is the
/// production log level.
fn daemon_builder(slapd: &Slapd, capacity: usize, max_failures: u32, level: &str) -> DaemonBuilder {
    Daemon::builder()
        .url(slapd.ldaps_url())
        .section("ldap", format!("ca_file = \"{}\"", slapd.ca_file.display()))
        .section(
            "cache",
            format!("capacity = {capacity}\nttl = \"30m\"\nmax_failures = {max_failures}"),
        )
        .log_level(level)
}

/// The release daemon binary (`daemon_builder`), ready to answer.
fn daemon(slapd: &Slapd, capacity: usize, max_failures: u32, level: &str) -> Daemon {
    let built = support::bin();
    assert!(
        built.ends_with("release/kube-ldap-webhook"),
        "benchmark the release binary (cargo bench), not {built}"
    );
    // KLW_BENCH_DAEMON_WRAPPER="valgrind --tool=callgrind ..." profiles the daemon under
    // the benchmark's load.
    let wrapper = std::env::var("KLW_BENCH_DAEMON_WRAPPER").unwrap_or_default();
    let d = daemon_builder(slapd, capacity, max_failures, level)
        .wrapper(&wrapper.split_whitespace().collect::<Vec<_>>())
        .start();
    d.wait_for_ready();
    d
}

/// Reviews every one of `bodies` through `d` once, so that their answers are cached; the
/// last answer.
async fn warm(d: &Daemon, bodies: &[Bytes]) -> Bytes {
    let c = client(&d.pki, false);
    let mut reply = Bytes::new();
    for b in bodies {
        let (status, body) = c.send("POST", uri(d), b.clone()).await.unwrap();
        assert!(
            status == 200 && accepted(&body),
            "warm-up review refused: {body:?}"
        );
        reply = body;
    }
    reply
}

// ---------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------

/// A section of the run: it measures, and adds its lines and targets to the report.
type Section = fn(&Ctx, &mut Report);

/// What every section shares.
struct Ctx {
    plan: Plan,
    rt: tokio::runtime::Runtime,
    slapd: Slapd,
    /// The daemon of sections 1, 2, 3 and 5 (section 4 starts its own).
    d: Daemon,
    /// Reviews of `plan.hit_tokens` users, answered once so that they are cached.
    hit_bodies: Arc<Vec<Bytes>>,
    /// The baseline server, answering with the daemon's answer to the last hit token, with
    /// the daemon's certificates.
    base: Baseline,
}

fn main() -> std::process::ExitCode {
    // The daemon as it ships: no audit stream.
    support::without_audit();
    if baseline::is_baseline() {
        baseline::main();
        return std::process::ExitCode::SUCCESS;
    }
    if allocs::is_counting_daemon() {
        return allocs::counting_daemon_main();
    }
    kube_ldap_webhook::install_default_provider();
    let plan = Plan::new();
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut r = Report::new(&plan);

    // The directory: N users in 2 groups each, over ldaps.
    let slapd = Slapd::start_with(&directory_ldif(plan.users));
    let d = daemon(&slapd, 10_000, plan.max_failures, "info");
    let hit_bodies: Arc<Vec<Bytes>> = Arc::new((0..plan.hit_tokens).map(user_body).collect());
    let hit_reply = rt.block_on(warm(&d, &hit_bodies));
    let base = Baseline::start(&d.pki, &hit_reply);
    let cx = Ctx {
        plan,
        rt,
        slapd,
        d,
        hit_bodies,
        base,
    };
    let sections: [(&str, Section); 5] = [
        ("hits", hits::run),
        ("misses", misses::run),
        ("mixed", mixed::run),
        ("burst", burst::run),
        ("memory", memory::run),
    ];
    for (name, section) in sections {
        if cx.plan.runs(name) {
            section(&cx, &mut r);
        }
    }
    r.finish(started);
    std::process::ExitCode::SUCCESS
}
