//! The login endpoint as an attacker meets it: anyone can reach it, so it answers unknown
//! users and wrong passwords alike, shares lockout protection with reviews, rate-limits
//! each source, holds its own connection budget, and never logs a password or a token.

#[allow(dead_code)]
use crate::support::conn;

use std::net::Ipv4Addr;
use std::process::Command;

use crate::support::issued::*;
use crate::support::*;

fn start(slapd: &Slapd, sections: &[(&str, &str)], login: &str) -> (Issuer, KeyPair) {
    let keys = KeyPair::new();
    let i = Issuer::on_slapd(slapd, sections, &keys, login, "");
    (i, keys)
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_users_and_wrong_passwords_get_byte_identical_answers() {
    let slapd = Slapd::start();
    let (i, _k) = start(&slapd, &[], "rate = 1000\nburst = 1000");
    let unknown = i.login("nobody", "Some-passw0rd").await;
    let wrong = i.login("alice", "Some-passw0rd").await;
    assert_eq!(unknown.status, 401, "{}", unknown.raw);
    assert_eq!(unknown.body["message"], GENERIC);
    assert_eq!(unknown.body["kind"], "Status");
    assert_eq!(unknown.raw, wrong.raw);
    let without_date = |r: &Reply| {
        let mut h = r.headers.clone();
        h.remove("date");
        h
    };
    assert_eq!(without_date(&unknown), without_date(&wrong));
    assert_eq!(slapd.decoy_binds(), 1, "the unknown name cost a bind too");
    let log = i.daemon.log();
    assert!(!log.contains("Some-passw0rd"), "{log}");
    assert!(!log.contains(&token("nobody", "Some-passw0rd")), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_that_are_not_logins_are_refused_as_on_the_review_port() {
    let slapd = Slapd::start();
    let (i, _k) = start(&slapd, &[], "rate = 1000\nburst = 1000");
    let url = i.login_url();
    let r = i.call("POST", &url, None).await;
    assert_eq!(r.status, 401, "no credentials: {}", r.raw);
    assert!(r.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    let r = i.call("POST", &url, Some("Bearer v4.public.x")).await;
    assert_eq!((r.status, r.body["message"].as_str()), (401, Some(GENERIC)));
    let r = i.call("PUT", &url, None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.headers["allow"], "GET, POST");
    let r = i
        .call("POST", &url.replace("/login", "/authenticate"), None)
        .await;
    assert_eq!(r.status, 404);
    // Any body is refused (413) unread. 4 KiB: the request arrives in one read, so the
    // daemon's close cannot reset the connection under the client's feet (a body larger
    // than its buffers may end in a broken pipe before the 413 is read; login_port.rs
    // covers bodies that never end on HTTP/2).
    let big = request(&i.daemon.pki, "POST", &url, None, vec![b'x'; 4096]).await;
    assert_eq!(big.status, 413);
    let r = i
        .call(
            "GET",
            &url,
            Some(&format!("Bearer {}", token("alice", "alice-password"))),
        )
        .await;
    assert_eq!(
        r.status, 401,
        "a basic token is no token to check: {}",
        r.raw
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn account_states_and_an_outage_are_told_as_in_reviews() {
    let ldif = std::fs::read_to_string(repo().join("tests/fixtures/openldap/ppolicy.ldif"))
        .unwrap()
        .replace("@TWO_DAYS_AGO@", "20200101000000Z")
        .replace("@AN_HOUR_AGO@", "20200101000000Z");
    let conf = SlapdConf::ppolicy_lockout();
    let mut slapd = Slapd::start_configured(&conf, &ldif);
    let (i, _k) = start(&slapd, &[], "rate = 1000\nburst = 1000");
    for (user, message) in [
        ("locked", "Account is locked"),
        ("reset", "Password must be changed before logging in"),
        ("expired", "Credentials are expired"),
    ] {
        let password = if user == "reset" {
            "temporary-password".to_string()
        } else {
            format!("{user}-password")
        };
        let r = i.login(user, &password).await;
        assert_eq!(
            (r.status, r.body["message"].as_str()),
            (401, Some(message)),
            "{user}: {}",
            r.raw
        );
    }
    slapd.stop();
    let r = i.login("alice", "alice-password").await;
    assert_eq!(
        (r.status, r.body["message"].as_str()),
        (401, Some("Authentication backend unavailable")),
        "{}",
        r.raw
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lockout_is_one_budget_for_logins_and_reviews() {
    let slapd = Slapd::start();
    let (i, _k) = start(
        &slapd,
        &[("cache", "max_failures = 2")],
        "rate = 1000\nburst = 1000",
    );
    // Wrong passwords through reviews lock the login out...
    for n in 0..2 {
        let a = i.daemon.login("alice", &format!("wrong-{n}")).await;
        assert_eq!(error_of(&a), GENERIC);
    }
    let binds = slapd.user_binds();
    let r = i.login("alice", "alice-password").await;
    assert_eq!(
        (r.status, r.body["message"].as_str()),
        (401, Some(GENERIC)),
        "{}",
        r.raw
    );
    assert_eq!(slapd.user_binds(), binds, "refused without a bind");

    // ...and wrong passwords through logins lock reviews out.
    for _ in 0..2 {
        assert_eq!(i.login("bob", "wrong-2").await.status, 401);
    }
    let a = i.daemon.login("bob", "pa:ss:word").await;
    assert!(!authenticated(&a), "{}", a.raw);
    assert_eq!(error_of(&a), GENERIC);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_over_its_rate_gets_429_with_retry_after() {
    let slapd = Slapd::start();
    let (i, _k) = start(&slapd, &[], "rate = 1\nburst = 2");
    let token = i.token("alice", "alice-password").await;
    // Checks that succeed spend nothing.
    for _ in 0..5 {
        assert_eq!(i.check(&token).await.status, 204);
    }
    assert_eq!(i.login("alice", "wrong").await.status, 401);
    let r = i.login("alice", "alice-password").await;
    assert_eq!(r.status, 429, "{}", r.raw);
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(r.body["reason"], "TooManyRequests");
    // A failed check is refused too while the budget is spent.
    assert_eq!(i.check("v4.public.garbage").await.status, 429);
    assert!(
        i.daemon.metric(
            "kube_ldap_webhook_logins_total",
            &[("event", "rate_limited")]
        ) >= 2.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_login_port_takes_clients_without_a_certificate_and_the_review_port_still_does_not() {
    let slapd = Slapd::start();
    let (i, _k) = start(&slapd, &[], "");
    let t = i.token("alice", "alice-password").await;
    // The review port with the login port's client: no certificate, no answer.
    let anonymous = Https::new(&i.daemon.pki, None, false);
    let refused = anonymous
        .request("POST", &i.daemon.url(), b"{}".to_vec())
        .await;
    assert!(
        refused.is_err(),
        "the review port answered a client without a certificate"
    );
    assert!(authenticated(&i.review(&t).await));
}

const SMALL: &str = "max_connections = 4\nmax_connections_per_source = 4\nmax_handshakes = 4\nmax_handshakes_per_source = 4";

#[tokio::test(flavor = "multi_thread")]
async fn silent_connections_on_the_login_port_cannot_starve_it_or_the_review_port() {
    let slapd = Slapd::start();
    let (i, _k) = start(&slapd, &[("server", SMALL)], "");
    // Silent TCP beyond the handshake budget, and TLS clients (anyone finishes the login
    // port's handshake) that never send a request.
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(conn::tcp_from(Ipv4Addr::LOCALHOST, i.login_port).await);
    }
    let mut idle = Vec::new();
    for _ in 0..4 {
        let tcp = conn::tcp_from(Ipv4Addr::new(127, 0, 0, 2), i.login_port).await;
        if let Ok(tls) = tls_connect(&i.daemon.pki, tcp, None, &[b"http/1.1"]).await {
            idle.push(tls);
        }
    }
    assert_eq!(i.login("alice", "alice-password").await.status, 200);
    let r = tokio::time::timeout(conn::CAP, i.daemon.login("alice", "alice-password"))
        .await
        .expect("the review port answers");
    assert!(authenticated(&r), "{}", r.raw);
    let open = |listener: &str, stage: &str| {
        i.daemon.metric(
            "kube_ldap_webhook_open_connections",
            &[("listener", listener), ("stage", stage)],
        )
    };
    assert!(open("login", "handshake") <= 4.0);
    assert_eq!(open("reviews", "handshake"), 0.0, "budgets are separate");
    drop((held, idle));
}

#[test]
fn check_config_refuses_a_login_endpoint_it_cannot_run_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyPair::new();
    let cases = [
        (
            "[login]\nlisten = \"127.0.0.1:8444\"\n".to_string(),
            "omit",
            "login.listen",
        ),
        (
            "[login]\nlisten = \"127.0.0.1:8444\"\n".to_string(),
            "",
            "tokens.signing_key_file",
        ),
        (
            format!(
                "[tokens]\nverification_key_files = [\"{}\"]\n",
                keys.key.display()
            ),
            "",
            "tokens.verification_key_files",
        ),
        (
            "[tokens]\nnot_before = \"yesterday\"\n".to_string(),
            "",
            "tokens.not_before",
        ),
        (
            "[tokens]\naccept_basic = false\n".to_string(),
            "",
            "tokens.accept_basic",
        ),
        (
            "[login]\ntoken_ttl = \"25h\"\n".to_string(),
            "",
            "login.token_ttl",
        ),
    ];
    for (extra, omit, key) in cases {
        let mut builder = Daemon::builder()
            .url("ldap://127.0.0.1:1")
            .section("cache", extra.as_str());
        if omit == "omit" {
            builder = builder.without_service_account().section(
                "user",
                "dn_template = \"uid={username},ou=people,dc=example,dc=org\"",
            );
        }
        let config = builder.write_to(dir.path()).path;
        let out = Command::new(bin())
            .args(["check-config", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{key}: accepted");
        assert!(text.contains(&format!("key `{key}`")), "{key}: {text}");
    }
}

#[test]
fn keygen_writes_a_0600_key_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let keys = KeyPair::new();
    let mode = std::fs::metadata(&keys.key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(std::fs::read_to_string(&keys.public)
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    let before = std::fs::read(&keys.key).unwrap();
    let out = Command::new(bin())
        .args(["keygen", "--out"])
        .arg(keys.key.parent().unwrap())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"));
    assert_eq!(std::fs::read(&keys.key).unwrap(), before);
}

// -------------------------------------------------------------------------------------
// Lockout cannot keep the owner of a working password out of logging in
// -------------------------------------------------------------------------------------

const ALICE_DN: &str = "uid=alice,ou=people,dc=example,dc=org";
const STRANGERS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(127, 0, 0, 2),
    Ipv4Addr::new(127, 0, 0, 3),
    Ipv4Addr::new(127, 0, 0, 4),
];

#[tokio::test(flavor = "multi_thread")]
async fn the_owner_logs_in_after_strangers_guess_at_post_login_from_other_addresses() {
    let slapd = Slapd::start();
    let (i, _k) = start(&slapd, &[("cache", "max_failures = 3")], "");
    i.token("alice", "alice-password").await;
    for (n, source) in STRANGERS.iter().enumerate() {
        let r = i.login_from(*source, "alice", &format!("guess-{n}")).await;
        assert_eq!((r.status, r.body["message"].as_str()), (401, Some(GENERIC)));
    }
    // Locked for strangers: a fourth guess is refused without a bind.
    let r = i.login_from(STRANGERS[0], "alice", "guess-3").await;
    assert_eq!(r.status, 401);
    assert_eq!(
        slapd.binds_for(ALICE_DN),
        4,
        "the first login and three guesses"
    );
    let r = i.login("alice", "alice-password").await;
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(slapd.binds_for(ALICE_DN), 5, "the directory decided");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_owner_logs_in_after_guesses_sent_through_reviews() {
    let slapd = Slapd::start();
    let (i, _k) = start(&slapd, &[("cache", "max_failures = 3")], "");
    // The owner's basic token, accepted in a review, is the same credential as a login.
    assert!(authenticated(
        &i.daemon.login("alice", "alice-password").await
    ));
    for n in 0..3 {
        let a = i.daemon.login("alice", &format!("guess-{n}")).await;
        assert_eq!(error_of(&a), GENERIC);
    }
    let r = i.login("alice", "alice-password").await;
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(slapd.binds_for(ALICE_DN), 5, "the login bound");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_never_accepted_is_held_at_post_login_while_the_account_is_locked() {
    let slapd = Slapd::start();
    let (i, _k) = start(&slapd, &[("cache", "max_failures = 3")], "");
    for (n, source) in STRANGERS.iter().enumerate() {
        i.login_from(*source, "alice", &format!("guess-{n}")).await;
    }
    let r = i.login("alice", "alice-password").await;
    assert_eq!((r.status, r.body["message"].as_str()), (401, Some(GENERIC)));
    assert_eq!(slapd.binds_for(ALICE_DN), 3, "refused without a bind");
}

#[tokio::test(flavor = "multi_thread")]
async fn beyond_max_logins_per_directory_a_login_is_refused_without_a_bind() {
    let slapd = Slapd::start();
    // The harness's ldap.timeout (30 s) holds the logins at the stopped slapd.
    let (i, _k) = start(&slapd, &[], "max_logins_per_directory = 2");
    let i = std::sync::Arc::new(i);
    let in_flight = || {
        i.daemon.metric(
            "kube_ldap_webhook_logins_in_flight",
            &[("directory", "default")],
        )
    };
    let paused = slapd.pause();
    let held: Vec<_> = [("bob", STRANGERS[0]), ("nobody", STRANGERS[1])]
        .into_iter()
        .map(|(user, source)| {
            let i = i.clone();
            tokio::spawn(async move { i.login_from(source, user, "guess").await })
        })
        .collect();
    wait_until(
        || in_flight() == 2.0,
        || format!("in flight: {}", in_flight()),
    );
    let r = i.login_from(STRANGERS[2], "alice", "alice-password").await;
    assert_eq!(
        (r.status, r.body["message"].as_str()),
        (401, Some("Authentication backend unavailable")),
        "{}",
        r.raw
    );
    let refusals = i.daemon.metric(
        "kube_ldap_webhook_login_ceiling_refusals_total",
        &[("directory", "default")],
    );
    assert_eq!(refusals, 1.0);
    drop(paused);
    for h in held {
        assert_eq!(h.await.unwrap().status, 401);
    }
    let stats = slapd.stats();
    assert_eq!(
        stats.binds_for(ALICE_DN),
        0,
        "the refused login bound nothing"
    );
    assert_eq!(stats.decoy_binds(), 1, "the held logins went on");
    assert_eq!(in_flight(), 0.0);
}
