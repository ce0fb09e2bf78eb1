//! Section 3: reviews of users in 1, 100 and 5,000 groups: directory round trips one at a
//! time (the group search pages through them), and cache hits (the answer carries them).

use std::sync::Arc;

use bytes::Bytes;

use serde_json::json;

use crate::common::{BenchResult, Lat};
use crate::load::{body, clients, closed_loop, review, uri, Pick, Run};
use crate::misses::uncached;
use crate::plot::{self, Series};
use crate::{daemon, Ctx, Report, GROUP_COUNTS};

/// Round trips timed per group count, one at a time, the counts taking turns.
const SAMPLES: usize = 100;

/// `SAMPLES` directory round trips of each of `bodies`, one at a time, taking turns.
fn round_trips(cx: &Ctx, bodies: &[Bytes]) -> BenchResult<Vec<Lat>> {
    let d = uncached(cx);
    let (url, c) = (uri(&d)?, clients(&d, 1, false));
    let mut misses: Vec<Lat> = bodies.iter().map(|_| Lat::default()).collect();
    cx.rt.block_on(async {
        for k in 0..SAMPLES + 3 {
            for j in 0..bodies.len() {
                let i = (k + j) % bodies.len();
                let took = review(&c[0], &url, bodies[i].clone()).await?;
                // The first rounds warm the connections up.
                if k >= 3 {
                    misses[i].push(took);
                }
            }
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(misses)
}

/// Closed loops of cache hits of each of `bodies`, and the size of each answer.
fn cached_hits(cx: &Ctx, bodies: &[Bytes]) -> BenchResult<(Vec<Run>, Vec<usize>)> {
    let plan = &cx.plan;
    let cached = daemon(&cx.slapd, "capacity = 100\nttl = \"3h\"");
    let (url, cs) = (uri(&cached)?, clients(&cached, plan.in_flight, false));
    let (mut hits, mut reply_bytes) = (Vec::new(), Vec::new());
    for b in bodies {
        let (_, reply) = cx.rt.block_on(cs[0].send("POST", url.clone(), b.clone()))?;
        reply_bytes.push(reply.len());
        let b = b.clone();
        let pick: Pick = Arc::new(move |_, _| b.clone());
        let runs = cx.rt.block_on(async {
            let mut v = Vec::new();
            for _ in 0..plan.rounds {
                let (p, pid) = (pick.clone(), cached.pid());
                v.push(closed_loop(&cs, plan.in_flight, &url, p, pid, plan.run).await);
            }
            v
        });
        hits.push(Run::merge(runs));
    }
    Ok((hits, reply_bytes))
}

pub fn run(cx: &Ctx, r: &mut Report) -> BenchResult {
    r.line(String::new());
    r.line(format!(
        "3. reviews of users in {} groups: {SAMPLES} directory round trips each, one at a time (cache.ttl = 0); cache hits in a closed loop",
        GROUP_COUNTS.map(|n| n.to_string()).join(", ")
    ));
    let bodies: Vec<_> = GROUP_COUNTS
        .iter()
        .map(|n| body(&format!("grp{n}")))
        .collect();
    let misses = round_trips(cx, &bodies)?;
    let (hits, reply_bytes) = cached_hits(cx, &bodies)?;
    r.line(format!(
        "   {:>7} {:>12} {:>12} {:>12} {:>10} {:>12} {:>12}",
        "groups", "miss p50 us", "miss p99 us", "reply bytes", "hits/s", "hit p99 us", "hit CPU us"
    ));
    for (i, n) in GROUP_COUNTS.iter().enumerate() {
        r.line(format!(
            "   {n:>7} {:>12.0} {:>12.0} {:>12} {:>10.0} {:>12.0} {:>12.1}",
            misses[i].p50(),
            misses[i].p99(),
            reply_bytes[i],
            hits[i].rps(),
            hits[i].lat.p99(),
            hits[i].cpu_us()
        ));
    }
    // Linear or better: the cost each group adds from 1,000 to 5,000 groups is no more
    // than from 100 to 1,000 (plus 50% for the noise of a shared machine).
    let step = |v: &dyn Fn(usize) -> f64, i: usize| {
        (v(i) - v(i - 1)) / (GROUP_COUNTS[i] - GROUP_COUNTS[i - 1]) as f64
    };
    let miss_p50 = |i: usize| misses[i].p50();
    let last = GROUP_COUNTS.len() - 1;
    let shape = step(&miss_p50, last) / step(&miss_p50, last - 1);
    r.target(
        "round trip: cost per group from 1,000 to 5,000 groups / from 100 to 1,000 (p50)",
        format!(
            "{shape:.2} ({:.2} us per group, then {:.2} us; 5,000 groups: {:.1} ms)",
            step(&miss_p50, last - 1),
            step(&miss_p50, last),
            misses[last].p50() / 1000.0
        ),
        "<= 1.5 (no worse than linear)",
        shape <= 1.5,
    );
    let hit_cpu = |i: usize| hits[i].cpu_us();
    r.line(format!(
        "   cache hit: daemon CPU per group {:.4} us (100 to 1,000), {:.4} us (1,000 to 5,000)",
        step(&hit_cpu, last - 1),
        step(&hit_cpu, last)
    ));
    let xy = |f: &dyn Fn(usize) -> f64| {
        GROUP_COUNTS
            .iter()
            .enumerate()
            .map(|(i, &n)| (n as f64, f(i)))
            .collect::<Vec<_>>()
    };
    plot::draw(
        "growth-groups",
        "Reviews by the user's group count",
        "groups of the user",
        true,
        &[
            (
                "round trip latency (ms)",
                vec![
                    Series::new("p50", xy(&|i| misses[i].p50() / 1000.0)),
                    Series::new("p99", xy(&|i| misses[i].p99() / 1000.0)),
                ],
            ),
            (
                "cache hits/s",
                vec![Series::new("req/s", xy(&|i| hits[i].rps()))],
            ),
            (
                "cache hit, daemon CPU (us/req)",
                vec![Series::new("CPU", xy(&|i| hits[i].cpu_us()))],
            ),
        ],
    )?;
    r.json.insert("groups".into(), json!({"points": GROUP_COUNTS.iter().enumerate().map(|(i, n)| json!({
        "groups": n, "round_trip": misses[i].to_json(), "reply_bytes": reply_bytes[i], "hits_per_s": hits[i].rps(),
        "hit_latency": hits[i].lat.to_json(), "hit_cpu_us": hits[i].cpu_us()})).collect::<Vec<_>>(), "marginal_ratio": shape}));
    Ok(())
}
