//! `make bench`: kube-ldap-webhook against the limits of its own stack, on loopback.
//!
//! One run starts a real slapd (N users, each in two groups), the release daemon binary, a
//! baseline HTTPS server on the daemon's own stack, and a load generator (hyper-rustls with a
//! client certificate) in this process. Every figure is a ratio against a baseline measured
//! in the same run, so the machine's speed cancels out:
//!
//! 1. cache hits vs a server on the same hyper + hyper-util + tokio-rustls stack and the same
//!    TLS config that answers a fixed TokenReview (HTTP/1.1 and HTTP/2, keep-alive mTLS);
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

#[path = "../tests/support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};

use support::{Pki, Slapd};

const PASSWORD: &str = "bench-password";
const PEOPLE: &str = "ou=people,dc=example,dc=org";
const GROUPS: &str = "ou=groups,dc=example,dc=org";
/// Users per team group; each user is in one team and one project group.
const TEAM_SIZE: usize = 50;
const PROJECTS: usize = 2000;
const ROLE_ENV: &str = "KLW_BENCH_ROLE";

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
// Processes and /proc
// ---------------------------------------------------------------------------------------

/// A child process killed when dropped, and when this process dies.
struct Proc {
    child: Child,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        Proc {
            child: cmd.spawn().expect("spawn"),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM first, so that a profiler wrapping the daemon writes its output.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for_port(port: u16, what: &str, child: &mut Proc) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.child.try_wait() {
            panic!("{what} exited with {status}");
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not listen on {port}");
}

/// user + system CPU seconds of a process, all threads.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| f.get(i)?.parse::<u64>().ok())
        .sum();
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// A `/proc/PID/status` field in KiB (VmHWM, VmRSS).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// GET on the daemon's plain-HTTP ops listener.
fn ops_get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("ops listener");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Sum of the samples of `name` whose labels contain every one of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

// ---------------------------------------------------------------------------------------
// The directory, its log, and the daemon
// ---------------------------------------------------------------------------------------

fn user_dn(i: usize) -> String {
    format!("uid=user{i},{PEOPLE}")
}

/// `n` users (tests/support's many_users_ldif), each a member of one team and one project.
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

/// slapd's `stats` log, read from a mark onwards.
struct SlapdLog {
    path: PathBuf,
}

impl SlapdLog {
    fn mark(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }

    fn since(&self, mark: u64) -> String {
        // slapd writes whole lines; give it a moment to flush the last ones.
        std::thread::sleep(Duration::from_millis(200));
        let mut f = std::fs::File::open(&self.path).unwrap();
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(mark)).unwrap();
        let mut out = Vec::new();
        f.read_to_end(&mut out).unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    fn accepts(text: &str) -> usize {
        text.lines().filter(|l| l.contains(" ACCEPT from ")).count()
    }

    /// BIND requests for `dn` (slapd logs a successful bind twice; count the `method=` line).
    fn binds_for(text: &str, dn: &str) -> usize {
        let needle = format!("BIND dn=\"{dn}\" method=");
        text.lines().filter(|l| l.contains(&needle)).count()
    }

    fn user_binds(text: &str) -> usize {
        text.lines()
            .filter(|l| l.contains(" BIND dn=\"uid=user") && l.contains(" method="))
            .count()
    }
}

/// slapd stopped (SIGSTOP) until this is dropped (SIGCONT).
struct Paused(i32);

impl Paused {
    fn new(slapd: &Slapd) -> Paused {
        let pid: i32 = std::fs::read_to_string(slapd.dir.path().join("slapd.pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .expect("slapd's pid file");
        unsafe {
            libc::kill(pid, libc::SIGSTOP);
        }
        Paused(pid)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.0, libc::SIGCONT);
        }
    }
}

struct Daemon {
    proc: Proc,
    port: u16,
    ops_port: u16,
    #[allow(dead_code)]
    dir: tempfile::TempDir,
}

impl Daemon {
    fn start(pki: &Pki, slapd: &Slapd, capacity: usize, max_failures: u32, level: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let (port, ops_port) = (support::free_port(), support::free_port());
        let ldap = format!("ca_file = \"{}\"", slapd.ca_file.display());
        let cache = format!("capacity = {capacity}\nttl = \"30m\"\nmax_failures = {max_failures}");
        // tests/support's config; "info" is the production log level.
        let toml = support::config_toml(
            pki,
            &[slapd.ldaps_url()],
            port,
            ops_port,
            &[("ldap", &ldap), ("cache", &cache)],
        )
        .replace("level = \"debug\"", &format!("level = \"{level}\""));
        let config = dir.path().join("config.toml");
        std::fs::write(&config, toml).unwrap();
        let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
        // KLW_BENCH_DAEMON_WRAPPER="valgrind --tool=callgrind ..." profiles the daemon
        // under the benchmark's load.
        let wrapper = std::env::var("KLW_BENCH_DAEMON_WRAPPER").unwrap_or_default();
        let mut argv: Vec<String> = wrapper.split_whitespace().map(str::to_string).collect();
        argv.push(daemon_binary().display().to_string());
        let mut proc = Proc::spawn(
            Command::new(&argv[0])
                .args(&argv[1..])
                .args(["serve", "--config"])
                .arg(&config)
                .env_remove("RUST_LOG")
                .env_remove("NOTIFY_SOCKET")
                .env_remove("JOURNAL_STREAM")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log),
        );
        wait_for_port(ops_port, "the daemon", &mut proc);
        let deadline =
            Instant::now() + Duration::from_secs(if wrapper.is_empty() { 15 } else { 120 });
        while !ops_get(ops_port, "/readyz").contains(" 200 ") {
            assert!(Instant::now() < deadline, "the daemon never got ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        Daemon {
            proc,
            port,
            ops_port,
            dir,
        }
    }

    fn url(&self) -> Uri {
        format!("https://127.0.0.1:{}/authenticate?timeout=30s", self.port)
            .parse()
            .unwrap()
    }

    fn metrics(&self) -> String {
        ops_get(self.ops_port, "/metrics")
    }
}

/// The release binary: `make bench` builds it, and cargo bench builds it in the same profile.
fn daemon_binary() -> PathBuf {
    let built = PathBuf::from(env!("CARGO_BIN_EXE_kube-ldap-webhook"));
    assert!(
        built.ends_with("release/kube-ldap-webhook"),
        "benchmark the release binary (cargo bench), not {}",
        built.display()
    );
    built
}

// ---------------------------------------------------------------------------------------
// The baseline server: the daemon's stack and TLS config, no logic
// ---------------------------------------------------------------------------------------

struct Baseline {
    proc: Proc,
    port: u16,
}

impl Baseline {
    fn start(pki: &Pki, reply: &[u8]) -> Baseline {
        let port = support::free_port();
        let reply_file = pki.dir.join("baseline-reply.json");
        std::fs::write(&reply_file, reply).unwrap();
        let mut proc = Proc::spawn(
            Command::new(std::env::current_exe().unwrap())
                .env(ROLE_ENV, "baseline")
                .env("KLW_BASELINE_PORT", port.to_string())
                .env("KLW_BASELINE_CERT", &pki.server_cert)
                .env("KLW_BASELINE_KEY", &pki.server_key)
                .env("KLW_BASELINE_CLIENT_CA", &pki.client_ca)
                .env("KLW_BASELINE_REPLY", &reply_file)
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
        );
        wait_for_port(port, "the baseline server", &mut proc);
        Baseline { proc, port }
    }

    fn url(&self) -> Uri {
        format!("https://127.0.0.1:{}/authenticate?timeout=30s", self.port)
            .parse()
            .unwrap()
    }
}

/// The baseline server's `main`: the accept loop and connection setup of
/// `server::run_reviews` (handshake in a spawned task under a timeout, TCP_NODELAY,
/// hyper-util auto with the same HTTP/1.1 and HTTP/2 settings) and the daemon's own
/// `tls::server_config`. Each request's body is read (as the daemon reads it) and answered
/// with a fixed TokenReview: the daemon's answer to the same request.
fn baseline_main() {
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k}"));
    let port: u16 = env("KLW_BASELINE_PORT").parse().unwrap();
    let tls = kube_ldap_webhook::tls::server_config(
        Path::new(&env("KLW_BASELINE_CERT")),
        Path::new(&env("KLW_BASELINE_KEY")),
        Path::new(&env("KLW_BASELINE_CLIENT_CA")),
    )
    .expect("baseline TLS config");
    let reply = Bytes::from(std::fs::read(env("KLW_BASELINE_REPLY")).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .unwrap();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let reply = reply.clone();
            tokio::spawn(async move {
                let Ok(Ok(tls)) =
                    tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let reply = reply.clone();
                    async move {
                        let _ = Limited::new(req.into_body(), 64 * 1024).collect().await;
                        let mut r = Response::new(Full::new(reply));
                        r.headers_mut()
                            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                        Ok::<_, Infallible>(r)
                    }
                });
                let builder = kube_ldap_webhook::server::connection_builder();
                let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
            });
        }
    });
}

