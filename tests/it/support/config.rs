//! The daemon's configuration for a test, and [`DaemonBuilder`], the one way to make it: a
//! directory site, its URLs, extra lines per section, the environment, how to run it.

use std::path::{Path, PathBuf};

use super::{free_port, Daemon, Pki, SERVICE_DN, SERVICE_PASSWORD};

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

/// The audit stream of every daemon, in its directory.
pub const AUDIT_FILE: &str = "audit.log";

/// The sections a test may add lines to, in the order of the config file.
const SECTIONS: [&str; 7] = [
    "server", "ldap", "user", "group", "identity", "cache", "audit",
];

/// What a daemon is started with. `Daemon::builder()` (or `Slapd::daemon()`, `Dc::daemon()`
/// for a directory) makes one; [`DaemonBuilder::start`] runs it, [`DaemonBuilder::write_to`]
/// only writes its files, for a daemon that must refuse to start.
#[derive(Clone)]
pub struct DaemonBuilder {
    pub(super) site: Site,
    pub(super) urls: Vec<String>,
    pub(super) sections: Vec<(&'static str, String)>,
    pub(super) service_account: bool,
    pub(super) log_level: String,
    pub(super) env: Vec<(String, String)>,
    pub(super) wrapper: Vec<String>,
    pub(super) run_as: Option<u32>,
}

/// The files [`DaemonBuilder::write_to`] wrote, and the ports the config names.
pub struct ConfigFile {
    pub pki: Pki,
    pub path: PathBuf,
    pub port: u16,
    pub ops_port: u16,
}

impl Default for DaemonBuilder {
    fn default() -> DaemonBuilder {
        DaemonBuilder {
            site: Site::openldap(),
            urls: Vec::new(),
            sections: Vec::new(),
            service_account: true,
            log_level: "debug".into(),
            env: Vec::new(),
            wrapper: Vec::new(),
            run_as: None,
        }
    }
}

impl DaemonBuilder {
    /// One more LDAP URL, after those given before (the daemon fails over in this order).
    pub fn url(mut self, url: impl Into<String>) -> DaemonBuilder {
        self.urls.push(url.into());
        self
    }

    /// Another directory than the OpenLDAP fixture: its base DNs and service account.
    pub fn site(mut self, site: &Site) -> DaemonBuilder {
        self.site = site.clone();
        self
    }

    /// TOML `lines` added to `section`: server, ldap, user (`[ldap.user]`), group
    /// (`[ldap.group]`), identity, cache or audit (whose `file` the harness sets).
    pub fn section(mut self, section: &str, lines: impl Into<String>) -> DaemonBuilder {
        let name = SECTIONS
            .into_iter()
            .find(|s| *s == section)
            .unwrap_or_else(|| panic!("no section {section:?} in the test config: {SECTIONS:?}"));
        self.sections.push((name, lines.into()));
        self
    }

    /// [`DaemonBuilder::section`] for each `(section, lines)`.
    pub fn sections(self, sections: &[(&str, &str)]) -> DaemonBuilder {
        sections
            .iter()
            .fold(self, |b, (section, lines)| b.section(section, *lines))
    }

    /// No service account: the daemon binds as the user directly, or the test names one in
    /// the ldap section itself.
    pub fn without_service_account(mut self) -> DaemonBuilder {
        self.service_account = false;
        self
    }

    /// `log.level` ("debug" unless told).
    pub fn log_level(mut self, level: &str) -> DaemonBuilder {
        self.log_level = level.into();
        self
    }

    /// A variable in the daemon's environment (NOTIFY_SOCKET, WATCHDOG_USEC,
    /// KUBE_LDAP_WEBHOOK_... overrides).
    pub fn env(mut self, key: &str, value: impl Into<String>) -> DaemonBuilder {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs the daemon under another program (`valgrind --tool=callgrind`), which is sent
    /// SIGTERM at the end so that it writes its output.
    pub fn wrapper(mut self, argv: &[&str]) -> DaemonBuilder {
        self.wrapper = argv.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Runs the daemon as `uid` (and the group of the same number) rather than root; its
    /// files are handed to that user.
    pub fn run_as(mut self, uid: u32) -> DaemonBuilder {
        self.run_as = Some(uid);
        self
    }

    /// Starts the daemon in a directory of its own, with certificates of its own, and waits
    /// until both its listeners accept connections.
    pub fn start(self) -> Daemon {
        Daemon::start(self)
    }

    /// Writes the config, the certificates and the bind password file into `dir`.
    pub fn write_to(&self, dir: &Path) -> ConfigFile {
        let pki = Pki::new(dir);
        let (port, ops_port) = (free_port(), free_port());
        let path = dir.join("config.toml");
        std::fs::write(&path, self.toml(&pki, port, ops_port)).unwrap();
        if let Some(uid) = self.run_as {
            for f in std::iter::once(dir.to_path_buf())
                .chain(std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()))
            {
                std::os::unix::fs::chown(f, Some(uid), Some(uid)).unwrap();
            }
        }
        ConfigFile {
            pki,
            path,
            port,
            ops_port,
        }
    }

    fn toml(&self, pki: &Pki, listen: u16, ops: u16) -> String {
        let discovers = self
            .sections
            .iter()
            .any(|(s, l)| *s == "ldap" && l.contains("discover"));
        assert!(
            !self.urls.is_empty() || discovers,
            "a daemon needs an LDAP URL or ldap.discover"
        );
        let lines = |name: &str| {
            self.sections
                .iter()
                .filter(|(s, _)| *s == name)
                .map(|(_, v)| format!("{v}\n"))
                .collect::<String>()
        };
        let urls = self
            .urls
            .iter()
            .map(|u| format!("\"{u}\""))
            .collect::<Vec<_>>()
            .join(", ");
        super::used_secret(&self.site.bind_password);
        let service = if self.service_account {
            let pw = super::secret_file(
                &pki.dir,
                "bind-password",
                &format!("{}\n", self.site.bind_password),
            );
            format!(
                "bind_dn = \"{}\"\nbind_password_file = \"{}\"",
                self.site.bind_dn,
                pw.display()
            )
        } else {
            String::new()
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
{LDAP_TIMEOUTS}
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
level = "{level}"
[audit]
{audit_file}
{audit}
"#,
            audit_file = if super::auditing() {
                format!("file = \"{}\"", pki.dir.join(AUDIT_FILE).display())
            } else {
                String::new()
            },
            audit = lines("audit"),
            cert = pki.server_cert.display(),
            key = pki.server_key.display(),
            client_ca = pki.client_ca.display(),
            server = lines("server"),
            ldap = lines("ldap"),
            user = lines("user"),
            identity = lines("identity"),
            group = lines("group"),
            cache = lines("cache"),
            user_base_dn = self.site.user_base_dn,
            group_base_dn = self.site.group_base_dn,
            level = self.log_level,
        )
    }
}
