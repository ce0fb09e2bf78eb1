//! Section 4: peak RSS of a fresh daemon before and after caching `plan.users` accepted
//! answers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hyper::Uri;
use serde_json::{json, Value};

use crate::load::{accepted, client, cpu_seconds, post, status_kib, uri, user_body};
use crate::report::Report;
use crate::support::{Daemon, Https};
use crate::{daemon, Ctx};

pub fn run(cx: &Ctx, r: &mut Report) {
    let plan = &cx.plan;
    r.line(String::new());
    r.line(format!(
        "4. memory: a fresh daemon (cache.capacity = {0}) filled with {0} accepted answers ({1} concurrent misses)",
        plan.users, plan.fill_concurrency
    ));
    let dm = daemon(&cx.slapd, plan.users, plan.max_failures, "info");
    // The "empty" daemon has already served this many misses at the fill's concurrency, so
    // that connections, buffers and allocator arenas exist before the first reading.
    let warm = 1_000.min(plan.users / 10);
    let mut fill = cx.rt.block_on(measure(cx, &dm, warm));
    let n = |k: &str| fill[k].as_f64().unwrap_or(0.0);
    let added = n("entries_after") - n("entries_before");
    let per_entry = (n("vm_hwm_kib_after") - n("vm_hwm_kib_before")) * 1024.0 / added.max(1.0);
    let per_entry_rss = (n("vm_rss_kib_after") - n("vm_rss_kib_before")) * 1024.0 / added.max(1.0);
    r.line(format!(
        "   after {warm} misses: VmHWM {:.1} MiB, {} entries; after the fill: VmHWM {:.1} MiB (VmRSS {:.1} MiB), {} entries",
        n("vm_hwm_kib_before") / 1024.0,
        n("entries_before"),
        n("vm_hwm_kib_after") / 1024.0,
        n("vm_rss_kib_after") / 1024.0,
        n("entries_after")
    ));
    r.line(format!(
        "   filled at {:.0} misses/s ({:.0} us daemon CPU per miss); {} failed; {} new LDAP connections for {} misses",
        n("fill_req_per_s"),
        n("daemon_cpu_us_per_miss"),
        n("fill_failed"),
        n("new_ldap_connections"),
        n("fill_reviews")
    ));
    r.target(
        "peak RSS per cached answer",
        format!("{per_entry:.0} bytes (VmRSS: {per_entry_rss:.0})"),
        "< 1024 bytes",
        per_entry < 1024.0 && n("entries_after") >= plan.users as f64 * 0.99,
    );
    fill["bytes_per_entry_hwm"] = json!(per_entry);
    fill["bytes_per_entry_rss"] = json!(per_entry_rss);
    r.json.insert("memory".into(), fill);
}

/// Fills `dm` with `warm` answers, takes the first reading, fills it with the rest, and
/// takes the second: the readings, as JSON.
async fn measure(cx: &Ctx, dm: &Daemon, warm: usize) -> Value {
    let plan = &cx.plan;
    let pid = dm.pid();
    let clients: Vec<Https> = (0..4).map(|_| client(&dm.pki, true)).collect();
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + plan.fill_budget;
    let fill_to = |upto| fill(cx, &clients, uri(dm), &next, upto, deadline);
    fill_to(warm).await;
    next.store(warm, Ordering::Relaxed);
    let entries0 = dm.metric("kube_ldap_webhook_cache_entries", &[]);
    let (hwm0, rss0, cpu0) = (
        status_kib(pid, "VmHWM:"),
        status_kib(pid, "VmRSS:"),
        cpu_seconds(pid),
    );
    let mark = cx.slapd.log_mark();
    let t0 = Instant::now();
    let failed = fill_to(plan.users).await;
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu0;
    let filled = next.load(Ordering::Relaxed).min(plan.users) - warm;
    let entries1 = dm.metric("kube_ldap_webhook_cache_entries", &[]);
    let (hwm1, rss1) = (status_kib(pid, "VmHWM:"), status_kib(pid, "VmRSS:"));
    let conns = cx.slapd.stats_since(mark).accepts();
    json!({"entries_before": entries0, "entries_after": entries1, "vm_hwm_kib_before": hwm0, "vm_hwm_kib_after": hwm1,
           "vm_rss_kib_before": rss0, "vm_rss_kib_after": rss1, "fill_seconds": secs, "fill_reviews": filled,
           "fill_failed": failed, "fill_req_per_s": filled as f64 / secs,
           "daemon_cpu_us_per_miss": cpu * 1e6 / filled.max(1) as f64, "new_ldap_connections": conns})
}

/// Reviews users `next..upto` (each once, `plan.fill_concurrency` at a time, until
/// `deadline`): how many were not accepted.
async fn fill(
    cx: &Ctx,
    clients: &[Https],
    url: Uri,
    next: &Arc<AtomicUsize>,
    upto: usize,
    deadline: Instant,
) -> usize {
    let tasks: Vec<_> = (0..cx.plan.fill_concurrency)
        .map(|w| {
            let (c, url, next) = (
                clients[w % clients.len()].clone(),
                url.clone(),
                next.clone(),
            );
            tokio::spawn(async move {
                let mut failed = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= upto || Instant::now() > deadline {
                        return failed;
                    }
                    match post(&c, &url, user_body(i)).await {
                        Ok((200, b)) if accepted(&b) => {}
                        _ => failed += 1,
                    }
                }
            })
        })
        .collect();
    let mut failed = 0;
    for t in tasks {
        failed += t.await.unwrap();
    }
    failed
}
