//! RFC 2307 directories against a real slapd with the nis schema: `posixAccount` users,
//! `posixGroup` groups that list their members by name in `memberUid`. `{uid}` in the group
//! filter is the bound entry's own `uid`, never the login: slapd matches `memberUid`
//! case-exactly, so the login `PAT` finds pat's entry but is not what her groups list.

use crate::support::*;
use serde_json::json;

const GENERIC: &str = "Invalid username or password";
const UNAVAILABLE: &str = "Authentication backend unavailable";
const PAT_DN: &str = "uid=pat,ou=people,dc=example,dc=org";

/// pat (uidNumber 10001) is in ops and dev by memberUid and in admins by DN; sam is in dev;
/// `*` is a user whose uid is an asterisk; rob has two uids (his RDN names `rob`); lee has
/// two uids and a cn RDN.
const POSIX: &str = "\
dn: uid=pat,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
objectClass: posixAccount
uid: pat
cn: Pat Doe
sn: Doe
mail: pat.doe@example.org
uidNumber: 10001
gidNumber: 10001
homeDirectory: /home/pat
userPassword: pat-password

dn: uid=sam,ou=people,dc=example,dc=org
objectClass: account
objectClass: posixAccount
uid: sam
cn: sam
uidNumber: 10002
gidNumber: 10002
homeDirectory: /home/sam
userPassword: sam-password

dn: uid=\\2A,ou=people,dc=example,dc=org
objectClass: account
objectClass: posixAccount
uid: *
cn: star
uidNumber: 10003
gidNumber: 10003
homeDirectory: /home/star
userPassword: star-password

dn: uid=rob,ou=people,dc=example,dc=org
objectClass: account
objectClass: posixAccount
uid: rob
uid: robert
cn: rob
uidNumber: 10004
gidNumber: 10004
homeDirectory: /home/rob
userPassword: rob-password

dn: cn=lee,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
objectClass: posixAccount
uid: lee
uid: leland
cn: lee
sn: lee
uidNumber: 10005
gidNumber: 10005
homeDirectory: /home/lee
userPassword: lee-password

dn: cn=ops,ou=groups,dc=example,dc=org
objectClass: posixGroup
cn: ops
gidNumber: 20001
memberUid: pat

dn: cn=dev,ou=groups,dc=example,dc=org
objectClass: posixGroup
cn: dev
gidNumber: 20002
memberUid: pat
memberUid: sam
memberUid: rob
memberUid: lee

dn: cn=robert-only,ou=groups,dc=example,dc=org
objectClass: posixGroup
cn: robert-only
gidNumber: 20003
memberUid: robert

dn: cn=platform,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: platform
member: uid=pat,ou=people,dc=example,dc=org
";

fn slapd() -> Slapd {
    Slapd::start_with(POSIX)
}

/// A daemon with `directory = "rfc2307"` and `sections`.
fn rfc2307(slapd: &Slapd, sections: &[(&str, &str)]) -> Daemon {
    rfc2307_builder(slapd, sections).start()
}

fn rfc2307_builder(slapd: &Slapd, sections: &[(&str, &str)]) -> DaemonBuilder {
    slapd
        .daemon()
        .section("ldap", "directory = \"rfc2307\"")
        .sections(sections)
}

