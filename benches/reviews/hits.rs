//! Section 1: cache hits against the baseline server, closed loop, HTTP/1.1 then HTTP/2. A
//! second daemon at log level "warn" (no per-review line) shows what that line costs.

use hyper::Uri;
use serde_json::{json, Value};

use crate::load::{client, closed_loop, uri, Throughput};
use crate::report::{f0, Report};
use crate::support::{Https, Pki};
use crate::{daemon, warm, Ctx};

/// A server under load: its name in the table, its URL, its process, its certificates.
struct Server<'a> {
    name: &'static str,
    url: Uri,
    pid: u32,
    pki: &'a Pki,
}

pub fn run(cx: &Ctx, r: &mut Report) {
    let plan = &cx.plan;
    let quiet = daemon(&cx.slapd, 10_000, plan.max_failures, "warn");
    cx.rt.block_on(warm(&quiet, &cx.hit_bodies));
    r.line(String::new());
    r.line(format!(
        "1. cache hits, keep-alive mTLS, closed loop ({} HTTP/1.1 connections | {} HTTP/2 connections x {} streams), {} x {:.0}s per row",
        plan.h1_connections,
        plan.h2_connections,
        plan.h2_streams,
        plan.rounds,
        plan.run.as_secs_f64()
    ));
    r.line(format!(
        "   {:<40}{:>10}{:>10}{:>10}{:>20}",
        "", "req/s", "p50 us", "p99 us", "server CPU us/req"
    ));
    let servers = [
        Server {
            name: "baseline server",
            url: cx.base.url(),
            pid: cx.base.pid(),
            pki: &cx.d.pki,
        },
        Server {
            name: "daemon (cache hit)",
            url: uri(&cx.d),
            pid: cx.d.pid(),
            pki: &cx.d.pki,
        },
        Server {
            name: "daemon, no review log line",
            url: uri(&quiet),
            pid: quiet.pid(),
            pki: &quiet.pki,
        },
    ];
    let mut out = serde_json::Map::new();
    for http2 in [false, true] {
        let proto = if http2 { "HTTP/2" } else { "HTTP/1.1" };
        let runs = measure(cx, &servers, http2);
        out.insert(proto.into(), report(r, proto, &servers, &runs));
    }
    r.json.insert("cache_hits".into(), Value::Object(out));
}

/// `plan.rounds` closed-loop runs of each server, interleaved: the runs of each.
fn measure(cx: &Ctx, servers: &[Server; 3], http2: bool) -> [Vec<Throughput>; 3] {
    let plan = &cx.plan;
    let mut runs: [Vec<Throughput>; 3] = Default::default();
    cx.rt.block_on(async {
        let (n, per) = if http2 {
            (plan.h2_connections, plan.h2_streams)
        } else {
            (plan.h1_connections, 1)
        };
        let clients: Vec<Vec<Https>> = servers
            .iter()
            .map(|s| (0..n).map(|_| client(s.pki, http2)).collect())
            .collect();
        for round in 0..plan.rounds {
            // Rotate the order, so that drift and neighbours hurt all alike.
            for k in 0..3 {
                let i = (round + k) % 3;
                let s = &servers[i];
                runs[i]
                    .push(closed_loop(&clients[i], per, &s.url, &cx.hit_bodies, s.pid, plan).await);
            }
        }
    });
    runs
}

/// The table rows and the target of one protocol; its JSON.
fn report(
    r: &mut Report,
    proto: &str,
    servers: &[Server; 3],
    runs: &[Vec<Throughput>; 3],
) -> Value {
    let merged: Vec<Throughput> = runs.iter().map(|r| Throughput::merge(r)).collect();
    for (s, t) in servers.iter().zip(&merged) {
        r.line(format!(
            "   {:<40}{:>10}{:>10.0}{:>10.0}{:>20.1}",
            format!("{proto} {}", s.name),
            f0(t.rps()),
            t.lat.pct(50.0),
            t.lat.pct(99.0),
            t.cpu_us_per_req()
        ));
    }
    let (b, dm, q) = (&merged[0], &merged[1], &merged[2]);
    let ratio = dm.rps() / b.rps();
    let per_round: Vec<f64> = runs[1]
        .iter()
        .zip(&runs[0])
        .map(|(d, b)| d.rps() / b.rps())
        .collect();
    let errors: usize = merged.iter().map(|t| t.errors).sum();
    let log_cost = dm.cpu_us_per_req() - q.cpu_us_per_req();
    r.target(
        &format!("{proto} hit throughput / baseline"),
        format!(
            "{ratio:.2} (rounds {}; server CPU per request {:.2}x, the log line {log_cost:.1} us of it; errors {errors})",
            per_round.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(" "),
            dm.cpu_us_per_req() / b.cpu_us_per_req()
        ),
        ">= 0.70",
        ratio >= 0.70 && errors == 0,
    );
    json!({"baseline": b.json(), "daemon": dm.json(), "daemon_no_review_log": q.json(),
           "ratio": ratio, "ratio_per_round": per_round,
           "server_cpu_ratio": dm.cpu_us_per_req() / b.cpu_us_per_req(),
           "log_line_cpu_us": log_cost})
}
