//! The resolved configuration: every default filled in, every value checked. What the rest
//! of the daemon reads; the file as written is `raw`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::secret::Password;

pub(crate) use crate::login::LoginForms;
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
    /// `[jwt]`: the JWT issuer on the login listener; `None` without the section.
    pub(crate) jwt: Option<std::sync::Arc<crate::jwt::Issuer>>,
    /// `[directories.NAME]`: the directories besides `[ldap]`, in name order.
    pub directories: Vec<ExtraDirectory>,
    /// `[audit]`: the audit event stream.
    pub audit: Audit,
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
pub(crate) const DEFAULT_DIRECTORY: &str = "default";

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
    /// `ldap.user.kerberos_filter`, with `{principal}` (`name@REALM`) and `{username}` (its
    /// name part): finds the account of a Kerberos login. `None`: no Kerberos logins here.
    pub kerberos_filter: Option<String>,
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
    /// `ldap.group.token_groups`: Active Directory's groups from the user's `tokenGroups`
    /// (every security group, nested ones too), resolved to entries under `base_dn`.
    pub token_groups: bool,
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
    /// `login.max_logins_per_directory`: logins of credentials not accepted before that may be at a
    /// directory at once, from all sources together.
    pub max_logins_per_directory: u32,
    /// `login.max_in_flight`: requests in flight on the whole login port.
    pub max_in_flight: usize,
    /// `login.keytab_file`: `Authorization: Negotiate` (Kerberos) is accepted with this
    /// keytab's keys; the credential is acquired when the config is loaded.
    pub(crate) negotiate: Option<std::sync::Arc<crate::negotiate::gss::Keytab>>,
    /// `login.password_expiry_warning`: a login answer tells of a password expiring
    /// within this long; zero: never (grace logins are always told).
    pub password_expiry_warning: Duration,
    /// `login.password_change_url`: where the user is told to change the password.
    pub password_change_url: Option<String>,
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

/// `[audit]`: one JSON line per decision, in a file of its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audit {
    /// `audit.file`: where the events go; `None` (unset or empty) when off.
    pub file: Option<std::path::PathBuf>,
    /// `audit.max_size`: the file is rotated before a line would take it past this.
    pub max_size: u64,
    /// `audit.max_files`: rotated files kept (`FILE.1` the newest), besides `FILE`.
    pub max_files: usize,
    /// `audit.queue`: events waiting for the writer at most; more are dropped and counted.
    pub queue: usize,
    /// `audit.personal_data`: events name the user and the groups.
    pub personal_data: bool,
    /// `audit.cache_hits`: reviews answered from the cache are written too (else counted).
    pub cache_hits: bool,
}

/// `[log]`.
#[derive(Debug, Clone)]
pub struct Log {
    /// `log.level`: a level or an `EnvFilter` directive.
    pub level: String,
    /// `log.format`.
    pub format: LogFormat,
}