// ---------------------------------------------------------------------------------------
// The load generator: hyper-rustls with a client certificate
// ---------------------------------------------------------------------------------------

type Https = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One client; with `http2` every request of it shares one connection, without it each
/// request in flight holds one keep-alive connection.
fn client(pki: &Pki, http2: bool) -> Https {
    let tls = support::client_tls(pki, Some((&pki.client_cert, &pki.client_key)));
    let mut tcp = HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.enforce_http(false);
    let b = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only();
    let connector = if http2 {
        b.enable_http2().wrap_connector(tcp)
    } else {
        b.enable_http1().wrap_connector(tcp)
    };
    let mut cb = Client::builder(TokioExecutor::new());
    cb.pool_idle_timeout(Duration::from_secs(600));
    if http2 {
        cb.http2_only(true);
    }
    cb.build(connector)
}

fn review_body(token: &str) -> Bytes {
    // What kube-apiserver sends.
    let mut b = serde_json::to_vec(&json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "metadata": {"creationTimestamp": null},
        "spec": {"token": token, "audiences": ["https://kubernetes.default.svc"]},
        "status": {"user": {}},
    }))
    .unwrap();
    b.push(b'\n');
    Bytes::from(b)
}

fn user_body(i: usize) -> Bytes {
    review_body(&support::token(&format!("user{i}"), PASSWORD))
}

