//! Section 5: one fresh token reviewed 1,000 times at once; a burst of wrong passwords for
//! one user.

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;

use crate::load::{accepted, client, post, review_body, uri, user_body};
use crate::report::Report;
use crate::support::{self, sample_sum, Https};
use crate::{user_dn, Ctx};

/// HTTP/2 connections the bursts go over.
const CONNECTIONS: usize = 4;

pub fn run(cx: &Ctx, r: &mut Report) {
    let plan = &cx.plan;
    r.line(String::new());
    r.line(format!(
        "5. {} concurrent reviews of one fresh token; {} concurrent wrong passwords for one user (max_failures = {})",
        plan.coalesced, plan.wrong_passwords, plan.max_failures
    ));
    let coalesce_user = 50_000.min(plan.users - 2);
    let lock_user = coalesce_user + 1;
    let before = cx.d.metrics();
    let mark = cx.slapd.log_mark();
    let (ok, refused) = cx.rt.block_on(bursts(cx, coalesce_user, lock_user));
    let log = cx.slapd.stats_since(mark);
    let after = cx.d.metrics();
    let delta = |labels: &[(&str, &str)]| {
        sample_sum(&after, "kube_ldap_webhook_reviews_total", labels)
            - sample_sum(&before, "kube_ldap_webhook_reviews_total", labels)
    };
    let coalesce_binds = log.binds_for(&user_dn(coalesce_user));
    let lock_binds = log.binds_for(&user_dn(lock_user));
    let accepted_from = |source: &str| delta(&[("outcome", "accepted"), ("source", source)]);
    // The connection warm-ups were cache hits too.
    let (by_ldap, by_coalesced, by_cache) = (
        accepted_from("ldap"),
        accepted_from("coalesced"),
        accepted_from("cache") - CONNECTIONS as f64,
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
    let locally = delta(&[("outcome", "rejected"), ("source", "local")]);
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

/// The two bursts: `plan.coalesced` reviews of user `coalesce_user`'s fresh token, then
/// `plan.wrong_passwords` wrong passwords for user `lock_user`. How many of the first were
/// accepted, and how many of the second refused.
async fn bursts(cx: &Ctx, coalesce_user: usize, lock_user: usize) -> (usize, usize) {
    let plan = &cx.plan;
    let clients: Vec<Https> = (0..CONNECTIONS).map(|_| client(&cx.d.pki, true)).collect();
    for c in &clients {
        post(c, &uri(&cx.d), cx.hit_bodies[0].clone())
            .await
            .unwrap();
    }
    let answers = burst(cx, &clients, vec![user_body(coalesce_user); plan.coalesced]).await;
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
    let answers = burst(cx, &clients, wrong).await;
    let refused = answers
        .iter()
        .filter(|a| matches!(a, Ok((200, b)) if !accepted(b)))
        .count();
    (ok, refused)
}

/// Every one of `bodies` at once, over `clients`. slapd is stopped while the reviews go
/// out, so that every one of them arrives while the first is still waiting for LDAP; then
/// it carries on.
async fn burst(
    cx: &Ctx,
    clients: &[Https],
    bodies: Vec<Bytes>,
) -> Vec<Result<(u16, Bytes), String>> {
    let paused = cx.slapd.pause();
    let (clients, url) = (clients.to_vec(), uri(&cx.d));
    let all = tokio::spawn(async move {
        let futs = bodies
            .into_iter()
            .enumerate()
            .map(|(k, b)| post(&clients[k % clients.len()], &url, b));
        futures_util::future::join_all(futs).await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(paused);
    tokio::time::timeout(Duration::from_secs(30), all)
        .await
        .expect("the concurrent reviews finish")
        .unwrap()
}
