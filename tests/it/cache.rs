//! The answer cache, single flight, stale answers and lockout protection, observed from
//! outside: through the HTTPS endpoint, with LDAP work counted in slapd's own log.

use std::time::{Duration, Instant};

use crate::support::*;

const ALICE_DN: &str = "uid=alice,ou=people,dc=example,dc=org";
const GENERIC: &str = "Invalid username or password";
const UNAVAILABLE: &str = "Authentication backend unavailable";

fn start(cache: &str) -> (Slapd, Daemon) {
    let slapd = Slapd::start();
    let d = slapd.daemon().section("cache", cache).start();
    (slapd, d)
}

/// Lengths to try for a TTL or window that a test must see something happen inside of,
/// shortest first: when the machine was too busy to do the test's steps inside one length,
/// the test starts over with the next. Past the last one it fails.
fn windows() -> impl Iterator<Item = Duration> {
    (0..7).map(|i| Duration::from_secs(1 << i))
}

/// Whether everything since `started` happened inside `window`. Whatever the daemon stored
/// after `started`, it still held for every lookup the test has seen answered by now.
fn inside(started: Instant, window: Duration) -> bool {
    started.elapsed() < window
}

fn secs(d: Duration) -> String {
    format!("\"{}s\"", d.as_secs())
}

/// A cache event counted on /metrics.
fn events(d: &Daemon, event: &str) -> f64 {
    d.metric("kube_ldap_webhook_cache_events_total", &[("event", event)])
}

/// Alice's token reviewed once, then again past the 1s `ttl` of `cache` with slapd stopped:
/// the daemon and the second answer.
async fn review_past_ttl_with_ldap_down(cache: &str) -> (Daemon, Answer) {
    let (mut slapd, d) = start(cache);
    let c = d.client();
    let t = token("alice", "alice-password");
    c.review(&d.url(), "v1", &t).await;
    // The answer was stored before the sleep began: past its ttl after it, however slow.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    slapd.stop();
    let a = c.review(&d.url(), "v1", &t).await;
    (d, a)
}

#[tokio::test(flavor = "multi_thread")]
async fn second_identical_review_makes_no_ldap_operation() {
    let (slapd, d) = start("ttl = \"1h\"");
    d.wait_for_probe();
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
    assert_eq!(
        slapd.operations(),
        before,
        "a cached answer touches no LDAP"
    );
    assert_eq!(events(&d, "hit"), 1.0);
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
    let slapd = Slapd::start();
    for ttl in windows() {
        let cache = format!("ttl = {}\nstale_ttl = \"0s\"", secs(ttl));
        let d = slapd.daemon().section("cache", cache).start();
        let binds = slapd.binds_for(ALICE_DN);
        let started = Instant::now();
        d.login("alice", "alice-password").await;
        d.login("alice", "alice-password").await;
        if !inside(started, ttl) {
            continue;
        }
        assert_eq!(slapd.binds_for(ALICE_DN), binds + 1, "within ttl: cached");
        let a = d
            .login_until("alice", "alice-password", |_| {
                slapd.binds_for(ALICE_DN) > binds + 1
            })
            .await;
        assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
        assert_eq!(
            slapd.binds_for(ALICE_DN),
            binds + 2,
            "after ttl the directory is asked again, once"
        );
        assert!(started.elapsed() >= ttl, "asked again before ttl ({ttl:?})");
        return;
    }
    panic!("two reviews never fitted inside the ttl");
}

