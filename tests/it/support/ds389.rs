//! A real 389 Directory Server (Debian's `389-ds-base`, FreeIPA's directory), one per test,
//! made by `dscreate`'s own installer and thrown away at drop.
//!
//! `dscreate from-file` starts and stops the new instance through systemd, which a test
//! machine may not run; its Python library (lib389) knows a non-systemd start but offers it
//! only inside its container image. So the installer runs from a few lines of Python with
//! that choice made, the instance is created stopped, and the test runs `ns-slapd` itself in
//! the foreground, as a child that dies with it. Everything but the config directory
//! (`/etc/dirsrv/slapd-NAME`, where lib389 looks instances up) lives in a temporary
//! directory; both go at drop.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use super::{
    free_port, run_checked, run_with_input, try_run_with_input, Daemon, DaemonBuilder, Listening,
    Process, Site,
};

pub const DS_BASE_DN: &str = "dc=example,dc=test";
pub const DS_SERVICE_DN: &str = "cn=k8s-webhook,ou=services,dc=example,dc=test";
pub const DS_SERVICE_PASSWORD: &str = "service-secret";
const MANAGER_DN: &str = "cn=Directory Manager";
const MANAGER_PASSWORD: &str = "Directory_Manager_Password";

/// lib389's installer with systemd turned off (its `containerised` path, without the
/// container's fixed paths).
const INSTALL: &str = "import logging, sys
import lib389
from lib389.instance.setup import SetupDs
lib389.DirSrv.with_systemd = lambda self: False
logging.basicConfig(level=logging.WARNING)
ok = SetupDs(False, False, logging.getLogger('dscreate')).create_from_inf(sys.argv[1])
sys.exit(0 if ok else 1)
";

/// Installs tried before a test gives up.
const INSTALL_ATTEMPTS: usize = 3;

/// Once the accounts are there: a password an administrator sets must be changed.
const MUST_CHANGE: &str = "dn: cn=config
changetype: modify
replace: passwordMustChange
passwordMustChange: on
";

