//! `kube-ldap-webhook credential --login-url`, run as kubectl runs it, against the real
//! daemon's login endpoint and a real slapd: log in once, then the cached token (checked
//! with the daemon) until it is about to expire or the daemon refuses it; the cache's
//! modes and lock; `--logout`; what the user reads when a login fails.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::support;
use crate::support::issued::*;
use crate::support::terminal::Terminal;
use crate::support::*;
use serde_json::Value;

pub(crate) const ALICE_PASSWORD: &str = "alice-password";
/// Events of `kube_ldap_webhook_logins_total`.
pub(crate) const ISSUED: &str = "issued";
const REJECTED: &str = "rejected";
const CHECKED: &str = "check_accepted";
/// Enough logins per minute that only the rate-limit test meets the limit.
const GENEROUS_RATE: &str = "rate = 6000\nburst = 1000";

/// The daemon with its login endpoint, against its own slapd.
pub(crate) struct Fixture {
    pub(crate) slapd: Slapd,
    _keys: KeyPair,
    pub(crate) issuer: Issuer,
}

impl Fixture {
    pub(crate) fn start() -> Fixture {
        Fixture::with_login(GENEROUS_RATE)
    }

    fn with_login(login: &str) -> Fixture {
        Fixture::with(login, "")
    }

    /// With `[login]` lines `login` and what follows `[tokens]` (e.g. a `[jwt]` table).
    pub(crate) fn with(login: &str, tokens: &str) -> Fixture {
        let slapd = Slapd::start();
        let keys = KeyPair::new();
        let issuer = Issuer::start(
            &support::Site::openldap(),
            &[slapd.url()],
            &[],
            &keys,
            login,
            tokens,
        );
        issuer.daemon.wait_for_probe();
        Fixture {
            slapd,
            _keys: keys,
            issuer,
        }
    }

    /// `kube_ldap_webhook_logins_total` for one event.
    pub(crate) fn metric(&self, event: &str) -> f64 {
        self.issuer
            .daemon
            .metric("kube_ldap_webhook_logins_total", &[("event", event)])
    }

    pub(crate) fn login_url(&self) -> String {
        self.issuer.login_url()
    }

    fn server_ca(&self) -> &Path {
        &self.issuer.daemon.pki.server_ca
    }
}

/// A user's machine: its own HOME (the cache goes to ~/.cache) and a password file.
pub(crate) struct Laptop {
    pub(crate) home: tempfile::TempDir,
    password_file: PathBuf,
}

impl Laptop {
    pub(crate) fn new() -> Laptop {
        let home = tempfile::tempdir().unwrap();
        let password_file = home.path().join("password");
        std::fs::write(&password_file, format!("{ALICE_PASSWORD}\n")).unwrap();
        Laptop {
            home,
            password_file,
        }
    }

    /// A credential cache that does not exist: these tests log in with the password, and
    /// a ticket of the machine's own must not change that (tests/it/kerberos_plugin.rs).
    fn no_ticket(&self) -> String {
        format!("FILE:{}/no-ticket", self.home.path().display())
    }

    pub(crate) fn cache_dir(&self) -> PathBuf {
        self.home.path().join(".cache/kube-ldap-webhook")
    }

    pub(crate) fn token_files(&self) -> Vec<PathBuf> {
        let Ok(dir) = std::fs::read_dir(self.cache_dir()) else {
            return Vec::new();
        };
        dir.map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect()
    }

    /// A password file of this laptop's with `password` in it.
    fn write_password(&self, name: &str, password: &str) -> PathBuf {
        let f = self.home.path().join(name);
        std::fs::write(&f, format!("{password}\n")).unwrap();
        f
    }

    /// The plugin as kubectl starts it (non-interactive, v1) for the login endpoint `url`
    /// whose certificate `ca` signed.
    pub(crate) fn plugin_at(&self, url: &str, ca: &Path) -> Command {
        let mut cmd = self.plugin_for(url);
        cmd.arg("--ca-file").arg(ca);
        cmd
    }

    /// [`Laptop::plugin_at`] for `user`, with a password file holding `password`.
    pub(crate) fn plugin_as(&self, url: &str, ca: &Path, user: &str, password: &str) -> Command {
        let pw = self.write_password(&format!("{user}.password"), password);
        let mut cmd = self.plugin_at(url, ca);
        cmd.args(["--username", user, "--password-file"]).arg(pw);
        cmd
    }

