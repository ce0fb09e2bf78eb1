//! The pure parts of discovery: which names, in which order, reached how, looked up when.
//! The lookups themselves are tested against Samba's DNS server in tests/it/active_directory/discovery.rs.

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;

fn discover(site: Option<&str>) -> Discover {
    Discover {
        domain: "example.test".into(),
        site: site.map(str::to_string),
        refresh_min: Duration::from_secs(30),
        refresh_max: Duration::from_secs(3600),
    }
}

fn srv(target: &str, priority: u16, weight: u16) -> Srv {
    Srv {
        target: target.into(),
        port: 389,
        priority,
        weight,
    }
}

#[test]
fn active_directory_asks_for_the_sites_dcs_then_every_dc() {
    assert_eq!(
        record_names(&discover(Some("Berlin")), Preset::ActiveDirectory),
        [
            "_ldap._tcp.Berlin._sites.dc._msdcs.example.test",
            "_ldap._tcp.dc._msdcs.example.test"
        ]
    );
    assert_eq!(
        record_names(&discover(None), Preset::ActiveDirectory),
        ["_ldap._tcp.dc._msdcs.example.test"]
    );
}

#[test]
fn other_directories_ask_for_the_plain_ldap_service() {
    for preset in [Preset::Openldap, Preset::Freeipa, Preset::Custom] {
        assert_eq!(
            record_names(&discover(None), preset),
            ["_ldap._tcp.example.test"]
        );
    }
}

#[test]
fn lower_priority_values_come_first_whatever_the_weights() {
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..100 {
        let order = rfc2782_order(
            vec![srv("c", 20, 100), srv("a", 0, 1), srv("b", 10, 65535)],
            &mut rng,
        );
        let targets: Vec<_> = order.iter().map(|s| s.target.as_str()).collect();
        assert_eq!(targets, ["a", "b", "c"]);
    }
}

#[test]
fn within_a_priority_the_weights_spread_who_comes_first() {
    let mut rng = StdRng::seed_from_u64(11);
    let draws = 10_000;
    let mut heavy_first = 0;
    for _ in 0..draws {
        let order = rfc2782_order(vec![srv("light", 0, 10), srv("heavy", 0, 90)], &mut rng);
        assert_eq!(order.len(), 2, "every record is kept");
        if order[0].target == "heavy" {
            heavy_first += 1;
        }
    }
    // 90 of 101 possible draws (0..=100) pick the heavy one.
    let share = f64::from(heavy_first) / f64::from(draws);
    assert!((0.85..0.93).contains(&share), "heavy first in {share}");
}

#[test]
fn weight_zero_is_chosen_first_only_by_a_draw_of_zero() {
    let mut rng = StdRng::seed_from_u64(3);
    let draws = 10_000;
    let zero_first = (0..draws)
        .filter(|_| {
            rfc2782_order(vec![srv("some", 0, 100), srv("zero", 0, 0)], &mut rng)[0].target
                == "zero"
        })
        .count();
    assert!(zero_first < draws / 50, "{zero_first} of {draws}");
    let all_zero = rfc2782_order(vec![srv("a", 0, 0), srv("b", 0, 0)], &mut rng);
    assert_eq!(all_zero.len(), 2);
}

#[test]
fn servers_from_dns_are_reached_over_tls() {
    let dc = srv("dc1.example.test", 0, 100);
    assert_eq!(url(&dc, false), "ldaps://dc1.example.test:636");
    assert_eq!(url(&dc, true), "ldap://dc1.example.test:389");
}

#[test]
fn the_ttl_decides_the_next_lookup_within_the_bounds() {
    let d = discover(None);
    assert_eq!(
        refresh_after(Some(Duration::from_secs(600)), &d),
        Duration::from_secs(600)
    );
    assert_eq!(
        refresh_after(Some(Duration::ZERO), &d),
        Duration::from_secs(30)
    );
    assert_eq!(
        refresh_after(Some(Duration::from_secs(86_400)), &d),
        Duration::from_secs(3600)
    );
    assert_eq!(
        refresh_after(None, &d),
        Duration::from_secs(30),
        "a failure retries soon"
    );
}

#[test]
fn dns_may_name_hosts_of_the_domain_only() {
    assert!(within("dc1.example.test", "example.test"));
    assert!(within("example.test", "example.test"));
    assert!(within("dc.berlin.example.test", "example.test"));
    assert!(!within("evilexample.test", "example.test"));
    assert!(!within("example.test.evil.org", "example.test"));
    assert!(!within("test", "example.test"));
}

