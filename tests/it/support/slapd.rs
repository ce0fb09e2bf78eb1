//! A real OpenLDAP server with the fixture directory (tests/fixtures/openldap), one per test,
//! and the LDAP work it logged: slapd logs at `stats`, one line per connection and operation.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{
    free_port, repo, run_checked, run_with_input, Ca, Daemon, DaemonBuilder, Listening, Process,
};

pub const BASE_DN: &str = "dc=example,dc=org";
pub const SERVICE_DN: &str = "cn=k8s-webhook,ou=services,dc=example,dc=org";
pub const SERVICE_PASSWORD: &str = "service-secret";
/// The first RDN of the DN the daemon binds to for names that matched nothing.
pub const DECOY: &str = "cn=kube-ldap-webhook-decoy-";
const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
const ADMIN_PASSWORD: &str = "admin-secret";

/// Lines added to the fixture's slapd.conf.
#[derive(Default)]
pub struct SlapdConf {
    /// Global directives (`moduleload ...`).
    pub global: String,
    /// Directives of the fixture's database (`overlay ...`, `limits ...`).
    pub database: String,
}

impl SlapdConf {
    /// The ppolicy overlay with the fixture's default policy and its lockout on.
    pub fn ppolicy_lockout() -> SlapdConf {
        SlapdConf {
            global: "moduleload ppolicy\n".into(),
            database: "overlay ppolicy\n\
                       ppolicy_default \"cn=default,ou=policies,dc=example,dc=org\"\n\
                       ppolicy_use_lockout\n"
                .into(),
        }
    }
}

pub struct Slapd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub tls_port: u16,
    pub ca_file: PathBuf,
    child: Option<Process>,
}

impl Slapd {
    /// A fresh slapd with the fixture directory, on free loopback ports.
    pub fn start() -> Slapd {
        Slapd::start_with("")
    }

    /// A fresh slapd with the fixture directory plus `extra_ldif`.
    pub fn start_with(extra_ldif: &str) -> Slapd {
        Slapd::start_configured(&SlapdConf::default(), extra_ldif)
    }

    /// A slapd with more modules and database directives (overlays, limits) than the
    /// fixture's, and more entries.
    pub fn start_configured(extra: &SlapdConf, extra_ldif: &str) -> Slapd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let fixture = |name: &str| {
            std::fs::read_to_string(repo().join("tests/fixtures/openldap").join(name)).unwrap()
        };
        let mut conf = fixture("slapd.conf.in")
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
        std::fs::write(
            d.join("data.ldif"),
            fixture("directory.ldif") + "\n" + extra_ldif,
        )
        .unwrap();
        run_checked(
            Command::new("slapadd")
                .args(["-q", "-f"])
                .arg(d.join("slapd.conf"))
                .arg("-l")
                .arg(d.join("data.ldif")),
            "slapadd (apt-get install slapd ldap-utils)",
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

    /// Runs slapd, on the ports it had if it ran before; on new ones if another process took
    /// a free port first.
    fn spawn(&mut self) {
        for _ in 0..5 {
            let (port, tls_port) = if self.port == 0 {
                (free_port(), free_port())
            } else {
                (self.port, self.tls_port)
            };
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.log_path())
                .unwrap();
            let mut child = Process::spawn(
                Command::new("slapd")
                    .arg("-f")
                    .arg(self.dir.path().join("slapd.conf"))
                    .arg("-h")
                    .arg(format!(
                        "ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/"
                    ))
                    .args(["-d", "stats"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log),
                "slapd (apt-get install slapd)",
            );
            if let Listening::Yes = child.wait_for_ports(&[port]) {
                self.port = port;
                self.tls_port = tls_port;
                self.child = Some(child);
                return;
            }
        }
        panic!("slapd did not start; log:\n{}", self.log());
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port)
    }

    /// A daemon against this directory over plain LDAP: [`Daemon::builder`] with its URL.
    pub fn daemon(&self) -> DaemonBuilder {
        Daemon::builder().url(self.url())
    }

    pub fn stop(&mut self) {
        self.child = None;
    }

