//! `kube-ldap-webhook credential --login-url` with the user's Kerberos ticket, against the
//! real daemon and the Samba AD DC as KDC (tests/fixtures/samba/FACTS.md, "Kerberos"): a
//! ticket logs in with no prompt and no password anywhere; no ticket, a ticket the daemon
//! refuses, a ticket for no service of the login host, another user's ticket and
//! `--no-kerberos` all end at the password. The user's ticket comes from MIT `kinit` with
//! the password on stdin, into a file cache of the test's own (`KRB5CCNAME`), with the
//! realm's krb5.conf (`KRB5_CONFIG`), both set only for the processes the test starts.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A login endpoint that cannot prove it holds the service key.
mod impostor;

use crate::support::issued::*;
use crate::support::kerberos::kerberos_issuer;
use crate::support::terminal::Terminal;
use crate::support::*;

const ALICE: &str = "alice@EXAMPLE.TEST";
const ALICE_PASSWORD: &str = "Passw0rd!alice";
const ISSUED: &str = "issued";
const GENEROUS_RATE: &str = "rate = 6000\nburst = 1000";

/// The daemon against the DC with its login endpoint at 127.0.0.1 (the host of the SPN
/// `HTTP/127.0.0.1`); with the SPN's keytab when `keytab`, else as a daemon that does not
/// take Kerberos.
struct Site {
    _keys: KeyPair,
    issuer: Issuer,
}

impl Site {
    fn start(keytab: bool) -> Site {
        let dc = Dc::shared();
        let keys = KeyPair::new();
        let issuer = match keytab {
            true => kerberos_issuer(
                dc,
                &keys,
                "[\"EXAMPLE\", \"example.test\"]",
                "",
                GENEROUS_RATE,
            ),
            false => {
                let builder = dc.daemon().env("KRB5_CONFIG", dc.krb5_conf());
                Issuer::start_with(
                    builder,
                    &[("group", "nested = true")],
                    &keys,
                    GENEROUS_RATE,
                    "",
                )
            }
        };
        issuer.daemon.wait_for_probe();
        Site {
            _keys: keys,
            issuer,
        }
    }

    fn metric(&self, event: &str) -> f64 {
        self.issuer
            .daemon
            .metric("kube_ldap_webhook_logins_total", &[("event", event)])
    }

    /// The daemon's 401 answers: a ticket it refused, and nothing else in these tests.
    fn refusals(&self) -> f64 {
        self.issuer
            .daemon
            .metric("kube_ldap_webhook_http_errors_total", &[("code", "401")])
    }

    fn server_ca(&self) -> &Path {
        &self.issuer.daemon.pki.server_ca
    }

    fn review(&self, token: &str) -> Answer {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(self.issuer.review(token))
    }
}

/// A user's machine: its own HOME (the token cache) and Kerberos credential cache.
struct Laptop {
    home: tempfile::TempDir,
}

