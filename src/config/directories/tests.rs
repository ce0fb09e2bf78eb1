//! `[directories.NAME]` and `ldap.discover`, resolved from files: what they fill in, and
//! each mistake refused naming its key.

use std::path::{Path, PathBuf};

use crate::config::{load, LoginForms, Preset};

/// A default directory of Active Directory that lists its domains, with prefixes, and a
/// partner directory; `extra` is appended to the partner's section.
fn two(dir: &Path, extra: &str) -> String {
    let pw = dir.join("pw");
    std::fs::write(&pw, "s3cret\n").unwrap();
    format!(
        r#"
[ldap]
urls = ["ldaps://dc1.example.test"]
directory = "active-directory"
bind_dn = "CN=svc,DC=example,DC=test"
bind_password_file = "{pw}"
[ldap.user]
base_dn = "DC=example,DC=test"
domains = ["EXAMPLE", "example.test"]
[identity]
username_prefix = "example:"
group_prefix = "example:"
[directories.partner]
domains = ["PARTNER", "partner.test"]
username_prefix = "partner:"
group_prefix = "partner-"
urls = ["ldaps://ldap.partner.test"]
bind_dn = "cn=svc,dc=partner,dc=test"
bind_password_file = "{pw}"
{extra}
[directories.partner.user]
base_dn = "ou=people,dc=partner,dc=test"
"#,
        pw = pw.display()
    )
}

/// [`two`] with `line` added to its `[ldap]` table.
fn with_ldap_line(dir: &Path, line: &str) -> String {
    two(dir, "").replace(
        "directory = \"active-directory\"",
        &format!("directory = \"active-directory\"\n{line}"),
    )
}

fn write(dir: &Path, body: &str) -> PathBuf {
    let f = dir.join("config.toml");
    std::fs::write(&f, body).unwrap();
    f
}