    /// Starts it again on the same ports with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Stops the process (SIGSTOP) until the guard is dropped: a directory that has all it
    /// was sent waiting when it resumes.
    pub fn pause(&self) -> Paused<'_> {
        let child = self.child.as_ref().expect("a running slapd");
        child.signal(libc::SIGSTOP);
        Paused(child)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("slapd.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Where the log ends now: [`Slapd::stats_since`] reads from there.
    pub fn log_mark(&self) -> u64 {
        std::fs::metadata(self.log_path()).map_or(0, |m| m.len())
    }

    /// What slapd logged since `mark`.
    pub fn stats_since(&self, mark: u64) -> Stats {
        // slapd writes whole lines; give it a moment to write the last ones.
        std::thread::sleep(Duration::from_millis(200));
        let mut out = Vec::new();
        let mut f = std::fs::File::open(self.log_path()).unwrap();
        f.seek(SeekFrom::Start(mark)).unwrap();
        f.read_to_end(&mut out).unwrap();
        Stats(String::from_utf8_lossy(&out).into_owned())
    }

    /// Everything slapd logged.
    pub fn stats(&self) -> Stats {
        Stats(self.log())
    }

    /// BIND requests for `dn` (case-insensitive).
    pub fn binds_for(&self, dn: &str) -> usize {
        self.stats().binds_for(dn)
    }

    /// BIND requests of anyone but the service account and the decoy.
    pub fn user_binds(&self) -> usize {
        self.stats().user_binds()
    }

    /// Binds to the decoy DN: what a name that matched nothing costs.
    pub fn decoy_binds(&self) -> usize {
        self.stats().decoy_binds()
    }

    /// Every LDAP operation (BIND, SRCH, EXT ...).
    pub fn operations(&self) -> usize {
        self.stats().operations()
    }

    /// A command-line LDAP tool (ldapsearch, ldapmodify, ldappasswd) bound as the admin.
    fn as_admin(&self, tool: &str) -> Command {
        let mut cmd = Command::new(tool);
        cmd.args([
            "-x",
            "-H",
            &self.url(),
            "-D",
            ADMIN_DN,
            "-w",
            ADMIN_PASSWORD,
        ]);
        cmd
    }

    pub fn entry_uuid(&self, uid: &str) -> String {
        let text = run_checked(
            self.as_admin("ldapsearch")
                .args(["-LLL", "-b", BASE_DN])
                .arg(format!("(uid={uid})"))
                .arg("entryUUID"),
            "ldapsearch (apt-get install ldap-utils)",
        );
        text.lines()
            .find_map(|l| l.strip_prefix("entryUUID: "))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no entryUUID for {uid}: {text}"))
    }

    /// Applies an LDIF change (ldapmodify) as the directory admin.
    pub fn modify(&self, ldif: &str) {
        run_with_input(
            &mut self.as_admin("ldapmodify"),
            ldif.as_bytes(),
            "ldapmodify (apt-get install ldap-utils)",
        );
    }

    /// Changes a user's password as the directory admin.
    pub fn set_password(&self, dn: &str, password: &str) {
        run_checked(
            self.as_admin("ldappasswd").args(["-s", password, dn]),
            "ldappasswd (apt-get install ldap-utils)",
        );
    }
}

/// slapd stopped by [`Slapd::pause`]; it carries on (SIGCONT) when this is dropped.
pub struct Paused<'a>(&'a Process);

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.0.signal(libc::SIGCONT);
    }
}

/// Lines of slapd's `stats` log, counted by what the daemon made the directory do.
pub struct Stats(String);

impl Stats {
    fn lines(&self) -> impl Iterator<Item = &str> {
        self.0.lines()
    }

    /// BIND requests: slapd logs a successful bind twice (`method=`, then `mech=`), so the
    /// `method=` line is the one counted.
    fn binds(&self) -> impl Iterator<Item = &str> {
        self.lines()
            .filter(|l| l.contains(" BIND dn=\"") && l.contains(" method="))
    }

    /// BIND requests for `dn` (case-insensitive).
    pub fn binds_for(&self, dn: &str) -> usize {
        let needle = format!("bind dn=\"{}\"", dn.to_lowercase());
        self.binds()
            .filter(|l| l.to_lowercase().contains(&needle))
            .count()
    }

    /// BIND requests of anyone but the service account and the decoy.
    pub fn user_binds(&self) -> usize {
        self.binds()
            .filter(|l| !l.contains(SERVICE_DN) && !l.contains(DECOY))
            .count()
    }

    /// SEARCH requests (`base=... scope=... filter=...`; each page of a paged search is one).
    pub fn searches(&self) -> Vec<&str> {
        self.lines().filter(|l| l.contains(" SRCH base=")).collect()
    }

    pub fn decoy_binds(&self) -> usize {
        self.binds().filter(|l| l.contains(DECOY)).count()
    }

    pub fn operations(&self) -> usize {
        self.lines()
            .filter(|l| {
                [" BIND ", " SRCH ", " EXT ", " CMP ", " MOD "]
                    .iter()
                    .any(|op| l.contains(op))
            })
            .count()
    }

    /// New LDAP connections (TCP accepts).
    #[allow(dead_code, reason = "for benches/reviews")]
    pub fn accepts(&self) -> usize {
        self.lines().filter(|l| l.contains(" ACCEPT from ")).count()
    }
}

/// `n` users `user0` .. `user{n-1}` with one password, as extra LDIF for
/// [`Slapd::start_with`].
pub fn many_users_ldif(n: usize, password: &str) -> String {
    (0..n)
        .map(|i| {
            format!(
                "dn: uid=user{i},ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: user{i}\ncn: User {i}\nsn: {i}\nuserPassword: {password}\n\n"
            )
        })
        .collect()
}
