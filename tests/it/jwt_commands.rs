//! The JWT issuer's commands and its `[jwt]` checks: `check-config` refusing bad values
//! naming the key, and `authentication-config` without an issuer. What they print for a
//! running issuer is in jwt_issuer.rs.

use std::process::Command;

use crate::support::issued::*;
use crate::support::jwt::*;
use crate::support::*;

/// `check-config` of a daemon issuing sessions with `keys` and the `[jwt]` lines `jwt`:
/// whether it passed, and what it said.
fn check_config(keys: &KeyPair, jwt: &str) -> (bool, String) {
    let toml = issuing_config("", free_port(), keys, "", jwt);
    run("check-config", &[("cache", &toml)])
}

/// `kube-ldap-webhook COMMAND --config F` of a file with `sections`: whether it passed,
/// and what it said (stdout, then stderr).
fn run(command: &str, sections: &[(&str, &str)]) -> (bool, String) {
    let d = tempfile::tempdir().unwrap();
    let written = Daemon::builder()
        .url("ldap://127.0.0.1:1")
        .sections(sections)
        .write_to(d.path());
    let out = Command::new(bin())
        .args([command, "--config"])
        .arg(&written.path)
        .output()
        .unwrap();
    let said = [out.stdout, out.stderr].concat();
    (
        out.status.success(),
        String::from_utf8_lossy(&said).into_owned(),
    )
}

#[test]
fn check_config_refuses_bad_jwt_values_naming_the_key() {
    let (keys, jwt) = (KeyPair::new(), EsKeys::new());
    let good = jwt_section(&jwt, &[]);
    let (key_file, pub_file) = (
        jwt.key.display().to_string(),
        jwt.public.display().to_string(),
    );
    let ed25519_pub = format!("[\"{}\"]", keys.public.display());
    for (key, section) in [
        (
            "jwt.issuer",
            good.replace(ISSUER, "http://login.test.example"),
        ),
        ("jwt.audiences", good.replace("[\"kubernetes\"]", "[]")),
        ("jwt.token_ttl", good.replace("\"2m\"", "\"2h\"")),
        ("jwt.signing_key_file", good.replace(&key_file, &pub_file)),
        (
            "jwt.verification_key_files",
            good.replace("= []", &format!("= {ed25519_pub}")),
        ),
    ] {
        let (ok, err) = check_config(&keys, &section);
        assert!(!ok, "{key}: accepted");
        assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
    }
}

#[test]
fn a_jwt_signing_key_others_may_read_is_refused_naming_the_key() {
    use std::os::unix::fs::PermissionsExt;
    let (keys, jwt) = (KeyPair::new(), EsKeys::new());
    std::fs::set_permissions(&jwt.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, err) = check_config(&keys, &jwt_section(&jwt, &[]));
    assert!(!ok);
    assert!(
        err.contains("`jwt.signing_key_file`") && err.contains("mode 0644"),
        "{err}"
    );
}

/// Like `[login]` without `listen`: the section may hold settings, and the issuer is off,
/// with a warning when keys or audiences suggest it was meant to be on.
#[test]
fn a_jwt_section_without_an_issuer_is_off_with_a_warning() {
    let (keys, jwt) = (KeyPair::new(), EsKeys::new());
    let section = jwt_section(&jwt, &[]).replace(&format!("issuer = \"{ISSUER}\""), "");
    let (ok, said) = check_config(&keys, &section);
    assert!(ok, "{said}");
    assert!(said.contains("[jwt] without jwt.issuer"), "{said}");
}

#[test]
fn authentication_config_without_an_issuer_says_it_is_off() {
    let (ok, err) = run("authentication-config", &[]);
    assert!(!ok);
    assert!(err.contains("no jwt.issuer"), "{err}");
}