async fn post(c: &Https, url: &Uri, body: Bytes) -> Result<(u16, Bytes), String> {
    let req = Request::builder()
        .method(Method::POST)
        .uri(url.clone())
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let resp = c.request(req).await.map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, bytes))
}

fn accepted(body: &[u8]) -> bool {
    body.windows(20).any(|w| w == b"\"authenticated\":true")
}

/// Latencies in nanoseconds.
#[derive(Default, Clone)]
struct Lat(Vec<u64>);

impl Lat {
    fn pct(&self, p: f64) -> f64 {
        let mut v = self.0.clone();
        v.sort_unstable();
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v[i] as f64 / 1000.0
    }

    fn mean(&self) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0.iter().sum::<u64>() as f64 / self.0.len() as f64 / 1000.0
    }

    fn json(&self) -> Value {
        json!({"n": self.0.len(), "p50_us": self.pct(50.0), "p90_us": self.pct(90.0),
               "p99_us": self.pct(99.0), "max_us": self.pct(100.0), "mean_us": self.mean()})
    }
}

struct Throughput {
    requests: usize,
    errors: usize,
    secs: f64,
    lat: Lat,
    server_cpu: f64,
    client_cpu: f64,
}

impl Throughput {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.secs
    }

    fn cpu_us_per_req(&self) -> f64 {
        self.server_cpu * 1e6 / self.requests.max(1) as f64
    }

    fn merge(runs: &[Throughput]) -> Throughput {
        Throughput {
            requests: runs.iter().map(|r| r.requests).sum(),
            errors: runs.iter().map(|r| r.errors).sum(),
            secs: runs.iter().map(|r| r.secs).sum(),
            lat: Lat(runs.iter().flat_map(|r| r.lat.0.iter().copied()).collect()),
            server_cpu: runs.iter().map(|r| r.server_cpu).sum(),
            client_cpu: runs.iter().map(|r| r.client_cpu).sum(),
        }
    }

    fn json(&self) -> Value {
        json!({"requests": self.requests, "errors": self.errors, "seconds": self.secs,
               "req_per_s": self.rps(), "latency": self.lat.json(),
               "server_cpu_us_per_req": self.cpu_us_per_req(),
               "client_cpu_us_per_req": self.client_cpu * 1e6 / self.requests.max(1) as f64})
    }
}

