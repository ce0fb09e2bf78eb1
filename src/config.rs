//! Configuration: the TOML file, `KUBE_LDAP_WEBHOOK_*` overrides, directory presets and
//! validation. Everything downstream gets a resolved [`Config`] in which every default is
//! already filled in, so no other module needs to know about presets or optional keys.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Deserializer};

use crate::secret::Password;

pub const DEFAULT_PATH: &str = "/etc/kube-ldap-webhook/config.toml";
pub const ENV_PREFIX: &str = "KUBE_LDAP_WEBHOOK_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {source}")]
    Parse {
        file: String,
        #[source]
        source: Box<figment::Error>,
    },
    #[error("{file}: key `{key}`: {message}")]
    Invalid {
        file: String,
        key: &'static str,
        message: String,
    },
}

/// A duration written as `"500ms"`, `"5s"`, `"2m"`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl fmt::Debug for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim()).map(Dur).map_err(|e| {
            serde::de::Error::custom(format!("`{s}` is not a duration like \"5s\": {e}"))
        })
    }
}

// ---------------------------------------------------------------------------------------
// The file as written: optional keys, presets not yet applied.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    ldap: RawLdap,
    #[serde(default)]
    identity: Identity,
    #[serde(default)]
    cache: RawCache,
    #[serde(default)]
    log: RawLog,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    #[serde(default = "default_listen")]
    listen: String,
    #[serde(default = "default_cert")]
    tls_cert_file: PathBuf,
    #[serde(default = "default_key")]
    tls_key_file: PathBuf,
    #[serde(default = "default_client_ca")]
    client_ca_file: PathBuf,
    #[serde(default = "default_path")]
    path: String,
    #[serde(default = "default_ops_listen")]
    ops_listen: String,
    handshake_timeout: Option<Dur>,
    request_timeout: Option<Dur>,
    max_connections: Option<usize>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: default_listen(),
            tls_cert_file: default_cert(),
            tls_key_file: default_key(),
            client_ca_file: default_client_ca(),
            path: default_path(),
            ops_listen: default_ops_listen(),
            handshake_timeout: None,
            request_timeout: None,
            max_connections: None,
        }
    }
}

fn default_listen() -> String {
    "0.0.0.0:8443".into()
}
fn default_cert() -> PathBuf {
    "/etc/kube-ldap-webhook/tls/server.crt".into()
}
fn default_key() -> PathBuf {
    "/etc/kube-ldap-webhook/tls/server.key".into()
}
fn default_client_ca() -> PathBuf {
    "/etc/kube-ldap-webhook/tls/client-ca.crt".into()
}
fn default_path() -> String {
    "/authenticate".into()
}
fn default_ops_listen() -> String {
    "127.0.0.1:9090".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLdap {
    urls: Vec<String>,
    #[serde(default)]
    start_tls: bool,
    ca_file: Option<PathBuf>,
    bind_dn: Option<String>,
    bind_password_file: Option<PathBuf>,
    connect_timeout: Option<Dur>,
    timeout: Option<Dur>,
    #[serde(default)]
    directory: Preset,
    max_connections: Option<usize>,
    #[serde(default)]
    user: RawUser,
    #[serde(default)]
    group: RawGroup,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    base_dn: Option<String>,
    filter: Option<String>,
    dn_template: Option<String>,
    username_attribute: Option<String>,
    uid_attribute: Option<String>,
    login: Option<LoginForms>,
    #[serde(default)]
    domains: Vec<String>,
    #[serde(default)]
    extra: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    base_dn: Option<String>,
    filter: Option<String>,
    name_attribute: Option<String>,
    membership_attribute: Option<String>,
    nested: Option<bool>,
    max_nested_depth: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    #[serde(default = "default_capacity")]
    capacity: usize,
    ttl: Option<Dur>,
    negative_ttl: Option<Dur>,
    stale_ttl: Option<Dur>,
    #[serde(default = "default_max_failures")]
    max_failures: u32,
    failure_window: Option<Dur>,
}

impl Default for RawCache {
    fn default() -> Self {
        RawCache {
            capacity: default_capacity(),
            ttl: None,
            negative_ttl: None,
            stale_ttl: None,
            max_failures: default_max_failures(),
            failure_window: None,
        }
    }
}

fn default_capacity() -> usize {
    10_000
}
fn default_max_failures() -> u32 {
    3
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<String>,
    #[serde(default)]
    format: LogFormat,
}

// ---------------------------------------------------------------------------------------
// The resolved configuration.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    #[default]
    Openldap,
    ActiveDirectory,
    Freeipa,
    Custom,
}

