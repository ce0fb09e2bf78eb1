//! `cargo bench --bench costs` (part of `make bench`): what each kind of request costs the
//! daemon, beside its floor, in one run against a real slapd (ldaps), the release daemon
//! and, for Negotiate, the tests' Samba AD DC; on 127.0.0.1 only.
//!
//! Every row is timed one request at a time (latency without queueing) in blocks of 50
//! that alternate with its floor's, so that the machine's drift weighs on both alike. The
//! floor is the least work the same answer can take: a fixed-answer HTTPS server on the
//! daemon's own stack (benches/reviews' baseline) for a hit and a lockout refusal, the same
//! LDAP operations done directly with ldap3 on warm connections for a miss, a re-check or
//! a token exchange, the directory's own bind for a login, /healthz for /readyz. CPU per
//! request is the CPU time of the processes doing the work (the daemon and slapd, or the
//! floor's server) over the block, divided by its requests.
//!
//! Prints the table and writes `target/bench/costs.json`. `KLW_BENCH_QUICK=1`: a short
//! smoke run; `KLW_BENCH_NEGOTIATE=0`: without the Samba DC.
#![allow(clippy::disallowed_methods)] // a real daemon and real LDAP servers run on the real clock

// The integration tests' harness, whole: this bench uses a part of it.
#[allow(dead_code, unused_imports)]
#[path = "../../tests/it/support/mod.rs"]
mod support;

#[allow(dead_code)]
#[path = "../common/mod.rs"]
mod common;

// The fixed-answer server of benches/reviews, as it is there.
#[allow(dead_code)]
#[path = "../reviews/baseline.rs"]
mod baseline;

mod client;
mod floor;
mod rows;

use std::time::Instant;

use bytes::Bytes;
use serde_json::{json, Value};

use client::LoginClient;
use common::{cpu_precise, write_json, BenchResult, Lat};
use rows::{Env, Row};
use support::issued::{Issuer, KeyPair};
use support::kerberos::{kerberos_issuer, Ticket};
use support::{Https, Site, Slapd};

pub const PASSWORD: &str = "bench-password";
const PEOPLE: &str = "ou=people,dc=example,dc=org";
const GROUPS: &str = "ou=groups,dc=example,dc=org";
const USERS: usize = 3_000;
const BLOCK: usize = 50;
const WARM: usize = 5;

/// The Negotiate row's own daemon on the Samba DC, and its floor's connection.
pub struct Negotiate {
    pub issuer: Issuer,
    pub pid: u32,
    pub login_uri: hyper::Uri,
    /// Each request's credential is made before its clock runs (a new authenticator each).
    pub ticket: Ticket,
    pub spn: String,
    pub ldap: ldap3::Ldap,
    pub bind_dn: String,
    pub user: String,
    pub password: String,
}

pub fn user_body(user: &str) -> Bytes {
    Bytes::from(support::review_body("v1", &support::token(user, PASSWORD)))
}

/// `USERS` users, each in a team of 50 and one of 40 projects.
fn directory() -> String {
    let mut s = support::many_users_ldif(USERS, PASSWORD);
    let mut group = |name: String, members: Vec<usize>| {
        s.push_str(&format!(
            "dn: cn={name},{GROUPS}\nobjectClass: groupOfNames\ncn: {name}\n"
        ));
        for i in members {
            s.push_str(&format!("member: uid=user{i},{PEOPLE}\n"));
        }
        s.push('\n');
    };
    for t in 0..USERS / 50 {
        group(format!("team{t}"), (t * 50..(t + 1) * 50).collect());
    }
    for p in 0..40 {
        group(format!("project{p}"), (p..USERS).step_by(40).collect());
    }
    s
}

fn slapd_pid(slapd: &Slapd) -> BenchResult<u32> {
    Ok(std::fs::read_to_string(slapd.dir.path().join("slapd.pid"))?
        .trim()
        .parse()?)
}

