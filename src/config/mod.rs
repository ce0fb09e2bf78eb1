//! Configuration: the TOML file, `KUBE_LDAP_WEBHOOK_*` overrides, directory presets and
//! validation. Everything downstream gets a resolved [`Config`] in which every default is
//! already filled in, so no other module needs to know about presets or optional keys.
//!
//! - `raw`: the file as written (every key optional);
//! - `defaults`: every default and every allowed range, one table;
//! - `presets`: what `ldap.directory` fills in;
//! - `server`, `ldap`, `user`, `group`, `cache`, `log`, `tokens` (`[login]` and `[tokens]`):
//!   one resolver per section, each turning
//!   its raw section into the resolved one and refusing what cannot work, naming the key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Deserializer};

use crate::secret::Password;

mod cache;
pub(crate) mod defaults;
mod directories;
mod group;
mod identity;
mod ldap;
mod log;
mod password_file;
mod presets;
mod raw;
mod server;
mod tokens;
mod user;

pub(crate) use directories::directory_key;
pub(crate) use ldap::is_dns_label;
pub use password_file::read_password_file;

/// Where `serve` and `check-config` look without `--config` or `KUBE_LDAP_WEBHOOK_CONFIG`.
pub const DEFAULT_PATH: &str = "/etc/kube-ldap-webhook/config.toml";
/// Environment variables with this prefix override config keys (`KUBE_LDAP_WEBHOOK_LDAP__TIMEOUT`).
pub const ENV_PREFIX: &str = "KUBE_LDAP_WEBHOOK_";

/// Why a configuration was refused; every message names the file, and the key when one is to blame.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not TOML, a wrong type, an unknown key.
    #[error("{file}: {source}")]
    Parse {
        /// The file read.
        file: String,
        /// What figment said.
        #[source]
        source: Box<figment::Error>,
    },
    /// A value that cannot work.
    #[error("{file}: key `{key}`: {message}")]
    Invalid {
        /// The file read.
        file: String,
        /// The key to blame, as written in the file (`cache.capacity`,
        /// `directories.partner.urls`).
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

/// A duration written as `"500ms"`, `"5s"`, `"2m"`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(
    /// The duration.
    pub Duration,
);

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
// The resolved configuration.
// ---------------------------------------------------------------------------------------

/// `ldap.directory`: which defaults fill the filters and attribute names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// OpenLDAP with inetOrgPerson and groupOfNames.
    #[default]
    Openldap,
    /// Active Directory (and Samba AD).
    ActiveDirectory,
    /// FreeIPA / 389-ds.
    Freeipa,
    /// RFC 2307 (NIS schema): `posixAccount` users, `posixGroup` groups listing their
    /// members by name in `memberUid`.
    Rfc2307,
    /// No defaults: every filter and attribute is written out.
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

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// journald when stderr is connected to the journal, text otherwise.
    #[default]
    Auto,
    /// Text lines on stderr.
    Text,
    /// The journal, with structured fields.
    Journald,
}

/// The resolved configuration: every default filled in, every value checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the configuration was read from, for messages.
    pub source: PathBuf,
    /// `[server]`: the listeners.
    pub server: Server,
    /// `[ldap]`: the directory.
    pub ldap: Ldap,
    /// `[identity]`: how directory names become Kubernetes names, and who may log in.
    pub identity: Identity,
    /// `[cache]`: the answer cache and lockout protection.
    pub cache: Cache,
    /// `[log]`.
    pub log: Log,
    /// `[login]`: the login endpoint that issues tokens; `None` when off.
    pub login: Option<Login>,
    /// `[tokens]`: which tokens reviews accept.
    pub tokens: Tokens,
    /// `[directories.NAME]`: the directories besides `[ldap]`, in name order.
    pub directories: Vec<ExtraDirectory>,
    /// Things worth telling the operator that do not stop the daemon. Logged by `serve`
    /// (and on reload) once logging is set up; printed by `check-config`.
    pub warnings: Vec<String>,
}