fn groups(a: &Answer) -> serde_json::Value {
    a.body["status"]["user"]["groups"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rfc2307_preset_finds_groups_by_member_uid() {
    let slapd = slapd();
    let d = rfc2307(&slapd, &[]);
    let a = d.login("pat", "pat-password").await;
    let s = &a.body["status"];
    assert_eq!(s["authenticated"], true, "{}", a.raw);
    assert_eq!(s["user"]["username"], "pat");
    assert_eq!(s["user"]["uid"], "10001", "uidNumber");
    assert_eq!(groups(&a), json!(["dev", "ops"]), "platform lists DNs");
    let a = d.login("sam", "sam-password").await;
    assert_eq!(groups(&a), json!(["dev"]), "{}", a.raw);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_spelled_unlike_the_uid_gets_the_groups_of_the_entry_it_found() {
    let slapd = slapd();
    let d = rfc2307(&slapd, &[]);
    // uid matches case-insensitively, memberUid case-exactly: only the entry's own `pat`
    // is what ops and dev list.
    for login in ["PAT", "Pat", "ｐａｔ", "ＰＡＴ"] {
        let a = d.login(login, "pat-password").await;
        assert_eq!(
            a.body["status"]["authenticated"], true,
            "{login}: {}",
            a.raw
        );
        assert_eq!(groups(&a), json!(["dev", "ops"]), "{login}");
        assert_eq!(a.body["status"]["user"]["username"], "pat", "{login}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_login_itself_would_miss_the_groups_that_uid_finds() {
    // The control for the test above: the same directory, with the typed login in the
    // filter instead of {uid}.
    let slapd = slapd();
    let d = rfc2307(
        &slapd,
        &[(
            "group",
            "filter = \"(&(objectClass=posixGroup)(memberUid={username}))\"",
        )],
    );
    let a = d.login("PAT", "pat-password").await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
    assert_eq!(groups(&a), serde_json::Value::Null, "no groups: {}", a.raw);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_found_by_mail_gets_the_groups_of_their_uid() {
    let slapd = slapd();
    let d = rfc2307(
        &slapd,
        &[(
            "user",
            "filter = \"(&(objectClass=posixAccount)(mail={username}))\"",
        )],
    );
    let a = d.login("pat.doe@example.org", "pat-password").await;
    assert_eq!(a.body["status"]["user"]["username"], "pat", "{}", a.raw);
    assert_eq!(groups(&a), json!(["dev", "ops"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_asterisk_uid_is_a_name_not_a_wildcard() {
    // Unescaped, (memberUid=*) would be a presence test: every group.
    let slapd = slapd();
    let d = rfc2307(&slapd, &[]);
    let a = d.login("*", "star-password").await;
    let s = &a.body["status"];
    assert_eq!(s["authenticated"], true, "{}", a.raw);
    assert_eq!(s["user"]["username"], "*");
    assert_eq!(groups(&a), serde_json::Value::Null, "no group lists `*`");
}

#[tokio::test(flavor = "multi_thread")]
async fn of_several_uids_the_one_the_rdn_names_is_the_member_uid() {
    let slapd = slapd();
    let d = rfc2307(&slapd, &[]);
    for login in ["rob", "robert"] {
        let a = d.login(login, "rob-password").await;
        assert_eq!(groups(&a), json!(["dev"]), "{login}: {}", a.raw);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn several_uids_none_in_the_rdn_is_an_error_not_a_guess() {
    let slapd = slapd();
    let d = rfc2307(&slapd, &[]);
    let a = d.login("lee", "lee-password").await;
    assert_eq!(a.body["status"]["error"], UNAVAILABLE, "{}", a.raw);
    d.wait_for_log("ambiguous");
    // The password still comes first: a wrong one is a plain rejection.
    let a = d.login("lee", "wrong").await;
    assert_eq!(a.body["status"]["error"], GENERIC, "{}", a.raw);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_entry_without_the_member_uid_attribute_is_an_error_not_a_shorter_list() {
    let slapd = slapd();
    let d = rfc2307(&slapd, &[("group", "member_uid_attribute = \"gecos\"")]);
    let a = d.login("pat", "pat-password").await;
    assert_eq!(a.body["status"]["error"], UNAVAILABLE, "{}", a.raw);
    d.wait_for_log("ldap.group.member_uid_attribute");
}

#[tokio::test(flavor = "multi_thread")]
async fn member_uid_and_member_dn_groups_together() {
    // rfc2307bis-style: groups by DN and by name in one filter.
    let slapd = slapd();
    let d = rfc2307(
        &slapd,
        &[(
            "group",
            "filter = \"(|(&(objectClass=posixGroup)(memberUid={uid}))(&(objectClass=groupOfNames)(member={dn})))\"",
        )],
    );
    let a = d.login("Pat", "pat-password").await;
    assert_eq!(groups(&a), json!(["dev", "ops", "platform"]), "{}", a.raw);
}

#[tokio::test(flavor = "multi_thread")]
async fn direct_bind_reads_the_uid_from_the_entry_it_bound() {
    let slapd = slapd();
    let d = rfc2307_builder(
        &slapd,
        &[(
            "user",
            "dn_template = \"uid={username},ou=people,dc=example,dc=org\"",
        )],
    )
    .without_service_account()
    .start();
    let a = d.login("pat", "pat-password").await;
    assert_eq!(groups(&a), json!(["dev", "ops"]), "{}", a.raw);
    assert_eq!(slapd.binds_for(PAT_DN), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_name_costs_the_group_search_of_a_wrong_password() {
    let slapd = slapd();
    let d = rfc2307(&slapd, &[]);
    d.wait_for_probe();
    let before = slapd.operations();
    d.login("pat", "not-pats-password").await;
    let wrong = slapd.operations() - before;
    let before = slapd.operations();
    d.login("nobody", "not-pats-password").await;
    let unknown = slapd.operations() - before;
    assert_eq!(
        unknown, wrong,
        "search + bind + memberUid search either way"
    );
    assert_eq!(slapd.decoy_binds(), 1);
    assert!(
        slapd.log().contains("(memberUid=kube-ldap-webhook-decoy-"),
        "the decoy's group search ran with its own uid"
    );
}
