//! `ldap.group.token_groups` against the Samba AD DC: the groups from the user's
//! tokenGroups are the groups of the in-chain rule (`token_groups = false`) for every user,
//! including the cases where the token holds more than `member` values say (the primary
//! group and what it is nested in) and where the chain leaves the group base.
//!
//! The users and groups of these cases are added once, in an OU of their own
//! (`OU=TokenGroups`), so that the fixture's groups under `OU=Groups` stay as the other
//! tests know them.

use super::*;

const PASSWORD: &str = "Passw0rd!token-groups";
/// This module's groups: a group base of their own.
const OU: &str = "OU=TokenGroups,DC=example,DC=test";
/// The security-groups-only member filter of the AD preset, which an explicit filter
/// turns into the level-by-level walk.
const WALK: &str = "filter = \"(&(objectClass=group)(groupType:1.2.840.113556.1.4.803:=2147483648)(member={dn}))\"";

/// The domain, with this module's entries added once.
fn domain() -> &'static Dc {
    static ADDED: OnceLock<Result<(), String>> = OnceLock::new();
    let dc = dc();
    if let Err(e) = ADDED.get_or_init(|| add_entries(dc)) {
        panic!("cannot add the tokenGroups entries to the Samba AD DC: {e}");
    }
    dc
}

fn user_dn(name: &str) -> String {
    format!("CN={name},CN=Users,DC=example,DC=test")
}

/// - `tg-primary-user`: primary group `tg-primary` (so no `member` link to it, and a
///   `member` link to Domain Users instead, as AD and Samba do on the change);
/// - `tg-dual-user`: a member of `tg-dual`, which Domain Users (everyone's primary group)
///   is a member of too: in the token through both;
/// - `tg-outer-user`: in `tg-outer` (CN=Users, outside the group base), which is in
///   `tg-inner` (inside);
/// - `tg-masters-user`: in a group named `system:masters`;
/// - `tg-dl-user`: on `tg-dl`, a distribution list that is a member of the security group
///   `tg-over-dl`.
fn add_entries(dc: &Dc) -> Result<(), String> {
    let mut ldif = format!("dn: {OU}\nobjectClass: organizationalUnit\n\n");
    for user in [
        "tg-primary-user",
        "tg-dual-user",
        "tg-outer-user",
        "tg-masters-user",
        "tg-dl-user",
    ] {
        ldif += &format!(
            "dn: {}\nobjectClass: user\nsAMAccountName: {user}\n\
             userPrincipalName: {user}@example.test\nuserAccountControl: 512\n\
             unicodePwd:: {}\n\n",
            user_dn(user),
            unicode_pwd(PASSWORD)
        );
    }
    let group = |dn: &str, members: &[String], extra: &str| {
        let members: String = members.iter().map(|m| format!("member: {m}\n")).collect();
        format!("dn: {dn}\nobjectClass: group\n{extra}{members}\n")
    };
    ldif += &group(
        &format!("CN=tg-primary,{OU}"),
        &[user_dn("tg-primary-user")],
        "",
    );
    ldif += &group(
        &format!("CN=tg-dual,{OU}"),
        &[
            user_dn("tg-dual-user"),
            "CN=Domain Users,CN=Users,DC=example,DC=test".into(),
        ],
        "",
    );
    ldif += &group(&user_dn("tg-outer"), &[user_dn("tg-outer-user")], "");
    ldif += &group(&format!("CN=tg-inner,{OU}"), &[user_dn("tg-outer")], "");
    // No sAMAccountName: ':' may not be in one; Samba makes one up.
    ldif += &group(
        &format!("CN=system:masters,{OU}"),
        &[user_dn("tg-masters-user")],
        "",
    );
    ldif += &group(
        &format!("CN=tg-dl,{OU}"),
        &[user_dn("tg-dl-user")],
        "groupType: 2\n",
    );
    ldif += &group(
        &format!("CN=tg-over-dl,{OU}"),
        &[format!("CN=tg-dl,{OU}")],
        "",
    );
    dc.ldapadd(&ldif)?;
    let rid = rid_of(dc, &format!("CN=tg-primary,{OU}"))?;
    dc.ldapmodify(&format!(
        "dn: {}\nchangetype: modify\nreplace: primaryGroupID\nprimaryGroupID: {rid}\n",
        user_dn("tg-primary-user")
    ))
}