/// Closed loop: `per_client` requests in flight on each client, for `warmup + run`;
/// requests that complete within the measured window count.
async fn closed_loop(
    clients: &[Https],
    per_client: usize,
    url: &Uri,
    bodies: &Arc<Vec<Bytes>>,
    server_pid: u32,
    plan: &Plan,
) -> Throughput {
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.run;
    let mut tasks = Vec::new();
    for (ci, c) in clients.iter().enumerate() {
        for w in 0..per_client {
            let (c, url, bodies) = (c.clone(), url.clone(), bodies.clone());
            let mut k = (ci * per_client + w) * 7;
            tasks.push(tokio::spawn(async move {
                let (mut lat, mut errors) = (Vec::with_capacity(1 << 16), 0usize);
                // Bounded in time and in count.
                for _ in 0..10_000_000u64 {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    k = (k + 1) % bodies.len();
                    let ok = matches!(post(&c, &url, bodies[k].clone()).await, Ok((200, _)));
                    let t1 = Instant::now();
                    if t1 >= measure_from && t1 < end {
                        if ok {
                            lat.push((t1 - t0).as_nanos() as u64);
                        } else {
                            errors += 1;
                        }
                    }
                }
                (lat, errors)
            }));
        }
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let (s0, c0) = (cpu_seconds(server_pid), cpu_seconds(std::process::id()));
    tokio::time::sleep_until(end.into()).await;
    let (s1, c1) = (cpu_seconds(server_pid), cpu_seconds(std::process::id()));
    let mut all = Lat::default();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.0.extend(l);
        errors += e;
    }
    Throughput {
        requests: all.0.len(),
        errors,
        secs: plan.run.as_secs_f64(),
        lat: all,
        server_cpu: s1 - s0,
        client_cpu: c1 - c0,
    }
}

// ---------------------------------------------------------------------------------------
// The minimum LDAP work, done directly with ldap3
// ---------------------------------------------------------------------------------------

struct Direct {
    service: ldap3::Ldap,
    bind: ldap3::Ldap,
}

impl Direct {
    async fn connect(slapd: &Slapd) -> Direct {
        let tls = kube_ldap_webhook::tls::ldap_client_config(Some(&slapd.ca_file)).unwrap();
        let conn = || async {
            let settings = ldap3::LdapConnSettings::new()
                .set_config(tls.clone())
                .set_conn_timeout(Duration::from_secs(5));
            let (conn, ldap) = ldap3::LdapConnAsync::with_settings(settings, &slapd.ldaps_url())
                .await
                .unwrap();
            ldap3::drive!(conn);
            ldap
        };
        let mut service = conn().await;
        service
            .simple_bind(support::SERVICE_DN, support::SERVICE_PASSWORD)
            .await
            .unwrap()
            .success()
            .unwrap();
        Direct {
            service,
            bind: conn().await,
        }
    }

    /// One search, one bind, one group search: the least a miss can cost.
    async fn review(&mut self, i: usize) -> Duration {
        let t0 = Instant::now();
        let filter = format!("(&(objectClass=inetOrgPerson)(uid=user{i}))");
        self.service
            .with_search_options(ldap3::SearchOptions::new().sizelimit(2));
        let (entries, _) = self
            .service
            .search(
                PEOPLE,
                ldap3::Scope::Subtree,
                &filter,
                vec!["entryUUID", "mail", "uid"],
            )
            .await
            .unwrap()
            .success()
            .unwrap();
        assert_eq!(entries.len(), 1);
        let dn = ldap3::SearchEntry::construct(entries.into_iter().next().unwrap()).dn;
        self.bind
            .simple_bind(&dn, PASSWORD)
            .await
            .unwrap()
            .success()
            .unwrap();
        let gfilter = format!(
            "(&(objectClass=groupOfNames)(member={}))",
            ldap3::ldap_escape(&dn)
        );
        let (groups, _) = self
            .service
            .search(GROUPS, ldap3::Scope::Subtree, &gfilter, vec!["cn"])
            .await
            .unwrap()
            .success()
            .unwrap();
        assert_eq!(groups.len(), 2);
        t0.elapsed()
    }
}

// ---------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------

struct Report {
    lines: Vec<String>,
    verdicts: Vec<(String, bool)>,
    json: serde_json::Map<String, Value>,
}

impl Report {
    fn line(&mut self, s: String) {
        println!("{s}");
        self.lines.push(s);
    }

    fn target(&mut self, what: &str, value: String, target: &str, met: bool) {
        let verdict = if met { "MET" } else { "MISSED" };
        self.line(format!(
            "   => {what}: {value}   target {target}   {verdict}"
        ));
        self.verdicts
            .push((format!("{what}: {value} (target {target})"), met));
    }
}

fn f0(x: f64) -> String {
    format!("{x:.0}")
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": model,
        "mem_gib": (mem_kib as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "kernel": kernel.trim(),
    })
}

