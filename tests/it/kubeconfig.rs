//! `kube-ldap-webhook kubeconfig`: stdout, and `--output FILE` written for its owner only,
//! whatever the umask, since with `--embed` it holds kube-apiserver's client key.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::support::*;

/// Runs `kubeconfig --embed` with the usual umask 022 and `extra` arguments.
fn kubeconfig(pki: &Pki, extra: &[&str], stdout: Stdio) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args([
        "kubeconfig",
        "--server",
        "https://127.0.0.1:8443/authenticate",
    ])
    .arg("--ca-file")
    .arg(&pki.server_ca)
    .arg("--client-cert")
    .arg(&pki.client_cert)
    .arg("--client-key")
    .arg(&pki.client_key)
    .arg("--embed")
    .args(extra)
    .stdout(stdout);
    under_umask_022(&mut cmd)
}

/// Runs `cmd` with the usual umask, under which a plain file is created 0644.
fn under_umask_022(cmd: &mut Command) -> Output {
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o022);
            Ok(())
        });
    }
    cmd.output().unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn stdout_text(pki: &Pki) -> String {
    let out = kubeconfig(pki, &[], Stdio::piped());
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn output_writes_the_same_kubeconfig_readable_by_the_owner_only() {
    let d = tempfile::tempdir().unwrap();
    let pki = Pki::new(d.path());
    let file = d.path().join("webhook.kubeconfig");
    let out = kubeconfig(&pki, &["--output", file.to_str().unwrap()], Stdio::piped());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "nothing on stdout with --output");
    assert_eq!(mode(&file), 0o600, "under umask 022");
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(written.contains("client-key-data: "), "{written}");
    assert_eq!(written, stdout_text(&pki));
}

#[test]
fn output_refuses_to_replace_an_existing_file() {
    let d = tempfile::tempdir().unwrap();
    let pki = Pki::new(d.path());
    let file = d.path().join("webhook.kubeconfig");
    std::fs::write(&file, "keep me\n").unwrap();
    let out = kubeconfig(&pki, &["--output", file.to_str().unwrap()], Stdio::piped());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me\n");
}

#[test]
fn output_does_not_write_through_a_symlink() {
    let d = tempfile::tempdir().unwrap();
    let pki = Pki::new(d.path());
    let target = d.path().join("elsewhere");
    std::fs::write(&target, "untouched\n").unwrap();
    let link = d.path().join("webhook.kubeconfig");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = kubeconfig(&pki, &["--output", link.to_str().unwrap()], Stdio::piped());
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched\n");
}

#[test]
fn force_replaces_a_world_readable_file_with_a_private_one() {
    let d = tempfile::tempdir().unwrap();
    let pki = Pki::new(d.path());
    let file = d.path().join("webhook.kubeconfig");
    std::fs::write(&file, "old\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = kubeconfig(
        &pki,
        &["--output", file.to_str().unwrap(), "--force"],
        Stdio::piped(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&file), 0o600);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), stdout_text(&pki));
    let left: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn force_without_output_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let pki = Pki::new(d.path());
    let out = kubeconfig(&pki, &["--force"], Stdio::piped());
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
}

#[test]
fn redirecting_a_key_into_a_readable_file_is_warned_about() {
    let d = tempfile::tempdir().unwrap();
    let pki = Pki::new(d.path());
    let file = d.path().join("redirected.kubeconfig");
    let f = std::fs::File::create(&file).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = kubeconfig(&pki, &[], Stdio::from(f));
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--output"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), stdout_text(&pki));
}

// ---- kubeconfig --user-login: the kubeconfig an admin hands to a user ----

/// Runs `kubeconfig --user-login` with the usual umask 022 and `extra` arguments.
fn user_kubeconfig(pki: &Pki, extra: &[&str]) -> Output {
    user_kubeconfig_for(
        pki,
        "https://login.example.org:8444",
        "https://k8s.example.org:6443",
        extra,
    )
}