/// Which spellings of a login name are accepted and reduced to the name the filter gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoginForms {
    /// The name is passed to the filter as typed.
    #[default]
    AsTyped,
    /// `DOMAIN\name` and `name@domain` are reduced to `name` (Active Directory).
    StripDomain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// journald when stderr is connected to the journal, text otherwise.
    #[default]
    Auto,
    Text,
    Journald,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the configuration was read from, for messages.
    pub source: PathBuf,
    pub server: Server,
    pub ldap: Ldap,
    pub identity: Identity,
    pub cache: Cache,
    pub log: Log,
    /// Things worth telling the operator that do not stop the daemon. Logged by `serve`
    /// (and on reload) once logging is set up; printed by `check-config`.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub listen: SocketAddr,
    pub tls_cert_file: PathBuf,
    pub tls_key_file: PathBuf,
    pub client_ca_file: PathBuf,
    pub path: String,
    pub ops_listen: Option<SocketAddr>,
    pub handshake_timeout: Duration,
    /// Upper bound of one review when kube-apiserver gives no `?timeout=`, and the
    /// limit for reading a request body.
    pub request_timeout: Duration,
    pub max_connections: usize,
}

#[derive(Debug, Clone)]
pub struct Ldap {
    pub urls: Vec<String>,
    pub start_tls: bool,
    pub ca_file: Option<PathBuf>,
    pub service: Option<ServiceAccount>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub directory: Preset,
    pub max_connections: usize,
    pub user: User,
    pub group: Group,
}

#[derive(Clone)]
pub struct ServiceAccount {
    pub bind_dn: String,
    pub password: Password,
}

impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("bind_dn", &self.bind_dn)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub base_dn: String,
    pub filter: String,
    pub dn_template: Option<String>,
    pub username_attribute: String,
    pub uid_attribute: String,
    pub login: LoginForms,
    /// With `login = "strip-domain"`: the domain parts accepted in `DOMAIN\name` and
    /// `name@domain` (case-insensitive). Empty: any.
    pub domains: Vec<String>,
    pub extra: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub base_dn: String,
    pub filter: String,
    pub name_attribute: String,
    pub membership_attribute: Option<String>,
    pub nested: bool,
    pub max_nested_depth: usize,
    /// Active Directory resolves nesting on the server (LDAP_MATCHING_RULE_IN_CHAIN).
    pub server_side_nesting: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    #[serde(default)]
    pub username_prefix: String,
    #[serde(default)]
    pub group_prefix: String,
}

#[derive(Debug, Clone)]
pub struct Cache {
    pub capacity: usize,
    pub ttl: Duration,
    pub negative_ttl: Duration,
    pub stale_ttl: Duration,
    pub max_failures: u32,
    pub failure_window: Duration,
}

#[derive(Debug, Clone)]
pub struct Log {
    pub level: String,
    pub format: LogFormat,
}

