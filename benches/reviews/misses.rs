//! Section 2: cache misses one at a time, each paired with the same LDAP work done directly,
//! a cache hit, and the same request to the baseline server (the bare HTTPS round trip).

use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Uri;
use serde_json::json;

use crate::direct::Direct;
use crate::load::{accepted, client, post, uri, user_body, Lat};
use crate::report::Report;
use crate::support::{Https, Stats};
use crate::Ctx;

/// The latencies of one run: direct LDAP work, daemon misses, daemon hits, and baseline
/// round trips; and slapd's log of the timed part.
struct Timed {
    direct: Lat,
    miss: Lat,
    hit: Lat,
    bare: Lat,
    log: Stats,
}

pub fn run(cx: &Ctx, r: &mut Report) {
    let plan = &cx.plan;
    r.line(String::new());
    r.line(format!(
        "2. cache misses, one at a time ({} distinct users, each once directly and once through the daemon; a hit and a baseline request with each)",
        plan.miss_samples
    ));
    let t = cx.rt.block_on(time(cx));
    let new_conns = t.log.accepts();
    let binds = t.log.user_binds();
    r.line(format!(
        "   {:<44}{:>10}{:>10}{:>10}",
        "", "p50 us", "p99 us", "mean us"
    ));
    for (name, l) in [
        ("ldap3 direct: search + bind + group search", &t.direct),
        ("daemon: review, cache miss", &t.miss),
        ("daemon: review, cache hit", &t.hit),
        ("baseline server: the bare HTTPS round trip", &t.bare),
    ] {
        r.line(format!(
            "   {:<44}{:>10.0}{:>10.0}{:>10.0}",
            name,
            l.pct(50.0),
            l.pct(99.0),
            l.mean()
        ));
    }
    let (direct, miss, bare) = (&t.direct, &t.miss, &t.bare);
    let e2e = miss.pct(50.0) / direct.pct(50.0);
    let ldap_part = (miss.pct(50.0) - bare.pct(50.0)) / direct.pct(50.0);
    r.target(
        "miss latency end to end / minimum LDAP work (p50)",
        format!(
            "{e2e:.2} (mean {:.2}, p99 {:.2}); the miss includes a {:.0} us HTTPS round trip that the direct LDAP work does not",
            miss.mean() / direct.mean(),
            miss.pct(99.0) / direct.pct(99.0),
            bare.pct(50.0)
        ),
        "<= 1.15",
        e2e <= 1.15,
    );
    r.target(
        "miss latency less the bare HTTPS round trip / minimum LDAP work (p50)",
        format!("{ldap_part:.2}"),
        "<= 1.15",
        ldap_part <= 1.15,
    );
    r.target(
        "new LDAP connections (slapd ACCEPT) during the timed misses",
        format!(
            "{new_conns} for {} misses ({binds} user binds seen, {} expected)",
            miss.0.len(),
            2 * miss.0.len()
        ),
        "0",
        new_conns == 0 && binds == 2 * miss.0.len(),
    );
    r.json.insert(
        "cache_misses".into(),
        json!({"direct": direct.json(), "daemon_miss": miss.json(), "daemon_hit": t.hit.json(),
               "baseline_round_trip": bare.json(),
               "ratio_p50_end_to_end": e2e, "ratio_mean_end_to_end": miss.mean() / direct.mean(),
               "ratio_p50_less_round_trip": ldap_part,
               "new_ldap_connections": new_conns, "user_binds": binds}),
    );
}

/// The first user of the section: past those the hit tests cached.
const FIRST: usize = 1_000;
/// Users reviewed on every side before the timing starts, so that connections are warm.
const WARM_UP: usize = 20;

/// A review through `c` that must be accepted: its latency in nanoseconds.
async fn review(c: &Https, url: &Uri, body: Bytes) -> u64 {
    let t0 = Instant::now();
    let (s, b) = post(c, url, body).await.unwrap();
    let e = t0.elapsed();
    assert!(s == 200 && accepted(&b), "review refused: {b:?}");
    e.as_nanos() as u64
}

async fn time(cx: &Ctx) -> Timed {
    let mut direct = Direct::connect(&cx.slapd).await;
    let (c, cb) = (client(&cx.d.pki, false), client(&cx.d.pki, false));
    let (url, burl) = (uri(&cx.d), cx.base.url());
    // Warm-up: connections on every side, not timed.
    for i in FIRST..FIRST + WARM_UP {
        direct.review(i).await;
        review(&c, &url, user_body(i)).await;
        review(&cb, &burl, user_body(i)).await;
    }
    let mark = cx.slapd.log_mark();
    let mut l: [Lat; 4] = Default::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    let users = FIRST + WARM_UP..FIRST + WARM_UP + cx.plan.miss_samples;
    for (n, i) in users.enumerate() {
        if Instant::now() > deadline {
            break;
        }
        let hit = cx.hit_bodies[n % cx.hit_bodies.len()].clone();
        // Rotate the order, so that none always runs right after another.
        for k in 0..4 {
            match (n + k) % 4 {
                0 => l[0].0.push(direct.review(i).await.as_nanos() as u64),
                1 => l[1].0.push(review(&c, &url, user_body(i)).await),
                2 => l[2].0.push(review(&c, &url, hit.clone()).await),
                _ => l[3].0.push(review(&cb, &burl, hit.clone()).await),
            }
        }
    }
    let [direct, miss, hit, bare] = l;
    Timed {
        direct,
        miss,
        hit,
        bare,
        log: cx.slapd.stats_since(mark),
    }
}
