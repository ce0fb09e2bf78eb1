//! Unit tests of loading and resolving; the check-config and serve behaviour is tested
//! through the binary in tests/it/check_config.rs.

use std::collections::BTreeMap;

use super::*;

pub(super) fn write(dir: &Path, body: &str) -> PathBuf {
    let f = dir.join("config.toml");
    std::fs::write(&f, body).unwrap();
    f
}

const MINIMAL: &str = r#"
[ldap]
urls = ["ldaps://ldap.example.org"]
bind_dn = "cn=svc,dc=example,dc=org"
bind_password_file = "PW"
[ldap.user]
base_dn = "ou=people,dc=example,dc=org"
"#;

pub(super) fn minimal(dir: &Path) -> String {
    let pw = dir.join("pw");
    std::fs::write(&pw, "s3cret\n").unwrap();
    MINIMAL.replace("PW", pw.to_str().unwrap())
}

#[test]
fn openldap_preset_fills_every_default() {
    let d = tempfile::tempdir().unwrap();
    let c = load(&write(d.path(), &minimal(d.path()))).unwrap();
    assert_eq!(c.ldap.user.username_attribute, "uid");
    assert_eq!(c.ldap.user.uid_attribute, "entryUUID");
    assert_eq!(c.ldap.group.base_dn, "ou=people,dc=example,dc=org");
    assert_eq!(c.cache.ttl, Duration::from_secs(120));
    assert_eq!(c.server.path, "/authenticate");
    assert_eq!(c.ldap.service.unwrap().password.expose(), "s3cret");
}

#[test]
fn unknown_key_is_named_with_the_file() {
    let d = tempfile::tempdir().unwrap();
    let f = write(
        d.path(),
        &format!("{}\ntimeoutt = \"3s\"\n", minimal(d.path())),
    );
    let e = load(&f).unwrap_err().to_string();
    assert!(e.contains("timeoutt"), "{e}");
    assert!(e.contains("config.toml"), "{e}");
}

#[test]
fn bad_duration_names_the_key() {
    let d = tempfile::tempdir().unwrap();
    let body = minimal(d.path()).replace("[ldap.user]", "timeout = \"soon\"\n[ldap.user]");
    let e = load(&write(d.path(), &body)).unwrap_err().to_string();
    assert!(e.contains("ldap.timeout"), "{e}");
}

#[test]
fn active_directory_over_plain_ldap_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let body = minimal(d.path())
        .replace("ldaps://ldap.example.org", "ldap://dc.example.org")
        .replace(
            "[ldap.user]",
            "directory = \"active-directory\"\n[ldap.user]",
        );
    let e = load(&write(d.path(), &body)).unwrap_err().to_string();
    assert!(e.contains("ldap.start_tls"), "{e}");
}

#[test]
fn active_directory_preset_fills_the_ad_defaults() {
    let d = tempfile::tempdir().unwrap();
    let ad = minimal(d.path()).replace(
        "[ldap.user]",
        "directory = \"active-directory\"\n[ldap.user]",
    );
    let c = load(&write(d.path(), &ad)).unwrap();
    assert!(
        c.ldap.user.filter.contains("(sAMAccountName={username})"),
        "{}",
        c.ldap.user.filter
    );
    assert!(
        c.ldap.user.filter.contains("(userPrincipalName={login})"),
        "{}",
        c.ldap.user.filter
    );
    assert_eq!(c.ldap.user.username_attribute, "sAMAccountName");
    assert_eq!(c.ldap.user.uid_attribute, "objectGUID");
    assert_eq!(c.ldap.user.login, LoginForms::StripDomain);
    assert!(!c.ldap.group.server_side_nesting);

    assert!(
        !c.ldap.group.token_groups,
        "direct groups: the member filter"
    );

    let nested = format!("{ad}[ldap.group]\nnested = true\n");
    let c = load(&write(d.path(), &nested)).unwrap();
    assert!(c.ldap.group.token_groups, "nested groups: tokenGroups");
    assert!(!c.ldap.group.server_side_nesting);

    let in_chain = format!("{nested}token_groups = false\n");
    let c = load(&write(d.path(), &in_chain)).unwrap();
    assert!(!c.ldap.group.token_groups);
    assert!(c.ldap.group.server_side_nesting);
    assert!(
        c.ldap.group.filter.contains(":1.2.840.113556.1.4.1941:="),
        "{}",
        c.ldap.group.filter
    );

    // memberOf lists only direct groups: nesting is then walked with the plain filter.
    let member_of = format!("{nested}membership_attribute = \"memberOf\"\n");
    let c = load(&write(d.path(), &member_of)).unwrap();
    assert!(!c.ldap.group.server_side_nesting);
    assert!(!c.ldap.group.token_groups);
    assert_eq!(
        c.ldap.group.filter,
        "(&(objectClass=group)(groupType:1.2.840.113556.1.4.803:=2147483648)(member={dn}))",
        "security groups only"
    );
}