/// The RID of the entry at `dn`: the last sub-authority of its objectSid.
fn rid_of(dc: &Dc, dn: &str) -> Result<u32, String> {
    let ldif = dc.ldapsearch(dn, "(objectClass=*)", &["objectSid"]);
    let sid = ldif
        .lines()
        .find_map(|l| l.strip_prefix("objectSid:: "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .ok_or_else(|| format!("no objectSid for {dn}:\n{ldif}"))?;
    match sid.get(sid.len().saturating_sub(4)..) {
        Some(&[a, b, c, d]) => Ok(u32::from_le_bytes([a, b, c, d])),
        _ => Err(format!("a short objectSid for {dn}: {sid:?}")),
    }
}

/// A daemon reading nested groups under `base` with `group` (extra `[ldap.group]` lines).
fn daemon(base: &str, group: &str) -> Daemon {
    let site = Site {
        group_base_dn: base.into(),
        ..domain().site()
    };
    domain()
        .daemon()
        .site(&site)
        .section("group", format!("nested = true\n{group}"))
        .start()
}

/// The groups `d` gives `user`; the login must be accepted.
async fn groups_of(d: &Daemon, user: &str, password: &str) -> Vec<String> {
    let a = review(d, user, password).await;
    assert_eq!(
        a.body["status"]["authenticated"],
        true,
        "{user}: {}",
        &a.raw[..a.raw.len().min(500)]
    );
    groups(&a)
}

/// Every user of the domain this suite logs in, with the password.
const USERS: [(&str, &str); 10] = [
    ("alice", ALICE_PASSWORD),
    ("bob", "pa:ss:W0rd!bob"),
    ("carl", "Passw0rd!carl"),
    ("asmith", "Passw0rd!asmith"),
    ("many-groups-user", "Passw0rd!many-groups-user"),
    ("tg-primary-user", PASSWORD),
    ("tg-dual-user", PASSWORD),
    ("tg-outer-user", PASSWORD),
    ("tg-masters-user", PASSWORD),
    ("tg-dl-user", PASSWORD),
];

async fn same_groups_as_the_in_chain_rule_under(base: &str) {
    let token = daemon(base, "token_groups = true");
    let in_chain = daemon(base, "token_groups = false");
    for (user, password) in USERS {
        let want = groups_of(&in_chain, user, password).await;
        let got = groups_of(&token, user, password).await;
        if user == "tg-dl-user" {
            // The one difference: the in-chain rule follows membership through a
            // distribution list, a token never does (README, "Groups from tokenGroups").
            assert_eq!(got, Vec::<String>::new(), "{user} under {base}");
            continue;
        }
        assert_eq!(got, want, "{user} under {base}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_user_has_the_groups_of_the_in_chain_rule_under_the_groups_ou() {
    same_groups_as_the_in_chain_rule_under(domain().var("SAMBA_GROUPS_DN")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_user_has_the_groups_of_the_in_chain_rule_under_the_domain_root() {
    // Domain Users, BUILTIN\Users and tg-dual are in range here.
    same_groups_as_the_in_chain_rule_under(domain().var("SAMBA_BASE_DN")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_user_has_the_groups_of_the_in_chain_rule_under_their_own_ou() {
    same_groups_as_the_in_chain_rule_under(OU).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_primary_group_is_left_out_as_the_in_chain_rule_leaves_it_out() {
    let d = daemon(domain().var("SAMBA_BASE_DN"), "");
    // alice's token holds Domain Users (her primary group), BUILTIN\Users (through it)
    // and tg-dual (through it): none of them through a member value.
    assert_eq!(
        groups_of(&d, "alice", ALICE_PASSWORD).await,
        ["all-staff", "dev-team", "engineering"]
    );
    // tg-primary-user's primary group is tg-primary, left out; Domain Users is a member
    // link now (AD and Samba add one when the primary group changes), and BUILTIN\Users
    // and tg-dual are reached through it.
    assert_eq!(
        groups_of(&d, "tg-primary-user", PASSWORD).await,
        ["Domain Users", "Users", "tg-dual"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_reached_through_member_and_through_the_primary_group_is_kept() {
    let d = daemon(OU, "");
    assert_eq!(groups_of(&d, "tg-dual-user", PASSWORD).await, ["tg-dual"]);
    assert_eq!(
        groups_of(&d, "alice", ALICE_PASSWORD).await,
        Vec::<String>::new(),
        "alice is in tg-dual only through Domain Users"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_reached_through_a_group_outside_the_base_is_found() {
    let d = daemon(OU, "");
    assert_eq!(
        groups_of(&d, "tg-outer-user", PASSWORD).await,
        ["tg-inner"],
        "tg-outer itself is outside the group base"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_system_masters_group_from_token_groups_is_dropped() {
    let d = daemon(OU, "");
    assert_eq!(
        groups_of(&d, "tg-masters-user", PASSWORD).await,
        Vec::<String>::new()
    );
    assert_eq!(d.reserved_groups_dropped(), 1.0);
    d.wait_for_log("system:masters");
}

#[tokio::test(flavor = "multi_thread")]
async fn membership_through_a_distribution_list_counts_as_in_the_level_walk() {
    let token = daemon(OU, "");
    let walk = daemon(OU, WALK);
    let in_chain = daemon(OU, "token_groups = false");
    let got = groups_of(&token, "tg-dl-user", PASSWORD).await;
    assert_eq!(got, groups_of(&walk, "tg-dl-user", PASSWORD).await);
    assert_eq!(got, Vec::<String>::new());
    assert_eq!(
        groups_of(&in_chain, "tg-dl-user", PASSWORD).await,
        ["tg-over-dl"],
        "the in-chain rule goes through the list"
    );
}

/// The searches of the group read (`search_groups`) so far.
fn group_searches(d: &Daemon) -> f64 {
    d.metric(
        "kube_ldap_webhook_ldap_operations_total",
        &[("operation", "search_groups")],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn more_groups_than_one_batch_are_resolved_in_batches_and_then_from_the_cache() {
    let d = daemon(domain().var("SAMBA_GROUPS_DN"), "");
    let want: Vec<String> = (1..=1100).map(|i| format!("bulk-{i:04}")).collect();
    let user = ("many-groups-user", "Passw0rd!many-groups-user");
    assert_eq!(groups_of(&d, user.0, user.1).await, want);
    // The token read; 1,103 SIDs (1,100 groups, Domain Users, and through it
    // BUILTIN\Users and tg-dual) in batches of 100; and the walk up from Domain Users:
    // one level finds BUILTIN\Users and tg-dual, one more finds nothing above them.
    assert_eq!(group_searches(&d), 1.0 + 12.0 + 2.0);
    // A second login within a minute reads only the token. Another spelling: the answer
    // cache is keyed by the token as sent, so this one goes to the directory.
    let before = group_searches(&d);
    assert_eq!(
        groups_of(&d, "EXAMPLE\\many-groups-user", user.1).await,
        want
    );
    assert_eq!(group_searches(&d) - before, 1.0, "the SIDs are known");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_direct_bind_the_user_reads_their_own_token() {
    // No service account: the user binds by DN and reads their own entry and groups.
    let d = domain()
        .daemon()
        .without_service_account()
        .section(
            "user",
            "dn_template = \"CN={username},CN=Users,DC=example,DC=test\"",
        )
        .section("group", "nested = true")
        .start();
    assert_eq!(
        groups_of(&d, "alice", ALICE_PASSWORD).await,
        ["all-staff", "dev-team", "engineering"]
    );
}