#[tokio::test(flavor = "multi_thread")]
async fn rejection_expires_after_negative_ttl() {
    let slapd = Slapd::start();
    for ttl in windows() {
        let cache = format!("negative_ttl = {}\nmax_failures = 10", secs(ttl));
        let d = slapd.daemon().section("cache", cache).start();
        let binds = slapd.binds_for(ALICE_DN);
        let started = Instant::now();
        d.login("alice", "wrong").await;
        let a = d.login("alice", "wrong").await;
        if !inside(started, ttl) {
            continue;
        }
        assert_eq!(
            a.body["status"]["error"], GENERIC,
            "the cached rejection reads the same"
        );
        assert_eq!(slapd.binds_for(ALICE_DN), binds + 1, "within ttl: cached");
        let a = d
            .login_until("alice", "wrong", |_| slapd.binds_for(ALICE_DN) > binds + 1)
            .await;
        assert_eq!(a.body["status"]["error"], GENERIC, "{}", a.raw);
        assert!(started.elapsed() >= ttl, "asked again before negative_ttl");
        return;
    }
    panic!("two reviews never fitted inside the negative ttl");
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
    let d = slapd
        .daemon()
        .section("cache", "capacity = 10\nttl = \"1h\"")
        .start();
    let c = d.client();
    for i in 0..100 {
        let a = c
            .review(&d.url(), "v1", &token(&format!("user{i}"), "secret"))
            .await;
        assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
    }
    assert_eq!(d.metric("kube_ldap_webhook_cache_entries", &[]), 10.0);
    assert_eq!(events(&d, "eviction"), 90.0);
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
    let c = d.http2_client();
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
    let (d, a) = review_past_ttl_with_ldap_down("ttl = \"1s\"\nstale_ttl = \"1h\"").await;
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
    assert_eq!(events(&d, "stale"), 1.0);
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
    let started = Instant::now();
    d.login("alice", "alice-password").await;
    slapd.stop();
    let a = d
        .login_until("alice", "alice-password", |a| {
            a.body["status"]["authenticated"] != true
        })
        .await;
    assert_eq!(a.body["status"]["error"], UNAVAILABLE, "{}", a.raw);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "a stale answer is served until stale_ttl"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_answers_can_be_disabled() {
    let (_d, a) = review_past_ttl_with_ldap_down("ttl = \"1s\"\nstale_ttl = \"0s\"").await;
    assert_eq!(a.body["status"]["error"], UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread")]
async fn lockout_protection_stops_binds_after_max_failures_while_a_cached_token_works() {
    let (slapd, d) = start("max_failures = 3\nfailure_window = \"1h\"\nttl = \"1h\"");
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
    assert_eq!(
        d.metric("kube_ldap_webhook_lockout_refusals_total", &[]),
        3.0
    );
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
    let c = d.http2_client();
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
    let slapd = Slapd::start();
    for window in windows() {
        let cache = format!(
            "max_failures = 2\nfailure_window = {}\nnegative_ttl = \"0s\"",
            secs(window)
        );
        let d = slapd.daemon().section("cache", cache).start();
        let binds = slapd.binds_for(ALICE_DN);
        let started = Instant::now();
        for i in 0..3 {
            d.login("alice", &format!("no-{i}")).await;
        }
        if !inside(started, window) {
            continue;
        }
        assert_eq!(
            slapd.binds_for(ALICE_DN),
            binds + 2,
            "the third guess inside the window never reached LDAP"
        );
        let a = d
            .login_until("alice", "alice-password", |a| {
                a.body["status"]["authenticated"] == true
            })
            .await;
        assert_eq!(a.body["status"]["user"]["username"], "alice", "{}", a.raw);
        assert!(
            started.elapsed() >= window,
            "the right password was let through before the window ended"
        );
        return;
    }
    panic!("three reviews never fitted inside the failure window");
}

#[tokio::test(flavor = "multi_thread")]
async fn password_change_takes_effect_once_ttl_has_passed() {
    let slapd = Slapd::start();
    for ttl in windows() {
        slapd.set_password(ALICE_DN, "alice-password");
        let d = slapd
            .daemon()
            .section("cache", format!("ttl = {}", secs(ttl)))
            .start();
        let started = Instant::now();
        let a = d.login("alice", "alice-password").await;
        assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
        slapd.set_password(ALICE_DN, "new-password");
        let a = d.login("alice", "alice-password").await;
        if !inside(started, ttl) {
            continue;
        }
        assert_eq!(
            a.body["status"]["authenticated"], true,
            "within ttl the cached answer stands"
        );
        let a = d
            .login_until("alice", "alice-password", |a| {
                a.body["status"]["authenticated"] != true
            })
            .await;
        assert_eq!(
            a.body["status"]["error"], GENERIC,
            "after ttl the old password is refused"
        );
        assert!(started.elapsed() >= ttl, "refused before ttl");
        let a = d.login("alice", "new-password").await;
        assert_eq!(a.body["status"]["authenticated"], true);
        return;
    }
    panic!("two reviews and a password change never fitted inside the ttl");
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