#[test]
fn custom_preset_requires_the_filter() {
    let d = tempfile::tempdir().unwrap();
    let body = minimal(d.path()).replace("[ldap.user]", "directory = \"custom\"\n[ldap.user]");
    let e = load(&write(d.path(), &body)).unwrap_err().to_string();
    assert!(e.contains("ldap.user.filter"), "{e}");
}

#[test]
fn extra_keys_must_be_domain_prefixed() {
    let d = tempfile::tempdir().unwrap();
    let body = format!(
        "{}\n[ldap.user.extra]\nEmail = \"mail\"\n",
        minimal(d.path())
    );
    let e = load(&write(d.path(), &body)).unwrap_err().to_string();
    assert!(e.contains("ldap.user.extra"), "{e}");
}

#[test]
fn unbalanced_filter_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let body = minimal(d.path()).replace(
        "base_dn = \"ou=people",
        "filter = \"(&(uid={username})\"\nbase_dn = \"ou=people",
    );
    let e = load(&write(d.path(), &body)).unwrap_err().to_string();
    assert!(e.contains("ldap.user.filter"), "{e}");
}

#[test]
fn missing_file_is_reported_with_its_name() {
    let e = load(Path::new("/nonexistent/kube-ldap-webhook.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/kube-ldap-webhook.toml"), "{e}");
}

fn with_urls(dir: &Path, urls: &str, ldap_lines: &str) -> PathBuf {
    let body = minimal(dir)
        .replace("[\"ldaps://ldap.example.org\"]", urls)
        .replace("[ldap.user]", &format!("{ldap_lines}\n[ldap.user]"));
    write(dir, &body)
}

#[test]
fn plain_ldap_to_another_host_is_refused_naming_the_url() {
    let d = tempfile::tempdir().unwrap();
    let f = with_urls(
        d.path(),
        r#"["ldaps://a.example.org", "ldap://b.example.org"]"#,
        "",
    );
    let e = load(&f).unwrap_err().to_string();
    assert!(e.contains("key `ldap.urls`"), "{e}");
    assert!(e.contains("ldap://b.example.org"), "{e}");
    assert!(e.contains("allow_insecure"), "{e}");
}

/// Loads a config with these URLs and `[ldap]` lines; whether it warned of clear text.
fn warns_of_clear_text(urls: &str, ldap: &str) -> bool {
    let d = tempfile::tempdir().unwrap();
    let c = load(&with_urls(d.path(), urls, ldap)).unwrap();
    c.warnings.iter().any(|w| w.contains("clear text"))
}

#[test]
fn plain_ldap_with_start_tls_is_accepted_without_warning() {
    assert!(!warns_of_clear_text(
        r#"["ldap://b.example.org"]"#,
        "start_tls = true"
    ));
}

#[test]
fn plain_ldap_to_this_machine_is_accepted_without_warning() {
    assert!(!warns_of_clear_text(
        r#"["ldap://127.0.0.1:389", "ldap://[::1]", "ldap://localhost:3389"]"#,
        ""
    ));
}

