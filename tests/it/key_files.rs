//! Key files as ssh treats them: a signing key others may read, or a key others may
//! replace (the file or a directory above it), is refused by check-config, at start and at
//! reload, with a message that names the file and its mode. Real files with real modes.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::support::issued::*;
use crate::support::*;

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A config in `dir` whose `[tokens]` lists `signing` and `verification` key files.
fn config(dir: &Path, signing: Option<&Path>, verification: Option<&Path>) -> std::path::PathBuf {
    let mut tokens = String::from("[tokens]\n");
    if let Some(k) = signing {
        tokens.push_str(&format!("signing_key_file = \"{}\"\n", k.display()));
    }
    if let Some(k) = verification {
        tokens.push_str(&format!("verification_key_files = [\"{}\"]\n", k.display()));
    }
    Daemon::builder()
        .url("ldap://127.0.0.1:1")
        .section("cache", tokens)
        .write_to(dir)
        .path
}

/// check-config's verdict on `config`: Ok(stdout) or Err(stderr).
fn check(config: &Path) -> Result<String, String> {
    let out = Command::new(bin())
        .args(["check-config", "--config"])
        .arg(config)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

fn signing_key_with_mode(mode: u32) -> (KeyPair, tempfile::TempDir, Result<String, String>) {
    let keys = KeyPair::new();
    chmod(&keys.key, mode);
    let dir = tempfile::tempdir().unwrap();
    let verdict = check(&config(dir.path(), Some(&keys.key), None));
    (keys, dir, verdict)
}

#[test]
fn a_signing_key_others_may_read_is_refused_naming_the_file_the_mode_and_the_fix() {
    let (keys, _dir, verdict) = signing_key_with_mode(0o644);
    let err = verdict.expect_err("a world-readable signing key was accepted");
    assert!(err.contains("key `tokens.signing_key_file`"), "{err}");
    let want = format!(
        "signing key {} has mode 0644: it must not be readable by others (chmod 0640)",
        keys.key.display()
    );
    assert!(err.contains(&want), "{err}");
}

#[test]
fn a_signing_key_group_or_others_may_write_is_refused() {
    for mode in [0o660, 0o602, 0o620] {
        let (_keys, _dir, verdict) = signing_key_with_mode(mode);
        let err = verdict.expect_err("a writable signing key was accepted");
        assert!(
            err.contains(&format!(
                "has mode {mode:04o}: it must not be writable by group or others"
            )),
            "{mode:o}: {err}"
        );
    }
}

#[test]
fn a_signing_key_only_its_owner_and_the_services_group_read_is_accepted() {
    for mode in [0o600, 0o640, 0o400, 0o440] {
        let (_keys, _dir, verdict) = signing_key_with_mode(mode);
        assert!(verdict.is_ok(), "{mode:o}: {verdict:?}");
    }
}

#[test]
fn a_verification_key_others_may_write_is_refused_and_one_they_may_read_is_not() {
    let keys = KeyPair::new();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), None, Some(&keys.public));
    chmod(&keys.public, 0o644);
    assert!(check(&cfg).is_ok(), "{:?}", check(&cfg));
    chmod(&keys.public, 0o666);
    let err = check(&cfg).expect_err("a world-writable verification key was accepted");
    assert!(err.contains("key `tokens.verification_key_files`"), "{err}");
    let want = format!(
        "verification key {} has mode 0666: it must not be writable by others (chmod 0644)",
        keys.public.display()
    );
    assert!(err.contains(&want), "{err}");
}

#[test]
fn a_key_in_a_directory_others_may_write_is_refused_unless_the_directory_is_sticky() {
    let keys = KeyPair::new();
    let keys_dir = keys.key.parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (signing, verification) in [(Some(&keys.key), None), (None, Some(&keys.public))] {
        let cfg = config(
            dir.path(),
            signing.map(|p| p.as_path()),
            verification.map(|p| p.as_path()),
        );
        chmod(keys_dir, 0o777);
        let err = check(&cfg).expect_err("a key in a world-writable directory was accepted");
        let want = format!(
            "its directory {} has mode 0777: others could put their own key in its place",
            keys_dir.display()
        );
        assert!(err.contains(&want), "{err}");
        chmod(keys_dir, 0o1777);
        assert!(check(&cfg).is_ok(), "sticky: {:?}", check(&cfg));
        chmod(keys_dir, 0o700);
    }
}

#[test]
fn serve_refuses_to_start_with_a_world_readable_signing_key() {
    let keys = KeyPair::new();
    chmod(&keys.key, 0o644);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Some(&keys.key), None);
    let out = Command::new(bin())
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success(), "serve started");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("has mode 0644: it must not be readable by others"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_with_a_world_readable_signing_key_keeps_the_previous_runtime() {
    let slapd = Slapd::start();
    let keys = KeyPair::new();
    let i = Issuer::start(&Site::openldap(), &[slapd.url()], &[], &keys, "", "");
    let before = i.token("alice", "alice-password").await;
    chmod(&keys.key, 0o644);
    i.daemon.signal(libc::SIGHUP);
    i.daemon
        .wait_for_log("reload refused; still serving the previous configuration");
    let log = i.daemon.log();
    assert!(
        log.contains("has mode 0644: it must not be readable by others"),
        "{log}"
    );
    let after = i.token("alice", "alice-password").await;
    assert!(
        authenticated(&i.review(&after).await),
        "the old runtime signs and verifies"
    );
    assert!(authenticated(&i.review(&before).await));
}

#[test]
fn keygen_writes_modes_the_daemon_accepts() {
    let keys = KeyPair::new();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&keys.key), 0o600);
    assert_eq!(mode(&keys.public), 0o644);
    assert_eq!(mode(keys.key.parent().unwrap()), 0o700);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Some(&keys.key), Some(&keys.public));
    assert!(check(&cfg).is_ok(), "{:?}", check(&cfg));
}
