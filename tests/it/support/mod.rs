//! Shared fixtures for the integration tests and the benchmarks: real directories, real
//! certificates, the real daemon binary, and the HTTPS client kube-apiserver is. One file a
//! part:
//!
//! - `pki`: CAs, and the certificates a daemon and its clients need;
//! - `slapd`: an OpenLDAP server with the fixture directory, and what its log counts;
//! - `samba`: a Samba Active Directory domain controller, one per run, shared;
//! - `ds389`: a 389 Directory Server (FreeIPA's directory), one per test;
//! - `audit`: the audit stream every daemon writes, checked for secrets when it is dropped;
//! - `config`: the daemon's config for a test, and [`DaemonBuilder`], the one way to make it;
//! - `daemon`: the running daemon: its logs, ops listener, signals and clients;
//! - `metrics`: values read from /metrics;
//! - `https`: the HTTPS client with a client certificate, review bodies, raw TLS;
//! - `notify`: the NOTIFY_SOCKET of sd_notify;
//! - `ports`: loopback ports for the servers a test starts;
//! - `process`: child processes that die with the test;
//! - `terminal`: a pseudo-terminal, for prompts;
//! - `issued`: issued-token fixtures: key pairs, a login client, test-signed tokens;
//! - `conn`: raw TCP and TLS clients from chosen loopback addresses;
//! - `kerberos`: tickets from the Samba DC's KDC and Negotiate tokens made from them.

mod audit;
mod config;
pub mod conn;
mod daemon;
mod ds389;
mod https;
pub mod issued;
pub mod jwt;
pub mod kerberos;
mod metrics;
mod notify;
mod pki;
mod ports;
mod process;
mod samba;
mod slapd;
pub mod terminal;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;

pub use audit::*;
pub use config::*;
pub use daemon::*;
pub use ds389::*;
pub use https::*;
pub use metrics::*;
pub use notify::*;
pub use pki::*;
pub use ports::*;
pub use process::*;
pub use samba::*;
pub use slapd::*;

/// What a test returns, so that setup that can fail (files, temporary directories) is `?`.
pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// How long a test waits for something that is bound to happen (a process listening, a log
/// line, a condition): long, because the machine may be busy with other work; a test waits
/// this long only when the thing never happens, and then it fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Checks `cond` every 20 ms until it holds; panics with `what()` after [`PATIENCE`].
pub fn wait_until(mut cond: impl FnMut() -> bool, what: impl Fn() -> String) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "not within {PATIENCE:?}: {}",
            what()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The daemon binary cargo built for this test or bench (the release one under `cargo bench`).
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_kube-ldap-webhook")
}

/// Writes `contents` to `dir/name`, mode 0600, as the daemon wants a password file.
pub fn secret_file(dir: &std::path::Path, name: &str, contents: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// The bearer token kube-apiserver passes on: base64 of `user:password`.
pub fn token(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    used_secret(password);
    used_secret(&token);
    token
}

/// A GeneralizedTime (`YYYYMMDDHHMMSSZ`, UTC) `when` (`date -d`'s words: "-2 days").
pub fn generalized_time(when: &str) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", when, "+%Y%m%d%H%M%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
