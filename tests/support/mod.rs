//! Shared fixtures for the integration tests: a real slapd, certificates, the real daemon
//! binary, and an HTTPS client with a client certificate.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;

pub const BASE_DN: &str = "dc=example,dc=org";
pub const SERVICE_DN: &str = "cn=k8s-webhook,ou=services,dc=example,dc=org";
/// The first RDN of the DN the daemon binds to for names that matched nothing.
pub const DECOY: &str = "cn=kube-ldap-webhook-decoy-";
pub const SERVICE_PASSWORD: &str = "service-secret";

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

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Kills the child when the spawning thread (the test) ends, even if the test never gets
/// to run its destructors.
fn die_with_parent(cmd: &mut Command) {
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

pub fn token(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

// -------------------------------------------------------------------------------------
// Certificates
// -------------------------------------------------------------------------------------

pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A leaf certificate: server (SANs) or client (CN only).
    pub fn issue(&self, cn: &str, server: bool) -> (String, String) {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        if server {
            p.subject_alt_names = vec![
                SanType::DnsName("localhost".try_into().unwrap()),
                SanType::IpAddress("127.0.0.1".parse().unwrap()),
            ];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        } else {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Every certificate a test needs, written to `dir`.
pub struct Pki {
    pub dir: PathBuf,
    pub server_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A client certificate from a CA the daemon does not trust.
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
    server_ca_obj: Ca,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        let w = |name: &str, body: &str| {
            let p = dir.join(name);
            std::fs::write(&p, body).unwrap();
            p
        };
        let server_ca = Ca::new("test server CA");
        let client_ca = Ca::new("test client CA");
        let rogue_ca = Ca::new("rogue CA");
        let (sc, sk) = server_ca.issue("kube-ldap-webhook", true);
        let (cc, ck) = client_ca.issue("kube-apiserver", false);
        let (rc, rk) = rogue_ca.issue("kube-apiserver", false);
        Pki {
            dir: dir.to_path_buf(),
            server_ca: w("server-ca.crt", &server_ca.cert.pem()),
            server_cert: w("server.crt", &sc),
            server_key: w("server.key", &sk),
            client_ca: w("client-ca.crt", &client_ca.cert.pem()),
            client_cert: w("client.crt", &cc),
            client_key: w("client.key", &ck),
            rogue_cert: w("rogue.crt", &rc),
            rogue_key: w("rogue.key", &rk),
            server_ca_obj: server_ca,
        }
    }

    /// A new server certificate from the same CA (for reload tests).
    pub fn reissue_server(&self, cn: &str) {
        let (c, k) = self.server_ca_obj.issue(cn, true);
        std::fs::write(&self.server_cert, c).unwrap();
        std::fs::write(&self.server_key, k).unwrap();
    }
}

// -------------------------------------------------------------------------------------
// slapd
// -------------------------------------------------------------------------------------

/// Lines added to the fixture's slapd.conf.
#[derive(Default)]
pub struct SlapdConf {
    /// Global directives (`moduleload ...`).
    pub global: String,
    /// Directives of the fixture's database (`overlay ...`, `limits ...`).
    pub database: String,
}

pub struct Slapd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub tls_port: u16,
    pub ca_file: PathBuf,
    child: Option<Child>,
}

impl Slapd {
    /// A fresh slapd with the fixture directory plus `extra_ldif`, on free loopback ports.
    pub fn start_with(extra_ldif: &str) -> Slapd {
        Slapd::start_configured(&SlapdConf::default(), extra_ldif)
    }

    /// A slapd with more modules and database directives (overlays, limits) than the
    /// fixture's, and more entries.
    pub fn start_configured(extra: &SlapdConf, extra_ldif: &str) -> Slapd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut conf =
            std::fs::read_to_string(repo().join("tests/fixtures/openldap/slapd.conf.in"))
                .unwrap()
                .replace("@DIR@", d.to_str().unwrap())
                .replace(
                    "moduleload memberof\n",
                    &format!("moduleload memberof\n{}", extra.global),
                );
        // Directives after `database` belong to it: appended, they configure the fixture's.
        conf.push_str(&extra.database);
        std::fs::write(d.join("slapd.conf"), conf).unwrap();
        std::fs::create_dir(d.join("db")).unwrap();
        let ca = Ca::new("test LDAP CA");
        let (cert, key) = ca.issue("localhost", true);
        std::fs::write(d.join("server.crt"), cert).unwrap();
        std::fs::write(d.join("server.key"), key).unwrap();
        let ca_file = d.join("ldap-ca.crt");
        std::fs::write(&ca_file, ca.cert.pem()).unwrap();
        let mut ldif =
            std::fs::read_to_string(repo().join("tests/fixtures/openldap/directory.ldif")).unwrap();
        ldif.push('\n');
        ldif.push_str(extra_ldif);
        std::fs::write(d.join("data.ldif"), ldif).unwrap();
        let out = Command::new("slapadd")
            .args(["-q", "-f"])
            .arg(d.join("slapd.conf"))
            .arg("-l")
            .arg(d.join("data.ldif"))
            .output()
            .expect("slapadd (apt-get install slapd ldap-utils)");
        assert!(
            out.status.success(),
            "slapadd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut s = Slapd {
            dir,
            port: 0,
            tls_port: 0,
            ca_file,
            child: None,
        };
        s.spawn();
        s
    }

    pub fn start() -> Slapd {
        Slapd::start_with("")
    }

    fn spawn(&mut self) {
        let d = self.dir.path();
        for _ in 0..5 {
            let (port, tls_port) = if self.port == 0 {
                (free_port(), free_port())
            } else {
                (self.port, self.tls_port)
            };
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(d.join("slapd.log"))
                .unwrap();
            let mut cmd = Command::new("slapd");
            cmd.arg("-f")
                .arg(d.join("slapd.conf"))
                .arg("-h")
                .arg(format!(
                    "ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/"
                ))
                // stats: one line per connection and operation, which the tests count.
                .args(["-d", "stats"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log);
            die_with_parent(&mut cmd);
            let mut child = cmd.spawn().expect("slapd (apt-get install slapd)");
            let deadline = Instant::now() + PATIENCE;
            while Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    self.port = port;
                    self.tls_port = tls_port;
                    self.child = Some(child);
                    return;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("slapd did not start; log:\n{}", self.log());
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same ports with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    /// BIND operations slapd logged for `dn` (case-insensitive), excluding the service account.
    pub fn binds_for(&self, dn: &str) -> usize {
        let needle = format!("bind dn=\"{}\"", dn.to_lowercase());
        self.log()
            .lines()
            // slapd logs a successful bind twice (method=, then mech=): count the request.
            .filter(|l| l.contains(" method=") && l.to_lowercase().contains(&needle))
            .count()
    }

    /// BIND operations of anyone but the service account and the decoy.
    pub fn user_binds(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| {
                l.contains(" BIND dn=\"")
                    && l.contains(" method=")
                    && !l.contains(SERVICE_DN)
                    && !l.contains(DECOY)
            })
            .count()
    }

    /// Binds to the decoy DN: what a name that matched nothing costs.
    pub fn decoy_binds(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains(" BIND dn=\"") && l.contains(" method=") && l.contains(DECOY))
            .count()
    }

    /// Every LDAP operation slapd logged (BIND, SRCH, EXT ...).
    pub fn operations(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| {
                [" BIND ", " SRCH ", " EXT ", " CMP ", " MOD "]
                    .iter()
                    .any(|op| l.contains(op))
            })
            .count()
    }

    pub fn entry_uuid(&self, uid: &str) -> String {
        let out = Command::new("ldapsearch")
            .args([
                "-x",
                "-LLL",
                "-H",
                &self.url(),
                "-D",
                "cn=admin,dc=example,dc=org",
                "-w",
                "admin-secret",
                "-b",
                BASE_DN,
            ])
            .arg(format!("(uid={uid})"))
            .arg("entryUUID")
            .output()
            .expect("ldapsearch (apt-get install ldap-utils)");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.strip_prefix("entryUUID: "))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no entryUUID for {uid}: {text}"))
    }

    /// Applies an LDIF change (ldapmodify) as the directory admin.
    pub fn modify(&self, ldif: &str) {
        use std::io::Write;
        let mut child = Command::new("ldapmodify")
            .args([
                "-x",
                "-H",
                &self.url(),
                "-D",
                "cn=admin,dc=example,dc=org",
                "-w",
                "admin-secret",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ldapmodify (apt-get install ldap-utils)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ldif.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "ldapmodify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Changes a user's password as the directory admin.
    pub fn set_password(&self, dn: &str, password: &str) {
        let out = Command::new("ldappasswd")
            .args([
                "-x",
                "-H",
                &self.url(),
                "-D",
                "cn=admin,dc=example,dc=org",
                "-w",
                "admin-secret",
                "-s",
                password,
                dn,
            ])
            .output()
            .expect("ldappasswd");
        assert!(
            out.status.success(),
            "ldappasswd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

// -------------------------------------------------------------------------------------
// The daemon
// -------------------------------------------------------------------------------------

/// Where a directory keeps its users and groups, and its service account.
#[derive(Debug, Clone)]
pub struct Site {
    pub user_base_dn: String,
    pub group_base_dn: String,
    pub bind_dn: String,
    pub bind_password: String,
}

impl Site {
    /// The OpenLDAP fixture directory.
    pub fn openldap() -> Site {
        Site {
            user_base_dn: "ou=people,dc=example,dc=org".into(),
            group_base_dn: "ou=groups,dc=example,dc=org".into(),
            bind_dn: SERVICE_DN.into(),
            bind_password: SERVICE_PASSWORD.into(),
        }
    }
}

/// The LDAP timeouts of every test config. No test that uses them is about a slow directory
/// (those set their own, against a server that never answers), so they are far above what
/// any answer takes on a busy machine; a review's own deadline (`?timeout=30s`) comes first.
pub const LDAP_TIMEOUTS: &str = "connect_timeout = \"20s\"\ntimeout = \"30s\"";

/// The daemon's configuration for a test: the fixture directory, with `extra` TOML lines
/// appended to the sections named in it.
pub fn config_toml(
    pki: &Pki,
    urls: &[String],
    listen: u16,
    ops: u16,
    sections: &[(&str, &str)],
) -> String {
    config_toml_for(&Site::openldap(), pki, urls, listen, ops, sections)
}

/// [`config_toml`] for another directory.
pub fn config_toml_for(
    site: &Site,
    pki: &Pki,
    urls: &[String],
    listen: u16,
    ops: u16,
    sections: &[(&str, &str)],
) -> String {
    let pw = pki.dir.join("bind-password");
    std::fs::write(&pw, format!("{}\n", site.bind_password)).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let get = |name: &str| {
        sections
            .iter()
            .filter(|(s, _)| *s == name)
            .map(|(_, v)| format!("{v}\n"))
            .collect::<String>()
    };
    let urls = urls
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    // ("omit", "service") leaves the service account out (direct bind).
    let service = if sections.contains(&("omit", "service")) {
        String::new()
    } else {
        format!(
            "bind_dn = \"{}\"\nbind_password_file = \"{}\"",
            site.bind_dn,
            pw.display()
        )
    };
    format!(
        r#"[server]
listen = "127.0.0.1:{listen}"
tls_cert_file = "{cert}"
tls_key_file = "{key}"
client_ca_file = "{client_ca}"
path = "/authenticate"
ops_listen = "127.0.0.1:{ops}"
{server}
[ldap]
urls = [{urls}]
{service}
{ldap_timeouts}
{ldap}
[ldap.user]
base_dn = "{user_base_dn}"
{user}
[ldap.user.extra]
"example.org/email" = "mail"
[ldap.group]
base_dn = "{group_base_dn}"
{group}
[identity]
{identity}
[cache]
{cache}
[log]
level = "debug"
"#,
        cert = pki.server_cert.display(),
        key = pki.server_key.display(),
        client_ca = pki.client_ca.display(),
        server = get("server"),
        ldap_timeouts = LDAP_TIMEOUTS,
        ldap = get("ldap"),
        user = get("user"),
        identity = get("identity"),
        group = get("group"),
        cache = get("cache"),
        user_base_dn = site.user_base_dn,
        group_base_dn = site.group_base_dn,
    )
}

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub port: u16,
    pub ops_port: u16,
    pub config: PathBuf,
    /// A program the daemon runs under (`unshare ...`), empty for none.
    pub wrapper: Vec<String>,
    child: Option<Child>,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_kube-ldap-webhook")
}

impl Daemon {
    /// Starts the real binary against `urls` with extra config lines per section.
    pub fn start(urls: &[String], sections: &[(&str, &str)]) -> Daemon {
        Daemon::start_for(&Site::openldap(), urls, sections)
    }

    /// [`Daemon::start`] against another directory.
    pub fn start_for(site: &Site, urls: &[String], sections: &[(&str, &str)]) -> Daemon {
        Daemon::start_for_with_env(site, urls, sections, &[])
    }

    /// [`Daemon::start`] with variables added to the daemon's environment (NOTIFY_SOCKET,
    /// WATCHDOG_USEC, CREDENTIALS_DIRECTORY ...).
    pub fn start_with_env(
        urls: &[String],
        sections: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> Daemon {
        Daemon::start_for_with_env(&Site::openldap(), urls, sections, env)
    }

    pub fn start_for_with_env(
        site: &Site,
        urls: &[String],
        sections: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> Daemon {
        let mut d = Daemon::prepare(site, urls, sections, &[]);
        d.spawn(env);
        d
    }

    /// [`Daemon::start_for`] with the daemon run under `wrapper` (its argv, the daemon's
    /// appended), which must exec it so that the pid and signals stay the daemon's.
    pub fn start_wrapped(
        site: &Site,
        urls: &[String],
        sections: &[(&str, &str)],
        wrapper: &[String],
    ) -> Daemon {
        let mut d = Daemon::prepare(site, urls, sections, wrapper);
        d.spawn(&[]);
        d
    }

    fn prepare(
        site: &Site,
        urls: &[String],
        sections: &[(&str, &str)],
        wrapper: &[String],
    ) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let (port, ops_port) = (free_port(), free_port());
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            config_toml_for(site, &pki, urls, port, ops_port, sections),
        )
        .unwrap();
        Daemon {
            dir,
            pki,
            port,
            ops_port,
            config,
            wrapper: wrapper.to_vec(),
            child: None,
        }
    }

    pub fn spawn(&mut self, env: &[(&str, &str)]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut argv = self.wrapper.clone();
        argv.push(bin().into());
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .args(["serve", "--config"])
            .arg(&self.config)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().expect("the daemon binary");
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("daemon exited with {status}; log:\n{}", self.log());
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.ops_port)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                self.child = Some(child);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("daemon did not start; log:\n{}", self.log());
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/authenticate", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Waits for the daemon to exit on its own (after a signal the test sent).
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running daemon");
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(s)) = child.try_wait() {
                return s;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "daemon did not exit within {within:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        let mut child = self.child.take().expect("running daemon");
        // The daemon's drain (30 s at most) plus patience.
        let deadline = Instant::now() + Duration::from_secs(30) + PATIENCE;
        loop {
            if let Ok(Some(s)) = child.try_wait() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A v1 TokenReview of `username:password`, as kube-apiserver would send it.
    pub async fn login(&self, username: &str, password: &str) -> Answer {
        self.client()
            .review(&self.url(), "v1", &token(username, password))
            .await
    }

    /// Reviews `username:password` (v1) every 100 ms until `done` holds for the answer, and
    /// returns that answer: for tests that wait for a TTL or a window to run out.
    pub async fn login_until(
        &self,
        username: &str,
        password: &str,
        mut done: impl FnMut(&Answer) -> bool,
    ) -> Answer {
        let c = self.client();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let a = c
                .review(&self.url(), "v1", &token(username, password))
                .await;
            if done(&a) {
                return a;
            }
            assert!(
                Instant::now() < deadline,
                "{username}: the answer did not change within {PATIENCE:?}; last: {}",
                a.raw
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn client(&self) -> Https {
        Https::new(
            &self.pki,
            Some((&self.pki.client_cert, &self.pki.client_key)),
            false,
        )
    }

    pub fn ops(&self, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.ops_port)).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let code = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (code, body)
    }

    /// Waits until the log has a line containing `needle`.
    /// The value of one series on /metrics, e.g.
    /// `kube_ldap_webhook_cache_events_total{event="hit"}`; 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        let (_, text) = self.ops("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// The sum of the samples of `name` on /metrics whose labels include each of `labels`.
    pub fn metric_sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let (_, text) = self.ops("/metrics");
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .filter(|l| {
                labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }

    pub fn wait_for_log(&self, needle: &str) {
        wait_until(
            || self.log().contains(needle),
            || format!("the log never said {needle:?}:\n{}", self.log()),
        );
    }

    /// Waits until the start-up probe has reached the directory, so that the LDAP operations
    /// a test counts afterwards are its own.
    pub fn wait_for_probe(&self) {
        self.wait_for_log("LDAP reachable");
    }

    /// Waits until /readyz answers 200. Each probe behind it has its own short deadline, which
    /// a busy machine can miss once; readiness is what this checks, not how fast it comes.
    pub fn wait_for_ready(&self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (code, body) = self.ops("/readyz");
            if code == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz not 200 within {PATIENCE:?}: {code} {body}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// -------------------------------------------------------------------------------------
// HTTPS client
// -------------------------------------------------------------------------------------

pub fn client_tls(pki: &Pki, identity: Option<(&Path, &Path)>) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&pki.server_ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    match identity {
        Some((cert, key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(key).unwrap();
            b.with_client_auth_cert(certs, key).unwrap()
        }
        None => b.with_no_client_auth(),
    }
}

type Connector = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

#[derive(Clone)]
pub struct Https {
    client: Client<Connector, Full<Bytes>>,
}

pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub raw: String,
}

impl Https {
    pub fn new(pki: &Pki, identity: Option<(&Path, &Path)>, http2: bool) -> Https {
        let b = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(client_tls(pki, identity))
            .https_only();
        let connector = if http2 {
            b.enable_http2().build()
        } else {
            b.enable_http1().build()
        };
        let mut cb = Client::builder(TokioExecutor::new());
        if http2 {
            cb.http2_only(true);
        }
        Https {
            client: cb.build(connector),
        }
    }

    pub async fn request(&self, method: &str, url: &str, body: Vec<u8>) -> Result<Answer, String> {
        let req = hyper::Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let raw = String::from_utf8_lossy(&bytes).to_string();
        Ok(Answer {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            raw,
        })
    }

    /// POSTs a TokenReview of `version` ("v1" or "v1beta1") for `token`, with
    /// kube-apiserver's default `?timeout=30s`.
    pub async fn review(&self, url: &str, version: &str, token: &str) -> Answer {
        self.review_with_timeout(url, version, token, "30s").await
    }

    /// [`Https::review`] with another `?timeout=` (a Go duration).
    pub async fn review_with_timeout(
        &self,
        url: &str,
        version: &str,
        token: &str,
        timeout: &str,
    ) -> Answer {
        let body = serde_json::json!({
            "apiVersion": format!("authentication.k8s.io/{version}"),
            "kind": "TokenReview",
            "metadata": {"creationTimestamp": null},
            "spec": {"token": token, "audiences": ["https://kubernetes.default.svc"]},
            "status": {"user": {}},
        });
        let mut bytes = serde_json::to_vec(&body).unwrap();
        bytes.push(b'\n');
        self.request("POST", &format!("{url}?timeout={timeout}"), bytes)
            .await
            .expect("HTTPS request")
    }
}

/// A directory with one user in `groups` groups, as extra LDIF for [`Slapd::start_with`].
pub fn many_users_ldif(n: usize, password: &str) -> String {
    (0..n)
        .map(|i| {
            format!(
                "dn: uid=user{i},ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: user{i}\ncn: User {i}\nsn: {i}\nuserPassword: {password}\n\n"
            )
        })
        .collect()
}
