//! The group policy of `[identity]` against a real slapd: which groups Kubernetes sees
//! (`identity.groups.include` / `exclude`), how they are named (`identity.groups.name`),
//! lower-casing, and who may log in at all (`identity.required_groups`).

use crate::support::*;
use serde_json::json;

const GENERIC: &str = "Invalid username or password";
const NOT_ALLOWED: &str = "Not a member of a group allowed to log in";
const BOB_DN: &str = "uid=bob,ou=people,dc=example,dc=org";

/// alice (fixture: admins, developers) is also in k8s-users, k8s-admins and
/// k8s-legacy-ops; bob (developers) in none of them. carol is in a `developers` of the
/// partners OU and in `K8s-Ops`; her uid is `Carol.Ödegaard`.
const K8S: &str = "\
dn: cn=k8s-users,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: k8s-users
member: uid=alice,ou=people,dc=example,dc=org

dn: cn=k8s-admins,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: k8s-admins
member: uid=alice,ou=people,dc=example,dc=org

dn: cn=k8s-legacy-ops,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: k8s-legacy-ops
member: uid=alice,ou=people,dc=example,dc=org

dn: uid=carol,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: Carol.Ödegaard
cn: Carol
sn: Ödegaard
userPassword: carol-password

dn: ou=partners,dc=example,dc=org
objectClass: organizationalUnit
ou: partners

dn: cn=developers,ou=partners,dc=example,dc=org
objectClass: groupOfNames
cn: developers
member: uid=carol,ou=people,dc=example,dc=org

dn: cn=K8s-Ops,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: K8s-Ops
member: uid=carol,ou=people,dc=example,dc=org
";

fn groups(a: &Answer) -> serde_json::Value {
    a.body["status"]["user"]["groups"].clone()
}