impl Laptop {
    fn new() -> Laptop {
        Laptop {
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn ccache(&self) -> PathBuf {
        self.home.path().join("krb5cc")
    }

    /// `kinit` as `principal`, the password on stdin (never in argv or the environment).
    fn kinit(&self, principal: &str, password: &str) {
        self.kinit_with(principal, password, &[]);
    }

    /// [`Laptop::kinit`] with more arguments for kinit (`-l 5s`).
    fn kinit_with(&self, principal: &str, password: &str, args: &[&str]) {
        Dc::shared()
            .kinit(principal, password, &self.ccache(), args)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Whether the credential cache holds a ticket that has not expired (`klist -s`).
    fn holds_a_valid_ticket(&self) -> bool {
        let mut cmd = Command::new("klist");
        cmd.arg("-s").stdin(Stdio::null());
        self.session(&mut cmd);
        cmd.status().unwrap().success()
    }

    /// The environment of the user's session: HOME, the credential cache and the realm.
    fn session(&self, cmd: &mut Command) {
        cmd.env("HOME", self.home.path())
            .env("KRB5CCNAME", format!("FILE:{}", self.ccache().display()))
            .env("KRB5_CONFIG", Dc::shared().krb5_conf())
            .env_remove("XDG_CACHE_HOME")
            .env_remove("KUBE_LDAP_WEBHOOK_USERNAME");
    }

    /// The plugin on a terminal (kubectl said interactive), for `url` of `site`.
    fn on_terminal(&self, site: &Site, url: &str, extra: &str) -> Terminal {
        let inner = format!(
            "{} credential --login-url {url} --ca-file {} {extra}",
            bin(),
            site.server_ca().display()
        );
        Terminal::start(&inner, |c| {
            self.session(c);
            c.env(
                "KUBERNETES_EXEC_INFO",
                r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":true}}"#,
            );
        })
    }

    /// The plugin as a non-interactive kubectl starts it, with only the session's
    /// environment.
    fn run(&self, site: &Site, extra: &[&str]) -> Output {
        self.run_at(&site.issuer.login_url(), site.server_ca(), extra)
    }

    /// [`Laptop::run`] against any login endpoint.
    fn run_at(&self, url: &str, ca: &Path, extra: &[&str]) -> Output {
        let mut cmd = Command::new(bin());
        cmd.args(["credential", "--login-url", url])
            .arg("--ca-file")
            .arg(ca)
            .args(extra)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env(
                "KUBERNETES_EXEC_INFO",
                r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}"#,
            )
            .stdin(Stdio::null());
        self.session(&mut cmd);
        cmd.output().unwrap()
    }

    /// Every file under HOME holding `needle`.
    fn files_holding(&self, needle: &str) -> Vec<PathBuf> {
        fn walk(dir: &Path, needle: &[u8], found: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, needle, found);
                } else if std::fs::read(&p)
                    .unwrap()
                    .windows(needle.len())
                    .any(|w| w == needle)
                {
                    found.push(p);
                }
            }
        }
        let mut found = Vec::new();
        walk(self.home.path(), needle.as_bytes(), &mut found);
        found
    }
}

/// The token the terminal showed (the ExecCredential on stdout).
fn token_shown(screen: &str) -> String {
    let start = screen
        .find("v4.public.")
        .unwrap_or_else(|| panic!("{screen}"));
    screen[start..]
        .split(['"', '\r', '\n'])
        .next()
        .unwrap()
        .to_string()
}

/// A review of `token` says alice with her AD groups, nested ones included.
fn assert_alice(site: &Site, token: &str) {
    let a = site.review(token);
    assert!(authenticated(&a), "{}", a.raw);
    assert_eq!(a.body["status"]["user"]["username"], "alice");
    let mut groups = groups_of(&a);
    groups.sort();
    assert_eq!(groups, ["all-staff", "dev-team", "engineering"]);
}

/// A password login on the terminal after the ticket was not used: both prompts, then the
/// token, alice's.
fn log_in_with_the_password(site: &Site, mut term: Terminal) {
    term.answer("Username: ", "alice");
    term.answer("Password for alice: ", ALICE_PASSWORD);
    let (status, screen) = term.finish();
    assert!(status.success(), "{screen}");
    assert_alice(site, &token_shown(&screen));
    assert_eq!(site.metric(ISSUED), 1.0);
}

#[test]
fn a_ticket_logs_in_without_a_prompt_and_without_a_password_anywhere() {
    let site = Site::start(true);
    let laptop = Laptop::new();
    laptop.kinit(ALICE, ALICE_PASSWORD);
    let url = site.issuer.login_url();
    let term = laptop.on_terminal(&site, &url, "");
    let (status, screen) = term.finish();
    assert!(status.success(), "{screen}");
    assert!(
        !screen.contains("Username") && !screen.contains("Password"),
        "{screen}"
    );
    assert_alice(&site, &token_shown(&screen));
    assert_eq!(site.metric(ISSUED), 1.0);
    let negotiated = site.issuer.daemon.metric(
        "kube_ldap_webhook_login_methods_total",
        &[("method", "negotiate"), ("result", "issued")],
    );
    assert_eq!(negotiated, 1.0, "the login was a Kerberos one");
    assert_eq!(site.refusals(), 0.0);
    assert_eq!(laptop.files_holding(ALICE_PASSWORD), Vec::<PathBuf>::new());
    assert!(!site.issuer.daemon.log().contains(ALICE_PASSWORD));
}