/// The config file path from `--config`, else `KUBE_LDAP_WEBHOOK_CONFIG`, else the default.
pub fn path_from(arg: Option<&Path>) -> PathBuf {
    arg.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("KUBE_LDAP_WEBHOOK_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

/// Loads, resolves and validates the configuration. Reads the bind password file; does not
/// touch the network or the TLS files (see [`Config::check_files`]).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    if !path.is_file() {
        return Err(ConfigError::Parse {
            file: file.clone(),
            source: Box::new(figment::Error::from(format!(
                "cannot read the configuration file {file}"
            ))),
        });
    }
    let raw: RawConfig = Figment::new()
        .merge(Toml::file_exact(path))
        // Every key lives in a section, so an override always has `__` (LDAP__TIMEOUT);
        // variables without one (CONFIG, USERNAME, a script's BIN) are not config keys.
        .merge(
            Env::prefixed(ENV_PREFIX)
                .filter(|k| k.as_str().contains("__"))
                .split("__"),
        )
        .extract()
        .map_err(|e| ConfigError::Parse {
            file: file.clone(),
            source: Box::new(e),
        })?;
    resolve(raw, path)
}

fn invalid(path: &Path, key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        file: path.display().to_string(),
        key,
        message: message.into(),
    }
}

struct PresetDefaults {
    user_filter: &'static str,
    username_attribute: &'static str,
    uid_attribute: &'static str,
    login: LoginForms,
    group_filter: &'static str,
    nested_group_filter: &'static str,
    name_attribute: &'static str,
}

fn preset_defaults(p: Preset) -> Option<PresetDefaults> {
    match p {
        Preset::Openldap => Some(PresetDefaults {
            user_filter: "(&(objectClass=inetOrgPerson)(uid={username}))",
            username_attribute: "uid",
            uid_attribute: "entryUUID",
            login: LoginForms::AsTyped,
            group_filter: "(&(objectClass=groupOfNames)(member={dn}))",
            nested_group_filter: "(&(objectClass=groupOfNames)(member={dn}))",
            name_attribute: "cn",
        }),
        Preset::ActiveDirectory => Some(PresetDefaults {
            // Computers are users in AD too (objectCategory tells them apart). Disabled
            // accounts are found on purpose: their bind fails with a distinct reason
            // (data 533) that the user is told. `alice`, `EXAMPLE\alice` and
            // `alice@example.test` all reach sAMAccountName through {username} (domain
            // stripped); {login} (as typed) also finds a userPrincipalName whose name part
            // is not the sAMAccountName.
            user_filter: "(&(objectCategory=person)(objectClass=user)(|(sAMAccountName={username})(userPrincipalName={login})))",
            username_attribute: "sAMAccountName",
            uid_attribute: "objectGUID",
            login: LoginForms::StripDomain,
            // Security groups only (groupType bit 0x80000000): distribution lists are
            // mail lists that mailbox owners and Exchange self-service can often edit, so
            // they must not grant anything in Kubernetes.
            group_filter: "(&(objectClass=group)(groupType:1.2.840.113556.1.4.803:=2147483648)(member={dn}))",
            nested_group_filter: "(&(objectClass=group)(groupType:1.2.840.113556.1.4.803:=2147483648)(member:1.2.840.113556.1.4.1941:={dn}))",
            name_attribute: "cn",
        }),
        Preset::Freeipa => Some(PresetDefaults {
            user_filter: "(&(objectClass=posixAccount)(uid={username}))",
            username_attribute: "uid",
            uid_attribute: "ipaUniqueID",
            login: LoginForms::AsTyped,
            group_filter: "(&(objectClass=groupOfNames)(member={dn}))",
            nested_group_filter: "(&(objectClass=groupOfNames)(member={dn}))",
            name_attribute: "cn",
        }),
        Preset::Custom => None,
    }
}

fn parse_addr(path: &Path, key: &'static str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse().map_err(|_| {
        invalid(
            path,
            key,
            format!("`{s}` is not an address like 0.0.0.0:8443"),
        )
    })
}