/// Groups searched in the whole tree, both OUs.
fn whole_tree() -> Site {
    Site {
        group_base_dn: BASE_DN.into(),
        ..Site::openldap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_k8s_groups_reach_kubernetes() {
    let slapd = Slapd::start_with(K8S);
    let d = slapd.daemon().sections(&[
            (
                "identity",
                "group_prefix = \"ldap:\"\n[identity.groups]\ninclude = [\"k8s-.*\"]\nexclude = [\"k8s-legacy-.*\"]",
            ),
        ],).start();
    let a = d.login("alice", "alice-password").await;
    assert_eq!(
        groups(&a),
        json!(["ldap:k8s-admins", "ldap:k8s-users"]),
        "the patterns see the names before the prefix: {}",
        a.raw
    );
    let a = d.login("bob", "pa:ss:word").await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
    assert_eq!(
        groups(&a),
        serde_json::Value::Null,
        "developers is left out"
    );
}

/// `n` groups `team-0` .. with alice as their only member.
fn teams(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "dn: cn=team-{i},ou=groups,dc=example,dc=org\nobjectClass: groupOfNames\n\
                 cn: team-{i}\nmember: uid=alice,ou=people,dc=example,dc=org\n\n"
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn of_thousands_of_groups_only_the_included_ones_are_sent() {
    let slapd = Slapd::start_with(&format!("{K8S}\n{}", teams(1500)));
    let all = slapd.daemon().start();
    let a = all.login("alice", "alice-password").await;
    assert_eq!(groups(&a).as_array().map(Vec::len), Some(1505), "{}", a.raw);
    let d = slapd
        .daemon()
        .sections(&[("identity", "[identity.groups]\ninclude = [\"k8s-.*\"]")])
        .start();
    let a = d.login("alice", "alice-password").await;
    assert_eq!(
        groups(&a),
        json!(["k8s-admins", "k8s-legacy-ops", "k8s-users"])
    );
}

/// A review and the SRCH requests slapd logged for it.
async fn searched(slapd: &Slapd, d: &Daemon, login: &str, password: &str) -> (Answer, usize) {
    let mark = slapd.log_mark();
    let a = d.login(login, password).await;
    (a, slapd.stats_since(mark).searches().len())
}

/// A group search answers 500 entries a page: a user in more groups takes a second page,
/// which a wrong password must not cost (the decoy of an unknown name never does).
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_of_a_user_in_many_groups_costs_the_searches_of_an_unknown_name() {
    let slapd = Slapd::start_with(&teams(600));
    let d = slapd.daemon().start();
    d.wait_for_probe();
    let (a, wrong) = searched(&slapd, &d, "alice", "a-wrong-password").await;
    assert_eq!(a.body["status"]["error"], GENERIC, "{}", a.raw);
    let (a, unknown) = searched(&slapd, &d, "nobody", "a-wrong-password").await;
    assert_eq!(a.body["status"]["error"], GENERIC, "{}", a.raw);
    assert_eq!(slapd.decoy_binds(), 1);
    assert_eq!(wrong, unknown, "user search and one group search each");
    // The right password reads both pages: the count above would see a second one.
    let (a, right) = searched(&slapd, &d, "alice", "alice-password").await;
    assert_eq!(groups(&a).as_array().map(Vec::len), Some(602), "{}", a.raw);
    assert_eq!(right, wrong + 1);
    // The rest of a first page nobody waits for was read, not left to ldap3's warnings.
    let log = d.log();
    assert!(
        !log.contains("unmatched id") && !log.contains("send error"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn people_outside_the_required_groups_are_refused_after_their_password() {
    let slapd = Slapd::start_with(K8S);
    let d = slapd
        .daemon()
        .sections(&[(
            "identity",
            "required_groups = [\"k8s-users\", \"k8s-admins\"]",
        )])
        .start();
    let a = d.login("alice", "alice-password").await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);

    let a = d.login("bob", "pa:ss:word").await;
    let s = &a.body["status"];
    assert_eq!(s["authenticated"], false, "{}", a.raw);
    assert_eq!(s["error"], NOT_ALLOWED);
    assert!(s.get("user").is_none());
    assert_eq!(slapd.binds_for(BOB_DN), 1, "the password was checked");
    assert_eq!(
        d.metric(
            "kube_ldap_webhook_reviews_total",
            &[("outcome", "not_in_required_group"), ("source", "ldap")]
        ),
        1.0
    );
    // Cached like an account state: the same token again costs no bind.
    let a = d.login("bob", "pa:ss:word").await;
    assert_eq!(a.body["status"]["error"], NOT_ALLOWED);
    assert_eq!(slapd.binds_for(BOB_DN), 1);

    // Without the password, bob reads like anybody else.
    let a = d.login("bob", "guess").await;
    assert_eq!(a.body["status"]["error"], GENERIC, "{}", a.raw);
    let a = d.login("nobody", "guess").await;
    assert_eq!(a.body["status"]["error"], GENERIC, "{}", a.raw);
}

#[tokio::test(flavor = "multi_thread")]
async fn group_policy_refusals_do_not_lock_the_account() {
    let slapd = Slapd::start_with(K8S);
    let d = slapd
        .daemon()
        .sections(&[
            ("identity", "required_groups = [\"k8s-users\"]"),
            ("cache", "negative_ttl = \"0s\"\nmax_failures = 2"),
        ])
        .start();
    for _ in 0..4 {
        let a = d.login("bob", "pa:ss:word").await;
        assert_eq!(a.body["status"]["error"], NOT_ALLOWED, "{}", a.raw);
    }
    assert_eq!(slapd.binds_for(BOB_DN), 4, "every one a directory answer");
    // bob joins k8s-users and gets in at once: nothing counted against him.
    slapd.modify(
        "dn: cn=k8s-users,ou=groups,dc=example,dc=org\nchangetype: modify\nadd: member\n\
         member: uid=bob,ou=people,dc=example,dc=org\n",
    );
    let a = d.login("bob", "pa:ss:word").await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_named_by_dn_keep_equal_names_in_different_ous_apart() {
    let slapd = Slapd::start_with(K8S);
    let by_cn = slapd.daemon().site(&whole_tree()).start();
    let a = by_cn.login("carol", "carol-password").await;
    assert_eq!(groups(&a), json!(["K8s-Ops", "developers"]), "{}", a.raw);

    let by_dn = slapd
        .daemon()
        .site(&whole_tree())
        .sections(&[("identity", "[identity.groups]\nname = \"dn\"")])
        .start();
    let a = by_dn.login("carol", "carol-password").await;
    assert_eq!(
        groups(&a),
        json!([
            "cn=K8s-Ops,ou=groups,dc=example,dc=org",
            "cn=developers,ou=partners,dc=example,dc=org"
        ]),
        "{}",
        a.raw
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cn_at_domain_appends_the_domain_of_the_group_dn() {
    let slapd = Slapd::start();
    let d = slapd
        .daemon()
        .sections(&[(
            "identity",
            "required_groups = [\"admins@example.org\"]\n[identity.groups]\nname = \"cn@domain\"",
        )])
        .start();
    let a = d.login("alice", "alice-password").await;
    assert_eq!(
        groups(&a),
        json!(["admins@example.org", "developers@example.org"]),
        "{}",
        a.raw
    );
    let a = d.login("bob", "pa:ss:word").await;
    assert_eq!(a.body["status"]["error"], NOT_ALLOWED, "{}", a.raw);
}

#[tokio::test(flavor = "multi_thread")]
async fn lowercasing_folds_the_directory_names_but_not_the_prefixes() {
    let slapd = Slapd::start_with(K8S);
    let d = slapd
        .daemon()
        .sections(&[(
            "identity",
            "username_prefix = \"LDAP:\"\ngroup_prefix = \"LDAP:\"\nlowercase_username = true\n\
             required_groups = [\"k8s-ops\"]\n[identity.groups]\nlowercase = true",
        )])
        .start();
    let a = d.login("carol.ödegaard", "carol-password").await;
    let s = &a.body["status"];
    assert_eq!(s["authenticated"], true, "{}", a.raw);
    assert_eq!(s["user"]["username"], "LDAP:carol.ödegaard");
    assert_eq!(groups(&a), json!(["LDAP:k8s-ops"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn without_lowercasing_the_directory_spelling_stays() {
    let slapd = Slapd::start_with(K8S);
    let d = slapd.daemon().start();
    let a = d.login("carol.ödegaard", "carol-password").await;
    assert_eq!(
        a.body["status"]["user"]["username"], "Carol.Ödegaard",
        "{}",
        a.raw
    );
    assert_eq!(groups(&a), json!(["K8s-Ops"]));
}