fn main() -> BenchResult {
    // The daemon as it ships: no audit stream.
    support::without_audit();
    if baseline::is_baseline() {
        baseline::main();
        return Ok(());
    }
    kube_ldap_webhook::install_default_provider();
    let quick = common::quick();
    let samples = if quick { 50 } else { 200 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = Instant::now();
    let slapd = Slapd::start_with(&directory());
    let (keys, jwt) = (KeyPair::new(), support::jwt::EsKeys::new());
    let i = Issuer::start_with(
        support::Daemon::builder()
            .site(&Site::openldap())
            .url(slapd.ldaps_url())
            .section("ldap", format!("ca_file = \"{}\"", slapd.ca_file.display()))
            .log_level("info"),
        &[("cache", "capacity = 10000\nttl = \"30m\"\nmax_failures = 3")],
        &keys,
        "rate = 100000\nburst = 10000",
        &support::jwt::jwt_section(&jwt, &[]),
    );
    i.daemon.wait_for_ready();
    let login_port = i.login_port;
    let mut env = rt.block_on(setup(i.daemon, &slapd, login_port, samples))?;
    let base = baseline::Baseline::start(
        &env.d.pki,
        &rt.block_on(
            env.review
                .send("POST", env.review_uri.clone(), env.hit_bodies[0].clone()),
        )?
        .1,
    );
    env.base_uri = base.url();
    if std::env::var("KLW_BENCH_NEGOTIATE").as_deref() != Ok("0") {
        env.negotiate = Some(rt.block_on(negotiate())?);
    }
    println!(
        "cost table: one request at a time, {samples} per row and {samples} of its floor in alternating blocks of {BLOCK}; {USERS} LDAP users in 2 groups each, over ldaps{}",
        if quick { " (QUICK: smoke run, not for quoting)" } else { "" }
    );
    println!(
        "   {:<34}{:>8}{:>8}{:>9}   {:<34}{:>8}{:>8}{:>9}   {:>6}{:>6}{:>6}",
        "request",
        "p50 us",
        "p99 us",
        "CPU us",
        "floor",
        "p50 us",
        "p99 us",
        "CPU us",
        "p50 x",
        "p99 x",
        "CPU x"
    );
    let (slapd_pid, base_pid) = (slapd_pid(&slapd)?, base.pid());
    let rows = [
        Row::HitBasic,
        Row::HitIssued,
        Row::MissBasic,
        Row::MissIssued,
        Row::LoginPassword,
        Row::LoginNegotiate,
        Row::LoginPasswordSamba,
        Row::TokenExchange,
        Row::Lockout,
        Row::Readyz,
    ];
    let mut out = Vec::new();
    for row in rows {
        if matches!(row, Row::LoginNegotiate | Row::LoginPasswordSamba) && env.negotiate.is_none() {
            continue;
        }
        match rt.block_on(measure(&mut env, row, samples, slapd_pid, base_pid)) {
            Ok(v) => out.push(v),
            Err(e) => println!("   {:<34}failed: {e}", row.name()),
        }
    }
    println!("(total {:.0}s)", started.elapsed().as_secs_f64());
    println!(
        "wrote {}",
        write_json("costs", &json!({"samples": samples, "rows": out}))?.display()
    );
    Ok(())
}

/// The daemon's and the floor's latencies and CPU seconds for `samples` calls each.
async fn measure(
    env: &mut Env,
    row: Row,
    samples: usize,
    slapd: u32,
    base: u32,
) -> BenchResult<Value> {
    let (dp, fp) = env.pids(row, slapd, base);
    let cpu = |pids: &[u32]| pids.iter().map(|&p| cpu_precise(p)).sum::<f64>();
    let (mut dl, mut fl, mut dc, mut fc) = (Lat::default(), Lat::default(), 0.0, 0.0);
    // Connections and caches warm, outside the figures.
    for j in 0..WARM {
        env.daemon(row, j).await?;
        env.floor(row, j).await?;
    }
    let mut k = WARM;
    while k < WARM + samples {
        let n = BLOCK.min(WARM + samples - k);
        let c0 = cpu(&dp);
        for j in k..k + n {
            dl.push(env.daemon(row, j).await?);
        }
        dc += cpu(&dp) - c0;
        let c1 = cpu(&fp);
        for j in k..k + n {
            fl.push(env.floor(row, j).await?);
        }
        fc += cpu(&fp) - c1;
        k += n;
    }
    let per = |s: f64, l: &Lat| {
        if l.0.is_empty() {
            f64::NAN
        } else {
            s * 1e6 / l.0.len() as f64
        }
    };
    let (dcpu, fcpu) = (
        per(dc, &dl),
        if fp.is_empty() {
            f64::NAN
        } else {
            per(fc, &fl)
        },
    );
    println!(
        "   {:<34}{:>8.0}{:>8.0}{:>9.1}   {:<34}{:>8.0}{:>8.0}{:>9.1}   {:>6.2}{:>6.2}{:>6.2}",
        row.name(),
        dl.p50(),
        dl.p99(),
        dcpu,
        row.floor(),
        fl.p50(),
        fl.p99(),
        fcpu,
        dl.p50() / fl.p50(),
        dl.p99() / fl.p99(),
        dcpu / fcpu
    );
    Ok(
        json!({"row": row.name(), "floor": row.floor(), "daemon": dl.to_json(), "floor_latency": fl.to_json(),
              "cpu_us_per_req": dcpu, "floor_cpu_us_per_req": fcpu,
              "ratio_p50": dl.p50() / fl.p50(), "ratio_p99": dl.p99() / fl.p99(), "ratio_cpu": dcpu / fcpu}),
    )
}

/// Clients, cached answers and tokens for the rows on daemon `d`.
async fn setup(
    d: support::Daemon,
    slapd: &Slapd,
    login_port: u16,
    samples: usize,
) -> BenchResult<Env> {
    let review = Https::new(&d.pki, Some(d.pki.client_identity()), false);
    let review_uri: hyper::Uri = format!("{}?timeout=30s", d.url()).parse()?;
    let at = |path: &str| format!("https://127.0.0.1:{login_port}{path}").parse::<hyper::Uri>();
    let login = LoginClient::new(&d.pki);
    let (login_uri, token_uri) = (at("/login")?, at("/token")?);
    let hit_bodies: Vec<Bytes> = (0..rows::HOT)
        .map(|u| user_body(&format!("user{u}")))
        .collect();
    // Sessions of the issued-hit users; then every token the rows review once first.
    let session = |u: usize| {
        let (login, uri) = (login.clone(), login_uri.clone());
        async move {
            let basic = format!("Basic {}", support::token(&format!("user{u}"), PASSWORD));
            let (status, b) = login.post(&uri, &basic).await?;
            let v: Value = serde_json::from_slice(&b)?;
            match (status, v["token"].as_str()) {
                (200, Some(t)) => Ok::<_, Box<dyn std::error::Error>>(t.to_string()),
                _ => Err(format!("login of user{u}: {status} {v}").into()),
            }
        }
    };
    let mut sessions = Vec::new();
    for u in rows::HOT..rows::HOT + rows::ISSUED_HOT {
        sessions.push(session(u).await?);
    }
    let review_of = |t: &str| Bytes::from(support::review_body("v1", t));
    let issued_hits: Vec<Bytes> = sessions.iter().map(|t| review_of(t)).collect();
    for b in hit_bodies.iter().chain(&issued_hits) {
        review.send("POST", review_uri.clone(), b.clone()).await?;
    }
    let mut fresh_issued = Vec::new();
    for u in rows::RECHECK..rows::RECHECK + WARM + samples {
        fresh_issued.push(review_of(&session(u).await?));
    }
    // Lockout protection engaged for the locked user: max_failures wrong passwords.
    for k in 0..4 {
        review
            .send("POST", review_uri.clone(), rows::wrong(k))
            .await?;
    }
    let direct = floor::Direct::connect(&slapd.ldaps_url(), &slapd.ca_file).await?;
    Ok(Env {
        d,
        review,
        review_uri: review_uri.clone(),
        base_uri: review_uri,
        login,
        login_uri,
        token_uri,
        direct,
        hit_bodies,
        issued_hits,
        sessions,
        fresh_issued,
        negotiate: None,
    })
}

/// The Negotiate row's daemon on the tests' Samba DC (its KDC and keytab), a ticket for
/// alice, the credentials, and a warm ldaps connection to bind as alice.
async fn negotiate() -> BenchResult<Negotiate> {
    let dc = support::Dc::shared();
    let keys = KeyPair::new();
    let issuer = kerberos_issuer(
        dc,
        &keys,
        "[\"EXAMPLE\", \"example.test\"]",
        "",
        "rate = 100000\nburst = 10000",
    );
    issuer.daemon.wait_for_probe();
    let ticket = Ticket::new(dc, "alice@EXAMPLE.TEST", "Passw0rd!alice", &[]);
    let spn = dc.var("SAMBA_HTTP_SPN");
    let ldap = floor::connect(&dc.ldaps_url(), std::path::Path::new(dc.ca_file())).await?;
    Ok(Negotiate {
        pid: issuer.daemon.pid(),
        login_uri: issuer.login_url().parse()?,
        ticket,
        spn: spn.to_string(),
        ldap,
        bind_dn: format!("CN=alice,{}", dc.var("SAMBA_USERS_DN")),
        user: "alice".into(),
        password: "Passw0rd!alice".into(),
        issuer,
    })
}