fn resolve(raw: RawConfig, path: &Path) -> Result<Config, ConfigError> {
    let p = path;
    let mut warnings = Vec::new();

    // --- server
    let s = raw.server;
    let listen = parse_addr(p, "server.listen", &s.listen)?;
    let ops_listen = if s.ops_listen.trim().is_empty() {
        None
    } else {
        Some(parse_addr(p, "server.ops_listen", &s.ops_listen)?)
    };
    if !s.path.starts_with('/') {
        return Err(invalid(p, "server.path", "must start with `/`"));
    }
    // "/authenticate/" serves /authenticate; "//" serves "/" (not "", which no request has).
    let path_trimmed = match s.path.trim_end_matches('/') {
        "" => "/".to_string(),
        t => t.to_string(),
    };
    let server = Server {
        listen,
        tls_cert_file: s.tls_cert_file,
        tls_key_file: s.tls_key_file,
        client_ca_file: s.client_ca_file,
        path: path_trimmed,
        ops_listen,
        handshake_timeout: s.handshake_timeout.map_or(Duration::from_secs(10), |d| d.0),
        request_timeout: s.request_timeout.map_or(Duration::from_secs(30), |d| d.0),
        max_connections: s.max_connections.unwrap_or(1024),
    };
    if server.handshake_timeout.is_zero() {
        return Err(invalid(
            p,
            "server.handshake_timeout",
            "must be more than 0s",
        ));
    }
    if server.request_timeout.is_zero() {
        return Err(invalid(p, "server.request_timeout", "must be more than 0s"));
    }
    if server.max_connections == 0 {
        return Err(invalid(p, "server.max_connections", "must be at least 1"));
    }

    // --- ldap
    let l = raw.ldap;
    if l.urls.is_empty() {
        return Err(invalid(p, "ldap.urls", "at least one URL is required"));
    }
    let mut any_plain = false;
    for u in &l.urls {
        let lower = u.to_ascii_lowercase();
        if lower.starts_with("ldap://") {
            any_plain = true;
        } else if !lower.starts_with("ldaps://") {
            return Err(invalid(
                p,
                "ldap.urls",
                format!("`{u}` must start with ldaps:// or ldap://"),
            ));
        }
        if url::Url::parse(u).is_err() {
            return Err(invalid(p, "ldap.urls", format!("`{u}` is not a valid URL")));
        }
    }
    if any_plain && !l.start_tls && l.directory == Preset::ActiveDirectory {
        return Err(invalid(
            p,
            "ldap.start_tls",
            "Active Directory refuses simple binds without TLS: use ldaps:// URLs or set start_tls = true",
        ));
    }
    if any_plain && !l.start_tls {
        warnings.push(format!(
            "{}: ldap.urls has ldap:// without ldap.start_tls: passwords cross the network in clear text",
            p.display()
        ));
    }
    let service = match (&l.bind_dn, &l.bind_password_file) {
        (Some(dn), Some(file)) => {
            if dn.trim().is_empty() {
                return Err(invalid(p, "ldap.bind_dn", "must not be empty"));
            }
            let (password, warning) =
                read_password_file(file, p.parent().unwrap_or(Path::new(".")))
                    .map_err(|m| invalid(p, "ldap.bind_password_file", m))?;
            warnings.extend(warning);
            Some(ServiceAccount {
                bind_dn: dn.clone(),
                password,
            })
        }
        (Some(_), None) => {
            return Err(invalid(
                p,
                "ldap.bind_password_file",
                "is required with ldap.bind_dn",
            ))
        }
        (None, Some(_)) => {
            return Err(invalid(
                p,
                "ldap.bind_dn",
                "is required with ldap.bind_password_file",
            ))
        }
        (None, None) => None,
    };

    let defaults = preset_defaults(l.directory);
    let need = |v: Option<String>,
                d: Option<&'static str>,
                key: &'static str|
     -> Result<String, ConfigError> {
        match v.or(d.map(str::to_string)) {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(invalid(
                p,
                key,
                "is required (directory = \"custom\" has no default for it)",
            )),
        }
    };
    let d = defaults.as_ref();
    let u = l.user;
    let base_dn = u
        .base_dn
        .filter(|b| !b.trim().is_empty())
        .ok_or_else(|| invalid(p, "ldap.user.base_dn", "is required"))?;
    let filter = need(u.filter, d.map(|d| d.user_filter), "ldap.user.filter")?;
    if !filter.contains("{username}") && !filter.contains("{login}") {
        return Err(invalid(
            p,
            "ldap.user.filter",
            "must contain {username} or {login}",
        ));
    }
    check_filter_shape(&filter).map_err(|m| invalid(p, "ldap.user.filter", m))?;
    if let Some(t) = &u.dn_template {
        if !t.contains("{username}") {
            return Err(invalid(
                p,
                "ldap.user.dn_template",
                "must contain {username}",
            ));
        }
    }
    if service.is_none() && u.dn_template.is_none() {
        return Err(invalid(
            p,
            "ldap.bind_dn",
            "set ldap.bind_dn (search then bind) or ldap.user.dn_template (direct bind)",
        ));
    }
    for k in u.extra.keys() {
        if k != &k.to_lowercase() || !k.contains('/') || k.starts_with('/') {
            return Err(invalid(
                p,
                "ldap.user.extra",
                format!(
                    "key `{k}` must be lowercase and domain-prefixed, like \"example.org/email\""
                ),
            ));
        }
    }
    if u.domains.iter().any(|d| d.trim().is_empty()) {
        return Err(invalid(
            p,
            "ldap.user.domains",
            "must not hold an empty domain",
        ));
    }
    let user = User {
        base_dn: base_dn.clone(),
        filter,
        dn_template: u.dn_template,
        username_attribute: need(
            u.username_attribute,
            d.map(|d| d.username_attribute),
            "ldap.user.username_attribute",
        )?,
        uid_attribute: need(
            u.uid_attribute,
            d.map(|d| d.uid_attribute),
            "ldap.user.uid_attribute",
        )?,
        login: u.login.or(d.map(|d| d.login)).unwrap_or_default(),
        domains: u.domains,
        extra: u.extra,
    };

    let g = l.group;
    let nested = g.nested.unwrap_or(false);
    let membership_attribute = g.membership_attribute.filter(|m| !m.trim().is_empty());
    // With a membership attribute the direct groups come from the user entry, and the walk
    // above them needs the plain member filter: the in-chain rule would skip it.
    let server_side_nesting = nested
        && l.directory == Preset::ActiveDirectory
        && g.filter.is_none()
        && membership_attribute.is_none();
    let group_default = d.map(|d| {
        if server_side_nesting {
            d.nested_group_filter
        } else {
            d.group_filter
        }
    });
    let group_filter = match membership_attribute {
        // The filter is still used for nested walks above the directly listed groups.
        Some(_) => g
            .filter
            .or(group_default.map(str::to_string))
            .unwrap_or_default(),
        None => need(g.filter, group_default, "ldap.group.filter")?,
    };
    if !group_filter.is_empty() {
        if !group_filter.contains("{dn}") && !group_filter.contains("{username}") {
            return Err(invalid(
                p,
                "ldap.group.filter",
                "must contain {dn} or {username}",
            ));
        }
        check_filter_shape(&group_filter).map_err(|m| invalid(p, "ldap.group.filter", m))?;
    }
    let group = Group {
        base_dn: g
            .base_dn
            .filter(|b| !b.trim().is_empty())
            .unwrap_or(base_dn),
        filter: group_filter,
        name_attribute: need(
            g.name_attribute,
            d.map(|d| d.name_attribute),
            "ldap.group.name_attribute",
        )?,
        membership_attribute,
        nested,
        max_nested_depth: g.max_nested_depth.unwrap_or(10),
        server_side_nesting,
    };

    let ldap = Ldap {
        urls: l.urls,
        start_tls: l.start_tls,
        ca_file: l.ca_file,
        service,
        connect_timeout: l.connect_timeout.map_or(Duration::from_secs(3), |d| d.0),
        timeout: l.timeout.map_or(Duration::from_secs(5), |d| d.0),
        directory: l.directory,
        max_connections: l.max_connections.unwrap_or(16),
        user,
        group,
    };
    if ldap.timeout.is_zero() {
        return Err(invalid(p, "ldap.timeout", "must be more than 0s"));
    }
    if ldap.connect_timeout.is_zero() {
        return Err(invalid(p, "ldap.connect_timeout", "must be more than 0s"));
    }
    if ldap.max_connections == 0 {
        return Err(invalid(p, "ldap.max_connections", "must be at least 1"));
    }

    // --- cache
    let c = raw.cache;
    if c.capacity == 0 {
        return Err(invalid(p, "cache.capacity", "must be at least 1"));
    }
    let cache = Cache {
        capacity: c.capacity,
        ttl: c.ttl.map_or(Duration::from_secs(120), |d| d.0),
        negative_ttl: c.negative_ttl.map_or(Duration::from_secs(10), |d| d.0),
        stale_ttl: c.stale_ttl.map_or(Duration::from_secs(3600), |d| d.0),
        max_failures: c.max_failures,
        failure_window: c.failure_window.map_or(Duration::from_secs(300), |d| d.0),
    };
    if cache.max_failures > 0 && cache.failure_window.is_zero() {
        return Err(invalid(p, "cache.failure_window", "must be more than 0s"));
    }

    let log = Log {
        level: raw.log.level.unwrap_or_else(|| "info".into()),
        format: raw.log.format,
    };
    if tracing_subscriber::EnvFilter::try_new(&log.level).is_err() {
        return Err(invalid(
            p,
            "log.level",
            format!("`{}` is not a log level or filter", log.level),
        ));
    }

    Ok(Config {
        source: p.to_path_buf(),
        server,
        ldap,
        identity: raw.identity,
        cache,
        log,
        warnings,
    })
}

