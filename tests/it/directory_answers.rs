//! The directory is not trusted either: a search cut by a limit, an unexpected result code
//! or a `system:` group is not an answer to pass on.

use std::time::Duration;

use crate::support::*;

const GENERIC: &str = "Invalid username or password";
const UNAVAILABLE: &str = "Authentication backend unavailable";

/// slapd whose searches by the service account stop at `size` entries.
fn limited(size: usize, ldif: &str) -> Slapd {
    let conf = SlapdConf {
        database: format!("limits dn.exact=\"{SERVICE_DN}\" size={size}\n"),
        ..SlapdConf::default()
    };
    Slapd::start_configured(&conf, ldif)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_search_cut_at_the_size_limit_is_ambiguous_not_one_user() {
    // Two entries have uid=twin; the server returns one of them and result 4.
    let slapd = limited(1, "");
    let d = slapd.daemon().start();
    let a = d.login("twin", "twin-password").await;
    assert_eq!(a.body["status"]["error"], GENERIC, "{}", a.raw);
    assert_eq!(slapd.user_binds(), 0, "neither twin is bound");
    d.wait_for_log("ambiguous_user");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_search_cut_at_the_size_limit_is_an_error_not_a_shorter_list() {
    // alice is in two groups; the server stops at one.
    let slapd = limited(1, "");
    let d = slapd.daemon().start();
    let a = d.login("alice", "alice-password").await;
    assert_eq!(a.body["status"]["authenticated"], false, "{}", a.raw);
    assert_eq!(a.body["status"]["error"], UNAVAILABLE);
    d.wait_for_log("result 4");
    assert!(
        !d.log().contains("LDAP server failed"),
        "an answer does not mark the server down"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_nested_deeper_than_the_limit_are_an_error_not_a_shorter_list() {
    // alice -> developers -> everyone -> all-hands: two levels above her group, one allowed.
    let slapd = Slapd::start_with(
        "dn: cn=all-hands,ou=groups,dc=example,dc=org\n\
         objectClass: groupOfNames\n\
         cn: all-hands\n\
         member: cn=everyone,ou=groups,dc=example,dc=org\n",
    );
    let d = slapd
        .daemon()
        .section("group", "nested = true\nmax_nested_depth = 1")
        .start();
    let a = d.login("alice", "alice-password").await;
    assert_eq!(a.body["status"]["error"], UNAVAILABLE, "{}", a.raw);
    d.wait_for_log("max_nested_depth");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_error_answer_is_not_bridged_with_a_stale_answer() {
    // Two groups fit the limit; a third makes the group search an error.
    let slapd = limited(2, "");
    let d = slapd
        .daemon()
        .section("cache", "ttl = \"1s\"\nstale_ttl = \"1h\"")
        .start();
    let a = d.login("alice", "alice-password").await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
    slapd.modify(
        "dn: cn=everyone,ou=groups,dc=example,dc=org\n\
         changetype: modify\n\
         add: member\n\
         member: uid=alice,ou=people,dc=example,dc=org\n",
    );
    // Past ttl: the next review asks the directory, which answers with an error.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let a = d.login("alice", "alice-password").await;
    assert_eq!(a.body["status"]["authenticated"], false, "{}", a.raw);
    assert_eq!(a.body["status"]["error"], UNAVAILABLE);
    assert_eq!(
        d.metric(
            "kube_ldap_webhook_cache_events_total",
            &[("event", "stale")]
        ),
        0.0
    );
    assert!(!d.log().contains("LDAP server failed"));
}

const SYSTEM_MASTERS: &str = "\
dn: cn=system:masters,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: system:masters
member: uid=alice,ou=people,dc=example,dc=org
";

#[tokio::test(flavor = "multi_thread")]
async fn a_system_masters_group_from_the_directory_is_dropped() {
    let slapd = Slapd::start_with(SYSTEM_MASTERS);
    let d = slapd.daemon().start();
    let a = d.login("alice", "alice-password").await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
    assert_eq!(
        a.body["status"]["user"]["groups"],
        serde_json::json!(["admins", "developers"])
    );
    assert_eq!(d.reserved_groups_dropped(), 1.0);
    d.wait_for_log("system:masters");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prefix_keeps_directory_groups_out_of_system_names() {
    let slapd = Slapd::start_with(SYSTEM_MASTERS);
    let d = slapd
        .daemon()
        .section("identity", "group_prefix = \"ldap:\"")
        .start();
    let a = d.login("alice", "alice-password").await;
    let groups = a.body["status"]["user"]["groups"].to_string();
    assert!(groups.contains("ldap:system:masters"), "{groups}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_directory_user_named_system_is_refused() {
    // The login is `sysadm`; the username attribute (cn here) says `system:admin`.
    let slapd = Slapd::start_with(
        "dn: uid=sysadm,ou=people,dc=example,dc=org\n\
         objectClass: inetOrgPerson\n\
         uid: sysadm\n\
         cn: system:admin\n\
         sn: x\n\
         userPassword: sysadm-password\n",
    );
    let d = slapd
        .daemon()
        .section("user", "username_attribute = \"cn\"")
        .start();
    let a = d.login("sysadm", "sysadm-password").await;
    assert_eq!(a.body["status"]["error"], GENERIC, "{}", a.raw);
    assert_eq!(
        d.metric(
            "kube_ldap_webhook_reserved_names_total",
            &[("event", "username")]
        ),
        1.0
    );
}
