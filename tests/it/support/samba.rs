//! A real Samba Active Directory domain controller (tests/fixtures/samba/samba-dc.sh; how it
//! behaves: tests/fixtures/samba/FACTS.md), provisioned once per run (the tests are one binary) and
//! shared by every test that asks for it. Without root and network namespaces it cannot start, and every test that asks
//! for it fails saying so: nothing is skipped.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{repo, run_checked, try_run_with_input, Daemon, DaemonBuilder, Site};

/// The running DC, described by the variables `samba-dc.sh start` printed (SAMBA_LDAPS_URL,
/// SAMBA_BIND_DN, SAMBA_CA_FILE ...).
pub struct Dc {
    env: HashMap<String, String>,
}

static DC: OnceLock<Result<Dc, String>> = OnceLock::new();

impl Dc {
    /// The run's DC, started by the first test that asks and shared by every test after
    /// it (provisioning takes seconds). What a test module needs beyond the fixture's
    /// entries it adds once itself (active_directory.rs's `dc()`); a test that changes the
    /// directory works on entries of its own.
    pub fn shared() -> &'static Dc {
        match DC.get_or_init(|| Dc::start("", None)) {
            Ok(dc) => dc,
            Err(e) => panic!(
                "the Samba AD DC did not start (samba-dc.sh needs root and network namespaces):\n{e}"
            ),
        }
    }

    /// Starts the DC through a guardian process in its own session: the guardian runs
    /// `samba-dc.sh start`, waits for this test binary to exit, however it exits, then runs
    /// `samba-dc.sh stop` and removes the directory. A `static` is never dropped, and a test
    /// binary killed halfway runs no destructors, so the test process itself cannot be
    /// trusted to clean up. Since the guardian also does the start, an exit during
    /// provisioning still ends in a stop once the start is done.
    fn start(name: &str, extra_ldif: Option<&Path>) -> Result<Dc, String> {
        let dir = std::env::temp_dir().join(format!(
            "kube-ldap-webhook-samba{name}-{}",
            std::process::id()
        ));
        let sibling = |ext: &str| PathBuf::from(format!("{}.{ext}", dir.display()));
        let (env_file, log_file, rc_file) = (sibling("env"), sibling("log"), sibling("rc"));
        for f in [&env_file, &log_file, &rc_file] {
            let _ = std::fs::remove_file(f);
        }
        let started = Instant::now();
        let mut guardian = guardian(&dir, extra_ldif)?;
        // Provisioning takes about 8 s; a first run may also apt-get install Samba.
        let deadline = started + Duration::from_secs(600);
        let rc = loop {
            if let Ok(rc) = std::fs::read_to_string(&rc_file) {
                break rc.trim().to_string();
            }
            if let Ok(Some(status)) = guardian.try_wait() {
                return Err(format!(
                    "the guardian exited with {status} before the DC was up"
                ));
            }
            if Instant::now() > deadline {
                return Err(format!("not ready in 600 s; log:\n{}", read(&log_file)));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if rc != "0" {
            return Err(format!(
                "samba-dc.sh start exited with {rc}; log ({}):\n{}",
                log_file.display(),
                read(&log_file)
            ));
        }
        let env: HashMap<String, String> = read(&env_file)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if !env.contains_key("SAMBA_LDAPS_URL") {
            return Err(format!(
                "samba-dc.sh printed no SAMBA_LDAPS_URL; log:\n{}",
                read(&log_file)
            ));
        }
        let dc = Dc { env };
        eprintln!(
            "Samba AD DC up in {:?} at {}",
            started.elapsed(),
            dc.ldaps_url()
        );
        Ok(dc)
    }

    /// A DC of its own (not the run's shared one) with the entries of `ldif` loaded
    /// offline after the fixture's (`SAMBA_DC_EXTRA_LDIF`): for benchmarks that need a big
    /// domain. Stopped when this process exits, as the shared one.
    #[allow(dead_code, reason = "for benches/token_groups")]
    pub fn start_with(name: &str, ldif: &Path) -> Result<Dc, String> {
        Dc::start(&format!("-{name}"), Some(ldif))
    }

    /// A variable `samba-dc.sh start` printed.
    pub fn var(&self, k: &str) -> &str {
        self.env
            .get(k)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("samba-dc.sh printed no {k}"))
    }

    pub fn ldaps_url(&self) -> String {
        self.var("SAMBA_LDAPS_URL").into()
    }

    /// Plain LDAP, for StartTLS.
    pub fn ldap_url(&self) -> String {
        self.var("SAMBA_LDAP_URL").into()
    }

    pub fn ca_file(&self) -> &str {
        self.var("SAMBA_CA_FILE")
    }

    /// Users in CN=Users and groups in OU=Groups: base DNs below which AD returns no
    /// continuation references.
    pub fn site(&self) -> Site {
        Site {
            user_base_dn: self.var("SAMBA_USERS_DN").into(),
            group_base_dn: self.var("SAMBA_GROUPS_DN").into(),
            bind_dn: self.var("SAMBA_BIND_DN").into(),
            bind_password: self.var("SAMBA_BIND_PASSWORD").into(),
        }
    }

    /// A daemon with `directory = "active-directory"` over LDAPS to this DC.
    pub fn daemon(&self) -> DaemonBuilder {
        self.daemon_at(&self.ldaps_url())
    }

    /// A daemon with `directory = "active-directory"` against this DC at `url`.
    pub fn daemon_at(&self, url: &str) -> DaemonBuilder {
        Daemon::builder().site(&self.site()).url(url).section(
            "ldap",
            format!(
                "directory = \"active-directory\"\nca_file = \"{}\"",
                self.ca_file()
            ),
        )
    }

    /// An LDAP tool (ldapadd, ldapsearch) on LDAPS, trusting the DC's CA and nothing from
    /// this machine's ldap.conf, bound as `dn`.
    fn tool(&self, tool: &str, dn: &str, password: &str) -> Command {
        let mut cmd = Command::new(tool);
        cmd.env("LDAPCONF", "/dev/null")
            .env("LDAPTLS_CACERT", self.ca_file())
            .args([
                "-x",
                "-H",
                self.var("SAMBA_LDAPS_URL"),
                "-D",
                dn,
                "-w",
                password,
            ]);
        cmd
    }

    /// Adds entries (LDIF) as the domain administrator.
    pub fn ldapadd(&self, ldif: &str) -> Result<(), String> {
        self.as_admin("ldapadd", ldif)
    }

    /// Applies LDIF changes (`changetype: ...`) as the domain administrator.
    pub fn ldapmodify(&self, ldif: &str) -> Result<(), String> {
        self.as_admin("ldapmodify", ldif)
    }

    fn as_admin(&self, tool: &str, ldif: &str) -> Result<(), String> {
        let mut cmd = self.tool(
            tool,
            self.var("SAMBA_ADMIN_DN"),
            self.var("SAMBA_ADMIN_PASSWORD"),
        );
        try_run_with_input(&mut cmd, ldif.as_bytes())
            .map(drop)
            .map_err(|e| format!("{tool} (apt-get install ldap-utils): {e}"))
    }

    /// The realm's krb5.conf (the KDC by address, no DNS, `clockskew = 5`): `KRB5_CONFIG` of
    /// kinit, of an initiator and of the daemon's acceptor.
    pub fn krb5_conf(&self) -> &str {
        self.var("SAMBA_KRB5_CONF")
    }

    /// The keytab of `HTTP/127.0.0.1`, the login listener's service principal (0600).
    pub fn http_keytab(&self) -> &str {
        self.var("SAMBA_HTTP_KEYTAB")
    }

    /// A ticket for `principal` (`alice@EXAMPLE.TEST`) in the file cache `ccache`, from this
    /// DC's KDC: `samba-dc.sh kinit`, the password on stdin; `args` go to kinit (`-l 10s`).
    pub fn kinit(
        &self,
        principal: &str,
        password: &str,
        ccache: &Path,
        args: &[&str],
    ) -> Result<(), String> {
        let mut cmd = Command::new(repo().join("tests/fixtures/samba/samba-dc.sh"));
        cmd.arg("kinit")
            .arg(self.var("SAMBA_DIR"))
            .arg(principal)
            .arg(ccache)
            .args(args);
        try_run_with_input(&mut cmd, format!("{password}\n").as_bytes())
            .map(drop)
            .map_err(|e| format!("kinit {principal} (apt-get install krb5-user): {e}"))
    }

    /// ldapsearch as the service account; LDIF without line wrapping.
    pub fn ldapsearch(&self, base: &str, filter: &str, attrs: &[&str]) -> String {
        let mut cmd = self.tool(
            "ldapsearch",
            self.var("SAMBA_BIND_DN"),
            self.var("SAMBA_BIND_PASSWORD"),
        );
        cmd.args(["-o", "ldif-wrap=no", "-b", base, filter])
            .args(attrs);
        run_checked(&mut cmd, "ldapsearch (apt-get install ldap-utils)")
    }
}

/// The guardian of [`Dc::start`], running.
fn guardian(dir: &Path, extra_ldif: Option<&Path>) -> Result<std::process::Child, String> {
    let script = repo().join("tests/fixtures/samba/samba-dc.sh");
    let guardian = r#"S=$1 D=$2 T=$3
"$S" start "$D" >"$D.env" 2>"$D.log"
echo $? >"$D.rc.tmp" && mv "$D.rc.tmp" "$D.rc"
while kill -0 "$T" 2>/dev/null; do sleep 0.2; done
"$S" stop "$D" >/dev/null 2>&1
rm -rf "$D" "$D.env" "$D.log" "$D.rc""#;
    let mut cmd = Command::new("sh");
    cmd.args(["-c", guardian, "samba-dc-guardian"])
        .arg(&script)
        .arg(dir)
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(ldif) = extra_ldif {
        cmd.env("SAMBA_DC_EXTRA_LDIF", ldif);
    }
    // Its own session: a Ctrl-C to cargo's process group does not stop the cleanup.
    // SAFETY: setsid is async-signal-safe, and nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| format!("cannot run sh: {e}"))
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}