/// Catches the common slip of an unbalanced filter at load time instead of at the first login.
fn check_filter_shape(filter: &str) -> Result<(), String> {
    let mut depth: i64 = 0;
    for c in filter.chars() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("has an unbalanced `)`".into());
                }
            }
            _ => {}
        }
    }
    if depth != 0 || !filter.starts_with('(') {
        return Err("must be a parenthesised LDAP filter with balanced parentheses".into());
    }
    Ok(())
}

/// Reads a secret file. A relative path is looked up in systemd's `$CREDENTIALS_DIRECTORY`
/// (`LoadCredential=`) when there is one, else next to the config file, so the same config
/// works under the hardened unit and when run by hand. One trailing newline is dropped; the
/// content is never echoed. Also returns a warning when others may read the file.
pub fn read_password_file(
    file: &Path,
    config_dir: &Path,
) -> Result<(Password, Option<String>), String> {
    let resolved = if file.is_relative() {
        match std::env::var_os("CREDENTIALS_DIRECTORY") {
            Some(dir) => Path::new(&dir).join(file),
            None => config_dir.join(file),
        }
    } else {
        file.to_path_buf()
    };
    let bytes = zeroize::Zeroizing::new(
        std::fs::read(&resolved).map_err(|e| format!("cannot read {}: {e}", resolved.display()))?,
    );
    let mut warning = None;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(&resolved) {
            if meta.permissions().mode() & 0o044 != 0 {
                warning = Some(format!(
                    "{}: the bind password file is readable by group or others; chmod 600 it",
                    resolved.display()
                ));
            }
        }
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| format!("{} is not UTF-8 text", resolved.display()))?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text.is_empty() {
        return Err(format!("{} is empty", resolved.display()));
    }
    Ok((Password::new(text.to_string()), warning))
}

