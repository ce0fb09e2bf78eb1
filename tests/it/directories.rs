//! Several directories in one daemon: two real slapd, the default one (`[ldap]`, domains
//! CORP and corp.test) and a partner (`[directories.partner]`, domains PARTNER and
//! partner.test). Both hold the fixture's entries under the same DNs, which is what a
//! partner forest looks like from here: the same names, other people.

use std::path::Path;
use std::process::Command;

use crate::support::issued;
use crate::support::*;

const GENERIC: &str = "Invalid username or password";
const ALICE_DN: &str = "uid=alice,ou=people,dc=example,dc=org";
/// The partner's alice has a password of her own.
const PARTNER_ALICE: &str = "partner-alice-password";

/// Carol exists in the partner directory only.
const CAROL: &str = "dn: uid=carol,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: carol
cn: Carol
sn: Partner
userPassword: carol-password

dn: cn=partner-only,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: partner-only
member: uid=carol,ou=people,dc=example,dc=org
";

struct Two {
    corp: Slapd,
    partner: Slapd,
    d: Daemon,
    _secrets: tempfile::TempDir,
}

/// `[directories.partner]` for the test config. Its tables go after `[cache]`, the last
/// section the test config lets a test add lines to.
fn partner_tables(partner: &Slapd, password_file: &Path) -> String {
    format!(
        r#"
[directories.partner]
domains = ["PARTNER", "partner.test"]
username_prefix = "partner:"
group_prefix = "partner:"
urls = ["{url}"]
bind_dn = "{SERVICE_DN}"
bind_password_file = "{pw}"
{LDAP_TIMEOUTS}
[directories.partner.user]
base_dn = "ou=people,dc=example,dc=org"
[directories.partner.group]
base_dn = "ou=groups,dc=example,dc=org"
"#,
        url = partner.url(),
        pw = password_file.display(),
    )
}

fn start() -> Two {
    let corp = Slapd::start();
    let partner = Slapd::start_with(CAROL);
    partner.set_password(ALICE_DN, PARTNER_ALICE);
    let secrets = tempfile::tempdir().unwrap();
    let pw = secret_file(
        secrets.path(),
        "partner-bind-password",
        &format!("{SERVICE_PASSWORD}\n"),
    );
    let cache = format!("max_failures = 3\n{}", partner_tables(&partner, &pw));
    let d = corp
        .daemon()
        .sections(&[
            (
                "user",
                "login = \"strip-domain\"\ndomains = [\"CORP\", \"corp.test\"]",
            ),
            (
                "identity",
                "username_prefix = \"corp:\"\ngroup_prefix = \"corp:\"",
            ),
            ("cache", &cache),
        ])
        .start();
    d.wait_for_ready();
    Two {
        corp,
        partner,
        d,
        _secrets: secrets,
    }
}