    /// The plugin as kubectl starts it (non-interactive, v1) with `url`, trusting the
    /// system's roots.
    fn plugin_for(&self, url: &str) -> Command {
        let mut cmd = Command::new(bin());
        cmd.args(["credential", "--login-url", url])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("KRB5CCNAME", self.no_ticket())
            .env("KUBERNETES_EXEC_INFO", exec_info("v1", false))
            .stdin(Stdio::null());
        cmd
    }

    /// The plugin with the daemon's login endpoint and its CA.
    pub(crate) fn plugin(&self, site: &Fixture, extra: &[&str]) -> Command {
        let mut cmd = self.plugin_at(&site.login_url(), site.server_ca());
        cmd.args(extra);
        cmd
    }

    /// `--username alice --password-file F`.
    pub(crate) fn alice(&self) -> Vec<String> {
        let pw = self.password_file.display().to_string();
        ["--username", "alice", "--password-file", &pw]
            .map(String::from)
            .to_vec()
    }

    pub(crate) fn run(&self, site: &Fixture, extra: &[&str]) -> Output {
        self.plugin(site, extra).output().unwrap()
    }

    /// A run with alice's username and password file that must print a credential.
    pub(crate) fn credential(&self, site: &Fixture) -> Credential {
        Credential::of(&self.plugin(site, &[]).args(self.alice()).output().unwrap())
    }
}

pub(crate) fn exec_info(version: &str, interactive: bool) -> String {
    format!(
        r#"{{"apiVersion":"client.authentication.k8s.io/{version}","kind":"ExecCredential","spec":{{"interactive":{interactive}}}}}"#
    )
}

/// What the plugin printed.
pub(crate) struct Credential {
    pub(crate) json: Value,
    pub(crate) stderr: String,
}

impl Credential {
    pub(crate) fn of(out: &Output) -> Credential {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "the plugin failed: {stderr}");
        let json = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stderr}"));
        Credential { json, stderr }
    }

    pub(crate) fn token(&self) -> &str {
        self.json["status"]["token"].as_str().unwrap()
    }

    pub(crate) fn expiry(&self) -> &str {
        self.json["status"]["expirationTimestamp"].as_str().unwrap()
    }
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub(crate) fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn review(site: &Fixture, token: &str) -> Answer {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(site.issuer.review(token))
}

/// Rewrites the one cached entry with `edit`, as time or a tampering hand would.
/// A run for alice that must fail: its stderr, after checking kubectl got nothing to use.
fn failed_login(laptop: &Laptop, site: &Fixture) -> String {
    let out = laptop
        .plugin(site, &[])
        .args(laptop.alice())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing for kubectl to misread");
    stderr(&out)
}

fn edit_cached_entry(laptop: &Laptop, edit: impl FnOnce(&mut Value)) {
    let files = laptop.token_files();
    assert_eq!(files.len(), 1, "{files:?}");
    let mut entry: Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    edit(&mut entry);
    std::fs::write(&files[0], entry.to_string()).unwrap();
}

#[test]
fn the_first_run_logs_in_and_prints_the_token_with_its_expiry() {
    let site = Fixture::start();
    let laptop = Laptop::new();
    let c = laptop.credential(&site);
    assert_eq!(c.json["apiVersion"], "client.authentication.k8s.io/v1");
    assert_eq!(c.json["kind"], "ExecCredential");
    assert!(c.token().starts_with("v4.public."), "{}", c.token());
    assert_eq!(claims_of(c.token())["exp"], c.expiry());
    assert_eq!(site.metric(ISSUED), 1.0);
    let a = review(&site, c.token());
    assert!(authenticated(&a), "{}", a.raw);
    assert_eq!(a.body["status"]["user"]["username"], "alice");
}

#[test]
fn the_second_run_prints_the_cached_token_after_checking_it_without_a_login() {
    let site = Fixture::start();
    let laptop = Laptop::new();
    let first = laptop.credential(&site);
    let second = laptop.credential(&site);
    assert_eq!(second.token(), first.token());
    assert_eq!(second.expiry(), first.expiry());
    assert_eq!(site.metric(ISSUED), 1.0, "one login");
    assert_eq!(site.metric(CHECKED), 1.0, "the cached token was checked");
    assert!(second.stderr.is_empty(), "{}", second.stderr);
}

