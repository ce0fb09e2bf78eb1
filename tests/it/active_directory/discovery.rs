//! Domain controllers from DNS, against the Samba DC's own DNS server: the daemon finds the
//! DC through the SRV records provisioning registered, and through records each test adds
//! under a site of its own (`samba-tool dns add`), so that tests running at once never see
//! each other's. The domain-wide record `_ldap._tcp.dc._msdcs.example.test -> dc1` is never
//! touched.
//!
//! The daemon gets the DC as its DNS server the way `ip netns exec` gives a namespace one:
//! a private mount namespace with a resolv.conf bound over /etc/resolv.conf. It stays in
//! the host's network namespace, where the tests reach its listeners on loopback and it
//! reaches the DC over the harness's veth pair.

use std::path::PathBuf;
use std::process::Command;

use super::*;

/// A resolv.conf for the daemon, rewritten in place (the bind mount follows the file) to
/// take the DNS server away and give it back.
struct Resolver {
    dir: tempfile::TempDir,
}

impl Resolver {
    fn new() -> Resolver {
        let r = Resolver {
            dir: tempfile::tempdir().unwrap(),
        };
        r.mend();
        r
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("resolv.conf")
    }

    /// The DC's DNS server. One second per try: a lookup that fails, fails soon.
    fn mend(&self) {
        let dns = dc().var("SAMBA_LDAP_HOST");
        std::fs::write(
            self.file(),
            format!("nameserver {dns}\noptions timeout:1 attempts:2\n"),
        )
        .unwrap();
    }

    /// A DNS server that is not there: this host's end of the veth pair answers nothing on 53.
    fn break_it(&self) {
        let nobody = dc().var("SAMBA_HOST_IP");
        std::fs::write(
            self.file(),
            format!("nameserver {nobody}\noptions timeout:1 attempts:1\n"),
        )
        .unwrap();
    }