/// The people, the service account and what it may read (389-ds shows operational
/// attributes such as `nsAccountLock` only to whom an ACI names them), and users' right
/// to change their own password.
const DIRECTORY: &str = "dn: dc=example,dc=test
changetype: modify
add: aci
aci: (targetattr=\"*|| entryUUID || nsAccountLock || accountUnlockTime || passwordExpirationTime || pwdUpdateTime || pwdReset\")(version 3.0; acl \"the webhook reads accounts\"; allow (read, search, compare) userdn=\"ldap:///cn=k8s-webhook,ou=services,dc=example,dc=test\";)
aci: (targetattr=\"userPassword\")(version 3.0; acl \"users change their password\"; allow (write) userdn=\"ldap:///self\";)

dn: ou=people,dc=example,dc=test
changetype: add
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=example,dc=test
changetype: add
objectClass: organizationalUnit
ou: groups

dn: ou=services,dc=example,dc=test
changetype: add
objectClass: organizationalUnit
ou: services

dn: cn=k8s-webhook,ou=services,dc=example,dc=test
changetype: add
objectClass: applicationProcess
objectClass: simpleSecurityObject
cn: k8s-webhook
userPassword: service-secret

dn: uid=alice,ou=people,dc=example,dc=test
changetype: add
objectClass: inetOrgPerson
objectClass: posixAccount
uid: alice
cn: Alice Liddell
sn: Liddell
uidNumber: 1001
gidNumber: 1001
homeDirectory: /home/alice
mail: alice@example.test
userPassword: alice-password

dn: cn=developers,ou=groups,dc=example,dc=test
changetype: add
objectClass: groupOfNames
cn: developers
member: uid=alice,ou=people,dc=example,dc=test
";

/// The global password policy: three failures lock, passwords expire (so every change
/// moves `passwordExpirationTime`) and their changes are dated (`pwdUpdateTime`).
const POLICY: &str = "dn: cn=config
changetype: modify
replace: passwordLockout
passwordLockout: on
-
replace: passwordMaxFailure
passwordMaxFailure: 3
-
replace: passwordExp
passwordExp: on
-
replace: passwordMaxAge
passwordMaxAge: 8640000
-
replace: passwordWarning
passwordWarning: 86400
-
replace: passwordTrackUpdateTime
passwordTrackUpdateTime: on
";

pub struct Ds389 {
    pub dir: tempfile::TempDir,
    pub name: String,
    pub port: u16,
    child: Option<Process>,
}

impl Ds389 {
    /// A fresh instance with alice (password `alice-password`, in `developers`), the
    /// service account and the password policy above.
    pub fn start() -> Ds389 {
        let mut failures = Vec::new();
        for _ in 0..INSTALL_ATTEMPTS {
            match Ds389::install() {
                Ok(mut ds) => {
                    ds.spawn();
                    // The policy first: 389-ds dates a password's expiry when it is set,
                    // or else at the first bind, which would look like a password change
                    // to a token.
                    ds.modify(POLICY);
                    ds.modify(DIRECTORY);
                    ds.modify(MUST_CHANGE);
                    return ds;
                }
                Err(e) => failures.push(e),
            }
        }
        panic!(
            "dscreate (apt-get install 389-ds-base) failed {INSTALL_ATTEMPTS} times:\n{}",
            failures.join("\n")
        );
    }

    /// A new instance, created stopped, under a name of its own. lib389's installer starts
    /// it once and opens it over LDAPI as soon as its pid file is there, which on a busy
    /// machine can be before the socket is (SERVER_DOWN): installs run one at a time, and
    /// a failed one is thrown away with the server it left running.
    fn install() -> Result<Ds389, String> {
        static N: AtomicU32 = AtomicU32::new(0);
        static INSTALLS: Mutex<()> = Mutex::new(());
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let name = format!(
            "klw{}n{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let port = free_port();
        let inf = dir.path().join("instance.inf");
        std::fs::write(&inf, instance_inf(&name, port, dir.path())).map_err(|e| e.to_string())?;
        // lib389 writes the installer's pid file there, whatever the instance's run_dir.
        std::fs::create_dir_all("/run/dirsrv").map_err(|e| e.to_string())?;
        let ds = Ds389 {
            dir,
            name,
            port,
            child: None,
        };
        let _one_at_a_time = INSTALLS.lock().unwrap_or_else(|p| p.into_inner());
        let installed = try_run_with_input(
            Command::new("/usr/bin/python3")
                .args(["-c", INSTALL])
                .arg(&inf),
            b"",
        );
        match installed {
            Ok(_) => Ok(ds),
            Err(e) => {
                ds.kill_installers_server();
                Err(e)
            }
        }
    }

    /// The server a failed install started and left running.
    fn kill_installers_server(&self) {
        let pid_file = format!("/run/dirsrv/slapd-{}.pid", self.name);
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
            .filter(|p| *p > 1)
        {
            // SAFETY: a plain signal to a pid the installer wrote for this instance.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        let _ = std::fs::remove_file(pid_file);
    }

    fn config_dir(&self) -> PathBuf {
        PathBuf::from(format!("/etc/dirsrv/slapd-{}", self.name))
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("ns-slapd.log")).unwrap();
        let mut child = Process::spawn(
            Command::new("/usr/sbin/ns-slapd")
                .arg("-D")
                .arg(self.config_dir())
                .arg("-i")
                .arg(self.dir.path().join("ns-slapd.pid"))
                // Stays in the foreground: the test owns the process.
                .args(["-d", "0"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log),
            "ns-slapd (apt-get install 389-ds-base)",
        );
        match child.wait_for_ports(&[self.port]) {
            Listening::Yes => self.child = Some(child),
            _ => panic!("ns-slapd did not start; errors log:\n{}", self.errors()),
        }
    }

    /// The server's own error log.
    pub fn errors(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log/errors")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub fn site() -> Site {
        Site {
            user_base_dn: format!("ou=people,{DS_BASE_DN}"),
            group_base_dn: format!("ou=groups,{DS_BASE_DN}"),
            bind_dn: DS_SERVICE_DN.into(),
            bind_password: DS_SERVICE_PASSWORD.into(),
        }
    }

    /// A daemon against this directory with the `freeipa` preset; plain 389-ds has no
    /// `ipaUniqueID`, so the uid is `entryUUID`, which 389-ds keeps too.
    pub fn daemon(&self) -> DaemonBuilder {
        Daemon::builder()
            .site(&Ds389::site())
            .url(self.url())
            .sections(&Ds389::sections())
    }

    /// The config lines of [`Ds389::daemon`], for builders made elsewhere.
    pub fn sections() -> [(&'static str, &'static str); 2] {
        [
            ("ldap", "directory = \"freeipa\""),
            ("user", "uid_attribute = \"entryUUID\""),
        ]
    }

    fn client(&self, tool: &str, dn: &str, password: &str) -> Command {
        let mut cmd = Command::new(tool);
        cmd.args(["-x", "-H", &self.url(), "-D", dn, "-w", password]);
        cmd
    }

    /// Applies LDIF changes as the Directory Manager.
    pub fn modify(&self, ldif: &str) {
        run_with_input(
            &mut self.client("ldapmodify", MANAGER_DN, MANAGER_PASSWORD),
            ldif.as_bytes(),
            "ldapmodify (apt-get install ldap-utils)",
        );
    }

    /// Applies LDIF changes as `dn` itself.
    pub fn modify_as(&self, dn: &str, password: &str, ldif: &str) {
        run_with_input(
            &mut self.client("ldapmodify", dn, password),
            ldif.as_bytes(),
            "ldapmodify (apt-get install ldap-utils)",
        );
    }

    /// Runs 389-ds' own administration tool (`dsidm`) as the Directory Manager.
    pub fn dsidm(&self, args: &[&str]) -> String {
        run_checked(
            Command::new("dsidm")
                .arg(self.url())
                .args(["-D", MANAGER_DN, "-w", MANAGER_PASSWORD, "-b", DS_BASE_DN])
                .args(args),
            "dsidm (apt-get install 389-ds-base)",
        )
    }

    /// Whether `dn` binds with `password` (straight to the server, not through a daemon).
    pub fn binds(&self, dn: &str, password: &str) -> bool {
        self.client("ldapwhoami", dn, password)
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// An attribute of `dn` as the Directory Manager reads it.
    pub fn attribute(&self, dn: &str, attr: &str) -> Option<String> {
        let text = run_checked(
            self.client("ldapsearch", MANAGER_DN, MANAGER_PASSWORD)
                .args(["-LLL", "-s", "base", "-b", dn, "(objectClass=*)", attr]),
            "ldapsearch (apt-get install ldap-utils)",
        );
        let prefix = format!("{attr}: ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map(str::to_string)
    }
}

impl Drop for Ds389 {
    fn drop(&mut self) {
        self.child = None;
        let _ = std::fs::remove_dir_all(self.config_dir());
    }
}

/// The installer's settings: the instance stopped after creation, every path but the
/// config directory under `dir`, plain LDAP on `port` only.
fn instance_inf(name: &str, port: u16, dir: &std::path::Path) -> String {
    let d = dir.display();
    format!(
        "[general]
config_version = 2
full_machine_name = localhost
selinux = False
systemd = False
start = False
strict_host_checking = False
[slapd]
instance_name = {name}
port = {port}
secure_port = 0
self_sign_cert = False
root_password = {MANAGER_PASSWORD}
user = root
group = root
backup_dir = {d}/bak
cert_dir = {d}/cert
db_dir = {d}/db
db_home_dir = {d}/db
ldif_dir = {d}/ldif
lock_dir = {d}/lock
log_dir = {d}/log
run_dir = {d}/run
tmp_dir = {d}/tmp
ldapi = {d}/run/slapd.socket
initconfig_dir = {d}/initconfig
inst_dir = {d}/inst
[backend-userroot]
suffix = {DS_BASE_DN}
create_suffix_entry = True
sample_entries = no
"
    )
}
