//! `load_config` on an untrusted file: every config that loads respects the bounds the
//! loader promises, and the bind password never shows in its Debug output.
//!
//! Each input is written as `config.toml` into a scratch directory holding a
//! `bind-password` file. Inputs naming a password file outside it (an absolute path, or
//! one through `..`) are skipped, so the fuzzer reads nothing else (/dev/zero, a FIFO).

use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use arbitrary::Unstructured;
use kube_ldap_webhook::{load_config, Config, Preset};

use super::config_gen;

/// The content of the scratch directory's `bind-password`.
const PASSWORD: &str = "fuzz-bind-secret-7d1e";

/// The directory is $KLW_FUZZ_SCRATCH, else a fresh one in /dev/shm (or the temporary
/// directory): one file written per input, kept off the disk where possible.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::var_os("KLW_FUZZ_SCRATCH").map_or_else(
            || {
                let shm = Path::new("/dev/shm");
                let base = if shm.is_dir() {
                    shm.to_path_buf()
                } else {
                    std::env::temp_dir()
                };
                base.join(format!("klw-fuzz-config-{}", std::process::id()))
            },
            PathBuf::from,
        );
        prepare(&dir);
        dir
    })
}

/// Makes `dir` a scratch directory: it exists and holds the `bind-password` file.
pub fn prepare(dir: &Path) {
    std::fs::create_dir_all(dir).expect("create the scratch directory");
    std::fs::write(dir.join("bind-password"), format!("{PASSWORD}\n"))
        .expect("write the scratch password file");
}

/// Removes what would point the loader elsewhere: `KUBE_LDAP_WEBHOOK_*` overrides and
/// systemd's credentials directory. For the fuzzer's start, while it has one thread.
pub fn scrub_env() {
    for (k, _) in std::env::vars_os() {
        let k_text = k.to_string_lossy();
        if k_text.starts_with("KUBE_LDAP_WEBHOOK_") || k_text == "CREDENTIALS_DIRECTORY" {
            std::env::remove_var(&k);
        }
    }
}

pub fn run(data: &[u8]) {
    run_in(scratch(), data);
}

/// [`run`] in a scratch directory made by [`prepare`].
pub fn run_in(dir: &Path, data: &[u8]) {
    if !reads_outside(data) {
        load_and_check(dir, data);
    }
    // The same input as a document of the real keys, which gets deeper far more often.
    if let Ok(doc) = config_gen::document(&mut Unstructured::new(data)) {
        if !names_outside(&doc) {
            load_and_check(dir, toml::to_string(&doc).unwrap_or_default().as_bytes());
        }
    }
}

fn load_and_check(dir: &Path, data: &[u8]) {
    // One config file per directory: the seed replay may run this from several threads.
    static LOCK: Mutex<()> = Mutex::new(());
    let _one = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let path = dir.join("config.toml");
    std::fs::write(&path, data).expect("write the scratch config");
    if let Ok(c) = load_config(&path) {
        check(&c);
    }
}

/// Whether `ldap.bind_password_file` names a file outside the scratch directory, as the
/// loader's own TOML parser reads it.
fn reads_outside(data: &[u8]) -> bool {
    std::str::from_utf8(data)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .is_some_and(|t| names_outside(&t))
}

fn names_outside(doc: &toml::Table) -> bool {
    let file = doc
        .get("ldap")
        .and_then(|l| l.get("bind_password_file"))
        .and_then(|f| f.as_str());
    file.is_some_and(|f| {
        let f = Path::new(f);
        f.is_absolute() || f.components().any(|c| c == Component::ParentDir)
    })
}

fn check(c: &Config) {
    let s = &c.server;
    assert!(s.path.starts_with('/'), "server.path {:?}", s.path);
    assert!(
        s.path == "/" || !s.path.ends_with('/'),
        "server.path {:?}",
        s.path
    );
    assert!(!s.handshake_timeout.is_zero() && !s.request_timeout.is_zero());
    assert!(s.max_connections >= 1, "server.max_connections");

    let l = &c.ldap;
    assert!(!l.urls.is_empty(), "ldap.urls");
    for u in &l.urls {
        let lower = u.to_ascii_lowercase();
        assert!(
            lower.starts_with("ldap://") || lower.starts_with("ldaps://"),
            "{u}"
        );
        let plain = lower.starts_with("ldap://");
        assert!(
            !(plain && l.directory == Preset::ActiveDirectory && !l.start_tls),
            "Active Directory over ldap:// without StartTLS"
        );
    }
    assert!(!l.timeout.is_zero() && !l.connect_timeout.is_zero());
    assert!(l.max_connections >= 1, "ldap.max_connections");

    let u = &l.user;
    assert!(!u.base_dn.trim().is_empty(), "ldap.user.base_dn");
    assert!(u.filter.contains("{username}") || u.filter.contains("{login}"));
    assert!(balanced(&u.filter), "ldap.user.filter {:?}", u.filter);
    assert!(!u.username_attribute.trim().is_empty() && !u.uid_attribute.trim().is_empty());
    if let Some(t) = &u.dn_template {
        assert!(t.contains("{username}"), "ldap.user.dn_template {t:?}");
    }
    assert!(
        l.service.is_some() || u.dn_template.is_some(),
        "no way to bind"
    );
    assert!(
        u.domains.iter().all(|d| !d.trim().is_empty()),
        "empty domain"
    );
    for k in u.extra.keys() {
        assert!(
            *k == k.to_lowercase() && k.contains('/') && !k.starts_with('/'),
            "extra key {k:?}"
        );
    }

    let g = &l.group;
    assert!(!g.base_dn.trim().is_empty(), "ldap.group.base_dn");
    assert!(
        !g.name_attribute.trim().is_empty(),
        "ldap.group.name_attribute"
    );
    if g.membership_attribute.is_none() || !g.filter.is_empty() {
        assert!(g.filter.contains("{dn}") || g.filter.contains("{username}"));
        assert!(balanced(&g.filter), "ldap.group.filter {:?}", g.filter);
    }

    assert!(c.cache.capacity >= 1, "cache.capacity");
    assert!(c.cache.max_failures == 0 || !c.cache.failure_window.is_zero());

    if let Some(svc) = &l.service {
        assert!(!svc.bind_dn.trim().is_empty() && !svc.password.is_empty());
        if svc.password.expose() == PASSWORD {
            assert!(
                !format!("{c:?}").contains(PASSWORD),
                "Debug shows the bind password"
            );
        }
    }
}

/// A parenthesised filter whose parentheses balance.
fn balanced(filter: &str) -> bool {
    let mut depth = 0i64;
    for c in filter.chars() {
        depth += match c {
            '(' => 1,
            ')' => -1,
            _ => 0,
        };
        if depth < 0 {
            return false;
        }
    }
    depth == 0 && filter.starts_with('(')
}
