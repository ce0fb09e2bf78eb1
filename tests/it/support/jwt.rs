//! JWT-issuer fixtures shared by jwt_issuer.rs and jwt_commands.rs: P-256 key pairs made by
//! the real `keygen --algorithm es256`, and the `[jwt]` section that signs with them.

use std::path::PathBuf;
use std::process::Command;

use super::*;

/// The issuer of the tests: a host nobody resolves (the tests call the login port by
/// address) and a path, so that the documents' paths are shown to be prefixed.
pub const ISSUER: &str = "https://login.test.example:8444/kube";

/// A P-256 key pair written by `kube-ldap-webhook keygen --algorithm es256`, and the key
/// id it printed.
pub struct EsKeys {
    _dir: tempfile::TempDir,
    pub key: PathBuf,
    pub public: PathBuf,
    pub kid: String,
}

impl EsKeys {
    pub fn new() -> EsKeys {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("jwt");
        let printed = run_checked(
            Command::new(bin())
                .args(["keygen", "--algorithm", "es256", "--out"])
                .arg(&out),
            "kube-ldap-webhook keygen --algorithm es256",
        );
        let kid = printed.trim().rsplit(' ').next().unwrap().to_string();
        EsKeys {
            key: out.join("signing.key"),
            public: out.join("signing.pub"),
            kid,
            _dir: dir,
        }
    }
}

/// The `[jwt]` section signing with `keys`, still publishing `previous`.
pub fn jwt_section(keys: &EsKeys, previous: &[&EsKeys]) -> String {
    let previous: Vec<String> = previous
        .iter()
        .map(|k| format!("\"{}\"", k.public.display()))
        .collect();
    format!(
        "\n[jwt]\nissuer = \"{ISSUER}\"\naudiences = [\"kubernetes\"]\ntoken_ttl = \"2m\"\n\
         signing_key_file = \"{}\"\nverification_key_files = [{}]\n",
        keys.key.display(),
        previous.join(", ")
    )
}