fn user(a: &Answer) -> (String, Vec<String>) {
    let u = &a.body["status"]["user"];
    let groups = u["groups"]
        .as_array()
        .map(|g| g.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    (
        u["username"].as_str().unwrap_or_default().to_string(),
        groups,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_domain_part_chooses_the_directory() {
    let t = start();
    for login in ["PARTNER\\alice", "alice@partner.test", "partner\\ALICE"] {
        let a = t.d.login(login, PARTNER_ALICE).await;
        assert_eq!(
            a.body["status"]["authenticated"], true,
            "{login}: {}",
            a.raw
        );
        assert_eq!(user(&a).0, "partner:alice", "{login}");
    }
    for login in ["alice", "CORP\\alice", "alice@corp.test"] {
        let a = t.d.login(login, "alice-password").await;
        assert_eq!(
            a.body["status"]["authenticated"], true,
            "{login}: {}",
            a.raw
        );
        assert_eq!(user(&a).0, "corp:alice", "{login}");
    }
    // Each directory checks its own password.
    let a = t.d.login("PARTNER\\alice", "alice-password").await;
    assert_eq!(a.body["status"]["error"], GENERIC, "{}", a.raw);
    let a = t.d.login("alice", PARTNER_ALICE).await;
    assert_eq!(a.body["status"]["error"], GENERIC, "{}", a.raw);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_of_one_directory_is_unknown_to_the_other() {
    let t = start();
    let a = t.d.login("carol@partner.test", "carol-password").await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
    assert_eq!(
        user(&a),
        ("partner:carol".into(), vec!["partner:partner-only".into()])
    );
    let a = t.d.login("carol", "carol-password").await;
    assert_eq!(a.body["status"]["error"], GENERIC, "{}", a.raw);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_names_from_two_directories_stay_apart() {
    let t = start();
    let corp = t.d.login("alice", "alice-password").await;
    let partner = t.d.login("PARTNER\\alice", PARTNER_ALICE).await;
    let (corp_name, corp_groups) = user(&corp);
    let (partner_name, partner_groups) = user(&partner);
    assert_ne!(corp_name, partner_name);
    assert!(
        corp_groups.iter().all(|g| g.starts_with("corp:")),
        "{corp_groups:?}"
    );
    assert!(
        partner_groups.iter().all(|g| g.starts_with("partner:")),
        "{partner_groups:?}"
    );
    assert!(corp_groups.contains(&"corp:developers".to_string()));
    assert!(partner_groups.contains(&"partner:developers".to_string()));
    assert_ne!(
        corp.body["status"]["user"]["uid"], partner.body["status"]["user"]["uid"],
        "each directory's own entryUUID"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_domain_no_directory_lists_is_refused_without_ldap_traffic() {
    let t = start();
    let before = (t.corp.operations(), t.partner.operations());
    for login in [
        "OTHER\\alice",
        "alice@other.test",
        "alice@partner.test.evil.org",
    ] {
        let a = t.d.login(login, "alice-password").await;
        assert_eq!(a.body["status"]["error"], GENERIC, "{login}: {}", a.raw);
    }
    assert_eq!((t.corp.operations(), t.partner.operations()), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_directory_down_does_not_stop_the_other() {
    let mut t = start();
    t.partner.stop();
    let a = t.d.login("PARTNER\\alice", PARTNER_ALICE).await;
    assert_eq!(a.body["status"]["authenticated"], false);
    assert!(
        a.body["status"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("unavailable")),
        "{}",
        a.raw
    );
    let a = t.d.login("alice", "alice-password").await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);

    // /readyz asks for every directory; /readyz/NAME for one.
    wait_until(
        || t.d.ops("/readyz").0 == 503,
        || format!("/readyz still {:?}", t.d.ops("/readyz")),
    );
    let (_, body) = t.d.ops("/readyz");
    assert!(body.contains("default: ok: "), "{body}");
    assert!(body.contains("partner: no LDAP server answers"), "{body}");
    assert_eq!(t.d.ops("/readyz/default").0, 200);
    assert_eq!(t.d.ops("/readyz/partner").0, 503);
    assert_eq!(t.d.ops("/readyz/nobody").0, 404);

    t.partner.restart();
    let a =
        t.d.login_until("PARTNER\\alice", PARTNER_ALICE, |a| {
            a.body["status"]["authenticated"] == true
        })
        .await;
    assert_eq!(user(&a).0, "partner:alice");
}

#[tokio::test(flavor = "multi_thread")]
async fn lockout_counts_the_same_dn_in_two_directories_apart() {
    let t = start();
    for i in 0..3 {
        let a = t.d.login("PARTNER\\alice", &format!("guess-{i}")).await;
        assert_eq!(a.body["status"]["error"], GENERIC);
    }
    assert_eq!(t.partner.binds_for(ALICE_DN), 3);
    let a = t.d.login("PARTNER\\alice", PARTNER_ALICE).await;
    assert_eq!(a.body["status"]["error"], GENERIC, "locked out: {}", a.raw);
    assert_eq!(t.partner.binds_for(ALICE_DN), 3, "refused without a bind");
    let a = t.d.login("alice", "alice-password").await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
}

#[tokio::test(flavor = "multi_thread")]
async fn ldap_series_carry_the_directory() {
    let t = start();
    t.d.login("alice", "alice-password").await;
    t.d.login("PARTNER\\alice", PARTNER_ALICE).await;
    let name = "kube_ldap_webhook_ldap_operations_total";
    for directory in ["default", "partner"] {
        let binds = t.d.metric(
            name,
            &[
                ("directory", directory),
                ("operation", "bind"),
                ("result", "ok"),
            ],
        );
        assert_eq!(binds, 1.0, "{directory}");
    }
    let connections = "kube_ldap_webhook_ldap_connections";
    assert!(t.d.metric(connections, &[("directory", "partner")]) >= 1.0);
    assert_eq!(t.d.failovers("partner"), 0.0);
}

#[test]
fn check_config_connect_binds_to_every_directory() {
    let mut t = start();
    let run = || {
        Command::new(bin())
            .args(["check-config", "--connect", "--config"])
            .arg(&t.d.config)
            .output()
            .unwrap()
    };
    let out = run();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("default: {}: bound as", t.corp.url())),
        "{text}"
    );
    assert!(
        text.contains(&format!("partner: {}: bound as", t.partner.url())),
        "{text}"
    );

    t.partner.stop();
    let out = run();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("partner: "), "{err}");
    assert!(
        err.contains(&format!("default: {}: bound as", t.corp.url())),
        "{err}"
    );
}

#[test]
fn check_config_names_the_key_of_a_shared_prefix() {
    let t = start();
    let text = std::fs::read_to_string(&t.d.config).unwrap().replace(
        "username_prefix = \"partner:\"",
        "username_prefix = \"corp:x\"",
    );
    let f = t.d.dir.path().join("shared-prefix.toml");
    std::fs::write(&f, text).unwrap();
    let out = Command::new(bin())
        .args(["check-config", "--config"])
        .arg(&f)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("key `directories.partner.username_prefix`"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_password_of_either_directory_reaches_the_log_or_the_ops_listener() {
    let t = start();
    t.d.login("PARTNER\\alice", PARTNER_ALICE).await;
    t.d.login("PARTNER\\alice", "partner-guess-1").await;
    t.d.login("alice@partner.test", "partner-guess-2").await;
    t.d.login("alice", "alice-password").await;
    let seen = [
        t.d.log(),
        t.d.ops("/readyz").1,
        t.d.ops("/metrics").1,
        t.d.ops("/readyz/partner").1,
    ]
    .join("\n");
    for secret in [
        SERVICE_PASSWORD,
        PARTNER_ALICE,
        "partner-guess-1",
        "partner-guess-2",
        "alice-password",
    ] {
        assert!(!seen.contains(secret), "{secret} leaked:\n{seen}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_of_one_directory_knows_only_configured_names() {
    let t = start();
    assert_eq!(t.d.ops("/readyz/partner").0, 200);
    let long = format!("/readyz/{}", "p".repeat(4000));
    for path in [
        "/readyz/",
        "/readyz/Partner",
        "/readyz/partner/",
        "/readyz/partner/../default",
        "/readyz/..%2fdefault",
        "/readyz/%00",
        long.as_str(),
    ] {
        let (code, body) = t.d.ops(path);
        assert_eq!(code, 404, "{path}: {body}");
        assert_eq!(body, "no such directory\n", "{path}");
    }
}

#[test]
fn an_override_of_another_directorys_key_is_named_with_its_variable() {
    let t = start();
    let out = Command::new(bin())
        .args(["check-config", "--config"])
        .arg(&t.d.config)
        .env("KUBE_LDAP_WEBHOOK_DIRECTORIES__PARTNER__TIMEOUT", "11m")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("key `directories.partner.timeout`"), "{err}");
    assert!(
        err.contains("set by KUBE_LDAP_WEBHOOK_DIRECTORIES__PARTNER__TIMEOUT"),
        "{err}"
    );
}

/// An issued token records its directory: the re-check at review time reads the partner's
/// entry and groups, not the default directory's (where carol does not exist).
#[tokio::test(flavor = "multi_thread")]
async fn an_issued_token_is_rechecked_in_the_directory_it_came_from() {
    let corp = Slapd::start();
    let partner = Slapd::start_with(CAROL);
    let secrets = tempfile::tempdir().unwrap();
    let pw = secret_file(
        secrets.path(),
        "partner-bind-password",
        &format!("{SERVICE_PASSWORD}\n"),
    );
    let keys = issued::KeyPair::new();
    let issuer = issued::Issuer::start(
        &Site::openldap(),
        &[corp.url()],
        &[
            (
                "user",
                "login = \"strip-domain\"\ndomains = [\"CORP\", \"corp.test\"]",
            ),
            (
                "identity",
                "username_prefix = \"corp:\"\ngroup_prefix = \"corp:\"",
            ),
            ("cache", &partner_tables(&partner, &pw)),
        ],
        &keys,
        "",
        "",
    );
    let token = issuer.token("PARTNER\\carol", "carol-password").await;
    assert_eq!(issued::claims_of(&token)["dir"], "partner");
    let a = issuer.review(&token).await;
    assert_eq!(
        user(&a),
        (
            "partner:carol".to_string(),
            vec!["partner:partner-only".to_string()]
        ),
        "{}",
        a.raw
    );
    assert!(
        !corp.log().to_lowercase().contains("carol"),
        "the default directory was not asked about carol"
    );
}

/// The daemon's review log lines whose outcome is `outcome`.
fn review_lines(d: &Daemon, outcome: &str) -> Vec<String> {
    let needle = format!("outcome=\"{outcome}\"");
    d.wait_for_log(&needle);
    d.log()
        .lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_review_log_names_the_user_the_directory_confirmed_not_the_login_as_typed() {
    let t = start();
    for _ in 0..2 {
        let a = t.d.login("corp\\ALICE", "alice-password").await;
        assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
    }
    let a = t.d.login("PARTNER\\Alice", "a-wrong-password").await;
    assert_eq!(a.body["status"]["error"], GENERIC, "{}", a.raw);
    t.d.wait_for_log("source=\"cache\"");
    let accepted = review_lines(&t.d, "accepted");
    assert!(accepted[0].contains("user=\"corp:alice\""), "{accepted:?}");
    let hit = accepted.iter().find(|l| l.contains("source=\"cache\""));
    assert!(
        hit.is_some_and(|l| l.contains("user=\"corp:alice\"")),
        "{accepted:?}"
    );
    let rejected = review_lines(&t.d, "rejected");
    assert!(rejected[0].contains("wrong_password"), "{rejected:?}");
    assert!(
        rejected[0].contains("user=\"partner:alice\""),
        "{rejected:?}"
    );
    for line in accepted.iter().chain(&rejected) {
        assert!(!line.contains("ALICE") && !line.contains("Alice"), "{line}");
    }
}
