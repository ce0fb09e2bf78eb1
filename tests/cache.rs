//! The answer cache, single flight, stale answers and lockout protection, observed from
//! outside: through the HTTPS endpoint, with LDAP work counted in slapd's own log.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::*;

const ALICE_DN: &str = "uid=alice,ou=people,dc=example,dc=org";
const GENERIC: &str = "Invalid username or password";
const UNAVAILABLE: &str = "Authentication backend unavailable";

fn start(cache: &str) -> (Slapd, Daemon) {
    let slapd = Slapd::start();
    let d = Daemon::start(&[slapd.url()], &[("cache", cache)]);
    (slapd, d)
}

fn metric(d: &Daemon, prefix: &str) -> f64 {
    let (_, text) = d.ops("/metrics");
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn second_identical_review_makes_no_ldap_operation() {
    let (slapd, d) = start("");
    let c = d.client();
    let t = token("alice", "alice-password");
    assert_eq!(
        c.review(&d.url(), "v1", &t).await.body["status"]["authenticated"],
        true
    );
    let before = slapd.operations();
    let again = c.review(&d.url(), "v1", &t).await;
    assert_eq!(again.body["status"]["authenticated"], true);
    assert_eq!(
        again.body["status"]["user"]["groups"],
        serde_json::json!(["admins", "developers"])
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        slapd.operations(),
        before,
        "a cached answer touches no LDAP"
    );
    assert_eq!(
        metric(&d, "kube_ldap_webhook_cache_events_total{event=\"hit\"}"),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_token_in_the_other_api_version_is_a_cache_hit_answered_in_its_version() {
    let (slapd, d) = start("");
    let c = d.client();
    let t = token("alice", "alice-password");
    c.review(&d.url(), "v1", &t).await;
    let a = c.review(&d.url(), "v1beta1", &t).await;
    assert_eq!(a.body["apiVersion"], "authentication.k8s.io/v1beta1");
    assert_eq!(a.body["status"]["authenticated"], true);
    assert_eq!(slapd.binds_for(ALICE_DN), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn accepted_answer_expires_after_ttl() {
    let (slapd, d) = start("ttl = \"1s\"\nstale_ttl = \"0s\"");
    let c = d.client();
    let t = token("alice", "alice-password");
    c.review(&d.url(), "v1", &t).await;
    c.review(&d.url(), "v1", &t).await;
    assert_eq!(slapd.binds_for(ALICE_DN), 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        c.review(&d.url(), "v1", &t).await.body["status"]["authenticated"],
        true
    );
    assert_eq!(
        slapd.binds_for(ALICE_DN),
        2,
        "after ttl the directory is asked again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rejection_expires_after_negative_ttl() {
    let (slapd, d) = start("negative_ttl = \"1s\"\nmax_failures = 10");
    let c = d.client();
    let t = token("alice", "wrong");
    c.review(&d.url(), "v1", &t).await;
    let a = c.review(&d.url(), "v1", &t).await;
    assert_eq!(
        a.body["status"]["error"], GENERIC,
        "the cached rejection reads the same"
    );
    assert_eq!(slapd.binds_for(ALICE_DN), 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    c.review(&d.url(), "v1", &t).await;
    assert_eq!(slapd.binds_for(ALICE_DN), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn correct_password_right_after_a_wrong_one_works_at_once() {
    let (_slapd, d) = start("negative_ttl = \"1h\"");
    let c = d.client();
    let a = c
        .review(&d.url(), "v1", &token("alice", "alice-passwort"))
        .await;
    assert_eq!(a.body["status"]["authenticated"], false);
    let a = c
        .review(&d.url(), "v1", &token("alice", "alice-password"))
        .await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
}

#[tokio::test(flavor = "multi_thread")]
async fn capacity_bound_holds_under_ten_times_capacity_distinct_tokens() {
    let slapd = Slapd::start_with(&many_users_ldif(100, "secret"));
    let d = Daemon::start(&[slapd.url()], &[("cache", "capacity = 10")]);
    let c = d.client();
    for i in 0..100 {
        let a = c
            .review(&d.url(), "v1", &token(&format!("user{i}"), "secret"))
            .await;
        assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
    }
    assert_eq!(metric(&d, "kube_ldap_webhook_cache_entries "), 10.0);
    assert_eq!(
        metric(
            &d,
            "kube_ldap_webhook_cache_events_total{event=\"eviction\"}"
        ),
        90.0
    );
    // The most recent tokens are still there; the oldest were evicted.
    let before = slapd.user_binds();
    c.review(&d.url(), "v1", &token("user99", "secret")).await;
    assert_eq!(slapd.user_binds(), before);
    c.review(&d.url(), "v1", &token("user0", "secret")).await;
    assert_eq!(slapd.user_binds(), before + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_concurrent_reviews_of_a_fresh_token_cause_one_bind() {
    let (slapd, d) = start("");
    let c = Arc::new(Https::new(
        &d.pki,
        Some((&d.pki.client_cert, &d.pki.client_key)),
        true,
    ));
    let t = token("alice", "alice-password");
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let (c, url, t) = (c.clone(), d.url(), t.clone());
        set.spawn(async move { c.review(&url, "v1", &t).await });
    }
    while let Some(a) = set.join_next().await {
        assert_eq!(a.unwrap().body["status"]["authenticated"], true);
    }
    assert_eq!(slapd.binds_for(ALICE_DN), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_answer_is_served_while_ldap_is_down() {
    let (mut slapd, d) = start("ttl = \"1s\"\nstale_ttl = \"1h\"");
    let c = d.client();
    let t = token("alice", "alice-password");
    c.review(&d.url(), "v1", &t).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    slapd.stop();
    let a = c.review(&d.url(), "v1", &t).await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
    assert_eq!(a.body["status"]["user"]["username"], "alice");
    d.wait_for_log("source=\"stale\"");
    let line = d
        .log()
        .lines()
        .find(|l| l.contains("source=\"stale\""))
        .unwrap_or_default()
        .to_string();
    assert!(
        line.contains("stale_secs=") && !line.contains("stale_secs=0"),
        "the staleness (over a second) is in the log line: {line}"
    );
    assert_eq!(
        metric(&d, "kube_ldap_webhook_cache_events_total{event=\"stale\"}"),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_token_during_an_outage_gets_the_backend_error() {
    let (mut slapd, d) = start("");
    let c = d.client();
    c.review(&d.url(), "v1", &token("alice", "alice-password"))
        .await;
    slapd.stop();
    let a = c.review(&d.url(), "v1", &token("bob", "pa:ss:word")).await;
    assert_eq!(a.body["status"]["error"], UNAVAILABLE);
    let a = c
        .review(&d.url(), "v1", &token("alice", "another-password"))
        .await;
    assert_eq!(
        a.body["status"]["error"], UNAVAILABLE,
        "a rejection is never made up while down"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_answer_is_refused_after_stale_ttl() {
    let (mut slapd, d) = start("ttl = \"1s\"\nstale_ttl = \"2s\"");
    let c = d.client();
    let t = token("alice", "alice-password");
    c.review(&d.url(), "v1", &t).await;
    slapd.stop();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let a = c.review(&d.url(), "v1", &t).await;
    assert_eq!(a.body["status"]["error"], UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_answers_can_be_disabled() {
    let (mut slapd, d) = start("ttl = \"1s\"\nstale_ttl = \"0s\"");
    let c = d.client();
    let t = token("alice", "alice-password");
    c.review(&d.url(), "v1", &t).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    slapd.stop();
    let a = c.review(&d.url(), "v1", &t).await;
    assert_eq!(a.body["status"]["error"], UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread")]
async fn lockout_protection_stops_binds_after_max_failures_while_a_cached_token_works() {
    let (slapd, d) = start("max_failures = 3\nfailure_window = \"5m\"");
    let c = d.client();
    let good = token("alice", "alice-password");
    assert_eq!(
        c.review(&d.url(), "v1", &good).await.body["status"]["authenticated"],
        true
    );
    for i in 0..6 {
        let a = c
            .review(&d.url(), "v1", &token("ALICE", &format!("guess-{i}")))
            .await;
        assert_eq!(
            a.body["status"]["error"], GENERIC,
            "refusals look like any rejection"
        );
    }
    assert_eq!(
        slapd.binds_for(ALICE_DN),
        1 + 3,
        "only max_failures wrong passwords reached LDAP"
    );
    assert_eq!(metric(&d, "kube_ldap_webhook_lockout_refusals_total"), 3.0);
    let a = c.review(&d.url(), "v1", &good).await;
    assert_eq!(
        a.body["status"]["authenticated"], true,
        "the cached good token keeps working"
    );
    let a = c
        .review(&d.url(), "v1", &token("alice", "alice-password\u{20ac}"))
        .await;
    assert_eq!(a.body["status"]["authenticated"], false);
    assert_eq!(
        slapd.binds_for(ALICE_DN),
        4,
        "no new token for alice reaches LDAP"
    );
    let a = c.review(&d.url(), "v1", &token("bob", "pa:ss:word")).await;
    assert_eq!(
        a.body["status"]["authenticated"], true,
        "other users are unaffected"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_concurrent_wrong_passwords_binds_at_most_max_failures_times() {
    let (slapd, d) = start("max_failures = 3");
    let c = Arc::new(Https::new(
        &d.pki,
        Some((&d.pki.client_cert, &d.pki.client_key)),
        true,
    ));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..50 {
        let (c, url) = (c.clone(), d.url());
        set.spawn(async move {
            c.review(&url, "v1", &token("alice", &format!("burst-{i}")))
                .await
        });
    }
    while let Some(a) = set.join_next().await {
        assert_eq!(a.unwrap().body["status"]["authenticated"], false);
    }
    assert_eq!(
        slapd.binds_for(ALICE_DN),
        3,
        "exactly max_failures wrong passwords reached LDAP, no more and no fewer"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lockout_protection_ends_with_the_window() {
    let (slapd, d) = start("max_failures = 2\nfailure_window = \"1s\"\nnegative_ttl = \"0s\"");
    let c = d.client();
    for i in 0..3 {
        c.review(&d.url(), "v1", &token("alice", &format!("no-{i}")))
            .await;
    }
    assert_eq!(slapd.binds_for(ALICE_DN), 2);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let a = c
        .review(&d.url(), "v1", &token("alice", "alice-password"))
        .await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
}

#[tokio::test(flavor = "multi_thread")]
async fn password_change_takes_effect_once_ttl_has_passed() {
    let (slapd, d) = start("ttl = \"1s\"");
    let c = d.client();
    let old = token("alice", "alice-password");
    assert_eq!(
        c.review(&d.url(), "v1", &old).await.body["status"]["authenticated"],
        true
    );
    slapd.set_password(ALICE_DN, "new-password");
    assert_eq!(
        c.review(&d.url(), "v1", &old).await.body["status"]["authenticated"],
        true,
        "within ttl the cached answer stands"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let a = c.review(&d.url(), "v1", &old).await;
    assert_eq!(
        a.body["status"]["error"], GENERIC,
        "after ttl the old password is refused"
    );
    let a = c
        .review(&d.url(), "v1", &token("alice", "new-password"))
        .await;
    assert_eq!(a.body["status"]["authenticated"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_clears_the_cache() {
    let (slapd, d) = start("");
    let c = d.client();
    let t = token("alice", "alice-password");
    c.review(&d.url(), "v1", &t).await;
    d.signal(libc::SIGHUP);
    d.wait_for_log("answer cache cleared");
    let a = c.review(&d.url(), "v1", &t).await;
    assert_eq!(a.body["status"]["authenticated"], true);
    assert_eq!(
        slapd.binds_for(ALICE_DN),
        2,
        "the reviewed token was forgotten"
    );
}
