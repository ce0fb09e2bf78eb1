//! Section 3: hits at a fixed rate alone, then with misses mixed in.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::load::{accepted, client, post, uri, user_body, Lat};
use crate::report::Report;
use crate::Ctx;

pub fn run(cx: &Ctx, r: &mut Report) {
    let plan = &cx.plan;
    r.line(String::new());
    r.line(format!(
        "3. fixed rate {} req/s for {:.0}s over one HTTP/2 connection (open loop): hits alone, then {}% misses mixed in",
        plan.mixed_rate,
        plan.mixed_run.as_secs_f64(),
        plan.miss_percent
    ));
    let next_miss = Arc::new(AtomicUsize::new(10_000));
    let with_misses = |percent: usize| cx.rt.block_on(open_loop(cx, &next_miss, percent));
    let (alone, _, lag_a) = with_misses(0);
    let (hits, misses, lag_m) = with_misses(plan.miss_percent);
    r.line(format!(
        "   {:<40}{:>10}{:>10}{:>10}{:>10}",
        "", "n", "p50 us", "p99 us", "max us"
    ));
    for (name, l) in [
        ("hits alone", &alone),
        ("hits, with misses mixed in", &hits),
        ("misses", &misses),
    ] {
        r.line(format!(
            "   {:<40}{:>10}{:>10.0}{:>10.0}{:>10.0}",
            name,
            l.0.len(),
            l.pct(50.0),
            l.pct(99.0),
            l.pct(100.0)
        ));
    }
    let p99_ratio = hits.pct(99.0) / alone.pct(99.0);
    r.target(
        "hit p99 with misses / hit p99 alone",
        format!(
            "{p99_ratio:.2} (generator send lag p99: {:.0} / {:.0} us)",
            lag_a.pct(99.0),
            lag_m.pct(99.0)
        ),
        "<= 2.0",
        p99_ratio <= 2.0,
    );
    r.json.insert(
        "mixed".into(),
        json!({"rate": plan.mixed_rate, "seconds": plan.mixed_run.as_secs_f64(), "miss_percent": plan.miss_percent,
               "hits_alone": alone.json(), "hits_mixed": hits.json(), "misses": misses.json(),
               "p99_ratio": p99_ratio, "generator_lag_alone": lag_a.json(), "generator_lag_mixed": lag_m.json()}),
    );
}

/// Open loop at `plan.mixed_rate`: request k leaves at start + k/rate whatever happened to
/// the others (tokio's timer ticks in milliseconds, so requests leave in small bursts); its
/// latency is timed from when it left. A miss is a user the daemon has not seen. Returns
/// hit and miss latencies, and how late the generator sent requests.
async fn open_loop(cx: &Ctx, next_miss: &Arc<AtomicUsize>, miss_percent: usize) -> (Lat, Lat, Lat) {
    let plan = &cx.plan;
    let c = client(&cx.d.pki, true);
    let url = uri(&cx.d);
    post(&c, &url, cx.hit_bodies[0].clone()).await.unwrap();
    let warm = Duration::from_secs(1);
    let total = ((plan.mixed_run + warm).as_secs_f64() * plan.mixed_rate as f64) as usize;
    let warm_n = (warm.as_secs_f64() * plan.mixed_rate as f64) as usize;
    let start = Instant::now() + Duration::from_millis(10);
    let mut tasks = Vec::with_capacity(total);
    for k in 0..total {
        let at = start + Duration::from_secs_f64(k as f64 / plan.mixed_rate as f64);
        tokio::time::sleep_until(at.into()).await;
        // Every (100 / miss_percent)-th request is a miss, spread evenly.
        let miss = miss_percent > 0 && k % (100 / miss_percent) == 0;
        let body = if miss {
            user_body(next_miss.fetch_add(1, Ordering::Relaxed))
        } else {
            cx.hit_bodies[k % cx.hit_bodies.len()].clone()
        };
        let (c, url) = (c.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let lag = t0.saturating_duration_since(at);
            let r = tokio::time::timeout(Duration::from_secs(10), post(&c, &url, body)).await;
            let ok = matches!(r, Ok(Ok((200, ref b))) if accepted(b));
            (miss, ok, t0.elapsed(), lag)
        }));
    }
    let (mut h, mut m, mut lag) = (Lat::default(), Lat::default(), Lat::default());
    for (k, t) in tasks.into_iter().enumerate() {
        let (miss, ok, e, l) = t.await.unwrap();
        assert!(ok, "a review at the fixed rate failed");
        if k < warm_n {
            continue;
        }
        lag.0.push(l.as_nanos() as u64);
        if miss {
            m.0.push(e.as_nanos() as u64);
        } else {
            h.0.push(e.as_nanos() as u64);
        }
    }
    (h, m, lag)
}
