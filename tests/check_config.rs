//! `kube-ldap-webhook check-config`: the same validation as `serve`, and `--connect`.

mod support;

use std::process::Command;

use support::*;

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
    let pki = Pki::new(dir);
    let f = dir.join("config.toml");
    std::fs::write(&f, config_toml(&pki, urls, free_port(), free_port(), extra)).unwrap();
    (pki, f)
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