/// The error `body` is refused with.
fn refused(body: impl FnOnce(&Path) -> String) -> String {
    let d = tempfile::tempdir().unwrap();
    let text = body(d.path());
    match load(&write(d.path(), &text)) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn assert_names(e: &str, key: &str) {
    assert!(e.contains(&format!("key `{key}`")), "{key}: {e}");
}

#[test]
fn another_directory_has_the_ldap_schema_its_domains_and_its_prefixes() {
    let d = tempfile::tempdir().unwrap();
    let c = load(&write(d.path(), &two(d.path(), "timeout = \"7s\""))).unwrap();
    assert_eq!(c.directories.len(), 1);
    let p = &c.directories[0];
    assert_eq!(p.name, "partner");
    assert_eq!(p.ldap.urls, ["ldaps://ldap.partner.test"]);
    assert_eq!(p.ldap.timeout, std::time::Duration::from_secs(7));
    assert_eq!(p.ldap.directory, Preset::Openldap, "its own preset");
    assert_eq!(p.ldap.user.username_attribute, "uid");
    assert_eq!(p.ldap.user.domains, ["PARTNER", "partner.test"]);
    assert_eq!(
        p.ldap.user.login,
        LoginForms::StripDomain,
        "chosen by its domain"
    );
    assert_eq!(p.identity.username_prefix, "partner:");
    assert_eq!(p.identity.group_prefix, "partner-");
    assert_eq!(
        c.identity.username_prefix, "example:",
        "[ldap] keeps [identity]'s"
    );
    let names: Vec<_> = c.each_directory().map(|(n, _, _)| n).collect();
    assert_eq!(names, ["default", "partner"]);
}

#[test]
fn logins_are_routed_by_their_domain_part() {
    let d = tempfile::tempdir().unwrap();
    let c = load(&write(d.path(), &two(d.path(), ""))).unwrap();
    let partner = c.login("PARTNER\\bob");
    assert_eq!((partner.directory(), partner.name()), (1, "bob"));
    assert_eq!(c.directory_of(&partner).1.username_prefix, "partner:");
    let own = c.login("EXAMPLE\\bob");
    assert_eq!((own.directory(), own.name()), (0, "bob"));
    assert_eq!(c.directory_of(&own).1.username_prefix, "example:");
}

#[test]
fn a_directory_without_domains_is_refused() {
    let e = refused(|d| two(d, "").replace("domains = [\"PARTNER\", \"partner.test\"]", ""));
    assert_names(&e, "directories.partner.domains");
}

#[test]
fn user_domains_of_another_directory_point_to_its_domains() {
    let e = refused(|d| {
        two(d, "").replace(
            "base_dn = \"ou=people,dc=partner,dc=test\"",
            "base_dn = \"ou=people,dc=partner,dc=test\"\ndomains = [\"X\"]",
        )
    });
    assert_names(&e, "directories.partner.user.domains");
    assert!(e.contains("directories.partner.domains"), "{e}");
}

#[test]
fn directory_names_are_lower_case_labels_and_not_default() {
    for bad in ["Partner", "par tner", "-p", "default"] {
        let e = refused(|d| {
            two(d, "").replace("[directories.partner", &format!("[directories.\"{bad}\""))
        });
        assert_names(&e, &format!("directories.{bad}"));
    }
}

#[test]
fn every_directory_needs_prefixes_when_there_are_several() {
    let e = refused(|d| two(d, "").replace("username_prefix = \"partner:\"", ""));
    assert_names(&e, "directories.partner.username_prefix");
    let e = refused(|d| two(d, "").replace("group_prefix = \"example:\"", ""));
    assert_names(&e, "identity.group_prefix");
}

#[test]
fn no_prefix_may_begin_another() {
    for (mine, theirs) in [
        ("example:", "example:"),
        ("Example:x", "example:"),
        ("ex", "example:"),
    ] {
        let e = refused(|d| {
            two(d, "")
                .replace(
                    "username_prefix = \"partner:\"",
                    &format!("username_prefix = \"{mine}\""),
                )
                .replace(
                    "username_prefix = \"example:\"",
                    &format!("username_prefix = \"{theirs}\""),
                )
        });
        assert_names(&e, "directories.partner.username_prefix");
        assert!(e.contains("identity.username_prefix"), "{e}");
    }
}

#[test]
fn a_domain_serves_one_directory_only() {
    let e = refused(|d| two(d, "").replace("\"partner.test\"]", "\"Example.Test\"]"));
    assert_names(&e, "directories.partner.domains");
    assert!(e.contains("`default` directory"), "{e}");
}

#[test]
fn the_default_directory_lists_its_domains_when_it_strips_them() {
    let e = refused(|d| two(d, "").replace("domains = [\"EXAMPLE\", \"example.test\"]", ""));
    assert_names(&e, "ldap.user.domains");
}

#[test]
fn a_mistake_inside_another_directory_names_its_key() {
    for (line, key) in [
        ("timeout = \"0s\"", "directories.partner.timeout"),
        ("start_tls = \"yes\"", "directories.partner.start_tls"),
        ("directory = \"custom\"", "directories.partner.user.filter"),
        ("ad_site = \"Berlin\"", "directories.partner.ad_site"),
        (
            "group_prefix = \"system:\"",
            "directories.partner.group_prefix",
        ),
    ] {
        let e = refused(|d| two(d, line).replace("group_prefix = \"partner-\"\n", ""));
        // serde names a key of the wrong type by its path, the resolvers as `key `...``.
        assert!(e.contains(key), "{line}: {e}");
    }
}

#[test]
fn the_keys_of_other_directories_are_refused_in_ldap() {
    for (line, key) in [
        ("domains = [\"X\"]", "ldap.domains"),
        ("username_prefix = \"x:\"", "ldap.username_prefix"),
    ] {
        let e = refused(|d| with_ldap_line(d, line));
        assert_names(&e, key);
    }
}

#[test]
fn discover_alone_names_the_servers() {
    let d = tempfile::tempdir().unwrap();
    let body = two(d.path(), "").replace(
        "urls = [\"ldaps://dc1.example.test\"]",
        "discover = \"Example.Test.\"\nad_site = \"Berlin\"\nallow_system_roots = true",
    );
    let c = load(&write(d.path(), &body)).unwrap();
    let found = c.ldap.discover.as_ref().expect("discovery");
    assert_eq!(found.domain, "example.test");
    assert_eq!(found.site.as_deref(), Some("Berlin"));
    assert!(c.ldap.urls.is_empty());
    assert_eq!(found.refresh_min, std::time::Duration::from_secs(30));
    assert_eq!(found.refresh_max, std::time::Duration::from_secs(3600));
}

#[test]
fn neither_urls_nor_discover_is_refused() {
    let e = refused(|d| two(d, "").replace("urls = [\"ldaps://dc1.example.test\"]", ""));
    assert_names(&e, "ldap.urls");
    assert!(e.contains("ldap.discover"), "{e}");
}

#[test]
fn discovery_mistakes_name_their_key() {
    for (line, key) in [
        ("discover = \"exa mple.test\"", "ldap.discover"),
        ("ad_site = \"Berlin\"", "ldap.ad_site"),
        (
            "discover = \"example.test\"\nad_site = \"Ber/lin\"",
            "ldap.ad_site",
        ),
        ("discover_refresh_min = \"0s\"", "ldap.discover_refresh_min"),
        ("discover_refresh_max = \"2d\"", "ldap.discover_refresh_max"),
        (
            "discover_refresh_min = \"10m\"\ndiscover_refresh_max = \"5m\"",
            "ldap.discover_refresh_max",
        ),
    ] {
        let e = refused(|d| with_ldap_line(d, line));
        assert_names(&e, key);
    }
}

#[test]
fn sites_belong_to_active_directory() {
    let e = refused(|d| two(d, "discover = \"partner.test\"\nad_site = \"Berlin\""));
    assert_names(&e, "directories.partner.ad_site");
    assert!(e.contains("active-directory"), "{e}");
}

#[test]
fn the_readme_example_of_several_directories_loads() {
    let readme = include_str!("../../../README.md");
    let section = &readme[readme.find("## Several directories").unwrap()..];
    let start = section.find("```toml\n").unwrap() + "```toml\n".len();
    let toml = &section[start..start + section[start..].find("```").unwrap()];
    let d = tempfile::tempdir().unwrap();
    for f in ["bind-password", "partner-bind-password"] {
        std::fs::write(d.path().join(f), "pw\n").unwrap();
    }
    let c = load(&write(d.path(), toml)).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<_> = c.each_directory().map(|(n, _, _)| n).collect();
    assert_eq!(names, ["default", "partner"]);
    assert_eq!(c.login("PARTNER\\bob").directory(), 1);
    assert_eq!(c.login("bob").directory(), 0);
}

#[test]
fn issued_tokens_need_a_service_account_in_every_directory() {
    let e = refused(|d| {
        crate::issued::keys::keygen(&d.join("keys")).unwrap();
        let body = two(d, "")
            .replace("bind_dn = \"cn=svc,dc=partner,dc=test\"\n", "")
            .replacen(
                &format!("bind_password_file = \"{}\"\n", d.join("pw").display()),
                "",
                2,
            );
        // [ldap] keeps its account; only the partner binds as the user.
        let ldap_pw = format!("bind_password_file = \"{}\"\n", d.join("pw").display());
        let body = body.replacen(
            "bind_dn = \"CN=svc,DC=example,DC=test\"\n",
            &format!("bind_dn = \"CN=svc,DC=example,DC=test\"\n{ldap_pw}"),
            1,
        );
        format!(
            "{body}dn_template = \"uid={{username}},ou=people,dc=partner,dc=test\"\n\
             [tokens]\nverification_key_files = [\"{}\"]\n",
            d.join("keys/signing.pub").display()
        )
    });
    assert_names(&e, "directories.partner.bind_dn");
    assert!(e.contains("issued tokens"), "{e}");
}

#[test]
fn discovery_without_a_ca_file_is_refused_naming_the_key_that_allows_it() {
    let e = refused(|d| with_ldap_line(d, "discover = \"example.test\""));
    assert_names(&e, "ldap.discover");
    assert!(e.contains("ldap.ca_file"), "{e}");
    assert!(e.contains("ldap.allow_system_roots = true"), "{e}");
}

#[test]
fn another_directory_that_discovers_needs_its_own_ca_file() {
    let e = refused(|d| two(d, "discover = \"partner.test\""));
    assert_names(&e, "directories.partner.discover");
    assert!(
        e.contains("directories.partner.allow_system_roots = true"),
        "{e}"
    );
}

/// The warnings of [`with_ldap_line`]`(lines)`, which must load with discovery on.
fn discovering_warnings(lines: &str) -> Vec<String> {
    let d = tempfile::tempdir().unwrap();
    let body = with_ldap_line(d.path(), lines);
    let c = load(&write(d.path(), &body)).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.ldap.discover.is_some());
    c.warnings
}

#[test]
fn discovery_with_the_system_roots_said_explicitly_loads_with_a_warning() {
    let w = discovering_warnings("discover = \"example.test\"\nallow_system_roots = true");
    assert!(
        w.iter()
            .any(|w| w.contains("ldap.allow_system_roots = true")),
        "{w:?}"
    );
}

#[test]
fn discovery_with_a_ca_file_loads_without_a_warning() {
    let w = discovering_warnings("discover = \"example.test\"\nca_file = \"/etc/ssl/our-ca.pem\"");
    assert!(!w.iter().any(|w| w.contains("allow_system_roots")), "{w:?}");
}
