//! Section 1: cache hits with 1k, 100k and 1M cached answers, and LRU churn when the
//! working set outgrows the capacity.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::common::{status_kib, BenchResult};
use crate::load::{clients, closed_loop, fill, uri, user_body, Pick, Run};
use crate::plot::{self, Series};
use crate::support::Daemon;
use crate::{daemon, Ctx, Report};

/// One point of a hit curve.
struct Point {
    x: f64,
    run: Run,
    rss_kib: f64,
    entries: f64,
    hit_fraction: f64,
}

impl Point {
    fn json(&self) -> Value {
        json!({"x": self.x, "req_per_s": self.run.rps(), "latency": self.run.lat.to_json(),
               "server_cpu_us_per_req": self.run.cpu_us(), "errors": self.run.errors,
               "vm_rss_kib": self.rss_kib, "cache_entries": self.entries, "hit_fraction": self.hit_fraction})
    }
}

fn events(d: &Daemon, event: &str) -> f64 {
    d.metric("kube_ldap_webhook_cache_events_total", &[("event", event)])
}

/// `plan.rounds` closed loops on `d` picking with `pick`: merged, with the fraction of
/// them the cache answered.
fn hits(cx: &Ctx, d: &Daemon, pick: Pick) -> BenchResult<(Run, f64)> {
    let plan = &cx.plan;
    let (url, cs) = (uri(d)?, clients(d, plan.in_flight, false));
    let (h0, m0) = (events(d, "hit"), events(d, "miss"));
    let runs = cx.rt.block_on(async {
        let mut runs = Vec::new();
        for _ in 0..plan.rounds {
            runs.push(
                closed_loop(&cs, plan.in_flight, &url, pick.clone(), d.pid(), plan.run).await,
            );
        }
        runs
    });
    let (h, m) = (events(d, "hit") - h0, events(d, "miss") - m0);
    Ok((Run::merge(runs), h / (h + m).max(1.0)))
}

/// The daemon filled to each of `plan.cached` answers in turn, and its hits measured at
/// each: the points of the curve, printed as they come.
fn curve(cx: &Ctx, r: &mut Report) -> BenchResult<Vec<Point>> {
    let plan = &cx.plan;
    let d = daemon(
        &cx.slapd,
        &format!("capacity = {}\nttl = \"3h\"", plan.users() + 1000),
    );
    let bodies: Arc<Vec<Bytes>> = Arc::new((0..plan.users()).map(user_body).collect());
    let (url, fillers) = (uri(&d)?, clients(&d, 4, true));
    let deadline = Instant::now() + plan.fill_budget;
    r.line(format!(
        "   {:>10} {:>10} {:>9} {:>9} {:>12} {:>9} {:>14}   fill",
        "cached", "req/s", "p50 us", "p99 us", "CPU us/req", "RSS MiB", "bytes/entry"
    ));
    let (mut points, mut filled) = (Vec::<Point>::new(), 0);
    for &n in &plan.cached {
        let t0 = Instant::now();
        let (done, failed) = cx.rt.block_on(fill(
            &fillers,
            &url,
            filled,
            n,
            plan.fill_concurrency,
            deadline,
        ));
        let fill_rate = done as f64 / t0.elapsed().as_secs_f64();
        filled += done;
        let entries = d.metric("kube_ldap_webhook_cache_entries", &[]);
        let rss_kib = status_kib(d.pid(), "VmRSS:") as f64;
        let (ws, b, per) = (filled.max(1), bodies.clone(), plan.in_flight);
        let pick: Pick = Arc::new(move |w, k| b[(w * (ws / per) + k) % ws].clone());
        let (run, hit_fraction) = hits(cx, &d, pick)?;
        let per_entry = points.last().map_or(f64::NAN, |p: &Point| {
            (rss_kib - p.rss_kib) * 1024.0 / (entries - p.entries).max(1.0)
        });
        r.line(format!(
            "   {:>10} {:>10.0} {:>9.0} {:>9.0} {:>12.1} {:>9.1} {:>14.0}   {done} misses at {fill_rate:.0}/s, {failed} failed",
            entries, run.rps(), run.lat.p50(), run.lat.p99(), run.cpu_us(), rss_kib / 1024.0, per_entry
        ));
        points.push(Point {
            x: entries,
            run,
            rss_kib,
            entries,
            hit_fraction,
        });
    }
    Ok(points)
}

