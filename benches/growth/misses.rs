//! Section 2: cache misses with 10 and 10,000 distinct users, on a daemon whose cache
//! never answers (`cache.ttl = "0s"`), so that every review is a directory round trip.

use std::sync::Arc;

use serde_json::json;

use crate::common::BenchResult;
use crate::load::{clients, closed_loop, uri, user_body, Pick, Run};
use crate::plot::{self, Series};
use crate::support::Daemon;
use crate::{daemon, Ctx, Report};

/// Requests in flight: each of them walks its own users, so that no two in flight are for
/// the same user (that would be single flight's work, section 4).
const IN_FLIGHT: usize = 5;
const DISTINCT: [usize; 2] = [10, 10_000];

/// A daemon that asks the directory on every review.
pub fn uncached(cx: &Ctx) -> Daemon {
    daemon(
        &cx.slapd,
        "ttl = \"0s\"\nstale_ttl = \"0s\"\nmax_failures = 3",
    )
}

pub fn run(cx: &Ctx, r: &mut Report) -> BenchResult {
    let plan = &cx.plan;
    r.line(String::new());
    r.line(format!(
        "2. cache misses with {} distinct users (cache.ttl = 0: every review asks slapd; {IN_FLIGHT} in flight, closed loop, {} x {:.0}s rounds interleaved)",
        DISTINCT.map(|n| n.to_string()).join(" and "),
        plan.rounds,
        plan.run.as_secs_f64()
    ));
    let d = uncached(cx);
    let (url, cs) = (uri(&d)?, clients(&d, IN_FLIGHT, false));
    let bodies: Vec<Arc<Vec<bytes::Bytes>>> = DISTINCT
        .iter()
        .map(|&n| Arc::new((0..n).map(user_body).collect()))
        .collect();
    let mut runs: Vec<Vec<Run>> = DISTINCT.iter().map(|_| Vec::new()).collect();
    cx.rt.block_on(async {
        for round in 0..plan.rounds {
            for k in 0..DISTINCT.len() {
                let i = (round + k) % DISTINCT.len();
                let (b, n) = (bodies[i].clone(), DISTINCT[i]);
                let pick: Pick = Arc::new(move |w, k| b[(w + IN_FLIGHT * k) % n].clone());
                runs[i].push(closed_loop(&cs, IN_FLIGHT, &url, pick, d.pid(), plan.run).await);
            }
        }
    });
    let merged: Vec<Run> = runs.into_iter().map(Run::merge).collect();
    r.line(format!(
        "   {:>10} {:>10} {:>9} {:>9} {:>12} {:>7}",
        "users", "req/s", "p50 us", "p99 us", "CPU us/req", "errors"
    ));
    for (n, m) in DISTINCT.iter().zip(&merged) {
        r.line(format!(
            "   {n:>10} {:>10.0} {:>9.0} {:>9.0} {:>12.1} {:>7}",
            m.rps(),
            m.lat.p50(),
            m.lat.p99(),
            m.cpu_us(),
            m.errors
        ));
    }
    let (few, many) = (&merged[0], &merged[1]);
    let ratio = many.rps() / few.rps();
    r.target(
        "miss throughput with 10,000 / with 10 distinct users",
        format!(
            "{ratio:.2} (p99 {:.2}x, daemon CPU per miss {:.2}x)",
            many.lat.p99() / few.lat.p99(),
            many.cpu_us() / few.cpu_us()
        ),
        ">= 0.80 (a miss costs the same whoever it is for: flat)",
        ratio >= 0.80 && few.errors + many.errors == 0,
    );
    let xy = |f: &dyn Fn(&Run) -> f64| {
        DISTINCT
            .iter()
            .zip(&merged)
            .map(|(&n, m)| (n as f64, f(m)))
            .collect::<Vec<_>>()
    };
    plot::draw(
        "growth-misses",
        "Cache misses by distinct users (every review asks slapd)",
        "distinct users",
        true,
        &[
            ("misses/s", vec![Series::new("req/s", xy(&|m| m.rps()))]),
            (
                "latency (us)",
                vec![
                    Series::new("p50", xy(&|m| m.lat.p50())),
                    Series::new("p99", xy(&|m| m.lat.p99())),
                ],
            ),
        ],
    )?;
    r.json.insert("misses".into(), json!({"in_flight": IN_FLIGHT, "points": DISTINCT.iter().zip(&merged).map(|(n, m)| json!({
        "distinct_users": n, "req_per_s": m.rps(), "latency": m.lat.to_json(), "server_cpu_us_per_req": m.cpu_us(), "errors": m.errors})).collect::<Vec<_>>(),
        "throughput_ratio": ratio}));
    Ok(())
}
