//! The server list as DNS changes it: no network involved.

use super::*;

fn pool(urls: &str) -> Pool {
    pool_of(&format!(
        "urls = [{urls}]\ndiscover = \"example.test\"\nallow_system_roots = true"
    ))
}

/// A pool of the `[ldap]` table `ldap` (with a user section of its own).
fn pool_of(ldap: &str) -> Pool {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("config.toml");
    std::fs::write(
        &f,
        format!(
            "[ldap]\n{ldap}\n\
             [ldap.user]\nbase_dn = \"dc=x\"\ndn_template = \"uid={{username}},dc=x\"\n"
        ),
    )
    .unwrap();
    let cfg = crate::config::load(&f).unwrap().ldap;
    let tls = crate::tls::ldap_client_config(None).unwrap();
    Pool::new("default", Arc::new(cfg), tls, Arc::new(Metrics::new()))
}

fn dns(url: &str, priority: u16) -> (String, Origin) {
    (
        url.to_string(),
        Origin::Dns {
            record: "_ldap._tcp.example.test".into(),
            priority,
            weight: 0,
        },
    )
}

fn urls(p: &Pool) -> Vec<String> {
    p.listed().iter().map(|l| l.server.url.clone()).collect()
}

#[test]
fn listed_urls_come_first_and_dns_cannot_repeat_them() {
    let p = pool("\"ldaps://a.example.test\"");
    p.set_discovered(vec![
        dns("ldaps://b.example.test:636", 0),
        dns("ldaps://a.example.test", 5),
    ]);
    assert_eq!(
        urls(&p),
        ["ldaps://a.example.test", "ldaps://b.example.test:636"]
    );
    assert_eq!(p.listed()[0].origin, Origin::Configured);
}

#[test]
fn a_server_that_stays_is_the_same_server_and_one_that_goes_leaves() {
    let p = pool("");
    let (added, removed) = p.set_discovered(vec![
        dns("ldaps://dc1.example.test:636", 0),
        dns("ldaps://dc2.example.test:636", 0),
    ]);
    assert_eq!((added.len(), removed.len()), (2, 0));
    let dc1 = p.listed()[0].server.clone();
    let dc2 = Arc::downgrade(&p.listed()[1].server);

    let (added, removed) = p.set_discovered(vec![
        dns("ldaps://dc3.example.test:636", 0),
        dns("ldaps://dc1.example.test:636", 10),
    ]);
    assert_eq!(added, ["ldaps://dc3.example.test:636"]);
    assert_eq!(removed, ["ldaps://dc2.example.test:636"]);
    assert_eq!(
        urls(&p),
        [
            "ldaps://dc3.example.test:636",
            "ldaps://dc1.example.test:636"
        ],
        "in DNS's new order"
    );
    assert!(
        Arc::ptr_eq(&dc1, &p.listed()[1].server),
        "dc1 kept, with its connections"
    );
    assert!(
        matches!(p.listed()[1].origin, Origin::Dns { priority: 10, .. }),
        "and its new record"
    );
    assert!(dc2.upgrade().is_none(), "dc2 dropped with its connections");
}

#[test]
fn the_server_that_answered_last_is_tried_first_wherever_it_moved() {
    let p = pool("");
    p.set_discovered(vec![
        dns("ldaps://dc1.example.test:636", 0),
        dns("ldaps://dc2.example.test:636", 0),
    ]);
    let dc2 = p.listed()[1].server.clone();
    p.answered(&dc2);
    p.set_discovered(vec![
        dns("ldaps://dc0.example.test:636", 0),
        dns("ldaps://dc1.example.test:636", 0),
        dns("ldaps://dc2.example.test:636", 0),
    ]);
    let order: Vec<_> = p.order().iter().map(|s| s.url.clone()).collect();
    assert_eq!(
        order,
        [
            "ldaps://dc2.example.test:636",
            "ldaps://dc0.example.test:636",
            "ldaps://dc1.example.test:636"
        ]
    );
    p.mark_down(&dc2, "test");
    assert_eq!(
        p.order()[0].url,
        "ldaps://dc0.example.test:636",
        "down: last"
    );
}

#[test]
fn a_server_dns_dropped_leaves_no_series_behind() {
    let p = pool("");
    p.set_discovered(vec![dns("ldaps://dc1.example.test:636", 0)]);
    let dc1 = p.listed()[0].server.clone();
    p.record(&dc1, "bind", "ok", crate::clock::now());
    assert!(p
        .metrics
        .encode()
        .contains("server=\"dc1.example.test:636\""));
    drop(dc1);
    p.set_discovered(vec![dns("ldaps://dc2.example.test:636", 0)]);
    let text = p.metrics.encode();
    assert!(!text.contains("dc1.example.test"), "{text}");
    assert!(text.contains("server=\"dc2.example.test:636\""), "{text}");
}

/// How often the pool tried to connect to `s` and failed.
fn failed_connects(p: &Pool, s: &Server) -> u64 {
    p.metrics
        .ldap_operations
        .get_or_create(&LdapOpLabels {
            directory: "default".into(),
            server: s.label.clone(),
            operation: "connect",
            result: "unreachable",
        })
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_queued_behind_a_connect_that_fails_do_not_connect_again() {
    // Accepts TCP (the kernel's backlog) and never answers the TLS handshake.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let p = Arc::new(pool_of(&format!(
        "urls = [\"ldaps://127.0.0.1:{port}\"]\nconnect_timeout = \"300ms\""
    )));
    let s = p.listed()[0].server.clone();
    let deadline = crate::clock::now() + Duration::from_secs(60);
    let waiting: Vec<_> = (0..4)
        .map(|_| {
            let (p, s) = (p.clone(), s.clone());
            tokio::spawn(async move { p.service(&s, deadline).await.map(|_| ()) })
        })
        .collect();
    for w in waiting {
        let r = w.await.unwrap();
        assert!(matches!(r, Err(Attempt::ServerDown(_))), "{r:?}");
    }
    assert_eq!(
        failed_connects(&p, &s),
        1,
        "one connect timeout for all four"
    );
    assert_eq!(p.order()[0].url, s.url, "the only server, down");
    drop(silent);
}

#[test]
fn a_server_marked_down_while_a_review_waited_is_skipped_by_it() {
    let now = crate::clock::now();
    let later = now + BACKOFF;
    assert!(marked_since(None, Some(later), now), "marked meanwhile");
    assert!(
        marked_since(Some(now - BACKOFF), Some(later), now),
        "marked again after its back-off had run out"
    );
    assert!(
        !marked_since(Some(later), Some(later), now),
        "down before the review chose it (every server is): tried"
    );
    assert!(!marked_since(None, None, now), "not down");
    assert!(!marked_since(None, Some(now), now), "back-off over");
}