#[test]
fn a_cached_token_needs_no_password_source() {
    let site = Fixture::start();
    let laptop = Laptop::new();
    let first = laptop.credential(&site);
    let out = laptop.run(&site, &["--username", "alice"]);
    assert_eq!(Credential::of(&out).token(), first.token());
}

#[test]
fn the_cached_token_is_printed_in_the_api_version_kubectl_asks_for() {
    let site = Fixture::start();
    let laptop = Laptop::new();
    let first = laptop.credential(&site);
    let out = laptop
        .plugin(&site, &["--username", "alice"])
        .env("KUBERNETES_EXEC_INFO", exec_info("v1beta1", false))
        .output()
        .unwrap();
    let c = Credential::of(&out);
    assert_eq!(c.json["apiVersion"], "client.authentication.k8s.io/v1beta1");
    assert_eq!(c.token(), first.token());
    assert_eq!(c.expiry(), first.expiry());
}

#[test]
fn the_cache_is_private_to_its_owner_under_xdg_cache_home() {
    let site = Fixture::start();
    let laptop = Laptop::new();
    let xdg = laptop.home.path().join("xdg");
    let out = laptop
        .plugin(&site, &[])
        .args(laptop.alice())
        .env("XDG_CACHE_HOME", &xdg)
        .output()
        .unwrap();
    let c = Credential::of(&out);
    let dir = xdg.join("kube-ldap-webhook");
    assert_eq!(mode(&xdg), 0o700, "a missing XDG_CACHE_HOME is made 0700");
    assert_eq!(mode(&dir), 0o700);
    let entries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!entries.is_empty());
    for p in &entries {
        assert_eq!(mode(p), 0o600, "{}", p.display());
    }
    let token_file = entries
        .iter()
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .unwrap();
    let entry: Value = serde_json::from_slice(&std::fs::read(token_file).unwrap()).unwrap();
    assert_eq!(entry["token"], c.token());
    assert_eq!(entry["expirationTimestamp"], c.expiry());
    assert_eq!(entry["loginUrl"], site.login_url());
    assert_eq!(entry["username"], "alice");
    assert!(
        !laptop.cache_dir().exists(),
        "XDG_CACHE_HOME wins over HOME"
    );
}

/// Every file under `dir`, recursively, except `skip`.
fn files_under(dir: &Path, skip: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, skip, out);
        } else if p != skip {
            out.push(p);
        }
    }
}

#[test]
fn the_password_is_nowhere_on_disk_or_in_the_daemons_log() {
    let site = Fixture::start();
    let laptop = Laptop::new();
    let c = laptop.credential(&site);
    laptop.credential(&site);
    let basic = token("alice", ALICE_PASSWORD);
    let mut files = Vec::new();
    files_under(laptop.home.path(), &laptop.password_file, &mut files);
    assert!(!files.is_empty());
    for f in files {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        assert!(
            !text.contains(ALICE_PASSWORD),
            "{} holds the password",
            f.display()
        );
        assert!(
            !text.contains(&basic),
            "{} holds the basic token",
            f.display()
        );
    }
    let log = site.issuer.daemon.log();
    for secret in [ALICE_PASSWORD, &basic, c.token()] {
        assert!(!log.contains(secret), "the daemon's log shows {secret:?}");
    }
}