/// `[server]`.
#[derive(Debug, Clone)]
pub struct Server {
    /// `server.listen`: the TokenReview listener (HTTPS).
    pub listen: SocketAddr,
    /// `server.tls_cert_file`: the server certificate chain (PEM).
    pub tls_cert_file: PathBuf,
    /// `server.tls_key_file`: its private key (PEM).
    pub tls_key_file: PathBuf,
    /// `server.client_ca_file`: the CA of kube-apiserver's client certificate.
    pub client_ca_file: PathBuf,
    /// `server.path`: where TokenReviews are posted, without a trailing `/`.
    pub path: String,
    /// `server.ops_listen`: plain HTTP `/healthz`, `/readyz`, `/metrics`; `None` when off.
    pub ops_listen: Option<SocketAddr>,
    /// From accept to the first complete request: the TLS handshake and the request head.
    pub handshake_timeout: Duration,
    /// Upper bound of one review when kube-apiserver gives no `?timeout=`, and the
    /// limit for reading a request body.
    pub request_timeout: Duration,
    /// Connections with a verified client certificate, in all and from one address.
    pub max_connections: usize,
    /// The same, from one address (IPv6: one /64).
    pub max_connections_per_source: usize,
    /// Connections without a verified client certificate yet, in all and from one address.
    pub max_handshakes: usize,
    /// The same, from one address.
    pub max_handshakes_per_source: usize,
    /// A verified connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
}

/// The name of the directory `[ldap]` describes, in metrics, logs and `/readyz`.
pub const DEFAULT_DIRECTORY: &str = "default";

/// `[directories.NAME]`: a directory besides `[ldap]`, chosen by the domain part of a login.
#[derive(Debug, Clone)]
pub struct ExtraDirectory {
    /// `NAME`.
    pub name: String,
    /// Its `[ldap]`-shaped settings; `ldap.user.domains` holds `directories.NAME.domains`.
    pub ldap: Ldap,
    /// `[identity]` with this directory's `username_prefix` and `group_prefix`.
    pub identity: Identity,
}

/// `[ldap]`.
#[derive(Debug, Clone)]
pub struct Ldap {
    /// `ldap.urls`: the servers, tried in order with failover, before any found in DNS.
    pub urls: Vec<String>,
    /// `ldap.discover` and its settings: servers from DNS SRV records.
    pub discover: Option<Discover>,
    /// `ldap.start_tls`: StartTLS on `ldap://` URLs.
    pub start_tls: bool,
    /// `ldap.ca_file`: the CA of the servers' certificates; the system roots when `None`.
    pub ca_file: Option<PathBuf>,
    /// The service account (`ldap.bind_dn` and its password); `None` with direct bind.
    pub service: Option<ServiceAccount>,
    /// `ldap.connect_timeout`: one connection (TCP, TLS, StartTLS).
    pub connect_timeout: Duration,
    /// `ldap.timeout`: one operation (a search, a bind).
    pub timeout: Duration,
    /// `ldap.directory`: the preset the defaults came from.
    pub directory: Preset,
    /// `ldap.max_connections`: bind connections per server.
    pub max_connections: usize,
    /// `[ldap.user]`.
    pub user: User,
    /// `[ldap.group]`.
    pub group: Group,
}

/// `ldap.discover`: where DNS says the servers are.
#[derive(Debug, Clone)]
pub struct Discover {
    /// `ldap.discover`: the DNS domain, lower case, without a trailing dot.
    pub domain: String,
    /// `ldap.ad_site`: the Active Directory site whose DCs come first.
    pub site: Option<String>,
    /// `ldap.discover_refresh_min`: the shortest time between two lookups.
    pub refresh_min: Duration,
    /// `ldap.discover_refresh_max`: the longest.
    pub refresh_max: Duration,
}

/// The account the daemon searches as. Its `Debug` never shows the password.
#[derive(Clone, Debug)]
pub struct ServiceAccount {
    /// `ldap.bind_dn`.
    pub bind_dn: String,
    /// Read from `ldap.bind_password_file`.
    pub password: Password,
}

/// `[ldap.user]`: finding the user.
#[derive(Debug, Clone)]
pub struct User {
    /// `ldap.user.base_dn`: where users are searched.
    pub base_dn: String,
    /// `ldap.user.filter`, with `{username}` and `{login}` placeholders.
    pub filter: String,
    /// `ldap.user.dn_template`: direct bind to this DN, no search.
    pub dn_template: Option<String>,
    /// `ldap.user.username_attribute`: the Kubernetes username.
    pub username_attribute: String,
    /// `ldap.user.uid_attribute`: the Kubernetes uid.
    pub uid_attribute: String,
    /// `ldap.user.login`: which spellings of a login are reduced to the account name.
    pub login: LoginForms,
    /// With `login = "strip-domain"`: the domain parts accepted in `DOMAIN\name` and
    /// `name@domain` (case-insensitive). Empty: any.
    pub domains: Vec<String>,
    /// `[ldap.user.extra]`: extra key -> attribute.
    pub extra: BTreeMap<String, String>,
}