// ---------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------

/// What every section shares.
struct Ctx {
    plan: Plan,
    rt: tokio::runtime::Runtime,
    slapd: Slapd,
    slog: SlapdLog,
    pki: Pki,
    /// The daemon of sections 1, 2, 3 and 5 (section 4 starts its own).
    d: Daemon,
    /// Reviews of `plan.hit_tokens` users, answered once so that they are cached.
    hit_bodies: Arc<Vec<Bytes>>,
    /// The baseline server, answering with the daemon's answer to the last hit token.
    base: Baseline,
}

fn main() {
    if std::env::var(ROLE_ENV).as_deref() == Ok("baseline") {
        baseline_main();
        return;
    }
    kube_ldap_webhook::tls::install_default_provider();
    let plan = Plan::new();
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let m = machine();
    let mut r = Report {
        lines: Vec::new(),
        verdicts: Vec::new(),
        json: serde_json::Map::new(),
    };
    r.line(format!(
        "kube-ldap-webhook benchmarks{}: {} CPUs ({}), {} GiB, Linux {}; {} LDAP users",
        if plan.quick {
            " (QUICK: smoke run, not for quoting)"
        } else {
            ""
        },
        m["nproc"],
        m["cpu"].as_str().unwrap_or(""),
        m["mem_gib"],
        m["kernel"].as_str().unwrap_or(""),
        plan.users
    ));
    r.json.insert("machine".into(), m);
    r.json.insert("quick".into(), json!(plan.quick));
    r.json.insert("users".into(), json!(plan.users));

    // The directory: N users in 2 groups each, over ldaps.
    let slapd = Slapd::start_with(&directory_ldif(plan.users));
    let slog = SlapdLog {
        path: slapd.dir.path().join("slapd.log"),
    };
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(pki_dir.path());
    let d = Daemon::start(&pki, &slapd, 10_000, plan.max_failures, "info");
    let hit_bodies: Arc<Vec<Bytes>> = Arc::new((0..plan.hit_tokens).map(user_body).collect());
    let hit_reply = rt.block_on(async {
        let c = client(&pki, false);
        let mut reply = Bytes::new();
        for b in hit_bodies.iter() {
            let (status, body) = post(&c, &d.url(), b.clone()).await.unwrap();
            assert!(
                status == 200 && accepted(&body),
                "warm-up review refused: {body:?}"
            );
            reply = body;
        }
        reply
    });
    let base = Baseline::start(&pki, &hit_reply);
    let cx = Ctx {
        plan,
        rt,
        slapd,
        slog,
        pki,
        d,
        hit_bodies,
        base,
    };
    if cx.plan.runs("hits") {
        hits(&cx, &mut r);
    }
    if cx.plan.runs("misses") {
        misses(&cx, &mut r);
    }
    if cx.plan.runs("mixed") {
        mixed(&cx, &mut r);
    }
    if cx.plan.runs("burst") {
        burst(&cx, &mut r);
    }
    if cx.plan.runs("memory") {
        memory(&cx, &mut r);
    }

    r.line(String::new());
    let met = r.verdicts.iter().filter(|(_, m)| *m).count();
    r.line(format!(
        "targets met: {met}/{}   (total {:.0}s)",
        r.verdicts.len(),
        started.elapsed().as_secs_f64()
    ));
    r.json.insert(
        "targets".into(),
        Value::Array(
            r.verdicts
                .iter()
                .map(|(w, m)| json!({"target": w, "met": m}))
                .collect(),
        ),
    );
    r.json.insert("table".into(), json!(r.lines));
    let out = support::repo().join("target/bench");
    std::fs::create_dir_all(&out).unwrap();
    let path = out.join("reviews.json");
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(&Value::Object(r.json)).unwrap(),
    )
    .unwrap();
    println!("wrote {}", path.display());
}