pub fn run(cx: &Ctx, r: &mut Report) -> BenchResult {
    let plan = &cx.plan;
    r.line(String::new());
    r.line(format!(
        "1. cache hits with {} cached answers ({} HTTP/1.1 connections in a closed loop over all of them, {} x {:.0}s per point)",
        plan.cached.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", "),
        plan.in_flight, plan.rounds, plan.run.as_secs_f64()
    ));
    let points = curve(cx, r)?;
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return Err("no points on the hit curve".into());
    };
    let ratio = last.run.rps() / first.run.rps();
    let cpu_ratio = last.run.cpu_us() / first.run.cpu_us();
    let errors: usize = points.iter().map(|p| p.run.errors).sum();
    let all_hits = points.iter().all(|p| p.hit_fraction >= 0.999);
    // The daemon's CPU per hit is the steady figure: the points cannot take turns (the
    // cache only grows), so neighbours on the shared cores move their req/s apart.
    r.target(
        &format!("daemon CPU per hit at {:.0} / at {:.0} cached answers", last.entries, first.entries),
        format!(
            "{cpu_ratio:.2} (req/s {ratio:.2}x, p99 {:.2}x; errors {errors}; all answers from the cache: {all_hits})",
            last.run.lat.p99() / first.run.lat.p99()
        ),
        "<= 1.43 (a hit is O(1): flat within 1/0.7)",
        cpu_ratio <= 1.43 && errors == 0 && all_hits,
    );
    let n = points.len();
    let per_entry = if n >= 2 {
        (points[n - 1].rss_kib - points[n - 2].rss_kib) * 1024.0
            / (points[n - 1].entries - points[n - 2].entries).max(1.0)
    } else {
        f64::NAN
    };
    r.target(
        &format!(
            "RSS per cached answer from {:.0} to {:.0} entries",
            points[n.saturating_sub(2)].entries,
            last.entries
        ),
        format!("{per_entry:.0} bytes"),
        "< 1024 bytes",
        per_entry < 1024.0 && last.entries >= plan.users() as f64 * 0.99,
    );
    let xy = |f: &dyn Fn(&Point) -> f64| points.iter().map(|p| (p.x, f(p))).collect::<Vec<_>>();
    plot::draw(
        "growth-hits",
        "Cache hits by cached answers (closed loop, 16 HTTP/1.1 connections)",
        "cached answers",
        true,
        &[
            ("hits/s", vec![Series::new("req/s", xy(&|p| p.run.rps()))]),
            (
                "latency (us)",
                vec![
                    Series::new("p50", xy(&|p| p.run.lat.p50())),
                    Series::new("p99", xy(&|p| p.run.lat.p99())),
                ],
            ),
            (
                "daemon CPU per hit (us)",
                vec![Series::new("CPU", xy(&|p| p.run.cpu_us()))],
            ),
            (
                "daemon RSS (MiB)",
                vec![Series::new("VmRSS", xy(&|p| p.rss_kib / 1024.0))],
            ),
        ],
    )?;
    r.json.insert(
        "hits".into(),
        json!({"points": points.iter().map(Point::json).collect::<Vec<_>>(),
        "throughput_ratio": ratio, "cpu_ratio": cpu_ratio, "bytes_per_entry": per_entry}),
    );
    Ok(())
}

/// Working sets as multiples of the churn daemon's capacity; the last is run three times,
/// so that the later rounds of the same churn show whether memory keeps growing with it.
const CHURN: [f64; 6] = [0.5, 1.0, 1.25, 2.0, 2.0, 2.0];
/// The points of the curve: the rounds after the first at 2x are the target's.
const CURVE: usize = 4;

/// A well-mixed index in `0..n` for worker `w`'s `k`th request (splitmix64).
fn scatter(w: usize, k: usize, n: usize) -> usize {
    let mut z = ((w as u64) << 40 ^ k as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) % n as u64) as usize
}

