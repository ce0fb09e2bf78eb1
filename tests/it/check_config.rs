//! `kube-ldap-webhook check-config`: the same validation as `serve`, and `--connect`.

use std::process::Command;

use crate::support::*;

fn check(config: &std::path::Path, connect: bool) -> (bool, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(["check-config", "--config"]).arg(config);
    if connect {
        cmd.arg("--connect");
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn write_config(
    dir: &std::path::Path,
    urls: &[String],
    extra: &[(&str, &str)],
) -> (Pki, std::path::PathBuf) {
    let mut config = Daemon::builder();
    for url in urls {
        config = config.url(url);
    }
    for (section, lines) in extra {
        config = config.section(section, *lines);
    }
    let written = config.write_to(dir);
    (written.pki, written.path)
}

#[test]
fn a_valid_file_passes() {
    let d = tempfile::tempdir().unwrap();
    let (_pki, f) = write_config(d.path(), &["ldap://127.0.0.1:1".into()], &[]);
    let (ok, out, err) = check(&f, false);
    assert!(ok, "{err}");
    assert!(out.contains("valid"));
}

#[test]
fn a_bad_key_is_named_with_the_file() {
    let d = tempfile::tempdir().unwrap();
    let (_pki, f) = write_config(
        d.path(),
        &["ldap://127.0.0.1:1".into()],
        &[("cache", "ttl = \"forever\"")],
    );
    let (ok, _, err) = check(&f, false);
    assert!(!ok);
    assert!(err.contains("cache.ttl"), "{err}");
    assert!(err.contains(&f.display().to_string()), "{err}");
}

#[test]
fn a_missing_certificate_is_named() {
    let d = tempfile::tempdir().unwrap();
    let (pki, f) = write_config(d.path(), &["ldap://127.0.0.1:1".into()], &[]);
    std::fs::remove_file(&pki.client_ca).unwrap();
    let (ok, _, err) = check(&f, false);
    assert!(!ok);
    assert!(err.contains("server.client_ca_file"), "{err}");
}

#[test]
fn serve_refuses_to_start_with_the_same_message() {
    let d = tempfile::tempdir().unwrap();
    let (_pki, f) = write_config(d.path(), &["ftp://127.0.0.1:1".into()], &[]);
    let out = Command::new(bin())
        .args(["serve", "--config"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ldap.urls"), "{err}");
    assert!(err.contains("config.toml"), "{err}");
}

#[test]
fn connect_binds_the_service_account_and_searches() {
    let slapd = Slapd::start();
    let d = tempfile::tempdir().unwrap();
    let (_pki, f) = write_config(d.path(), &[slapd.url()], &[]);
    let (ok, out, err) = check(&f, true);
    assert!(ok, "{err}");
    assert!(out.contains("bound as cn=k8s-webhook"), "{out}");
    assert_eq!(slapd.binds_for(SERVICE_DN), 1);
}

#[test]
fn connect_fails_clearly_with_a_wrong_bind_password() {
    let slapd = Slapd::start();
    let d = tempfile::tempdir().unwrap();
    let (pki, f) = write_config(d.path(), &[slapd.url()], &[]);
    std::fs::write(pki.dir.join("bind-password"), "not-the-password\n").unwrap();
    let (ok, _, err) = check(&f, true);
    assert!(!ok);
    assert!(err.contains("service bind"), "{err}");
    assert!(
        !err.contains("not-the-password"),
        "the bind password is never printed"
    );
}

#[test]
fn connect_fails_clearly_when_ldap_is_down() {
    let d = tempfile::tempdir().unwrap();
    let (_pki, f) = write_config(
        d.path(),
        &[format!("ldap://127.0.0.1:{}", free_port())],
        &[],
    );
    let (ok, _, err) = check(&f, true);
    assert!(!ok);
    assert!(err.contains("LDAP check failed"), "{err}");
}

/// `serve` with `config`: it must refuse to start; returns stderr.
fn serve_refuses(config: &std::path::Path, env: &[(&str, &str)]) -> String {
    let out = Command::new(bin())
        .args(["serve", "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "serve started:\n{err}");
    err
}

// -------------------------------------------------------------------------------------
// No clear text off the host
// -------------------------------------------------------------------------------------

#[test]
fn plain_ldap_to_another_host_is_refused_by_check_config_and_serve() {
    let d = tempfile::tempdir().unwrap();
    let (_pki, f) = write_config(d.path(), &["ldap://ldap.example.org".into()], &[]);
    let (ok, _, err) = check(&f, false);
    assert!(!ok, "check-config accepted clear text to another host");
    assert!(err.contains("key `ldap.urls`"), "{err}");
    assert!(err.contains("clear text"), "{err}");
    assert!(err.contains("ldap://ldap.example.org"), "{err}");
    let served = serve_refuses(&f, &[]);
    assert!(served.contains("key `ldap.urls`"), "{served}");
    assert!(served.contains("clear text"), "{served}");
}

#[test]
fn plain_ldap_to_another_host_with_start_tls_is_accepted() {
    let d = tempfile::tempdir().unwrap();
    let (_pki, f) = write_config(
        d.path(),
        &["ldap://ldap.example.org".into()],
        &[("ldap", "start_tls = true")],
    );
    let (ok, out, err) = check(&f, false);
    assert!(ok, "{err}");
    assert!(!out.contains("clear text"), "{out}");
}

#[test]
fn plain_ldap_to_this_machine_is_accepted_by_address_and_by_name() {
    let d = tempfile::tempdir().unwrap();
    let urls = [
        "ldap://127.0.0.1:1".to_string(),
        "ldap://127.9.9.9:1".into(),
        "ldap://[::1]:1".into(),
        "ldap://localhost:1".into(),
    ];
    let (_pki, f) = write_config(d.path(), &urls, &[]);
    let (ok, out, err) = check(&f, false);
    assert!(ok, "{err}");
    assert!(!out.contains("clear text"), "{out}");
}

#[test]
fn allow_insecure_accepts_plain_ldap_to_another_host_with_a_warning() {
    let d = tempfile::tempdir().unwrap();
    let (_pki, f) = write_config(
        d.path(),
        &["ldap://ldap.example.org".into()],
        &[("ldap", "allow_insecure = true")],
    );
    let (ok, out, err) = check(&f, false);
    assert!(ok, "{err}");
    assert!(
        out.contains("warning:") && out.contains("clear text"),
        "the operator is still told:\n{out}"
    );
}

// -------------------------------------------------------------------------------------
// Servers from DNS: a CA the operator chose
// -------------------------------------------------------------------------------------

#[test]
fn discovery_without_a_ca_file_is_refused_by_check_config_and_serve() {
    let d = tempfile::tempdir().unwrap();
    let (_pki, f) = write_config(d.path(), &[], &[("ldap", "discover = \"example.test\"")]);
    let (ok, _, err) = check(&f, false);
    assert!(
        !ok,
        "check-config accepted DNS's servers on the system roots"
    );
    assert!(err.contains("key `ldap.discover`"), "{err}");
    assert!(err.contains("ldap.allow_system_roots = true"), "{err}");
    let served = serve_refuses(&f, &[]);
    assert!(served.contains("key `ldap.discover`"), "{served}");
    assert!(served.contains("ldap.allow_system_roots"), "{served}");
}

#[test]
fn discovery_on_the_system_roots_said_explicitly_passes_with_a_warning() {
    let d = tempfile::tempdir().unwrap();
    let (_pki, f) = write_config(
        d.path(),
        &[],
        &[(
            "ldap",
            "discover = \"example.test\"\nallow_system_roots = true",
        )],
    );
    let (ok, out, err) = check(&f, false);
    assert!(ok, "{err}");
    assert!(
        out.contains("warning:") && out.contains("publicly trusted certificate"),
        "the operator is still told:\n{out}"
    );
}

// -------------------------------------------------------------------------------------
// Ranges
// -------------------------------------------------------------------------------------

/// One out-of-range value per key, and what the message must say.
const OUT_OF_RANGE: &[(&str, &str, &str)] = &[
    ("cache", "capacity = 1000000000000", "cache.capacity"),
    ("cache", "capacity = 0", "cache.capacity"),
    ("cache", "max_failures = 4294967295", "cache.max_failures"),
    ("cache", "ttl = \"1000y\"", "cache.ttl"),
    ("cache", "negative_ttl = \"2h\"", "cache.negative_ttl"),
    ("cache", "stale_ttl = \"8d\"", "cache.stale_ttl"),
    ("cache", "failure_window = \"25h\"", "cache.failure_window"),
    (
        "server",
        "handshake_timeout = \"0s\"",
        "server.handshake_timeout",
    ),
    (
        "server",
        "request_timeout = \"11m\"",
        "server.request_timeout",
    ),
    (
        "server",
        "max_connections = 100001",
        "server.max_connections",
    ),
    ("ldap", "max_connections = 1001", "ldap.max_connections"),
    // Near the largest Duration: Instant arithmetic would overflow with it.
    (
        "server",
        "request_timeout = \"584942417y\"",
        "server.request_timeout",
    ),
    (
        "group",
        "max_nested_depth = 101",
        "ldap.group.max_nested_depth",
    ),
];

#[test]
fn every_out_of_range_value_is_refused_naming_the_key_and_the_range() {
    for (section, line, key) in OUT_OF_RANGE {
        let d = tempfile::tempdir().unwrap();
        let (_pki, f) = write_config(d.path(), &["ldap://127.0.0.1:1".into()], &[(section, line)]);
        let (ok, _, err) = check(&f, false);
        assert!(!ok, "{line} was accepted");
        assert!(err.contains(&format!("key `{key}`")), "{line}: {err}");
        assert!(err.contains("must be between"), "{line}: {err}");
        assert!(err.contains(&f.display().to_string()), "{err}");
    }
}

#[test]
fn serve_refuses_an_out_of_range_value_with_the_same_message() {
    let d = tempfile::tempdir().unwrap();
    let (_pki, f) = write_config(
        d.path(),
        &["ldap://127.0.0.1:1".into()],
        &[("cache", "capacity = 1000000000000")],
    );
    let (_, _, checked) = check(&f, false);
    let served = serve_refuses(&f, &[]);
    assert!(
        served.contains(checked.trim()),
        "check-config said:\n{checked}\nserve said:\n{served}"
    );
    assert!(
        served.contains("must be between 1 and 10000000"),
        "{served}"
    );
}

#[test]
fn the_largest_values_in_range_start() {
    let d = tempfile::tempdir().unwrap();
    let (_pki, f) = write_config(
        d.path(),
        &["ldap://127.0.0.1:1".into()],
        &[
            ("cache", "capacity = 10000000\nmax_failures = 1000\nttl = \"24h\"\nstale_ttl = \"7d\"\nfailure_window = \"24h\""),
            ("server", "max_connections = 100000\nrequest_timeout = \"10m\"\nhandshake_timeout = \"10m\""),
            ("group", "max_nested_depth = 100"),
        ],
    );
    let (ok, _, err) = check(&f, false);
    assert!(ok, "{err}");
}

#[test]
fn an_environment_override_out_of_range_is_refused_naming_the_key_and_the_variable() {
    let d = tempfile::tempdir().unwrap();
    let (_pki, f) = write_config(d.path(), &["ldap://127.0.0.1:1".into()], &[]);
    for (var, value, key) in [
        (
            "KUBE_LDAP_WEBHOOK_CACHE__CAPACITY",
            "1000000000000",
            "cache.capacity",
        ),
        ("KUBE_LDAP_WEBHOOK_LDAP__TIMEOUT", "1000y", "ldap.timeout"),
        (
            "KUBE_LDAP_WEBHOOK_CACHE__MAX_FAILURES",
            "4294967296",
            "cache.max_failures",
        ),
    ] {
        let out = Command::new(bin())
            .args(["check-config", "--config"])
            .arg(&f)
            .env(var, value)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{var}={value} was accepted");
        assert!(err.contains(&format!("key `{key}`")), "{var}: {err}");
        assert!(err.contains(var), "the message names the variable: {err}");
        let served = serve_refuses(&f, &[(var, value)]);
        assert!(served.contains(&format!("key `{key}`")), "{served}");
    }
}

#[test]
fn an_environment_override_that_is_not_a_number_is_refused_naming_the_key() {
    let d = tempfile::tempdir().unwrap();
    let (_pki, f) = write_config(d.path(), &["ldap://127.0.0.1:1".into()], &[]);
    for value in ["-1", "lots", "99999999999999999999999999"] {
        let served = serve_refuses(&f, &[("KUBE_LDAP_WEBHOOK_CACHE__CAPACITY", value)]);
        assert!(
            served.to_lowercase().contains("cache.capacity"),
            "{value}: {served}"
        );
        assert!(!served.contains("panicked"), "{value}: {served}");
    }
}

/// ldap3 panics on a URL without a host; such a URL never gets that far.
#[test]
fn a_url_without_a_host_is_refused_by_check_config_and_serve() {
    for url in ["ldap://", "ldap:///", "ldaps:///dc=example", "ldap://:389"] {
        let d = tempfile::tempdir().unwrap();
        let (_pki, f) = write_config(d.path(), &[url.into()], &[]);
        let (ok, _, err) = check(&f, false);
        assert!(!ok, "{url} was accepted");
        assert!(err.contains("key `ldap.urls`"), "{url}: {err}");
        let served = serve_refuses(&f, &[]);
        assert!(served.contains("key `ldap.urls`"), "{url}: {served}");
        assert!(!served.contains("panicked"), "{url}: {served}");
    }
}

/// `check-config` of the test config with `extra` sections: whether it passed, and stderr.
fn check_with(extra: &[(&str, &str)]) -> (bool, String) {
    let d = tempfile::tempdir().unwrap();
    let (_pki, f) = write_config(d.path(), &["ldap://127.0.0.1:1".into()], extra);
    let (ok, _, err) = check(&f, false);
    assert!(
        ok || err.contains(&f.display().to_string()),
        "names the file: {err}"
    );
    (ok, err)
}

#[test]
fn each_group_policy_mistake_is_explained_by_key() {
    for (identity, key, says) in [
        (
            "[identity.groups]\ninclude = [\"k8s-[\"]",
            "identity.groups.include",
            "unclosed character class",
        ),
        (
            "[identity.groups]\nexclude = [\"(a{1000}){1000}\"]",
            "identity.groups.exclude",
            "size limit",
        ),
        (
            "[identity.groups]\nname = \"upn\"",
            "identity.groups.name",
            "cn@domain",
        ),
        (
            "required_groups = [\"k8s-users\"]\n[identity.groups]\nexclude = [\"k8s-.*\"]",
            "identity.required_groups",
            "nobody could log in",
        ),
        (
            "required_groups = [\"K8s-Users\"]\n[identity.groups]\nlowercase = true",
            "identity.required_groups",
            "upper case",
        ),
    ] {
        let (ok, err) = check_with(&[("identity", identity)]);
        assert!(!ok, "{identity}");
        assert!(err.contains(key), "{identity}: {err}");
        assert!(err.contains(says), "{identity}: {err}");
    }
    let (ok, err) = check_with(&[(
        "identity",
        "required_groups = [\"k8s-users\"]\n[identity.groups]\ninclude = [\"k8s-.*\"]\nlowercase = true",
    )]);
    assert!(ok, "{err}");
}

#[test]
fn each_posix_group_mistake_is_explained_by_key() {
    let rfc2307 = ("ldap", "directory = \"rfc2307\"");
    for (section, key, says) in [
        (
            ("user", "filter = \"(uid={uid})\""),
            "ldap.user.filter",
            "{username}",
        ),
        (("group", "nested = true"), "ldap.group.nested", "{dn}"),
        (
            ("group", "member_uid_attribute = \" \""),
            "ldap.group.member_uid_attribute",
            "empty",
        ),
    ] {
        let (ok, err) = check_with(&[rfc2307, section]);
        assert!(!ok, "{section:?}");
        assert!(err.contains(key), "{section:?}: {err}");
        assert!(err.contains(says), "{section:?}: {err}");
    }
    assert!(
        check_with(&[rfc2307]).0,
        "the preset alone is a valid config"
    );
}