impl Config {
    /// Checks that the files the server needs exist and are readable.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        let p = &self.source;
        let check = |key: &'static str, f: &Path| -> Result<(), ConfigError> {
            std::fs::File::open(f)
                .map(|_| ())
                .map_err(|e| invalid(p, key, format!("cannot read {}: {e}", f.display())))
        };
        check("server.tls_cert_file", &self.server.tls_cert_file)?;
        check("server.tls_key_file", &self.server.tls_key_file)?;
        check("server.client_ca_file", &self.server.client_ca_file)?;
        if let Some(ca) = &self.ldap.ca_file {
            check("ldap.ca_file", ca)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, body: &str) -> PathBuf {
        let f = dir.join("config.toml");
        std::fs::write(&f, body).unwrap();
        f
    }

    const MINIMAL: &str = r#"
[ldap]
urls = ["ldaps://ldap.example.org"]
bind_dn = "cn=svc,dc=example,dc=org"
bind_password_file = "PW"
[ldap.user]
base_dn = "ou=people,dc=example,dc=org"
"#;

    fn minimal(dir: &Path) -> String {
        let pw = dir.join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        MINIMAL.replace("PW", pw.to_str().unwrap())
    }

    #[test]
    fn openldap_preset_fills_every_default() {
        let d = tempfile::tempdir().unwrap();
        let c = load(&write(d.path(), &minimal(d.path()))).unwrap();
        assert_eq!(c.ldap.user.username_attribute, "uid");
        assert_eq!(c.ldap.user.uid_attribute, "entryUUID");
        assert_eq!(c.ldap.group.base_dn, "ou=people,dc=example,dc=org");
        assert_eq!(c.cache.ttl, Duration::from_secs(120));
        assert_eq!(c.server.path, "/authenticate");
        assert_eq!(c.ldap.service.unwrap().password.expose(), "s3cret");
    }

    #[test]
    fn server_path_of_only_slashes_is_the_root() {
        let d = tempfile::tempdir().unwrap();
        for path in ["/", "//", "///"] {
            let body = format!("[server]\npath = \"{path}\"\n{}", minimal(d.path()));
            let c = load(&write(d.path(), &body)).unwrap();
            assert_eq!(c.server.path, "/", "{path}");
        }
    }

    #[test]
    fn unknown_key_is_named_with_the_file() {
        let d = tempfile::tempdir().unwrap();
        let f = write(
            d.path(),
            &format!("{}\ntimeoutt = \"3s\"\n", minimal(d.path())),
        );
        let e = load(&f).unwrap_err().to_string();
        assert!(e.contains("timeoutt"), "{e}");
        assert!(e.contains("config.toml"), "{e}");
    }

    #[test]
    fn bad_duration_names_the_key() {
        let d = tempfile::tempdir().unwrap();
        let body = minimal(d.path()).replace("[ldap.user]", "timeout = \"soon\"\n[ldap.user]");
        let e = load(&write(d.path(), &body)).unwrap_err().to_string();
        assert!(e.contains("ldap.timeout"), "{e}");
    }

    #[test]
    fn active_directory_over_plain_ldap_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let body = minimal(d.path())
            .replace("ldaps://ldap.example.org", "ldap://dc.example.org")
            .replace(
                "[ldap.user]",
                "directory = \"active-directory\"\n[ldap.user]",
            );
        let e = load(&write(d.path(), &body)).unwrap_err().to_string();
        assert!(e.contains("ldap.start_tls"), "{e}");
    }

    #[test]
    fn active_directory_preset_fills_the_ad_defaults() {
        let d = tempfile::tempdir().unwrap();
        let ad = minimal(d.path()).replace(
            "[ldap.user]",
            "directory = \"active-directory\"\n[ldap.user]",
        );
        let c = load(&write(d.path(), &ad)).unwrap();
        assert!(
            c.ldap.user.filter.contains("(sAMAccountName={username})"),
            "{}",
            c.ldap.user.filter
        );
        assert!(
            c.ldap.user.filter.contains("(userPrincipalName={login})"),
            "{}",
            c.ldap.user.filter
        );
        assert_eq!(c.ldap.user.username_attribute, "sAMAccountName");
        assert_eq!(c.ldap.user.uid_attribute, "objectGUID");
        assert_eq!(c.ldap.user.login, LoginForms::StripDomain);
        assert!(!c.ldap.group.server_side_nesting);

        let nested = format!("{ad}[ldap.group]\nnested = true\n");
        let c = load(&write(d.path(), &nested)).unwrap();
        assert!(c.ldap.group.server_side_nesting);
        assert!(
            c.ldap.group.filter.contains(":1.2.840.113556.1.4.1941:="),
            "{}",
            c.ldap.group.filter
        );

        // memberOf lists only direct groups: nesting is then walked with the plain filter.
        let member_of = format!("{nested}membership_attribute = \"memberOf\"\n");
        let c = load(&write(d.path(), &member_of)).unwrap();
        assert!(!c.ldap.group.server_side_nesting);
        assert_eq!(
            c.ldap.group.filter,
            "(&(objectClass=group)(groupType:1.2.840.113556.1.4.803:=2147483648)(member={dn}))",
            "security groups only"
        );
    }

    #[test]
    fn custom_preset_requires_the_filter() {
        let d = tempfile::tempdir().unwrap();
        let body = minimal(d.path()).replace("[ldap.user]", "directory = \"custom\"\n[ldap.user]");
        let e = load(&write(d.path(), &body)).unwrap_err().to_string();
        assert!(e.contains("ldap.user.filter"), "{e}");
    }

    #[test]
    fn extra_keys_must_be_domain_prefixed() {
        let d = tempfile::tempdir().unwrap();
        let body = format!(
            "{}\n[ldap.user.extra]\nEmail = \"mail\"\n",
            minimal(d.path())
        );
        let e = load(&write(d.path(), &body)).unwrap_err().to_string();
        assert!(e.contains("ldap.user.extra"), "{e}");
    }

    #[test]
    fn unbalanced_filter_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let body = minimal(d.path()).replace(
            "base_dn = \"ou=people",
            "filter = \"(&(uid={username})\"\nbase_dn = \"ou=people",
        );
        let e = load(&write(d.path(), &body)).unwrap_err().to_string();
        assert!(e.contains("ldap.user.filter"), "{e}");
    }

    #[test]
    fn missing_file_is_reported_with_its_name() {
        let e = load(Path::new("/nonexistent/kube-ldap-webhook.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/kube-ldap-webhook.toml"), "{e}");
    }
}