pub fn churn(cx: &Ctx, r: &mut Report) -> BenchResult {
    let plan = &cx.plan;
    let capacity: usize = if plan.quick { 2_000 } else { 10_000 };
    r.line(String::new());
    r.line(format!(
        "1b. LRU churn: cache.capacity = {capacity}, reviews of users drawn at random from working sets of {} x the capacity",
        CHURN[..CURVE].iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")
    ));
    let d = daemon(&cx.slapd, &format!("capacity = {capacity}\nttl = \"3h\""));
    let (url, fillers) = (uri(&d)?, clients(&d, 4, true));
    let most = (capacity as f64 * CHURN[CHURN.len() - 1]) as usize;
    let bodies: Arc<Vec<Bytes>> = Arc::new((0..most).map(user_body).collect());
    r.line(format!(
        "   {:>8} {:>10} {:>9} {:>9} {:>13} {:>9} {:>9}",
        "set/cap", "req/s", "p50 us", "p99 us", "from cache", "entries", "RSS MiB"
    ));
    let mut points = Vec::new();
    for c in CHURN {
        let ws = (capacity as f64 * c) as usize;
        // Every answer of the working set has been cached once (the cache keeps the last).
        let deadline = Instant::now() + plan.fill_budget;
        cx.rt
            .block_on(fill(&fillers, &url, 0, ws, plan.fill_concurrency, deadline));
        let b = bodies.clone();
        let pick: Pick = Arc::new(move |w, k| b[scatter(w, k, ws)].clone());
        let (run, hit_fraction) = hits(cx, &d, pick)?;
        let entries = d.metric("kube_ldap_webhook_cache_entries", &[]);
        let rss_kib = status_kib(d.pid(), "VmRSS:") as f64;
        r.line(format!(
            "   {c:>8} {:>10.0} {:>9.0} {:>9.0} {:>12.0}% {:>9} {:>9.1}",
            run.rps(),
            run.lat.p50(),
            run.lat.p99(),
            hit_fraction * 100.0,
            entries,
            rss_kib / 1024.0
        ));
        points.push(Point {
            x: c,
            run,
            rss_kib,
            entries,
            hit_fraction,
        });
    }
    let (Some(full), [.., once, twice]) = (points.iter().find(|p| p.x == 1.0), points.as_slice())
    else {
        return Err("churn points missing".into());
    };
    let rounds: Vec<String> = points[CURVE - 1..]
        .iter()
        .map(|p| format!("{:.1}", p.rss_kib / 1024.0))
        .collect();
    let rss_ratio = twice.rss_kib / once.rss_kib;
    r.target(
        "LRU churn: RSS after the third round at 2x the capacity / after the second",
        format!(
            "{rss_ratio:.3} (rounds at 2x: {} MiB; {:.1} MiB at 1x; entries {} / {capacity}; answered from the cache {:.0}% at 2x)",
            rounds.join(", "), full.rss_kib / 1024.0, twice.entries, twice.hit_fraction * 100.0
        ),
        "<= 1.05, entries <= capacity",
        rss_ratio <= 1.05 && twice.entries <= capacity as f64,
    );
    plot_churn(capacity, &points[..CURVE.min(points.len())])?;
    r.json.insert("churn".into(), json!({"capacity": capacity, "points": points.iter().map(Point::json).collect::<Vec<_>>(), "rss_ratio_last_2x_rounds": rss_ratio}));
    Ok(())
}

/// The churn curve's PNG.
fn plot_churn(capacity: usize, curve: &[Point]) -> BenchResult {
    let xy = |f: &dyn Fn(&Point) -> f64| curve.iter().map(|p| (p.x, f(p))).collect::<Vec<_>>();
    plot::draw(
        "growth-churn",
        &format!("LRU churn, cache.capacity = {capacity}"),
        "working set / capacity",
        false,
        &[
            (
                "answered from the cache (%)",
                vec![
                    Series::new("measured", xy(&|p| p.hit_fraction * 100.0)),
                    Series::new("capacity / working set", xy(&|p| 100.0 / p.x.max(1.0))),
                ],
            ),
            (
                "reviews/s",
                vec![Series::new("req/s", xy(&|p| p.run.rps()))],
            ),
            (
                "latency (us)",
                vec![Series::new("p99", xy(&|p| p.run.lat.p99()))],
            ),
        ],
    )?;
    Ok(())
}