#[test]
fn allow_insecure_accepts_plain_ldap_with_a_warning() {
    let d = tempfile::tempdir().unwrap();
    let f = with_urls(
        d.path(),
        r#"["ldap://b.example.org"]"#,
        "allow_insecure = true",
    );
    let c = load(&f).unwrap();
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("clear text") && w.contains("ldap://b.example.org")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn a_url_without_a_host_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let e = load(&with_urls(d.path(), r#"["ldaps://"]"#, ""))
        .unwrap_err()
        .to_string();
    assert!(e.contains("names no host"), "{e}");
}

#[test]
fn out_of_range_counts_and_durations_are_refused_with_the_range() {
    let d = tempfile::tempdir().unwrap();
    for (line, key, range) in [
        (
            "capacity = 1000000000000",
            "cache.capacity",
            "between 1 and 10000000",
        ),
        (
            "stale_ttl = \"1000y\"",
            "cache.stale_ttl",
            "between 0s and 7d",
        ),
    ] {
        let body = format!("{}[cache]\n{line}\n", minimal(d.path()));
        let e = load(&write(d.path(), &body)).unwrap_err().to_string();
        assert!(e.contains(&format!("key `{key}`")), "{e}");
        assert!(e.contains(range), "{e}");
    }
}

#[test]
fn a_zero_failure_window_is_refused_only_with_lockout_on() {
    let d = tempfile::tempdir().unwrap();
    let off = format!(
        "{}[cache]\nmax_failures = 0\nfailure_window = \"0s\"\n",
        minimal(d.path())
    );
    assert!(load(&write(d.path(), &off)).is_ok());
    let on = off.replace("max_failures = 0", "max_failures = 3");
    let e = load(&write(d.path(), &on)).unwrap_err().to_string();
    assert!(e.contains("cache.failure_window"), "{e}");
}

mod example_config {
    use super::*;

    const EXAMPLE: &str = include_str!("../../etc/kube-ldap-webhook/config.toml");

    #[test]
    fn example_config_parses_with_every_key_known() {
        let raw: raw::RawConfig = Figment::new()
            .merge(Toml::string(EXAMPLE))
            .extract()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(raw.ldap.urls.len(), 2);
    }

    #[test]
    fn example_config_documents_every_key() {
        // Every key the code knows appears in the example, set or commented out.
        let keys = [
            "listen",
            "tls_cert_file",
            "tls_key_file",
            "client_ca_file",
            "path",
            "ops_listen",
            "handshake_timeout",
            "request_timeout",
            "max_connections",
            "urls",
            "start_tls",
            "allow_insecure",
            "allow_system_roots",
            "ca_file",
            "bind_dn",
            "bind_password_file",
            "connect_timeout",
            "timeout",
            "directory",
            "base_dn",
            "filter",
            "dn_template",
            "username_attribute",
            "uid_attribute",
            "login",
            "domains",
            "name_attribute",
            "membership_attribute",
            "nested",
            "max_nested_depth",
            "member_uid_attribute",
            "token_groups",
            "username_prefix",
            "group_prefix",
            "lowercase_username",
            "required_groups",
            "name",
            "lowercase",
            "include",
            "exclude",
            "capacity",
            "ttl",
            "negative_ttl",
            "stale_ttl",
            "max_failures",
            "failure_window",
            "level",
            "format",
            "token_ttl",
            "rate",
            "burst",
            "signing_key_file",
            "verification_key_files",
            "accept_basic",
            "not_before",
            "issuer",
            "audience",
            "audiences",
        ];
        for k in keys {
            let set = format!("\n{k} = ");
            let commented = format!("\n# {k} = ");
            assert!(
                EXAMPLE.contains(&set) || EXAMPLE.contains(&commented),
                "{k} is not documented"
            );
        }
    }

    /// Each key's comment lines in the example, by `section.key`.
    fn documented(text: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let (mut section, mut comment) = (String::new(), String::new());
        for line in text.lines() {
            let l = line.trim();
            if let Some(s) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                section = s.to_string();
                comment.clear();
            } else if let Some((k, _)) = l.trim_start_matches("# ").split_once(" = ") {
                if !k.contains(' ') {
                    out.insert(format!("{section}.{k}"), std::mem::take(&mut comment));
                    continue;
                }
                comment.push_str(l);
                comment.push('\n');
            } else if l.starts_with('#') {
                comment.push_str(l);
                comment.push('\n');
            } else {
                comment.clear();
            }
        }
        out
    }

    #[test]
    fn example_config_states_each_range_next_to_its_key() {
        let docs = documented(EXAMPLE);
        let mut want: Vec<(&str, String, String)> = defaults::DURATIONS
            .iter()
            .map(|l| (l.key, l.range(), defaults::Bound::show(&l.default)))
            .collect();
        want.extend(
            defaults::COUNTS
                .iter()
                .map(|l| (l.key, l.range(), l.default.to_string())),
        );
        for (key, range, default) in want {
            let comment = docs
                .get(key)
                .unwrap_or_else(|| panic!("{key} is not in the example config"));
            assert!(
                comment.contains(&format!("Range {range}")),
                "the comment above {key} does not say \"Range {range}\":\n{comment}"
            );
            let (section, name) = key.rsplit_once('.').unwrap();
            let set = format!("\n{name} = {default}");
            let quoted = format!("\n{name} = \"{default}\"");
            let at = EXAMPLE.find(&format!("[{section}]")).unwrap();
            let rest = &EXAMPLE[at..];
            assert!(
                rest.contains(&set) || rest.contains(&quoted),
                "{key}: the example does not show the default {default}"
            );
        }
    }

    #[test]
    fn readme_lists_each_range() {
        let readme = include_str!("../../README.md");
        for (key, range) in defaults::DURATIONS
            .iter()
            .map(|l| (l.key, l.range()))
            .chain(defaults::COUNTS.iter().map(|l| (l.key, l.range())))
        {
            let row = format!("| `{key}` | ");
            let line = readme
                .lines()
                .find(|l| l.starts_with(&row) && l.contains(&format!("`{range}`")));
            assert!(line.is_some(), "README has no row \"{row}... `{range}`\"");
        }
    }

    #[test]
    fn relative_password_file_is_read_next_to_the_config() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("bind-password"), "pw\n").unwrap();
        if std::env::var_os("CREDENTIALS_DIRECTORY").is_none() {
            std::fs::set_permissions(
                d.path().join("bind-password"),
                std::os::unix::fs::PermissionsExt::from_mode(0o644),
            )
            .unwrap();
            let (p, warning) = read_password_file(Path::new("bind-password"), d.path()).unwrap();
            assert_eq!(p.expose(), "pw");
            assert!(
                warning.unwrap().contains("chmod 600"),
                "a readable secret is warned about"
            );
        }
    }
}