/// `[ldap.group]`: the user's groups.
#[derive(Debug, Clone)]
pub struct Group {
    /// `ldap.group.base_dn`: where groups are searched (a trust boundary).
    pub base_dn: String,
    /// `ldap.group.filter`, with `{dn}`, `{username}`, `{login}` and `{uid}` placeholders.
    pub filter: String,
    /// `ldap.group.name_attribute`: the Kubernetes group name.
    pub name_attribute: String,
    /// `ldap.group.membership_attribute`: read direct groups from the user entry.
    pub membership_attribute: Option<String>,
    /// `ldap.group.nested`: groups reached through groups too.
    pub nested: bool,
    /// `ldap.group.max_nested_depth`: levels walked above the direct groups.
    pub max_nested_depth: usize,
    /// Active Directory resolves nesting on the server (LDAP_MATCHING_RULE_IN_CHAIN).
    pub server_side_nesting: bool,
    /// `ldap.group.member_uid_attribute`: the attribute of the user entry `{uid}` is read
    /// from; `None` when the filter has no `{uid}`.
    pub member_uid_attribute: Option<String>,
}

/// `[identity]`: how directory names become Kubernetes names, and who may log in.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// `identity.username_prefix`, put before every username.
    pub username_prefix: String,
    /// `identity.group_prefix`, put before every group name.
    pub group_prefix: String,
    /// `identity.lowercase_username`: the directory's spelling of the username lower-cased
    /// (Unicode), before the prefix.
    pub lowercase_username: bool,
    /// `identity.required_groups`: a login needs one of these groups (compared exactly
    /// with the names after `identity.groups`, before the prefix); empty: anyone may.
    pub required_groups: Vec<String>,
    /// `[identity.groups]`.
    pub groups: GroupPolicy,
}

/// `[identity.groups]`: which of the directory's groups Kubernetes sees, and how named.
#[derive(Debug, Clone, Default)]
pub struct GroupPolicy {
    /// `identity.groups.name`.
    pub name: GroupNaming,
    /// `identity.groups.include`: a group is kept only if one of these matches its whole
    /// name; empty: every group.
    pub include: Vec<regex::Regex>,
    /// `identity.groups.exclude`: a group one of these matches (whole name) is dropped.
    pub exclude: Vec<regex::Regex>,
    /// `identity.groups.lowercase`: names lower-cased (Unicode) before the filters.
    pub lowercase: bool,
}

/// `identity.groups.name`: what a group is called in Kubernetes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum GroupNaming {
    /// Its `ldap.group.name_attribute` (cn by default).
    #[default]
    #[serde(rename = "cn")]
    Cn,
    /// Its DN, unique where names repeat across OUs.
    #[serde(rename = "dn")]
    Dn,
    /// `name@domain`, the domain from the DN's `DC=` parts (Pinniped's AD naming).
    #[serde(rename = "cn@domain")]
    CnAtDomain,
}

/// `[cache]`.
#[derive(Debug, Clone)]
pub struct Cache {
    /// `cache.capacity`: answers held at most.
    pub capacity: usize,
    /// `cache.ttl`: how long an accepted answer is served.
    pub ttl: Duration,
    /// `cache.negative_ttl`: how long a rejection is served.
    pub negative_ttl: Duration,
    /// `cache.stale_ttl`: how long an accepted answer may bridge an outage.
    pub stale_ttl: Duration,
    /// `cache.max_failures`: wrong passwords per account per window; 0 turns lockout protection off.
    pub max_failures: u32,
    /// `cache.failure_window`.
    pub failure_window: Duration,
}

/// `[login]`.
#[derive(Debug, Clone)]
pub struct Login {
    /// `login.listen`: the login listener (HTTPS, no client certificate).
    pub listen: SocketAddr,
    /// `login.token_ttl`: lifetime of an issued token.
    pub token_ttl: Duration,
    /// `login.rate`: logins per source address and minute.
    pub rate: u32,
    /// `login.burst`: logins a source may make at once.
    pub burst: u32,
}

/// `[tokens]`.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// `tokens.accept_basic`: basic `username:password` tokens are reviewed.
    pub accept_basic: bool,
    /// `tokens.not_before`: tokens issued earlier are refused.
    pub not_before: Option<std::time::SystemTime>,
    /// The keys (loaded from `signing_key_file` and `verification_key_files`), issuer,
    /// audience and lifetime of issued tokens.
    pub(crate) issued: std::sync::Arc<crate::issued::Tokens>,
}