/// Section 1: cache hits against the baseline server, closed loop, HTTP/1.1 then HTTP/2. A second
/// daemon at log level "warn" (no per-review line) shows what that line costs.
fn hits(cx: &Ctx, r: &mut Report) {
    let plan = &cx.plan;
    let base = &cx.base;
    let quiet = Daemon::start(&cx.pki, &cx.slapd, 10_000, plan.max_failures, "warn");
    cx.rt.block_on(async {
        let c = client(&cx.pki, false);
        for b in cx.hit_bodies.iter() {
            let (status, body) = post(&c, &quiet.url(), b.clone()).await.unwrap();
            assert!(
                status == 200 && accepted(&body),
                "warm-up review refused: {body:?}"
            );
        }
    });
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
    let mut out = serde_json::Map::new();
    let servers: [(&str, Uri, u32); 3] = [
        ("baseline server", base.url(), base.proc.pid()),
        ("daemon (cache hit)", cx.d.url(), cx.d.proc.pid()),
        ("daemon, no review log line", quiet.url(), quiet.proc.pid()),
    ];
    for http2 in [false, true] {
        let proto = if http2 { "HTTP/2" } else { "HTTP/1.1" };
        let mut runs: [Vec<Throughput>; 3] = Default::default();
        cx.rt.block_on(async {
            let (n, per) = if http2 {
                (plan.h2_connections, plan.h2_streams)
            } else {
                (plan.h1_connections, 1)
            };
            let clients: Vec<Vec<Https>> = (0..3)
                .map(|_| (0..n).map(|_| client(&cx.pki, http2)).collect())
                .collect();
            for round in 0..plan.rounds {
                // Rotate the order, so that drift and neighbours hurt all alike.
                for k in 0..3 {
                    let i = (round + k) % 3;
                    let (_, url, pid) = &servers[i];
                    runs[i]
                        .push(closed_loop(&clients[i], per, url, &cx.hit_bodies, *pid, plan).await);
                }
            }
        });
        let merged: Vec<Throughput> = runs.iter().map(|r| Throughput::merge(r)).collect();
        for ((name, _, _), t) in servers.iter().zip(&merged) {
            r.line(format!(
                "   {:<40}{:>10}{:>10.0}{:>10.0}{:>20.1}",
                format!("{proto} {name}"),
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
        out.insert(
            proto.into(),
            json!({"baseline": b.json(), "daemon": dm.json(), "daemon_no_review_log": q.json(),
                   "ratio": ratio, "ratio_per_round": per_round,
                   "server_cpu_ratio": dm.cpu_us_per_req() / b.cpu_us_per_req(),
                   "log_line_cpu_us": log_cost}),
        );
    }
    r.json.insert("cache_hits".into(), Value::Object(out));
}

/// Section 2: cache misses one at a time, each paired with the same LDAP work done directly,
/// a cache hit, and the same request to the baseline server (the bare HTTPS round trip).
fn misses(cx: &Ctx, r: &mut Report) {
    let plan = &cx.plan;
    r.line(String::new());
    r.line(format!(
        "2. cache misses, one at a time ({} distinct users, each once directly and once through the daemon; a hit and a baseline request with each)",
        plan.miss_samples
    ));
    let (direct, miss, hit, bare, log) = cx.rt.block_on(async {
        let mut direct = Direct::connect(&cx.slapd).await;
        let (c, cb) = (client(&cx.pki, false), client(&cx.pki, false));
        let (url, burl) = (cx.d.url(), cx.base.url());
        let review = |c: &Https, url: &Uri, body: Bytes| {
            let (c, url) = (c.clone(), url.clone());
            async move {
                let t0 = Instant::now();
                let (s, b) = post(&c, &url, body).await.unwrap();
                let e = t0.elapsed();
                assert!(s == 200 && accepted(&b), "review refused: {b:?}");
                e.as_nanos() as u64
            }
        };
        let first = 1_000;
        // Warm-up: connections on every side, not timed.
        for i in first..first + 20 {
            direct.review(i).await;
            review(&c, &url, user_body(i)).await;
            review(&cb, &burl, user_body(i)).await;
        }
        let mark = cx.slog.mark();
        let mut l: [Lat; 4] = Default::default();
        let deadline = Instant::now() + Duration::from_secs(60);
        for (n, i) in (first + 20..first + 20 + plan.miss_samples).enumerate() {
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
        let [d, m, h, b] = l;
        (d, m, h, b, cx.slog.since(mark))
    });
    let new_conns = SlapdLog::accepts(&log);
    let binds = SlapdLog::user_binds(&log);
    r.line(format!(
        "   {:<44}{:>10}{:>10}{:>10}",
        "", "p50 us", "p99 us", "mean us"
    ));
    for (name, l) in [
        ("ldap3 direct: search + bind + group search", &direct),
        ("daemon: review, cache miss", &miss),
        ("daemon: review, cache hit", &hit),
        ("baseline server: the bare HTTPS round trip", &bare),
    ] {
        r.line(format!(
            "   {:<44}{:>10.0}{:>10.0}{:>10.0}",
            name,
            l.pct(50.0),
            l.pct(99.0),
            l.mean()
        ));
    }
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
        json!({"direct": direct.json(), "daemon_miss": miss.json(), "daemon_hit": hit.json(),
               "baseline_round_trip": bare.json(),
               "ratio_p50_end_to_end": e2e, "ratio_mean_end_to_end": miss.mean() / direct.mean(),
               "ratio_p50_less_round_trip": ldap_part,
               "new_ldap_connections": new_conns, "user_binds": binds}),
    );
}

/// Section 3: hits at a fixed rate alone, then with misses mixed in.
fn mixed(cx: &Ctx, r: &mut Report) {
    let plan = &cx.plan;
    r.line(String::new());
    r.line(format!(
        "3. fixed rate {} req/s for {:.0}s over one HTTP/2 connection (open loop): hits alone, then {}% misses mixed in",
        plan.mixed_rate,
        plan.mixed_run.as_secs_f64(),
        plan.miss_percent
    ));
    let next_miss = Arc::new(AtomicUsize::new(10_000));
    let run = |miss_percent: usize| cx.rt.block_on(open_loop(cx, &next_miss, miss_percent));
    let (alone, _, lag_a) = run(0);
    let (hits, misses, lag_m) = run(plan.miss_percent);
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
    let c = client(&cx.pki, true);
    let url = cx.d.url();
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

/// Section 5: one fresh token reviewed 1,000 times at once; a burst of wrong passwords for one user.
fn burst(cx: &Ctx, r: &mut Report) {
    let plan = &cx.plan;
    r.line(String::new());
    r.line(format!(
        "5. {} concurrent reviews of one fresh token; {} concurrent wrong passwords for one user (max_failures = {})",
        plan.coalesced, plan.wrong_passwords, plan.max_failures
    ));
    let coalesce_user = 50_000.min(plan.users - 2);
    let lock_user = coalesce_user + 1;
    let before = cx.d.metrics();
    let mark = cx.slog.mark();
    let conns = 4;
    let (ok, refused) = cx.rt.block_on(async {
        let clients: Vec<Https> = (0..conns).map(|_| client(&cx.pki, true)).collect();
        for c in &clients {
            post(c, &cx.d.url(), cx.hit_bodies[0].clone())
                .await
                .unwrap();
        }
        // slapd is stopped while the reviews go out, so that every one of them arrives while
        // the first is still waiting for LDAP; then it carries on.
        let burst = |bodies: Vec<Bytes>| {
            let paused = Paused::new(&cx.slapd);
            let (clients, url) = (clients.clone(), cx.d.url());
            let all = tokio::spawn(async move {
                let futs = bodies
                    .into_iter()
                    .enumerate()
                    .map(|(k, b)| post(&clients[k % clients.len()], &url, b));
                futures_util::future::join_all(futs).await
            });
            async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                drop(paused);
                tokio::time::timeout(Duration::from_secs(30), all)
                    .await
                    .expect("the concurrent reviews finish")
                    .unwrap()
            }
        };
        let answers = burst(vec![user_body(coalesce_user); plan.coalesced]).await;
        let ok = answers
            .iter()
            .filter(|a| matches!(a, Ok((200, b)) if accepted(b)))
            .count();
        let wrong = (0..plan.wrong_passwords)
            .map(|k| {
                review_body(&support::token(
                    &format!("user{lock_user}"),
                    &format!("wrong-{k}"),
                ))
            })
            .collect();
        let answers = burst(wrong).await;
        let refused = answers
            .iter()
            .filter(|a| matches!(a, Ok((200, b)) if !accepted(b)))
            .count();
        (ok, refused)
    });
    let log = cx.slog.since(mark);
    let after = cx.d.metrics();
    let delta = |labels: &[&str]| {
        metric(&after, "kube_ldap_webhook_reviews_total", labels)
            - metric(&before, "kube_ldap_webhook_reviews_total", labels)
    };
    let coalesce_binds = SlapdLog::binds_for(&log, &user_dn(coalesce_user));
    let lock_binds = SlapdLog::binds_for(&log, &user_dn(lock_user));
    let accepted_from =
        |source: &str| delta(&["outcome=\"accepted\"", &format!("source=\"{source}\"")]);
    // The connection warm-ups were cache hits too.
    let (by_ldap, by_coalesced, by_cache) = (
        accepted_from("ldap"),
        accepted_from("coalesced"),
        accepted_from("cache") - conns as f64,
    );
    r.line(format!(
        "   one token: {ok}/{} accepted; from LDAP {by_ldap}, waited for that round trip {by_coalesced}, from the cache {by_cache}",
        plan.coalesced
    ));
    r.target(
        "LDAP binds for the concurrent reviews of one token",
        coalesce_binds.to_string(),
        "1",
        coalesce_binds == 1 && ok == plan.coalesced,
    );
    let locally = delta(&["outcome=\"rejected\"", "source=\"local\""]);
    r.line(format!(
        "   wrong passwords: {refused}/{} refused, {locally} of them locally by lockout protection",
        plan.wrong_passwords
    ));
    r.target(
        "LDAP binds for the wrong-password burst",
        lock_binds.to_string(),
        &format!("<= {}", plan.max_failures),
        lock_binds <= plan.max_failures as usize && refused == plan.wrong_passwords,
    );
    r.json.insert(
        "coalescing".into(),
        json!({"concurrent": plan.coalesced, "accepted": ok, "binds": coalesce_binds, "from_ldap": by_ldap,
               "coalesced": by_coalesced, "from_cache": by_cache,
               "wrong_passwords": plan.wrong_passwords, "refused": refused, "wrong_password_binds": lock_binds,
               "refused_locally": locally, "max_failures": plan.max_failures}),
    );
}

/// Section 4: peak RSS of a fresh daemon before and after caching `plan.users` accepted answers.
fn memory(cx: &Ctx, r: &mut Report) {
    let plan = &cx.plan;
    r.line(String::new());
    r.line(format!(
        "4. memory: a fresh daemon (cache.capacity = {0}) filled with {0} accepted answers ({1} concurrent misses)",
        plan.users, plan.fill_concurrency
    ));
    let dm = Daemon::start(&cx.pki, &cx.slapd, plan.users, plan.max_failures, "info");
    let pid = dm.proc.pid();
    // The "empty" daemon has already served this many misses at the fill's concurrency, so
    // that connections, buffers and allocator arenas exist before the first reading.
    let warm = 1_000.min(plan.users / 10);
    let fill = cx.rt.block_on(async {
        let clients: Vec<Https> = (0..4).map(|_| client(&cx.pki, true)).collect();
        let url = dm.url();
        let next = Arc::new(AtomicUsize::new(0));
        let deadline = Instant::now() + plan.fill_budget;
        let run = |upto: usize| {
            let tasks: Vec<_> = (0..plan.fill_concurrency)
                .map(|w| {
                    let (c, url, next) = (clients[w % clients.len()].clone(), url.clone(), next.clone());
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
            async move {
                let mut failed = 0;
                for t in tasks {
                    failed += t.await.unwrap();
                }
                failed
            }
        };
        run(warm).await;
        next.store(warm, Ordering::Relaxed);
        let entries0 = metric(&dm.metrics(), "kube_ldap_webhook_cache_entries", &[]);
        let (hwm0, rss0, cpu0) = (status_kib(pid, "VmHWM:"), status_kib(pid, "VmRSS:"), cpu_seconds(pid));
        let mark = cx.slog.mark();
        let t0 = Instant::now();
        let failed = run(plan.users).await;
        let secs = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds(pid) - cpu0;
        let filled = next.load(Ordering::Relaxed).min(plan.users) - warm;
        let entries1 = metric(&dm.metrics(), "kube_ldap_webhook_cache_entries", &[]);
        let (hwm1, rss1) = (status_kib(pid, "VmHWM:"), status_kib(pid, "VmRSS:"));
        let conns = SlapdLog::accepts(&cx.slog.since(mark));
        json!({"entries_before": entries0, "entries_after": entries1, "vm_hwm_kib_before": hwm0, "vm_hwm_kib_after": hwm1,
               "vm_rss_kib_before": rss0, "vm_rss_kib_after": rss1, "fill_seconds": secs, "fill_reviews": filled,
               "fill_failed": failed, "fill_req_per_s": filled as f64 / secs,
               "daemon_cpu_us_per_miss": cpu * 1e6 / filled.max(1) as f64, "new_ldap_connections": conns})
    });
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
    let mut fill = fill;
    fill["bytes_per_entry_hwm"] = json!(per_entry);
    fill["bytes_per_entry_rss"] = json!(per_entry_rss);
    r.json.insert("memory".into(), fill);
}