#[cfg(test)]
mod example_config {
    use super::*;

    const EXAMPLE: &str = include_str!("../etc/kube-ldap-webhook/config.toml");

    #[test]
    fn example_config_parses_with_every_key_known() {
        let raw: RawConfig = Figment::new()
            .merge(Toml::string(EXAMPLE))
            .extract()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(raw.ldap.urls.len(), 2);
    }

    #[test]
    fn example_config_documents_every_key() {
        // Every key the code knows appears in the example, set or commented out.
        let keys = [
            "listen",
            "tls_cert_file",
            "tls_key_file",
            "client_ca_file",
            "path",
            "ops_listen",
            "handshake_timeout",
            "request_timeout",
            "max_connections",
            "urls",
            "start_tls",
            "ca_file",
            "bind_dn",
            "bind_password_file",
            "connect_timeout",
            "timeout",
            "directory",
            "base_dn",
            "filter",
            "dn_template",
            "username_attribute",
            "uid_attribute",
            "login",
            "name_attribute",
            "membership_attribute",
            "nested",
            "max_nested_depth",
            "username_prefix",
            "group_prefix",
            "capacity",
            "ttl",
            "negative_ttl",
            "stale_ttl",
            "max_failures",
            "failure_window",
            "level",
            "format",
        ];
        for k in keys {
            let set = format!("\n{k} = ");
            let commented = format!("\n# {k} = ");
            assert!(
                EXAMPLE.contains(&set) || EXAMPLE.contains(&commented),
                "{k} is not documented"
            );
        }
    }

    #[test]
    fn relative_password_file_is_read_next_to_the_config() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("bind-password"), "pw\n").unwrap();
        if std::env::var_os("CREDENTIALS_DIRECTORY").is_none() {
            std::fs::set_permissions(
                d.path().join("bind-password"),
                std::os::unix::fs::PermissionsExt::from_mode(0o644),
            )
            .unwrap();
            let (p, warning) = read_password_file(Path::new("bind-password"), d.path()).unwrap();
            assert_eq!(p.expose(), "pw");
            assert!(
                warning.unwrap().contains("chmod 600"),
                "a readable secret is warned about"
            );
        }
    }
}