fn user_kubeconfig_for(pki: &Pki, login: &str, cluster: &str, extra: &[&str]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args([
        "kubeconfig",
        "--user-login",
        login,
        "--cluster-server",
        cluster,
    ])
    .arg("--cluster-ca-file")
    .arg(&pki.client_ca)
    .arg("--ca-file")
    .arg(&pki.server_ca)
    .args(extra)
    .stdin(Stdio::null());
    under_umask_022(&mut cmd)
}

fn base64_of(path: &Path) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).unwrap())
}

#[test]
fn a_user_kubeconfig_runs_the_plugin_with_the_login_url() {
    let d = tempfile::tempdir().unwrap();
    let pki = Pki::new(d.path());
    let out = user_kubeconfig(&pki, &["--username", "alice"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        "apiVersion: client.authentication.k8s.io/v1",
        "command: \"kube-ldap-webhook\"",
        "- credential\n      - \"--login-url\"\n      - \"https://login.example.org:8444/login\"",
        "- \"--username\"\n      - \"alice\"",
        "interactiveMode: IfAvailable",
        "server: \"https://k8s.example.org:6443\"",
        "current-context: \"k8s.example.org\"",
    ] {
        assert!(text.contains(want), "no {want:?} in\n{text}");
    }
}

#[test]
fn a_jwt_user_kubeconfig_runs_the_plugin_with_jwt() {
    let d = tempfile::tempdir().unwrap();
    let pki = Pki::new(d.path());
    let out = user_kubeconfig(&pki, &["--username", "alice", "--jwt"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("- \"--username\"\n      - \"alice\"\n      - \"--jwt\"\n"),
        "{text}"
    );
    assert!(text.contains("short-lived JWTs"), "{text}");
    let plain = String::from_utf8(user_kubeconfig(&pki, &[]).stdout).unwrap();
    assert!(!plain.contains("--jwt"), "{plain}");
}

#[test]
fn embed_puts_both_cas_into_a_user_kubeconfig() {
    let d = tempfile::tempdir().unwrap();
    let pki = Pki::new(d.path());
    let out = user_kubeconfig(&pki, &["--embed"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let cluster_ca = format!("certificate-authority-data: {}", base64_of(&pki.client_ca));
    let login_ca = format!("- \"--ca-data\"\n      - \"{}\"", base64_of(&pki.server_ca));
    assert!(text.contains(&cluster_ca), "{text}");
    assert!(text.contains(&login_ca), "{text}");
    assert!(
        !text.contains(&*d.path().to_string_lossy()),
        "no local path: {text}"
    );
}

#[test]
fn a_user_kubeconfig_with_output_is_written_for_its_owner_only() {
    let d = tempfile::tempdir().unwrap();
    let pki = Pki::new(d.path());
    let file = d.path().join("alice.kubeconfig");
    let out = user_kubeconfig(&pki, &["--embed", "--output", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    assert_eq!(mode(&file), 0o600, "under umask 022");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        user_kubeconfig(&pki, &["--embed"]).stdout
    );
    let again = user_kubeconfig(&pki, &["--embed", "--output", file.to_str().unwrap()]);
    assert!(!again.status.success(), "an existing file needs --force");
}

#[test]
fn a_clear_text_login_url_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let pki = Pki::new(d.path());
    let out = user_kubeconfig_for(
        &pki,
        "http://login.example.org:8444",
        "https://k8s.example.org:6443",
        &[],
    );
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("https://"));
}

#[test]
fn a_clear_text_cluster_server_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let pki = Pki::new(d.path());
    let out = user_kubeconfig_for(
        &pki,
        "https://login.example.org:8444",
        "http://k8s.example.org:6443",
        &[],
    );
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cluster-server"));
}

#[test]
fn a_username_the_plugin_would_refuse_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let pki = Pki::new(d.path());
    let out = user_kubeconfig(&pki, &["--username", "a:b"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--username"));
}

#[test]
fn webhook_and_user_flags_do_not_mix() {
    let d = tempfile::tempdir().unwrap();
    let pki = Pki::new(d.path());
    let out = user_kubeconfig(&pki, &["--server", "https://127.0.0.1:8443/authenticate"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
}
