//! Section 4: 200 concurrent first reviews of one token (single flight), for a few fresh
//! tokens one after another; the lone miss of a fresh user beside each, for scale.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{BenchResult, Lat};
use crate::load::{accepted, clients, review, uri, user_body};
use crate::plot::{self, Series};
use crate::support::{sample_sum, Daemon};
use crate::{daemon, Ctx, Report};

const CONCURRENT: usize = 200;
const TOKENS: usize = 5;
/// HTTP/2 connections the 200 go over, as a few kube-apiservers would send them.
const CONNECTIONS: usize = 4;

fn reviews(d: &Daemon, source: &str) -> f64 {
    sample_sum(
        &d.metrics(),
        "kube_ldap_webhook_reviews_total",
        &[("outcome", "accepted"), ("source", source)],
    )
}

/// `TOKENS` rounds of `CONCURRENT` reviews of user `first + t`'s fresh token at once, each
/// after a lone miss of user `first + TOKENS + t`: every answer's latency, the lone
/// misses', and how many of the concurrent reviews were accepted.
async fn bursts(d: &Daemon, first: usize) -> BenchResult<(Lat, Lat, usize)> {
    let (url, cs, lone) = (uri(d)?, clients(d, CONNECTIONS, true), clients(d, 1, false));
    let (mut all, mut single, mut ok) = (Lat::default(), Lat::default(), 0);
    // Warm connections (a cache miss each, counted as LDAP).
    for c in cs.iter().chain(&lone) {
        review(c, &url, user_body(first + 2 * TOKENS - 1)).await?;
    }
    for t in 0..TOKENS {
        single.push(review(&lone[0], &url, user_body(first + TOKENS + t)).await?);
        let body = user_body(first + t);
        let futs = (0..CONCURRENT).map(|k| {
            let (c, url, body) = (cs[k % CONNECTIONS].clone(), url.clone(), body.clone());
            async move {
                let t0 = Instant::now();
                let a = c.send("POST", url, body).await;
                (t0.elapsed(), matches!(a, Ok((200, b)) if accepted(&b)))
            }
        });
        let answers = tokio::time::timeout(
            Duration::from_secs(60),
            futures_util::future::join_all(futs),
        )
        .await?;
        for (took, accepted) in answers {
            all.push(took);
            ok += usize::from(accepted);
        }
    }
    Ok((all, single, ok))
}

pub fn run(cx: &Ctx, r: &mut Report) -> BenchResult {
    r.line(String::new());
    r.line(format!(
        "4. {CONCURRENT} concurrent first reviews of one fresh token over {CONNECTIONS} HTTP/2 connections, {TOKENS} tokens one after another"
    ));
    let d = daemon(&cx.slapd, "capacity = 10000\nttl = \"3h\"");
    // Past every user the other sections reviewed.
    let first = cx.plan.users() - 2 * TOKENS;
    let sources = ["ldap", "coalesced", "cache"];
    let before: Vec<f64> = sources.iter().map(|s| reviews(&d, s)).collect();
    let mark = cx.slapd.log_mark();
    let (all, single, ok) = cx.rt.block_on(bursts(&d, first))?;
    let log = cx.slapd.stats_since(mark);
    let binds: usize = (0..TOKENS)
        .map(|t| {
            log.binds_for(&format!(
                "uid=user{},ou=people,dc=example,dc=org",
                first + t
            ))
        })
        .sum();
    let delta: Vec<f64> = sources
        .iter()
        .zip(&before)
        .map(|(s, b)| reviews(&d, s) - b)
        .collect();
    r.line(format!(
        "   answers: {ok}/{} accepted; from LDAP {} (of them {} the lone misses and {} warm-ups), waited for a round trip in flight {}, from the cache {}",
        CONCURRENT * TOKENS, delta[0], TOKENS, CONNECTIONS + 1, delta[1], delta[2]
    ));
    r.line(format!(
        "   latency of the {} answers: p50 {:.0} us, p99 {:.0} us, max {:.0} us; a lone miss: p50 {:.0} us",
        CONCURRENT * TOKENS, all.p50(), all.p99(), all.us(100.0), single.p50()
    ));
    r.target(
        "LDAP binds for 200 concurrent first reviews of one token",
        format!(
            "{:.1} per token ({binds} for {TOKENS} tokens)",
            binds as f64 / TOKENS as f64
        ),
        "1",
        binds == TOKENS && ok == CONCURRENT * TOKENS,
    );
    let mut sorted = all.0.clone();
    sorted.sort_unstable();
    let n = sorted.len().max(1) as f64;
    let cdf: Vec<(f64, f64)> = sorted
        .iter()
        .enumerate()
        .map(|(i, &ns)| (ns as f64 / 1000.0, (i + 1) as f64 * 100.0 / n))
        .collect();
    plot::draw(
        "growth-single-flight",
        &format!(
            "{CONCURRENT} concurrent first reviews of a token: {binds} binds for {TOKENS} tokens"
        ),
        "latency (us)",
        false,
        &[("answers within (%)", vec![Series::new("200 at once", cdf)])],
    )?;
    r.json.insert("single_flight".into(), json!({"concurrent": CONCURRENT, "tokens": TOKENS, "accepted": ok, "binds": binds,
        "from_ldap": delta[0], "coalesced": delta[1], "from_cache": delta[2], "latency": all.to_json(), "lone_miss": single.to_json()}));
    Ok(())
}
