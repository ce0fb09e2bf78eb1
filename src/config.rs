//! Configuration: the TOML file, `KUBE_LDAP_WEBHOOK_*` overrides, directory presets and
//! validation. Everything downstream gets a resolved [`Config`] in which every default is
//! already filled in, so no other module needs to know about presets or optional keys.
//!
//! - `raw`: the file as written (every key optional);
//! - `defaults`: every default and every allowed range, one table;
//! - `presets`: what `ldap.directory` fills in;
//! - `server`, `ldap`, `user`, `group`, `cache`, `log`, `tokens` (`[login]` and `[tokens]`),
//!   `jwt`: one resolver per section, each turning its raw section into the resolved one
//!   and refusing what cannot work, naming the key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Deserializer};

mod audit;
mod cache;
pub(crate) mod defaults;
mod directories;
mod group;
mod identity;
mod jwt;
mod keytab;
mod ldap;
mod log;
mod password_file;
mod presets;
mod raw;
mod server;
mod tokens;
mod types;
mod user;

pub(crate) use directories::directory_key;
pub(crate) use ldap::is_dns_label;
pub(crate) use password_file::read_password_file;

/// Where `serve` and `check-config` look without `--config` or `KUBE_LDAP_WEBHOOK_CONFIG`.
pub(crate) const DEFAULT_PATH: &str = "/etc/kube-ldap-webhook/config.toml";
/// Environment variables with this prefix override config keys (`KUBE_LDAP_WEBHOOK_LDAP__TIMEOUT`).
pub(crate) const ENV_PREFIX: &str = "KUBE_LDAP_WEBHOOK_";

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
pub(crate) struct Dur(
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

/// A size in bytes, written as a number of bytes or a string like `"100MiB"`, `"512KiB"`,
/// `"1GiB"` (binary units; `K`, `M`, `G` mean the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Size(
    /// The size in bytes.
    pub u64,
);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // An environment override of a number arrives as a number, the file's string as text.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Bytes(u64),
            Text(String),
        }
        match Written::deserialize(d)? {
            Written::Bytes(n) => Ok(Size(n)),
            Written::Text(s) => parse_size(&s).map(Size).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "`{s}` is not a size like \"100MiB\", \"512KiB\" or a number of bytes"
                ))
            }),
        }
    }
}

/// `"100MiB"` in bytes; `None` for anything else, and for an overflow.
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits);
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(1u64 << shift)
}

pub use types::*;

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
    let jwt = jwt::resolve(raw.jwt, login.is_some(), &mut cx)?;
    let directories = directories::resolve(raw.directories, &ldap, &identity, &mut cx)?;
    let audit = audit::resolve(raw.audit, &cx)?;
    let kerberos = login.as_ref().is_some_and(|l| l.negotiate.is_some());
    // Every directory a token can come from must be able to re-check it.
    if login.is_some() || tokens.issued.enabled() {
        if let Some(d) = directories.iter().find(|d| d.ldap.service.is_none()) {
            return Err(cx.invalid_at(
                directory_key(&d.name, "bind_dn"),
                "issued tokens need a service account in every directory: the account is \
                 re-checked with it at every review",
            ));
        }
    }
    let config = Config {
        source: path.to_path_buf(),
        server,
        ldap,
        identity,
        cache,
        log,
        login,
        tokens,
        jwt,
        directories,
        audit,
        warnings: cx.warnings,
    };
    if kerberos && !config.maps_a_realm() {
        return Err(invalid(
            path,
            "login.keytab_file".into(),
            "no directory maps a Kerberos realm: list the realm in ldap.user.domains (or \
             directories.NAME.domains) of a directory with ldap.user.kerberos_filter \
             (directory = \"active-directory\" or \"freeipa\" have one)",
        ));
    }
    Ok(config)
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
        audit::check_file(self)
    }
}

#[cfg(test)]
mod tests;
