//! Lockout protection as an attacker meets it: budgets belong to the account, not to the
//! string typed; unknown names cannot push an account out or be told apart from it; a
//! token that worked before is not locked out by someone else's guesses.

use std::time::Duration;

use crate::support::*;

const ALICE_DN: &str = "uid=alice,ou=people,dc=example,dc=org";
const GENERIC: &str = "Invalid username or password";

fn start(cache: &str) -> (Slapd, Daemon) {
    let slapd = Slapd::start();
    let d = slapd
        .daemon()
        .section("cache", format!("max_failures = 3\n{cache}"))
        .start();
    (slapd, d)
}

/// Spellings slapd's `uid` matching (and AD's) folds to `alice`.
const SPELLINGS: [&str; 8] = [
    "alice",
    "ALICE",
    "Alice",
    "ａｌｉｃｅ",
    "ＡＬＩＣＥ",
    "\u{1d41a}lice",
    "ⓐlice",
    "ªlice",
];

#[tokio::test(flavor = "multi_thread")]
async fn wrong_passwords_in_eight_spellings_bind_one_account_only_max_failures_times() {
    let (slapd, d) = start("");
    for (i, spelling) in SPELLINGS.iter().enumerate() {
        let a = d.login(spelling, &format!("guess-{i}")).await;
        assert_eq!(a.body["status"]["error"], GENERIC, "{spelling}: {}", a.raw);
    }
    assert_eq!(slapd.binds_for(ALICE_DN), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_right_password_in_another_spelling_is_refused_while_the_account_is_locked() {
    let (slapd, d) = start("");
    for i in 0..3 {
        d.login("alice", &format!("guess-{i}")).await;
    }
    let a = d.login("ＡＬＩＣＥ", "alice-password").await;
    assert_eq!(a.body["status"]["error"], GENERIC, "{}", a.raw);
    assert_eq!(slapd.binds_for(ALICE_DN), 3, "refused without a bind");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_unknown_names_leaves_a_locked_account_locked() {
    let (slapd, d) = start("");
    for i in 0..3 {
        d.login("alice", &format!("guess-{i}")).await;
    }
    // One HTTP/2 connection, as kube-apiserver sends it: many HTTP/1.1 connections at
    // once from one address would be a handshake flood of its own.
    let c = d.http2_client();
    let url = d.url();
    let flood: Vec<_> = (0..300)
        .map(|i| {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move {
                c.review(&url, "v1", &token(&format!("nobody-{i}"), "x"))
                    .await
            })
        })
        .collect();
    for f in flood {
        assert_eq!(f.await.unwrap().body["status"]["error"], GENERIC);
    }
    let a = d.login("alice", "alice-password").await;
    assert_eq!(a.body["status"]["error"], GENERIC, "{}", a.raw);
    assert_eq!(slapd.binds_for(ALICE_DN), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_name_costs_the_ldap_operations_of_a_wrong_password() {
    let (slapd, d) = start("");
    d.wait_for_probe();
    let before = slapd.operations();
    d.login("bob", "not-bobs-password").await;
    let wrong = slapd.operations() - before;
    let before = slapd.operations();
    d.login("nobody", "not-bobs-password").await;
    let unknown = slapd.operations() - before;
    assert_eq!(unknown, wrong, "search + bind + group search either way");
    assert_eq!(slapd.decoy_binds(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_accepted_before_still_works_while_someone_guesses_its_password() {
    let (slapd, d) = start("ttl = \"1s\"\nstale_ttl = \"1h\"");
    let a = d.login("alice", "alice-password").await;
    assert_eq!(a.body["status"]["authenticated"], true);
    // Past ttl, so the next review goes to the directory; within stale_ttl.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for i in 0..3 {
        d.login("alice", &format!("guess-{i}")).await;
    }
    let a = d.login("alice", "alice-password").await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
    // Another spelling of the same name and password is the same credential to the
    // directory, and to lockout protection.
    let shouted = d.login("ALICE", "alice-password").await;
    assert_eq!(
        shouted.body["status"]["authenticated"], true,
        "{}",
        shouted.raw
    );
    assert_eq!(slapd.binds_for(ALICE_DN), 6, "the directory decided");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_accepted_before_a_reload_still_works_after_it_while_someone_guesses() {
    let (slapd, d) = start("");
    let a = d.login("alice", "alice-password").await;
    assert_eq!(a.body["status"]["authenticated"], true);
    // The reload empties the answer cache; what lockout protection remembers stays.
    d.signal(libc::SIGHUP);
    d.wait_for_log("reloaded");
    for i in 0..3 {
        d.login("alice", &format!("guess-{i}")).await;
    }
    let a = d.login("alice", "alice-password").await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
    assert_eq!(slapd.binds_for(ALICE_DN), 5, "the directory decided");
}

#[tokio::test(flavor = "multi_thread")]
async fn lockout_state_survives_a_reload() {
    let (slapd, d) = start("");
    for i in 0..3 {
        d.login("alice", &format!("guess-{i}")).await;
    }
    d.signal(libc::SIGHUP);
    d.wait_for_log("reloaded");
    let a = d.login("alice", "alice-password").await;
    assert_eq!(a.body["status"]["error"], GENERIC, "{}", a.raw);
    assert_eq!(slapd.binds_for(ALICE_DN), 3);
}