    /// The argv the daemon runs under: `unshare` execs `sh`, which binds the file and execs
    /// the daemon, so the pid and the signals stay the daemon's.
    fn wrapper(&self) -> Vec<String> {
        [
            "unshare",
            "--mount",
            "--",
            "sh",
            "-c",
            "mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([self.file().display().to_string()])
        .collect()
    }
}

/// `samba-tool dns ACTION` against the DC as its administrator.
fn samba_dns(action: &str, zone: &str, name: &str, kind: &str, data: &str) {
    let user = format!(
        "{}\\Administrator%{}",
        dc().var("SAMBA_NETBIOS_DOMAIN"),
        dc().var("SAMBA_ADMIN_PASSWORD")
    );
    let out = Command::new("samba-tool")
        .args([
            "dns",
            action,
            dc().var("SAMBA_LDAP_HOST"),
            zone,
            name,
            kind,
            data,
        ])
        .args(["-U", &user, "--use-kerberos=off"])
        .output()
        .expect("samba-tool");
    assert!(
        out.status.success(),
        "samba-tool dns {action} {name} {kind} {data}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `_ldap._tcp.<site>._sites.dc._msdcs.example.test -> target` (port 389, weight 100).
fn site_record(action: &str, site: &str, target: &str, priority: u16) {
    samba_dns(
        action,
        "_msdcs.example.test",
        &format!("_ldap._tcp.{site}._sites.dc"),
        "SRV",
        &format!("{target} 389 {priority} 100"),
    );
}

/// `name.example.test` at `ip`.
fn host(name: &str, ip: &str) {
    samba_dns("add", "example.test", name, "A", ip);
}

/// An AD daemon with `discover = "example.test"`, DNS from `resolver`, and `ldap` lines.
fn discovering(resolver: &Resolver, ldap: &str, cache: &str) -> Daemon {
    let ldap = format!(
        "directory = \"active-directory\"\nca_file = \"{}\"\ndiscover = \"example.test\"\n{ldap}",
        dc().var("SAMBA_CA_FILE")
    );
    let d = {
        let wrapper = &resolver.wrapper();
        let argv: Vec<&str> = wrapper.iter().map(String::as_str).collect();
        Daemon::builder()
            .site(&dc().site())
            .sections(&[("ldap", &ldap), ("cache", cache)])
            .wrapper(&argv)
            .start()
    };
    d.wait_for_ready();
    d
}

/// The `server` lines of /readyz, in list order.
fn servers(d: &Daemon) -> Vec<String> {
    d.ops("/readyz")
        .1
        .lines()
        .filter_map(|l| l.trim().strip_prefix("server "))
        .map(str::to_string)
        .collect()
}

fn operations(d: &Daemon, server: &str, operation: &str, result: &str) -> f64 {
    d.metric(
        "kube_ldap_webhook_ldap_operations_total",
        &[
            ("server", server),
            ("operation", operation),
            ("result", result),
        ],
    )
}

const DC1: &str = "dc1.example.test:636";

#[tokio::test(flavor = "multi_thread")]
async fn the_dc_is_found_through_its_srv_records() {
    let r = Resolver::new();
    let d = discovering(&r, "", "");
    let a = review(&d, "alice", ALICE_PASSWORD).await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
    assert_eq!(
        servers(&d),
        ["ldaps://dc1.example.test:636 (_ldap._tcp.dc._msdcs.example.test priority 0 weight 100)"]
    );
    assert_eq!(operations(&d, DC1, "bind", "ok"), 1.0);
    let found = "kube_ldap_webhook_ldap_discovered_servers";
    assert_eq!(d.metric(found, &[("directory", "default")]), 1.0);
}

#[test]
fn check_config_connect_shows_what_dns_found() {
    let r = Resolver::new();
    let d = discovering(&r, "", "");
    let mut argv = r.wrapper();
    argv.push(bin().into());
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .args(["check-config", "--connect", "--config"])
        .arg(&d.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("ldaps://dc1.example.test:636: bound as"),
        "{text}"
    );
    assert!(
        text.contains("DNS _ldap._tcp.dc._msdcs.example.test: 1 servers"),
        "{text}"
    );
    assert!(
        text.contains("server ldaps://dc1.example.test:636 (_ldap._tcp.dc._msdcs"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sites_dcs_come_first_and_a_dead_one_found_by_the_probe_is_passed_over() {
    host("dead1", dc().var("SAMBA_HOST_IP"));
    site_record("add", "Site-Failover", "dead1.example.test", 0);
    site_record("add", "Site-Failover", "dc1.example.test", 10);
    let r = Resolver::new();
    let d = discovering(&r, "ad_site = \"Site-Failover\"", "");
    // Before /readyz below, whose own probe would race the start-up probe to dead1.
    d.wait_for_probe();
    let site = "_ldap._tcp.Site-Failover._sites.dc._msdcs.example.test";
    assert_eq!(
        servers(&d),
        [
            format!("ldaps://dead1.example.test:636 ({site} priority 0 weight 100)"),
            format!("ldaps://dc1.example.test:636 ({site} priority 10 weight 100)"),
        ],
        "the site's DCs by priority; dc1 once, as the site lists it"
    );
    assert_eq!(
        operations(&d, "dead1.example.test:636", "connect", "unreachable"),
        1.0,
        "the start-up probe tried dead1 first"
    );
    let a = review(&d, "EXAMPLE\\alice", ALICE_PASSWORD).await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
    assert_eq!(
        d.failovers("default"),
        0.0,
        "the review started at dc1, where the probe found an answer"
    );
    assert_eq!(
        operations(&d, "dead1.example.test:636", "connect", "unreachable"),
        1.0,
        "and did not try dead1 again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lowest_priority_value_is_tried_first() {
    host("dead2", dc().var("SAMBA_HOST_IP"));
    site_record("add", "Site-Order", "dc1.example.test", 0);
    site_record("add", "Site-Order", "dead2.example.test", 10);
    let r = Resolver::new();
    let d = discovering(&r, "ad_site = \"Site-Order\"", "");
    let a = review(&d, "alice", ALICE_PASSWORD).await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
    let dead = "dead2.example.test:636";
    let tried: f64 = ["ok", "unreachable"]
        .iter()
        .map(|r| operations(&d, dead, "connect", r))
        .sum();
    assert_eq!(tried, 0.0, "never reached the second");
    assert_eq!(d.metric("kube_ldap_webhook_ldap_failovers_total", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dc_whose_certificate_does_not_name_it_is_not_trusted() {
    // DNS names the DC's own address under a name its certificate does not carry: what a
    // spoofed answer pointing at some other TLS server looks like.
    host("rogue", dc().var("SAMBA_LDAP_HOST"));
    site_record("add", "Site-Cert", "rogue.example.test", 0);
    site_record("add", "Site-Cert", "dc1.example.test", 10);
    let r = Resolver::new();
    let d = discovering(&r, "ad_site = \"Site-Cert\"", "");
    let a = review(&d, "alice", ALICE_PASSWORD).await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
    let rogue = "rogue.example.test:636";
    assert!(operations(&d, rogue, "connect", "unreachable") >= 1.0);
    assert_eq!(operations(&d, rogue, "connect", "ok"), 0.0);
    assert_eq!(operations(&d, rogue, "bind", "ok"), 0.0);
    assert!(
        d.log().contains("rogue.example.test") && d.log().contains("certificate"),
        "{}",
        d.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn targets_outside_the_domain_are_skipped() {
    site_record("add", "Site-Out", "dc1.example.org", 0);
    site_record("add", "Site-Out", "dc1.example.test", 10);
    let r = Resolver::new();
    let d = discovering(&r, "ad_site = \"Site-Out\"", "");
    let listed = servers(&d);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(
        listed[0].starts_with("ldaps://dc1.example.test:636"),
        "{listed:?}"
    );
    d.wait_for_log("skipped SRV targets outside the discovered domain");
}

#[tokio::test(flavor = "multi_thread")]
async fn dns_changes_are_followed_and_a_failed_lookup_keeps_the_list() {
    let r = Resolver::new();
    let d = discovering(
        &r,
        "ad_site = \"Site-Dyn\"\ndiscover_refresh_min = \"1s\"\ndiscover_refresh_max = \"1s\"",
        "ttl = \"0s\"",
    );
    assert_eq!(servers(&d).len(), 1, "the site has no record yet");
    let a = review(&d, "alice", ALICE_PASSWORD).await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
    let connects = operations(&d, DC1, "connect", "ok");

    host("dead3", dc().var("SAMBA_HOST_IP"));
    site_record("add", "Site-Dyn", "dead3.example.test", 0);
    let listed = |d: &Daemon, host: &str| servers(d).iter().any(|s| s.contains(host));
    wait_until(
        || listed(&d, "dead3.example.test"),
        || format!("{:?}", servers(&d)),
    );
    assert!(listed(&d, "dc1.example.test"));
    d.wait_for_log("LDAP servers from DNS changed");
    let a = review(&d, "alice", ALICE_PASSWORD).await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
    assert_eq!(
        operations(&d, DC1, "connect", "ok"),
        connects,
        "dc1 stayed listed and kept its connections"
    );

    r.break_it();
    let failed = || {
        d.metric(
            "kube_ldap_webhook_ldap_discovery_lookups_total",
            &[("result", "failed")],
        )
    };
    wait_until(|| failed() >= 1.0, || d.ops("/readyz").1);
    let (code, body) = d.ops("/readyz");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("lookup failed"), "{body}");
    assert!(
        listed(&d, "dead3.example.test") && listed(&d, "dc1.example.test"),
        "{body}"
    );
    let a = review(&d, "alice", ALICE_PASSWORD).await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);

    r.mend();
    site_record("delete", "Site-Dyn", "dead3.example.test", 0);
    wait_until(
        || !listed(&d, "dead3.example.test"),
        || format!("{:?}", servers(&d)),
    );
    assert!(listed(&d, "dc1.example.test"));
    wait_until(
        || !d.ops("/metrics").1.contains("dead3.example.test"),
        || format!("dead3's series stayed:\n{}", d.ops("/metrics").1),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn openldap_by_default_and_active_directory_from_dns_for_its_domains() {
    let slapd = Slapd::start();
    let secrets = tempfile::tempdir().unwrap();
    let pw = secret_file(
        secrets.path(),
        "ad-bind-password",
        dc().var("SAMBA_BIND_PASSWORD"),
    );
    let ad = format!(
        r#"
[directories.ad]
domains = ["EXAMPLE", "example.test"]
username_prefix = "ad:"
group_prefix = "ad:"
directory = "active-directory"
discover = "example.test"
ca_file = "{ca}"
bind_dn = "{bind_dn}"
bind_password_file = "{pw}"
{LDAP_TIMEOUTS}
[directories.ad.user]
base_dn = "{users}"
[directories.ad.group]
base_dn = "{groups}"
"#,
        ca = dc().var("SAMBA_CA_FILE"),
        bind_dn = dc().var("SAMBA_BIND_DN"),
        pw = pw.display(),
        users = dc().var("SAMBA_USERS_DN"),
        groups = dc().var("SAMBA_GROUPS_DN"),
    );
    let r = Resolver::new();
    let d = {
        let wrapper = &r.wrapper();
        let argv: Vec<&str> = wrapper.iter().map(String::as_str).collect();
        Daemon::builder()
            .site(&Site::openldap())
            .url(slapd.url())
            .sections(&[
                (
                    "identity",
                    "username_prefix = \"ldap:\"\ngroup_prefix = \"ldap:\"",
                ),
                ("cache", &ad),
            ])
            .wrapper(&argv)
            .start()
    };
    d.wait_for_ready();

    let a = review(&d, "alice", "alice-password").await;
    assert_eq!(
        a.body["status"]["user"]["username"], "ldap:alice",
        "{}",
        a.raw
    );
    assert!(
        groups(&a).contains(&"ldap:developers".to_string()),
        "{}",
        a.raw
    );
    let a = review(&d, "EXAMPLE\\alice", ALICE_PASSWORD).await;
    assert_eq!(
        a.body["status"]["user"]["username"], "ad:alice",
        "{}",
        a.raw
    );
    assert!(groups(&a).contains(&"ad:dev-team".to_string()), "{}", a.raw);
    assert_eq!(
        d.metric(
            "kube_ldap_webhook_ldap_operations_total",
            &[
                ("directory", "ad"),
                ("server", DC1),
                ("operation", "bind"),
                ("result", "ok")
            ]
        ),
        1.0
    );
    let a = review(&d, "alice@example.test", "alice-password").await;
    assert_eq!(
        a.body["status"]["error"], GENERIC,
        "alice@example.test is the AD alice, whose password this is not: {}",
        a.raw
    );

    let (code, body) = d.ops("/readyz/ad");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("server ldaps://dc1.example.test:636 (_ldap._tcp.dc._msdcs"),
        "{body}"
    );
}