#[test]
fn parallel_runs_log_in_once() {
    let site = Fixture::start();
    let laptop = Laptop::new();
    let children: Vec<_> = (0..8)
        .map(|_| {
            laptop
                .plugin(&site, &[])
                .args(laptop.alice())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let tokens: Vec<String> = children
        .into_iter()
        .map(|c| {
            Credential::of(&c.wait_with_output().unwrap())
                .token()
                .to_string()
        })
        .collect();
    assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");
    assert_eq!(site.metric(ISSUED), 1.0, "one login for eight runs");
}

#[test]
fn a_cached_token_about_to_expire_is_replaced_by_a_new_login_without_a_check() {
    let site = Fixture::start();
    let laptop = Laptop::new();
    let first = laptop.credential(&site);
    edit_cached_entry(&laptop, |e| e["expirationTimestamp"] = from_now(120).into());
    let second = laptop.credential(&site);
    assert_ne!(second.token(), first.token());
    assert_eq!(site.metric(ISSUED), 2.0);
    assert_eq!(
        site.metric(CHECKED),
        0.0,
        "no check of a token about to expire"
    );
}

#[test]
fn a_cached_token_the_daemon_refuses_leads_to_one_new_login_not_a_loop() {
    let site = Fixture::start();
    let laptop = Laptop::new();
    let first = laptop.credential(&site);
    // A token the daemon never issued, with a far expiry: only the daemon can tell.
    let mut forged = first.token().as_bytes().to_vec();
    forged[20] = if forged[20] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    edit_cached_entry(&laptop, |e| e["token"] = forged.clone().into());
    let second = laptop.credential(&site);
    assert!(
        second.stderr.contains("no longer accepted"),
        "{}",
        second.stderr
    );
    assert!(second.stderr.contains(GENERIC), "{}", second.stderr);
    assert_ne!(second.token(), forged);
    assert!(authenticated(&review(&site, second.token())));
    let third = laptop.credential(&site);
    assert_eq!(third.token(), second.token());
    assert_eq!(
        site.metric(ISSUED),
        2.0,
        "one new login, then the cache again"
    );
}

#[test]
fn logging_everyone_out_leads_to_a_new_login_on_the_next_run() {
    let site = Fixture::start();
    let laptop = Laptop::new();
    let first = laptop.credential(&site);
    // Tokens issued before this instant are refused; iat has whole seconds.
    let cutoff = std::time::SystemTime::now() + std::time::Duration::from_secs(1);
    reload(&site.issuer.daemon, |text| {
        text.replace(
            "[tokens]\n",
            &format!("[tokens]\nnot_before = \"{}\"\n", rfc3339(cutoff)),
        )
    });
    wait_until(
        || std::time::SystemTime::now() > cutoff,
        || "the clock never passed the cutoff".into(),
    );
    let second = laptop.credential(&site);
    assert_ne!(second.token(), first.token());
    assert!(
        second.stderr.contains("no longer accepted"),
        "{}",
        second.stderr
    );
    assert!(authenticated(&review(&site, second.token())));
}

#[test]
fn logout_forgets_the_token_prints_nothing_and_the_next_run_logs_in() {
    let site = Fixture::start();
    let laptop = Laptop::new();
    laptop.credential(&site);
    assert_eq!(laptop.token_files().len(), 1);
    let out = laptop.run(&site, &["--logout"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert!(laptop.token_files().is_empty());
    laptop.credential(&site);
    assert_eq!(site.metric(ISSUED), 2.0);
}

#[test]
fn a_wrong_password_shows_the_daemons_message_and_caches_nothing() {
    let site = Fixture::start();
    let laptop = Laptop::new();
    std::fs::write(&laptop.password_file, "wrong\n").unwrap();
    let err = failed_login(&laptop, &site);
    assert!(
        err.contains("login refused") && err.contains(GENERIC),
        "{err}"
    );
    assert!(laptop.token_files().is_empty());
    assert_eq!(site.metric(REJECTED), 1.0);
}

#[test]
fn a_rate_limited_login_says_when_to_try_again() {
    let site = Fixture::with_login("rate = 1\nburst = 1");
    let laptop = Laptop::new();
    std::fs::write(&laptop.password_file, "wrong\n").unwrap();
    let args = laptop.alice();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = laptop.run(&site, &args);
    assert!(
        stderr(&first).contains("login refused"),
        "{}",
        stderr(&first)
    );
    let second = laptop.run(&site, &args);
    assert!(!second.status.success());
    let err = stderr(&second);
    assert!(
        err.contains("too many logins") && err.contains("try again in"),
        "{err}"
    );
}

#[test]
fn an_unreachable_login_endpoint_is_a_clear_error() {
    let laptop = Laptop::new();
    let url = format!("https://127.0.0.1:{}/login", free_port());
    let out = laptop
        .plugin_for(&url)
        .args(laptop.alice())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cannot reach the login endpoint") && err.contains(&url),
        "{err}"
    );
}

#[test]
fn a_login_endpoint_whose_certificate_does_not_chain_to_the_ca_gets_no_password() {
    let site = Fixture::start();
    let laptop = Laptop::new();
    // Without --ca-file: the system's roots, which do not know the test CA.
    let out = laptop
        .plugin_for(&site.login_url())
        .args(laptop.alice())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("certificate"), "{}", stderr(&out));
    assert_eq!(site.metric(ISSUED) + site.metric(REJECTED), 0.0);
}

#[test]
fn a_cached_token_is_used_when_the_daemon_cannot_be_asked() {
    let mut site = Fixture::start();
    let laptop = Laptop::new();
    let first = laptop.credential(&site);
    site.issuer.daemon.terminate();
    let second = laptop.credential(&site);
    assert_eq!(second.token(), first.token());
    assert!(
        second.stderr.contains("cannot check the cached token"),
        "{}",
        second.stderr
    );
}

/// Whether a thread of `pid` sleeps in `open` of a FIFO, waiting for the other end.
fn waits_on_a_fifo(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|t| {
        std::fs::read_to_string(t.path().join("wchan")).is_ok_and(|w| w == "wait_for_partner")
    })
}

#[test]
fn a_fifo_in_place_of_the_cached_token_is_refused_at_once_by_name() {
    let site = Fixture::start();
    let laptop = Laptop::new();
    laptop.credential(&site);
    let files = laptop.token_files();
    assert_eq!(files.len(), 1, "{files:?}");
    std::fs::remove_file(&files[0]).unwrap();
    let path = std::ffi::CString::new(files[0].as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path that lives across the call.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let mut cmd = laptop.plugin(&site, &[]);
    let mut child = cmd
        .args(laptop.alice())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // No writer ever comes: a run that opened the FIFO for reading would wait forever.
    while child.try_wait().unwrap().is_none() {
        if waits_on_a_fifo(child.id()) {
            let _ = child.kill();
            panic!("the plugin waits in open() on the FIFO");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing for kubectl to misread");
    let said = stderr(&out);
    assert!(said.contains("is a FIFO, not a file"), "{said}");
    assert!(said.contains(&files[0].display().to_string()), "{said}");
    assert_eq!(
        site.metric(ISSUED),
        1.0,
        "no password sent for the refused cache"
    );
}

#[test]
fn a_login_while_the_directory_is_down_says_so_and_caches_nothing() {
    let mut site = Fixture::start();
    site.slapd.stop();
    let laptop = Laptop::new();
    let err = failed_login(&laptop, &site);
    assert!(
        err.contains("cannot log anyone in right now")
            && err.contains("Authentication backend unavailable"),
        "{err}"
    );
    assert!(laptop.token_files().is_empty());
}

#[test]
fn a_cached_token_is_kept_while_the_directory_is_down() {
    let mut site = Fixture::start();
    let laptop = Laptop::new();
    let first = laptop.credential(&site);
    site.slapd.stop();
    let second = laptop.credential(&site);
    assert_eq!(second.token(), first.token(), "{}", second.stderr);
    assert_eq!(site.metric(ISSUED), 1.0, "no second login");
}

#[test]
fn a_clear_text_login_url_is_refused() {
    let out = Command::new(bin())
        .args(["credential", "--login-url", "http://127.0.0.1:8444/login"])
        .args(["--username", "alice", "--password-fd", "0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("https://"), "{}", stderr(&out));
}

#[test]
fn on_a_terminal_the_password_is_asked_once_and_the_next_run_needs_none() {
    let site = Fixture::start();
    let laptop = Laptop::new();
    // `script` gives the plugin a real terminal, as kubectl does when interactive.
    let inner = format!(
        "{} credential --login-url {} --ca-file {}",
        bin(),
        site.login_url(),
        site.server_ca().display()
    );
    let mut term = Terminal::start(&inner, |c| {
        c.env("HOME", laptop.home.path())
            .env("KRB5CCNAME", laptop.no_ticket())
            .env_remove("XDG_CACHE_HOME")
            .env_remove("KUBE_LDAP_WEBHOOK_USERNAME")
            .env("KUBERNETES_EXEC_INFO", exec_info("v1", true));
    });
    term.answer("Username: ", "alice");
    term.answer("Password for alice: ", ALICE_PASSWORD);
    let (status, text) = term.finish();
    assert!(status.success(), "{text}");
    assert!(text.contains("v4.public."), "{text}");
    assert_eq!(site.metric(ISSUED), 1.0);

    // The next run, without a terminal and without a username: the cached token.
    let out = laptop.run(&site, &[]);
    let c = Credential::of(&out);
    assert!(text.contains(c.token()), "the same token: {text}");
    assert_eq!(site.metric(ISSUED), 1.0);
}
