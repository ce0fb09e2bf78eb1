//! Section 1: cache hits, closed loop, HTTP/1.1 then HTTP/2, against two floors: nginx
//! answering a fixed TokenReview on the same certificates, and the baseline server (the
//! daemon's own hyper stack answering the same bytes). The daemon runs at log level "info"
//! (the default) and, as a second daemon, at "warn" (no per-review line). Then the
//! allocations per hit, counted in the daemon's code under this binary's allocator.

use hyper::Uri;
use serde_json::{json, Value};

use crate::allocs::{self, Counts};
use crate::load::{client, closed_loop, post, uri, Throughput};
use crate::nginx::Nginx;
use crate::report::{f0, Report};
use crate::support::{self, Daemon, Https, Pki};
use crate::{daemon, daemon_builder, warm, Ctx};

/// A server under load: its name in the table, its URL, its processes, its certificates.
struct Server<'a> {
    name: &'static str,
    url: Uri,
    pids: Vec<u32>,
    pki: &'a Pki,
}

/// Rows of the table by what they are, for the ratios.
const NGINX: &str = "nginx";
const BASELINE: &str = "baseline server (hyper)";
const DAEMON: &str = "daemon (cache hit), log info";
const QUIET: &str = "daemon (cache hit), log warn";

pub fn run(cx: &Ctx, r: &mut Report) {
    let plan = &cx.plan;
    let quiet = daemon(&cx.slapd, 10_000, plan.max_failures, "warn");
    cx.rt.block_on(warm(&quiet, &cx.hit_bodies));
    let nginx = Nginx::installed().then(|| Nginx::start(&cx.d.pki, &cx.base.reply));
    r.line(String::new());
    r.line(format!(
        "1. cache hits, keep-alive mTLS, closed loop ({} HTTP/1.1 connections | {} HTTP/2 connections x {} streams), {} x {:.0}s per row",
        plan.h1_connections,
        plan.h2_connections,
        plan.h2_streams,
        plan.rounds,
        plan.run.as_secs_f64()
    ));
    if nginx.is_none() {
        r.line("   nginx is not installed (scripts/test-deps.sh --bench): no nginx rows".into());
    }
    r.line(format!(
        "   {:<44}{:>10}{:>10}{:>10}{:>20}",
        "", "req/s", "p50 us", "p99 us", "server CPU us/req"
    ));
    let mut servers = Vec::new();
    if let Some(n) = &nginx {
        servers.push(Server {
            name: NGINX,
            url: n.url(),
            pids: n.pids(),
            pki: &cx.d.pki,
        });
    }
    servers.extend([
        Server {
            name: BASELINE,
            url: cx.base.url(),
            pids: vec![cx.base.pid()],
            pki: &cx.d.pki,
        },
        Server {
            name: DAEMON,
            url: uri(&cx.d),
            pids: vec![cx.d.pid()],
            pki: &cx.d.pki,
        },
        Server {
            name: QUIET,
            url: uri(&quiet),
            pids: vec![quiet.pid()],
            pki: &quiet.pki,
        },
    ]);
    let mut out = serde_json::Map::new();
    let mut daemon_rps = Vec::new();
    for http2 in [false, true] {
        let proto = if http2 { "HTTP/2" } else { "HTTP/1.1" };
        let runs = measure(cx, &servers, http2);
        let (json, rps) = report(r, proto, &servers, &runs);
        out.insert(proto.into(), json);
        daemon_rps.push(rps);
    }
    let parity = daemon_rps[1] / daemon_rps[0];
    r.target(
        "HTTP/2 hit throughput / HTTP/1.1, daemon at info",
        format!("{parity:.2}"),
        ">= 0.95",
        parity >= 0.95,
    );
    out.insert("http2_over_http1".into(), json!(parity));
    out.insert("allocations".into(), allocations(cx, r));
    r.json.insert("cache_hits".into(), Value::Object(out));
}

/// `plan.rounds` closed-loop runs of each server, interleaved: the runs of each.
fn measure(cx: &Ctx, servers: &[Server], http2: bool) -> Vec<Vec<Throughput>> {
    let plan = &cx.plan;
    let mut runs: Vec<Vec<Throughput>> = servers.iter().map(|_| Vec::new()).collect();
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
            for k in 0..servers.len() {
                let i = (round + k) % servers.len();
                let s = &servers[i];
                runs[i].push(
                    closed_loop(&clients[i], per, &s.url, &cx.hit_bodies, &s.pids, plan).await,
                );
            }
        }
    });
    runs
}