#[test]
fn the_token_of_a_ticket_login_is_cached_like_a_password_login() {
    let site = Site::start(true);
    let laptop = Laptop::new();
    laptop.kinit(ALICE, ALICE_PASSWORD);
    let first = laptop.run(&site, &[]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let second = laptop.run(&site, &[]);
    assert_eq!(second.stdout, first.stdout);
    assert_eq!(site.metric(ISSUED), 1.0, "one login");
    assert!(second.stderr.is_empty(), "silent when it works");
}

#[test]
fn without_a_ticket_the_password_is_prompted() {
    let site = Site::start(true);
    let laptop = Laptop::new();
    let url = site.issuer.login_url();
    log_in_with_the_password(&site, laptop.on_terminal(&site, &url, ""));
    assert_eq!(
        site.refusals(),
        0.0,
        "nothing was sent for the missing ticket"
    );
}

#[test]
fn an_empty_credential_cache_falls_back_to_the_password() {
    let site = Site::start(true);
    let laptop = Laptop::new();
    std::fs::write(laptop.ccache(), b"").unwrap();
    let url = site.issuer.login_url();
    log_in_with_the_password(&site, laptop.on_terminal(&site, &url, ""));
    assert_eq!(site.refusals(), 0.0);
}

#[test]
fn an_expired_ticket_falls_back_to_the_password() {
    let site = Site::start(true);
    let laptop = Laptop::new();
    laptop.kinit_with(ALICE, ALICE_PASSWORD, &["-l", "5s"]);
    wait_until(
        || !laptop.holds_a_valid_ticket(),
        || "the 5 s ticket never expired".into(),
    );
    let url = site.issuer.login_url();
    log_in_with_the_password(&site, laptop.on_terminal(&site, &url, ""));
    assert_eq!(
        site.refusals(),
        0.0,
        "nothing was sent for the expired ticket"
    );
}

#[test]
fn a_ticket_the_daemon_refuses_falls_back_to_the_password() {
    // A daemon without a keytab cannot accept the ticket: it answers 401.
    let site = Site::start(false);
    let laptop = Laptop::new();
    laptop.kinit(ALICE, ALICE_PASSWORD);
    let url = site.issuer.login_url();
    log_in_with_the_password(&site, laptop.on_terminal(&site, &url, ""));
    assert_eq!(site.refusals(), 1.0, "the ticket was offered first");
}

#[test]
fn a_login_host_with_no_service_principal_falls_back_to_the_password() {
    // HTTP/localhost is no principal of the realm: the KDC gives no service ticket and
    // nothing is sent with Negotiate.
    let site = Site::start(true);
    let laptop = Laptop::new();
    laptop.kinit(ALICE, ALICE_PASSWORD);
    let url = format!("https://localhost:{}/login", site.issuer.login_port);
    log_in_with_the_password(&site, laptop.on_terminal(&site, &url, ""));
    assert_eq!(site.refusals(), 0.0);
}

#[test]
fn no_kerberos_prompts_for_the_password_even_with_a_ticket() {
    let site = Site::start(true);
    let laptop = Laptop::new();
    laptop.kinit(ALICE, ALICE_PASSWORD);
    let url = site.issuer.login_url();
    log_in_with_the_password(&site, laptop.on_terminal(&site, &url, "--no-kerberos"));
    assert_eq!(site.refusals(), 0.0);
}

#[test]
fn another_users_ticket_is_not_used_for_the_username_given() {
    let site = Site::start(true);
    let laptop = Laptop::new();
    laptop.kinit(ALICE, ALICE_PASSWORD);
    let out = laptop.run(&site, &["--username", "bob"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the ticket is alice@EXAMPLE.TEST's, not bob's"),
        "{stderr}"
    );
    assert!(stderr.contains("no password"), "{stderr}");
    assert_eq!(site.refusals() + site.metric(ISSUED), 0.0);
}

#[test]
fn a_failed_login_says_which_ways_were_tried() {
    let site = Site::start(false);
    let laptop = Laptop::new();
    laptop.kinit(ALICE, ALICE_PASSWORD);
    let out = laptop.run(&site, &[]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the Kerberos ticket was not used (Invalid username or password)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("login with the password: no username"),
        "{stderr}"
    );
}