#[test]
fn prefixes_may_not_reach_into_system_names() {
    let d = tempfile::tempdir().unwrap();
    for key in ["username_prefix", "group_prefix"] {
        let body = format!("{}\n[identity]\n{key} = \"System:\"\n", minimal(d.path()));
        let e = load(&write(d.path(), &body)).unwrap_err().to_string();
        assert!(e.contains(&format!("identity.{key}")), "{e}");
    }
}

#[test]
fn server_path_of_only_slashes_is_the_root() {
    let d = tempfile::tempdir().unwrap();
    for path in ["/", "//", "///"] {
        let body = format!("[server]\npath = \"{path}\"\n{}", minimal(d.path()));
        let c = load(&write(d.path(), &body)).unwrap();
        assert_eq!(c.server.path, "/", "{path}");
    }
}

/// An issued token's re-check fills the user filter from the name as typed at the login
/// (the token records it), read with its directory's login forms; older tokens fall back
/// to the username without its prefix.
#[test]
fn a_tokens_login_is_the_name_as_typed_in_its_directory() {
    let d = tempfile::tempdir().unwrap();
    let body = minimal(d.path()).replace("[ldap.user]", "[ldap.user]\nlogin = \"strip-domain\"")
        + "[identity]\nusername_prefix = \"ldap:\"\n";
    let c = load(&write(d.path(), &body)).unwrap();
    let typed = c.login_of("", "ldap:alice", "EXAMPLE\\alice").unwrap();
    assert_eq!((typed.typed(), typed.name()), ("EXAMPLE\\alice", "alice"));
    let old = c.login_of("", "ldap:alice", "").unwrap();
    assert_eq!((old.typed(), old.name()), ("alice", "alice"));
    assert!(
        c.login_of("", "alice", "alice").is_none(),
        "the prefix is gone"
    );
    assert!(c.login_of("elsewhere", "ldap:alice", "alice").is_none());
}