fn record(target: Option<&str>, priority: u16, ttl: u64) -> Record {
    Record {
        target: target.map(str::to_string),
        port: 389,
        priority,
        weight: 100,
        ttl: Duration::from_secs(ttl),
    }
}

fn urls(f: &Found) -> Vec<&str> {
    f.servers.iter().map(|(u, _)| u.as_str()).collect()
}

#[test]
fn the_sites_servers_come_before_the_domains_and_each_server_once() {
    let site = "_ldap._tcp.Berlin._sites.dc._msdcs.example.test".to_string();
    let all = "_ldap._tcp.dc._msdcs.example.test".to_string();
    let found = servers_from(
        vec![
            (site.clone(), vec![record(Some("DC2.example.test"), 0, 600)]),
            (
                all,
                vec![
                    record(Some("dc1.example.test"), 0, 900),
                    record(Some("dc2.example.test"), 0, 300),
                ],
            ),
        ],
        "example.test",
        false,
        &mut StdRng::seed_from_u64(1),
    );
    assert_eq!(
        urls(&found),
        [
            "ldaps://dc2.example.test:636",
            "ldaps://dc1.example.test:636"
        ]
    );
    assert_eq!(
        found.servers[0].1,
        Origin::Dns {
            record: site,
            priority: 0,
            weight: 100
        },
        "the first record that named it"
    );
    assert_eq!(
        found.ttl,
        Some(Duration::from_secs(300)),
        "the smallest TTL"
    );
}

#[test]
fn a_dot_target_and_hosts_outside_the_domain_name_no_server() {
    let found = servers_from(
        vec![(
            "_ldap._tcp.example.test".into(),
            vec![
                record(None, 0, 60),
                record(Some("dc1.example.org"), 0, 60),
                record(Some("example.test.evil.org"), 0, 60),
                record(Some("dc/1.example.test"), 0, 60),
                record(Some("dc1.example.test"), 5, 60),
            ],
        )],
        "example.test",
        true,
        &mut StdRng::seed_from_u64(1),
    );
    assert_eq!(urls(&found), ["ldap://dc1.example.test:389"]);
}

#[test]
fn no_more_than_max_servers_are_taken_from_dns() {
    let many = (0..1000)
        .map(|i| record(Some(&format!("dc{i}.example.test")), 0, 60))
        .collect();
    let found = servers_from(
        vec![("_ldap._tcp.example.test".into(), many)],
        "example.test",
        false,
        &mut StdRng::seed_from_u64(1),
    );
    assert_eq!(found.servers.len(), MAX_SERVERS);
}

/// What the domain-wide record names when the site's record failed to answer.
fn domain_only(partial: Option<LookupError>) -> Result<Found, LookupError> {
    let mut found = servers_from(
        vec![(
            "_ldap._tcp.dc._msdcs.example.test".into(),
            vec![record(Some("dc9.example.test"), 0, 60)],
        )],
        "example.test",
        false,
        &mut StdRng::seed_from_u64(1),
    );
    found.partial = partial;
    Ok(found)
}

fn site_failed() -> Option<LookupError> {
    Some(LookupError::Dns {
        name: "_ldap._tcp.Berlin._sites.dc._msdcs.example.test".into(),
        error: "SERVFAIL".into(),
    })
}

#[test]
fn a_failed_site_lookup_beside_a_good_domain_lookup_keeps_the_last_good_list() {
    match verdict(domain_only(site_failed()), true) {
        Verdict::Failed(e) => assert!(e.to_string().contains("_sites"), "{e}"),
        v => panic!("the site's DCs were replaced: {v:?}"),
    }
}

#[test]
fn a_partial_answer_is_used_but_counted_failed_while_no_whole_lookup_succeeded() {
    match verdict(domain_only(site_failed()), false) {
        Verdict::Partial(found, e) => {
            assert_eq!(urls(&found), ["ldaps://dc9.example.test:636"]);
            assert!(e.to_string().contains("_sites"), "{e}");
        }
        v => panic!("{v:?}"),
    }
}

#[test]
fn a_lookup_where_every_name_answered_replaces_the_list() {
    for had_complete in [false, true] {
        assert!(matches!(
            verdict(domain_only(None), had_complete),
            Verdict::Complete(_)
        ));
    }
}

#[test]
fn a_failed_lookup_keeps_the_list() {
    let e = LookupError::Timeout(Duration::from_secs(30));
    assert!(matches!(verdict(Err(e), true), Verdict::Failed(_)));
}