/// `[log]`.
#[derive(Debug, Clone)]
pub struct Log {
    /// `log.level`: a level or an `EnvFilter` directive.
    pub level: String,
    /// `log.format`.
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
    let raw: raw::RawConfig = Figment::new()
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

fn resolve(raw: raw::RawConfig, path: &Path) -> Result<Config, ConfigError> {
    let mut cx = Ctx {
        file: path,
        warnings: Vec::new(),
        directory: None,
    };
    let server = server::resolve(raw.server, &cx)?;
    let ldap = ldap::resolve(raw.ldap, &mut cx)?;
    let cache = cache::resolve(raw.cache, &cx)?;
    let log = log::resolve(raw.log, &cx)?;
    let identity = identity::resolve(raw.identity, &ldap.group, &cx)?;
    let (login, tokens) = tokens::resolve(raw.login, raw.tokens, ldap.service.is_some(), &mut cx)?;
    let directories = directories::resolve(raw.directories, &ldap, &identity, &mut cx)?;
    Ok(Config {
        source: path.to_path_buf(),
        server,
        ldap,
        identity,
        cache,
        log,
        login,
        tokens,
        directories,
        warnings: cx.warnings,
    })
}

/// What a section resolver needs besides its own section: the file, for messages, the
/// warnings collected so far, and which directory's section is being read.
struct Ctx<'a> {
    file: &'a Path,
    warnings: Vec<String>,
    /// `Some(NAME)` while `[directories.NAME]` is read with the `[ldap]` resolvers: their
    /// `ldap.*` keys are then named `directories.NAME.*`.
    directory: Option<String>,
}

impl Ctx<'_> {
    fn invalid(&self, key: &'static str, message: impl Into<String>) -> ConfigError {
        invalid(self.file, self.key(key), message)
    }

    /// [`Ctx::invalid`] for a key built at run time (`directories.NAME.domains`).
    fn invalid_at(&self, key: String, message: impl Into<String>) -> ConfigError {
        invalid(self.file, key, message)
    }

    /// `key` as the file spells it for the section being read.
    fn key(&self, key: &str) -> String {
        match (&self.directory, key.strip_prefix("ldap.")) {
            (Some(name), Some(rest)) => format!("directories.{name}.{rest}"),
            _ => key.to_string(),
        }
    }

    fn warn(&mut self, message: impl fmt::Display) {
        self.warnings
            .push(format!("{}: {message}", self.file.display()));
    }

    /// The key's value or its default, refused with the allowed range when outside it.
    fn limit<T: defaults::Bound>(
        &self,
        limit: &defaults::Limit<T>,
        value: Option<T>,
    ) -> Result<T, ConfigError> {
        limit.pick(value).map_err(|m| self.invalid(limit.key, m))
    }

    fn duration(
        &self,
        limit: &defaults::Limit<Duration>,
        value: Option<Dur>,
    ) -> Result<Duration, ConfigError> {
        self.limit(limit, value.map(|d| d.0))
    }

    /// A count as the `usize` the code uses. Every count's range fits one.
    fn count(
        &self,
        limit: &defaults::Limit<u64>,
        value: Option<u64>,
    ) -> Result<usize, ConfigError> {
        let n = self.limit(limit, value)?;
        usize::try_from(n).map_err(|_| self.invalid(limit.key, "is too large for this machine"))
    }
}

/// The error for `key`; when an environment variable set the key, the message says so,
/// since the file then shows another value than the one refused.
fn invalid(path: &Path, key: String, message: impl Into<String>) -> ConfigError {
    let mut message = message.into();
    let var = format!("{ENV_PREFIX}{}", key.replace('.', "__").to_uppercase());
    if std::env::var_os(&var).is_some() {
        message.push_str(&format!(" (set by {var})"));
    }
    ConfigError::Invalid {
        file: path.display().to_string(),
        key,
        message,
    }
}

impl Config {
    /// Checks that the files the server needs exist and are readable.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        let p = &self.source;
        let check = |key: String, f: &Path| -> Result<(), ConfigError> {
            std::fs::File::open(f)
                .map(|_| ())
                .map_err(|e| invalid(p, key, format!("cannot read {}: {e}", f.display())))
        };
        check("server.tls_cert_file".into(), &self.server.tls_cert_file)?;
        check("server.tls_key_file".into(), &self.server.tls_key_file)?;
        check("server.client_ca_file".into(), &self.server.client_ca_file)?;
        for (name, ldap, _) in self.each_directory() {
            if let Some(ca) = &ldap.ca_file {
                check(directory_key(name, "ca_file"), ca)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
