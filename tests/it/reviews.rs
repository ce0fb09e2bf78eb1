//! TokenReviews through the real daemon over mutual TLS against a real slapd.

use std::io::{Read, Write};
use std::time::Duration;

use crate::support::*;

const ALICE_DN: &str = "uid=alice,ou=people,dc=example,dc=org";
const GENERIC: &str = "Invalid username or password";

fn setup() -> (Slapd, Daemon) {
    let slapd = Slapd::start();
    let daemon = slapd.daemon().start();
    (slapd, daemon)
}

#[tokio::test(flavor = "multi_thread")]
async fn valid_login_v1_returns_username_uid_groups_and_extra() {
    let (slapd, d) = setup();
    let a = d.login("alice", "alice-password").await;
    assert_eq!(a.status, 200, "{}", a.raw);
    assert_eq!(a.body["apiVersion"], "authentication.k8s.io/v1");
    assert_eq!(a.body["kind"], "TokenReview");
    let s = &a.body["status"];
    assert_eq!(s["authenticated"], true, "{}", a.raw);
    assert_eq!(s["user"]["username"], "alice");
    assert_eq!(s["user"]["uid"], slapd.entry_uuid("alice"));
    assert_eq!(
        s["user"]["groups"],
        serde_json::json!(["admins", "developers"])
    );
    assert_eq!(
        s["user"]["extra"]["example.org/email"],
        serde_json::json!(["alice@example.org"])
    );
    assert_eq!(
        s["audiences"],
        serde_json::json!(["https://kubernetes.default.svc"])
    );
    assert!(s.get("error").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn valid_login_v1beta1_is_answered_in_v1beta1() {
    let (_slapd, d) = setup();
    let a = d
        .client()
        .review(&d.url(), "v1beta1", &token("alice", "alice-password"))
        .await;
    assert_eq!(a.body["apiVersion"], "authentication.k8s.io/v1beta1");
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_is_served() {
    let (_slapd, d) = setup();
    let c = d.http2_client();
    let a = c
        .review(&d.url(), "v1", &token("alice", "alice-password"))
        .await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_gets_the_generic_error() {
    let (_slapd, d) = setup();
    let a = d.login("alice", "wrong").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["status"]["authenticated"], false);
    assert_eq!(a.body["status"]["error"], GENERIC);
    assert!(a.body["status"].get("user").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_user_reads_exactly_like_a_wrong_password() {
    let (_slapd, d) = setup();
    let c = d.client();
    let unknown = c.review(&d.url(), "v1", &token("nobody", "whatever")).await;
    let wrong = c.review(&d.url(), "v1", &token("alice", "whatever")).await;
    assert_eq!(unknown.raw, wrong.raw);
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_password_never_reaches_ldap() {
    let (slapd, d) = setup();
    let a = d.login("alice", "").await;
    assert_eq!(a.body["status"]["authenticated"], false);
    assert_eq!(a.body["status"]["error"], GENERIC);
    assert_eq!(
        slapd.binds_for(ALICE_DN),
        0,
        "an empty password is an unauthenticated bind"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn password_containing_colons_is_kept_whole() {
    let (_slapd, d) = setup();
    let a = d.login("bob", "pa:ss:word").await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
    assert_eq!(
        a.body["status"]["user"]["groups"],
        serde_json::json!(["developers"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn non_ascii_username_and_password_work() {
    let (_slapd, d) = setup();
    let a = d.login("josé", "contraseña-ñ€").await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
    assert_eq!(a.body["status"]["user"]["username"], "josé");
}

#[tokio::test(flavor = "multi_thread")]
async fn url_safe_unpadded_tokens_are_accepted() {
    use base64::Engine;
    let (_slapd, d) = setup();
    let t = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("josé:contraseña-ñ€");
    let a = d.client().review(&d.url(), "v1", &t).await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
}

#[tokio::test(flavor = "multi_thread")]
async fn filter_metacharacters_in_usernames_never_authenticate_anyone() {
    let (slapd, d) = setup();
    let c = d.client();
    // Each of these would match alice (or everyone) if pasted into the filter unescaped;
    // alice's real password is used so that an injection would show as a success.
    for name in [
        "*",
        "ali*",
        "alice)(uid=*",
        "*)(uid=*",
        "al\\69ce",
        "(alice)",
        "alice\\",
        "alice\u{0}",
    ] {
        let a = c
            .review(&d.url(), "v1", &token(name, "alice-password"))
            .await;
        assert_eq!(
            a.body["status"]["authenticated"], false,
            "{name:?}: {}",
            a.raw
        );
        assert_eq!(a.body["status"]["error"], GENERIC, "{name:?}");
    }
    assert_eq!(
        slapd.binds_for(ALICE_DN),
        0,
        "no injected filter found alice"
    );
    assert!(
        slapd.log().contains("(uid=\\2A)"),
        "the filter reached slapd escaped"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_matching_entries_are_refused() {
    let (slapd, d) = setup();
    let a = d.login("twin", "twin-password").await;
    assert_eq!(a.body["status"]["authenticated"], false);
    assert_eq!(a.body["status"]["error"], GENERIC);
    assert_eq!(slapd.user_binds(), 0, "ambiguous users are never bound");
    assert_eq!(
        slapd.decoy_binds(),
        1,
        "it costs what a wrong password costs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_is_not_ours_and_causes_no_ldap_traffic() {
    let (slapd, d) = setup();
    d.wait_for_probe();
    let before = slapd.operations();
    let jwt = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJpc3MiOiJodHRwczovL2V4YW1wbGUifQ.c2lnbmF0dXJl";
    let a = d.client().review(&d.url(), "v1", jwt).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["status"]["authenticated"], false);
    assert!(a.body["status"].get("error").is_none(), "{}", a.raw);
    assert_eq!(slapd.operations(), before);
    assert!(
        !d.log().contains("c2lnbmF0dXJl"),
        "the token is never logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_is_not_a_tokenreview_is_a_400_status_naming_the_fault() {
    // Bodies kube-apiserver would never send, and what the 400 Status names for each.
    let bodies: [(&str, &[u8], &str); 4] = [
        ("malformed JSON", b"{not json", "not valid JSON"),
        (
            "wrong kind",
            br#"{"apiVersion":"authentication.k8s.io/v1","kind":"SubjectAccessReview","spec":{"token":"x"}}"#,
            "kind",
        ),
        (
            "wrong apiVersion",
            br#"{"apiVersion":"authentication.k8s.io/v2","kind":"TokenReview","spec":{"token":"x"}}"#,
            "apiVersion",
        ),
        (
            "missing token",
            br#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{}}"#,
            "spec.token",
        ),
    ];
    let (_slapd, d) = setup();
    let c = d.client();
    for (case, body, names) in bodies {
        let a = c.request("POST", &d.url(), body.to_vec()).await.unwrap();
        assert_eq!(a.status, 400, "{case}");
        assert_eq!(a.body["kind"], "Status", "{case}");
        assert_eq!(a.body["code"], 400, "{case}");
        let message = a.body["message"].as_str().unwrap_or_default();
        assert!(message.contains(names), "{case}: {message:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_mebibyte_body_is_a_413() {
    let (_slapd, d) = setup();
    let a = d
        .client()
        .request("POST", &d.url(), vec![b' '; 1 << 20])
        .await
        .unwrap();
    assert_eq!(a.status, 413);
}

#[tokio::test(flavor = "multi_thread")]
async fn get_is_a_405_and_other_paths_404() {
    let (_slapd, d) = setup();
    let c = d.client();
    assert_eq!(
        c.request("GET", &d.url(), vec![]).await.unwrap().status,
        405
    );
    let other = format!("https://127.0.0.1:{}/other", d.port);
    assert_eq!(c.request("POST", &other, vec![]).await.unwrap().status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_client_certificate_fails_the_handshake_and_the_token_is_never_looked_at() {
    let (slapd, d) = setup();
    d.wait_for_probe();
    let before = slapd.operations();
    let c = Https::new(&d.pki, None, false);
    let body = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token("alice", "alice-password")},
    });
    let r = c
        .request("POST", &d.url(), serde_json::to_vec(&body).unwrap())
        .await;
    assert!(r.is_err(), "a client without a certificate got an answer");
    d.wait_for_log("reason=\"no_certificate\"");
    assert_eq!(slapd.operations(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_from_another_ca_fails_the_handshake() {
    let (_slapd, d) = setup();
    let c = Https::new(&d.pki, Some(d.pki.rogue_identity()), false);
    let body =
        br#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"x"}}"#;
    let r = c.request("POST", &d.url(), body.to_vec()).await;
    assert!(
        r.is_err(),
        "a rogue client certificate must not get an answer"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_gets_no_review() {
    let (_slapd, d) = setup();
    let mut s = std::net::TcpStream::connect(d.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(b"POST /authenticate HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(!String::from_utf8_lossy(&out).contains("TokenReview"));
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_handshake_is_cut_off_and_others_are_served_meanwhile() {
    let slapd = Slapd::start();
    // The login must be answered while the silent connection still waits for its cut-off;
    // on a machine too busy for that, the test starts over with a longer handshake_timeout.
    for secs in [1, 2, 4, 8, 16, 32] {
        let timeout = Duration::from_secs(secs);
        let d = slapd
            .daemon()
            .section("server", format!("handshake_timeout = \"{secs}s\""))
            .start();
        // A client that connects and says nothing.
        let connected = std::time::Instant::now();
        let mut idle = std::net::TcpStream::connect(d.addr()).unwrap();
        let a = d.login("alice", "alice-password").await;
        if connected.elapsed() >= timeout {
            continue;
        }
        assert_eq!(
            a.body["status"]["authenticated"], true,
            "served while a handshake hangs"
        );
        idle.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut buf = [0u8; 16];
        match idle.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!("the silent connection got {n} bytes"),
            Err(e) => panic!("the silent connection was not closed in {PATIENCE:?}: {e}"),
        }
        assert!(
            connected.elapsed() >= timeout,
            "closed before handshake_timeout"
        );
        return;
    }
    panic!("a login never fitted inside the handshake timeout");
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_body_is_answered_with_a_timeout() {
    let slapd = Slapd::start();
    let d = slapd
        .daemon()
        .section("server", "request_timeout = \"1s\"")
        .start();
    let mut tls = d.tls().await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tls.write_all(
        b"POST /authenticate HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"kind\"",
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, tls.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn failover_to_the_second_url_when_the_first_is_dead() {
    let mut slapd = Slapd::start();
    let dead = format!("ldap://127.0.0.1:{}", free_port());
    // slapd is down while the start-up probe runs, so that the probe finds no server to
    // start with and the review has to fail over itself.
    slapd.stop();
    let d = Daemon::builder().url(dead).url(slapd.url()).start();
    d.wait_for_log("no LDAP server reachable yet");
    slapd.restart();
    let a = d.login("alice", "alice-password").await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
    assert_eq!(d.failovers("default"), 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn ldap_down_is_an_error_not_a_rejection_and_is_not_cached() {
    let mut slapd = Slapd::start();
    let d = slapd.daemon().start();
    slapd.stop();
    let c = d.client();
    let a = c
        .review(&d.url(), "v1", &token("alice", "alice-password"))
        .await;
    assert_eq!(a.body["status"]["authenticated"], false);
    assert_eq!(
        a.body["status"]["error"],
        "Authentication backend unavailable"
    );
    slapd.restart();
    let a = c
        .review(&d.url(), "v1", &token("alice", "alice-password"))
        .await;
    assert_eq!(
        a.body["status"]["authenticated"], true,
        "the outage was not cached: {}",
        a.raw
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ldaps_with_a_custom_ca_works() {
    let slapd = Slapd::start();
    let ca = format!("ca_file = \"{}\"", slapd.ca_file.display());
    let d = Daemon::builder()
        .url(slapd.ldaps_url())
        .section("ldap", ca)
        .start();
    let a = d.login("alice", "alice-password").await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_with_a_custom_ca_works() {
    let slapd = Slapd::start();
    let ca = format!(
        "ca_file = \"{}\"\nstart_tls = true",
        slapd.ca_file.display()
    );
    let d = slapd.daemon().section("ldap", ca).start();
    let a = d.login("alice", "alice-password").await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
    assert!(
        slapd.log().contains("oid=1.3.6.1.4.1.1466.20037"),
        "StartTLS was used"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn untrusted_ldap_certificate_is_unavailable_not_accepted() {
    let slapd = Slapd::start();
    let other = Ca::new("someone else");
    let ca = std::env::temp_dir().join(format!("other-ca-{}.crt", std::process::id()));
    std::fs::write(&ca, other.cert.pem()).unwrap();
    let d = Daemon::builder()
        .url(slapd.ldaps_url())
        .section("ldap", format!("ca_file = \"{}\"", ca.display()))
        .start();
    let a = d.login("alice", "alice-password").await;
    assert_eq!(
        a.body["status"]["error"],
        "Authentication backend unavailable"
    );
    let _ = std::fs::remove_file(ca);
}

#[tokio::test(flavor = "multi_thread")]
async fn direct_bind_without_a_service_account() {
    let slapd = Slapd::start();
    let d = slapd
        .daemon()
        .without_service_account()
        .section(
            "user",
            "dn_template = \"uid={username},ou=people,dc=example,dc=org\"",
        )
        .start();
    let c = d.client();
    let a = c
        .review(&d.url(), "v1", &token("alice", "alice-password"))
        .await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
    assert_eq!(
        a.body["status"]["user"]["groups"],
        serde_json::json!(["admins", "developers"])
    );
    let a = c.review(&d.url(), "v1", &token("alice", "nope")).await;
    assert_eq!(a.body["status"]["error"], GENERIC);
    let a = c
        .review(&d.url(), "v1", &token("alice,ou=x", "alice-password"))
        .await;
    assert_eq!(
        a.body["status"]["error"], GENERIC,
        "DN metacharacters are escaped"
    );
    assert_eq!(
        slapd.binds_for(SERVICE_DN),
        0,
        "no service account was used"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_from_member_of_attribute() {
    let slapd = Slapd::start();
    let d = slapd
        .daemon()
        .section("group", "membership_attribute = \"memberOf\"")
        .start();
    let a = d.login("alice", "alice-password").await;
    assert_eq!(
        a.body["status"]["user"]["groups"],
        serde_json::json!(["admins", "developers"]),
        "{}",
        a.raw
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nested_groups_are_walked_on_openldap() {
    let slapd = Slapd::start();
    let d = slapd.daemon().section("group", "nested = true").start();
    let a = d.login("bob", "pa:ss:word").await;
    assert_eq!(
        a.body["status"]["user"]["groups"],
        serde_json::json!(["developers", "everyone"]),
        "{}",
        a.raw
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prefixes_are_applied() {
    let slapd = Slapd::start();
    let d = slapd
        .daemon()
        .section(
            "identity",
            "username_prefix = \"ldap:\"\ngroup_prefix = \"ldap:\"",
        )
        .start();
    let a = d.login("bob", "pa:ss:word").await;
    assert_eq!(a.body["status"]["user"]["username"], "ldap:bob");
    assert_eq!(
        a.body["status"]["user"]["groups"],
        serde_json::json!(["ldap:developers"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_password_ever_appears_in_the_log() {
    let (_slapd, d) = setup();
    let c = d.client();
    let secrets = [
        "alice-password",
        "wrong-secret-1",
        "pa:ss:word",
        "contraseña-ñ€",
    ];
    c.review(&d.url(), "v1", &token("alice", secrets[0])).await;
    c.review(&d.url(), "v1", &token("alice", secrets[1])).await;
    c.review(&d.url(), "v1beta1", &token("bob", secrets[2]))
        .await;
    c.review(&d.url(), "v1", &token("josé", secrets[3])).await;
    c.review(&d.url(), "v1", &token("nobody", "nobody-secret"))
        .await;
    // The daemon's log thread writes the lines shortly after the answers: all five first.
    d.wait_for_log_count("outcome=", 5);
    let log = d.log();
    assert!(log.contains("review"), "the log has review lines: {log}");
    for s in secrets.iter().chain([&"nobody-secret", &SERVICE_PASSWORD]) {
        assert!(!log.contains(s), "{s:?} leaked into the log");
    }
    for t in [token("alice", secrets[0]), token("bob", secrets[2])] {
        assert!(!log.contains(&t), "a token leaked into the log");
    }
    let (_, metrics) = d.ops("/metrics");
    for s in secrets {
        assert!(!metrics.contains(s));
    }
    assert!(!metrics.contains("alice"), "no usernames in metric labels");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_review_is_logged_with_outcome_user_groups_and_latency() {
    let (_slapd, d) = setup();
    d.login("alice", "alice-password").await;
    d.wait_for_log("outcome=\"accepted\"");
    let line = d
        .log()
        .lines()
        .find(|l| l.contains("outcome=\"accepted\""))
        .unwrap()
        .to_string();
    assert!(line.contains("user=\"alice\""), "{line}");
    assert!(line.contains("groups=2"), "{line}");
    assert!(line.contains("latency_us="), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn non_base64_token_is_not_ours() {
    let (slapd, d) = setup();
    d.wait_for_probe();
    let before = slapd.operations();
    for t in ["not base64!", "%%%%", "dG9rZW4", "a b c"] {
        let a = d.client().review(&d.url(), "v1", t).await;
        assert_eq!(a.body["status"]["authenticated"], false, "{t:?}");
        assert!(a.body["status"].get("error").is_none(), "{t:?}: {}", a.raw);
    }
    assert_eq!(slapd.operations(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_apiserver_timeout_is_honoured_as_the_deadline() {
    // An "LDAP server" that accepts connections and never answers, and LDAP timeouts of ten
    // minutes: only the caller's ?timeout=2s can end the review.
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ldap://{}", blackhole.local_addr().unwrap());
    let d = Daemon::builder()
        .url(url)
        .env("KUBE_LDAP_WEBHOOK_LDAP__TIMEOUT", "10m")
        .env("KUBE_LDAP_WEBHOOK_LDAP__CONNECT_TIMEOUT", "10m")
        .start();
    let body = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1beta1", "kind": "TokenReview",
        "spec": {"token": token("alice", "alice-password")}
    });
    let started = std::time::Instant::now();
    let a = tokio::time::timeout(
        PATIENCE,
        d.client().request(
            "POST",
            &format!("{}?timeout=2s", d.url()),
            serde_json::to_vec(&body).unwrap(),
        ),
    )
    .await
    .unwrap_or_else(|_| {
        panic!("no answer in {PATIENCE:?}: the 10m LDAP timeout, not the caller's 2s, decided")
    })
    .unwrap();
    assert_eq!(
        a.body["status"]["error"],
        "Authentication backend unavailable"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "the review gave up before the caller's deadline (2s less a margin)"
    );
    drop(blackhole);
}

#[tokio::test(flavor = "multi_thread")]
async fn environment_overrides_config_keys() {
    let slapd = Slapd::start();
    let mut d = slapd.daemon().start();
    d.terminate();
    d.start_again(&[("KUBE_LDAP_WEBHOOK_SERVER__PATH", "/from-env")]);
    let c = d.client();
    let url = format!("https://127.0.0.1:{}/from-env", d.port);
    let a = c
        .review(&url, "v1", &token("alice", "alice-password"))
        .await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
    assert_eq!(
        c.review(&d.url(), "v1", &token("alice", "alice-password"))
            .await
            .status,
        404
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_changes_nothing() {
    // After a barrage of bad requests, the daemon answers exactly as before.
    let (slapd, d) = setup();
    let c = d.client();
    let good = token("alice", "alice-password");
    let first = c.review(&d.url(), "v1", &good).await;
    for body in [
        &b"{"[..],
        b"[]",
        b"null",
        br#"{"kind":"TokenReview"}"#,
        &[0xff, 0xfe, 0x00][..],
    ] {
        assert_eq!(
            c.request("POST", &d.url(), body.to_vec())
                .await
                .unwrap()
                .status,
            400
        );
    }
    let _ = c.request("POST", &d.url(), vec![b'x'; 200_000]).await;
    let again = c.review(&d.url(), "v1", &good).await;
    assert_eq!(first.raw, again.raw);
    assert_eq!(slapd.binds_for(ALICE_DN), 1, "the cached answer survived");
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_chunked_body_without_length_is_a_413() {
    let (_slapd, d) = setup();
    let mut tls = d.tls().await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tls.write_all(b"POST /authenticate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let chunk = vec![b' '; 10_000];
    for _ in 0..8 {
        tls.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .unwrap();
        tls.write_all(&chunk).await.unwrap();
        tls.write_all(b"\r\n").await.unwrap();
    }
    tls.write_all(b"0\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, tls.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
}

/// A Content-Length beyond what is ever drained is refused from the head alone: the 413
/// comes without the body (none is sent) and closes the connection, where reading would
/// have waited for it and answered 408.
#[tokio::test(flavor = "multi_thread")]
async fn a_content_length_beyond_the_drain_limit_is_a_413_before_any_body() {
    let (_slapd, d) = setup();
    let mut tls = d.tls().await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tls.write_all(b"POST /authenticate HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, tls.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 413"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
}