/// The table rows and the targets of one protocol: its JSON and the daemon's req/s.
fn report(
    r: &mut Report,
    proto: &str,
    servers: &[Server],
    runs: &[Vec<Throughput>],
) -> (Value, f64) {
    let merged: Vec<Throughput> = runs.iter().map(|r| Throughput::merge(r)).collect();
    let mut json = serde_json::Map::new();
    for (s, t) in servers.iter().zip(&merged) {
        r.line(format!(
            "   {:<44}{:>10}{:>10.0}{:>10.0}{:>20.1}",
            format!("{proto} {}", s.name),
            f0(t.rps()),
            t.lat.pct(50.0),
            t.lat.pct(99.0),
            t.cpu_us_per_req()
        ));
        json.insert(s.name.into(), t.json());
    }
    let at = |name: &str| servers.iter().position(|s| s.name == name);
    let errors: usize = merged.iter().map(|t| t.errors).sum();
    let mut ratio = |daemon: &str, floor: &str, target: f64| {
        let (Some(d), Some(f)) = (at(daemon), at(floor)) else {
            return;
        };
        let ratio = merged[d].rps() / merged[f].rps();
        let rounds: Vec<String> = runs[d]
            .iter()
            .zip(&runs[f])
            .map(|(d, f)| format!("{:.2}", d.rps() / f.rps()))
            .collect();
        let cpu = merged[d].cpu_us_per_req() / merged[f].cpu_us_per_req();
        r.target(
            &format!("{proto} {daemon} / {floor}"),
            format!(
                "{ratio:.2} (rounds {}; server CPU per request {cpu:.2}x; errors {errors})",
                rounds.join(" ")
            ),
            &format!(">= {target:.2}"),
            ratio >= target && errors == 0,
        );
        json.insert(
            format!("{daemon} / {floor}"),
            json!({"ratio": ratio, "rounds": rounds, "server_cpu_ratio": cpu}),
        );
    };
    ratio(DAEMON, NGINX, 1.0);
    ratio(QUIET, NGINX, 1.0);
    ratio(DAEMON, BASELINE, 0.70);
    let daemon_rps = at(DAEMON).map_or(f64::NAN, |d| merged[d].rps());
    (Value::Object(json), daemon_rps)
}

/// Hits per protocol for the allocation count: enough that the daemon's background work
/// (health checks, the cache's clock) is lost in the division.
const COUNTED_HITS: usize = 20_000;
/// Requests in flight while counting: HTTP/2 multiplexes them on one connection.
const COUNTED_IN_FLIGHT: usize = 8;

/// Allocations per cache hit in the daemon's code at log level info, HTTP/1.1 and HTTP/2.
fn allocations(cx: &Ctx, r: &mut Report) -> Value {
    let port = support::free_port();
    let exe = std::env::current_exe().expect("this bench binary");
    let d: Daemon = daemon_builder(&cx.slapd, 10_000, cx.plan.max_failures, "info")
        .wrapper(&[exe.to_str().expect("a UTF-8 path")])
        .env("KLW_BENCH_ROLE", allocs::ROLE)
        .env(allocs::PORT_ENV, port.to_string())
        .start();
    d.wait_for_ready();
    cx.rt.block_on(warm(&d, &cx.hit_bodies));
    let mut out = serde_json::Map::new();
    let mut figures = Vec::new();
    for http2 in [false, true] {
        let proto = if http2 { "HTTP/2" } else { "HTTP/1.1" };
        let (per_hit, bytes) = cx.rt.block_on(count_hits(cx, &d, port, http2));
        figures.push(format!("{proto} {per_hit:.1} ({bytes:.0} bytes)"));
        out.insert(
            proto.into(),
            json!({"allocations": per_hit, "bytes": bytes}),
        );
        out.insert(format!("{proto} met"), json!(per_hit <= MAX_ALLOCATIONS));
    }
    let worst = out
        .iter()
        .filter_map(|(_, v)| v.get("allocations")?.as_f64())
        .fold(0.0, f64::max);
    r.target(
        "allocations per cache hit, whole daemon process, log info",
        figures.join(", "),
        &format!("<= {MAX_ALLOCATIONS:.0}"),
        worst <= MAX_ALLOCATIONS,
    );
    Value::Object(out)
}

/// "A handful" of allocations per hit (issue 22), the whole process: hyper, rustls and the
/// log included.
const MAX_ALLOCATIONS: f64 = 8.0;

/// Allocations and bytes per hit over [`COUNTED_HITS`] hits on warm connections.
async fn count_hits(cx: &Ctx, d: &Daemon, port: u16, http2: bool) -> (f64, f64) {
    let url = uri(d);
    let clients: Vec<Https> = (0..if http2 { 1 } else { COUNTED_IN_FLIGHT })
        .map(|_| client(&d.pki, http2))
        .collect();
    let bodies = &cx.hit_bodies;
    let burst = |n: usize| {
        let tasks: Vec<_> = (0..COUNTED_IN_FLIGHT)
            .map(|w| {
                let (c, url, bodies) = (
                    clients[w % clients.len()].clone(),
                    url.clone(),
                    bodies.clone(),
                );
                tokio::spawn(async move {
                    let mut ok = 0usize;
                    for k in 0..n {
                        let body = bodies[(w * 7 + k) % bodies.len()].clone();
                        ok += usize::from(matches!(post(&c, &url, body).await, Ok((200, _))));
                    }
                    ok
                })
            })
            .collect();
        async move {
            let mut ok = 0;
            for t in tasks {
                ok += t.await.unwrap_or(0);
            }
            ok
        }
    };
    // Connections, buffers and the allocator's arenas exist before the count starts.
    burst(200).await;
    let before = allocs::counts(port).unwrap_or_default();
    let ok = burst(COUNTED_HITS / COUNTED_IN_FLIGHT).await;
    let after = allocs::counts(port).unwrap_or_default();
    assert_eq!(ok, COUNTED_HITS, "a counted hit failed");
    Counts::per(before, after, ok as u64)
}
