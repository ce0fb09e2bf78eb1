//! The file as written: every key optional, presets not yet applied, nothing checked beyond
//! its type. Unknown keys are refused so that a typo is an error, not a silent default.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::{Dur, GroupNaming, LogFormat, LoginForms, Preset, Size};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    pub ldap: RawLdap,
    #[serde(default)]
    pub identity: RawIdentity,
    #[serde(default)]
    pub cache: RawCache,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub login: RawLogin,
    #[serde(default)]
    pub tokens: RawTokens,
    /// `[jwt]`: the issuer of JWTs for kube-apiserver's JWT authenticator.
    pub jwt: Option<RawJwt>,
    /// `[directories.NAME]`: more directories, each chosen by the domain part of a login.
    #[serde(default)]
    pub directories: BTreeMap<String, RawLdap>,
    /// `[audit]`: the audit event stream.
    #[serde(default)]
    pub audit: RawAudit,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    pub file: Option<PathBuf>,
    pub max_size: Option<Size>,
    pub max_files: Option<u64>,
    pub queue: Option<u64>,
    pub personal_data: Option<bool>,
    pub cache_hits: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub listen: Option<String>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub client_ca_file: Option<PathBuf>,
    pub path: Option<String>,
    pub ops_listen: Option<String>,
    pub handshake_timeout: Option<Dur>,
    pub request_timeout: Option<Dur>,
    pub max_connections: Option<u64>,
    pub max_connections_per_source: Option<u64>,
    pub max_handshakes: Option<u64>,
    pub max_handshakes_per_source: Option<u64>,
    pub idle_timeout: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLdap {
    #[serde(default)]
    pub urls: Vec<String>,
    /// A DNS domain whose SRV records name the servers.
    pub discover: Option<String>,
    pub ad_site: Option<String>,
    pub discover_refresh_min: Option<Dur>,
    pub discover_refresh_max: Option<Dur>,
    #[serde(default)]
    pub start_tls: bool,
    /// Plain `ldap://` to a host other than this one, knowingly.
    #[serde(default)]
    pub allow_insecure: bool,
    pub ca_file: Option<PathBuf>,
    /// Servers from DNS verified against the system's roots (no `ca_file`), knowingly.
    #[serde(default)]
    pub allow_system_roots: bool,
    pub bind_dn: Option<String>,
    pub bind_password_file: Option<PathBuf>,
    pub connect_timeout: Option<Dur>,
    pub timeout: Option<Dur>,
    #[serde(default)]
    pub directory: Preset,
    pub max_connections: Option<u64>,
    #[serde(default)]
    pub user: RawUser,
    #[serde(default)]
    pub group: RawGroup,
    /// Only in `[directories.NAME]`: the domain parts of a login that select it.
    #[serde(default)]
    pub domains: Vec<String>,
    /// Only in `[directories.NAME]` (the default directory's are `identity.*_prefix`).
    pub username_prefix: Option<String>,
    pub group_prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUser {
    pub base_dn: Option<String>,
    pub filter: Option<String>,
    pub dn_template: Option<String>,
    pub kerberos_filter: Option<String>,
    pub username_attribute: Option<String>,
    pub uid_attribute: Option<String>,
    pub login: Option<LoginForms>,
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default)]
    pub extra: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGroup {
    pub base_dn: Option<String>,
    pub filter: Option<String>,
    pub name_attribute: Option<String>,
    pub membership_attribute: Option<String>,
    pub nested: Option<bool>,
    pub max_nested_depth: Option<u64>,
    pub member_uid_attribute: Option<String>,
    pub token_groups: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIdentity {
    #[serde(default)]
    pub username_prefix: String,
    #[serde(default)]
    pub group_prefix: String,
    #[serde(default)]
    pub lowercase_username: bool,
    #[serde(default)]
    pub required_groups: Vec<String>,
    #[serde(default)]
    pub groups: RawGroupPolicy,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGroupPolicy {
    #[serde(default)]
    pub name: GroupNaming,
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub lowercase: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCache {
    pub capacity: Option<u64>,
    pub ttl: Option<Dur>,
    pub negative_ttl: Option<Dur>,
    pub stale_ttl: Option<Dur>,
    pub max_failures: Option<u64>,
    pub failure_window: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub level: Option<String>,
    #[serde(default)]
    pub format: LogFormat,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogin {
    pub listen: Option<String>,
    pub token_ttl: Option<Dur>,
    pub rate: Option<u64>,
    pub burst: Option<u64>,
    pub max_logins_per_directory: Option<u64>,
    pub max_in_flight: Option<u64>,
    pub keytab_file: Option<PathBuf>,
    pub replay_cache_file: Option<PathBuf>,
    pub password_expiry_warning: Option<Dur>,
    pub password_change_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTokens {
    pub signing_key_file: Option<PathBuf>,
    #[serde(default)]
    pub verification_key_files: Vec<PathBuf>,
    pub accept_basic: Option<bool>,
    pub not_before: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJwt {
    pub issuer: Option<String>,
    pub audiences: Option<Vec<String>>,
    pub token_ttl: Option<Dur>,
    pub signing_key_file: Option<PathBuf>,
    #[serde(default)]
    pub verification_key_files: Vec<PathBuf>,
}
