//! `[directories.NAME]`: directories besides `[ldap]`, each chosen by the domain part of a
//! login (`PARTNER\bob`, `bob@partner.test`). Each is read with the `[ldap]` resolvers (its
//! keys named `directories.NAME.*` in messages), plus what tells directories apart: the
//! domains that select it and prefixes that keep its names from ever equalling another's.

use std::collections::BTreeMap;

use super::raw::RawLdap;
use super::{
    ldap, Config, ConfigError, Ctx, ExtraDirectory, Identity, Ldap, LoginForms, DEFAULT_DIRECTORY,
};
use crate::login::{fold, Login};

impl Config {
    /// Every directory, `[ldap]` first: its name, settings and identity rules.
    pub(crate) fn each_directory(&self) -> impl Iterator<Item = (&str, &Ldap, &Identity)> {
        std::iter::once((DEFAULT_DIRECTORY, &self.ldap, &self.identity)).chain(
            self.directories
                .iter()
                .map(|d| (d.name.as_str(), &d.ldap, &d.identity)),
        )
    }

    /// The name of directory `index` (0: `[ldap]`, named `default`), as metrics label it.
    pub(crate) fn directory_name(&self, index: usize) -> Option<&str> {
        self.each_directory().nth(index).map(|(name, _, _)| name)
    }

    /// `raw` read as a login of the directory its domain part selects (`OTHER\bob`,
    /// `bob@other.test`); bare names and domains no other directory lists go to `[ldap]`.
    pub(crate) fn login(&self, raw: &str) -> Login {
        if self.directories.is_empty() {
            return Login::parse(raw, self.ldap.user.login);
        }
        Login::route(
            raw,
            self.ldap.user.login,
            self.directories.iter().map(|d| {
                (
                    d.name.as_str(),
                    d.ldap.user.domains.as_slice(),
                    d.ldap.user.login,
                )
            }),
        )
    }

    /// The login of `username` (as a token records it, prefix included) in the directory
    /// named `directory` (empty for `[ldap]`); `None` when no such directory is configured
    /// any more or the name lacks its prefix. `typed`, the name as typed at the login
    /// (empty if the token did not record it), fills the user filter as it did then.
    pub(crate) fn login_of(&self, directory: &str, username: &str, typed: &str) -> Option<Login> {
        let as_typed = |name: &'_ str| {
            if typed.is_empty() {
                name.to_string()
            } else {
                typed.to_string()
            }
        };
        if directory.is_empty() {
            let name = username.strip_prefix(self.identity.username_prefix.as_str())?;
            return Some(Login::in_directory(
                &as_typed(name),
                self.ldap.user.login,
                0,
                None,
            ));
        }
        let (i, d) = self
            .directories
            .iter()
            .enumerate()
            .find(|(_, d)| d.name == directory)?;
        let name = username.strip_prefix(d.identity.username_prefix.as_str())?;
        Some(Login::in_directory(
            &as_typed(name),
            d.ldap.user.login,
            i + 1,
            Some(&d.name),
        ))
    }

    /// The login of a Kerberos `principal` (`name@REALM`, as the ticket names its client):
    /// of the first directory, `[ldap]` first, that lists the realm among its domains
    /// (`ldap.user.domains`, `directories.NAME.domains`; case-insensitive) and has an
    /// `ldap.user.kerberos_filter`. `None` for a realm no directory maps: refused without
    /// asking any.
    pub(crate) fn kerberos_login(&self, principal: &str) -> Option<Login> {
        let (name, realm) = principal.rsplit_once('@')?;
        let realm = fold(realm);
        let (index, (dir, _, _)) = self.each_directory().enumerate().find(|(_, (_, l, _))| {
            l.user.kerberos_filter.is_some() && l.user.domains.iter().any(|d| fold(d) == realm)
        })?;
        let scope = (index > 0).then_some(dir);
        // GSSAPI shows an `@` inside an enterprise name as `\@`.
        Some(Login::kerberos(
            principal,
            &name.replace("\\@", "@"),
            index,
            scope,
        ))
    }

    /// Whether some directory maps a Kerberos realm (lists it in its domains) and has a
    /// `kerberos_filter`: without one, `login.keytab_file` could accept no login.
    pub(super) fn maps_a_realm(&self) -> bool {
        self.each_directory()
            .any(|(_, l, _)| l.user.kerberos_filter.is_some() && !l.user.domains.is_empty())
    }

    /// The settings and identity rules of the directory `login` was routed to.
    pub(crate) fn directory_of(&self, login: &Login) -> (&Ldap, &Identity) {
        match login.directory().checked_sub(1) {
            Some(i) => match self.directories.get(i) {
                Some(d) => (&d.ldap, &d.identity),
                None => (&self.ldap, &self.identity),
            },
            None => (&self.ldap, &self.identity),
        }
    }
}

/// `ldap.KEY` for the default directory, `directories.NAME.KEY` for another.
pub(crate) fn directory_key(name: &str, key: &str) -> String {
    if name == DEFAULT_DIRECTORY {
        format!("ldap.{key}")
    } else {
        format!("directories.{name}.{key}")
    }
}

pub(super) fn resolve(
    raw: BTreeMap<String, RawLdap>,
    default: &Ldap,
    identity: &Identity,
    cx: &mut Ctx,
) -> Result<Vec<ExtraDirectory>, ConfigError> {
    let mut out = Vec::with_capacity(raw.len());
    for (name, mut l) in raw {
        check_name(&name, cx)?;
        let key = |k: &str| format!("directories.{name}.{k}");
        if !l.user.domains.is_empty() {
            return Err(cx.invalid_at(
                key("user.domains"),
                format!(
                    "use {}: it both selects this directory and lists the domain parts it accepts",
                    key("domains")
                ),
            ));
        }
        if l.domains.is_empty() || l.domains.iter().any(|d| d.trim().is_empty()) {
            return Err(cx.invalid_at(
                key("domains"),
                "is required: the NetBIOS names and DNS domains (UPN suffixes) whose logins \
                 go to this directory, like [\"PARTNER\", \"partner.test\"]",
            ));
        }
        // The domain part chose this directory; what is left is the account name, unless
        // the file says the names here are kept whole.
        l.user.login.get_or_insert(LoginForms::StripDomain);
        l.user.domains = std::mem::take(&mut l.domains);
        // `[identity]` holds for every directory, but the prefixes are each directory's.
        let mut own = identity.clone();
        own.username_prefix = l.username_prefix.take().unwrap_or_default();
        own.group_prefix = l.group_prefix.take().unwrap_or_default();
        let identity = own;
        cx.directory = Some(name.clone());
        let resolved = ldap::resolve(l, cx);
        cx.directory = None;
        let ldap = resolved?;
        for (k, prefix) in [
            ("username_prefix", &identity.username_prefix),
            ("group_prefix", &identity.group_prefix),
        ] {
            if crate::reserved::is_reserved(prefix) {
                return Err(cx.invalid_at(
                    key(k),
                    "must not begin with `system:`, a name Kubernetes reserves",
                ));
            }
        }
        out.push(ExtraDirectory {
            name,
            ldap,
            identity,
        });
    }
    if !out.is_empty() {
        check_apart(default, identity, &out, cx)?;
    }
    Ok(out)
}

/// Names appear in metric labels, log fields and `/readyz/NAME`, and come from TOML keys
/// and `KUBE_LDAP_WEBHOOK_DIRECTORIES__NAME__*` variables (which are lower-cased).
fn check_name(name: &str, cx: &Ctx) -> Result<(), ConfigError> {
    let well_formed = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if !well_formed {
        return Err(cx.invalid_at(
            format!("directories.{name}"),
            "a directory name is 1 to 63 lower-case letters, digits, `-` or `_`, starting \
             with a letter or digit",
        ));
    }
    if name == DEFAULT_DIRECTORY {
        return Err(cx.invalid_at(
            format!("directories.{name}"),
            "`default` is the name of the [ldap] directory",
        ));
    }
    Ok(())
}

/// Directories must be told apart by their logins' domains and must never produce the same
/// Kubernetes name: the domains are disjoint, and no prefix begins another (then two names
/// can only be equal if they come from the same directory).
fn check_apart(
    default: &Ldap,
    identity: &Identity,
    others: &[ExtraDirectory],
    cx: &Ctx,
) -> Result<(), ConfigError> {
    if default.user.login == LoginForms::StripDomain && default.user.domains.is_empty() {
        return Err(cx.invalid_at(
            "ldap.user.domains".into(),
            "is required with more than one directory: list the default directory's NetBIOS \
             name and DNS domains, so that a login for a domain no directory serves is \
             refused instead of being looked up here without its domain",
        ));
    }
    let all: Vec<(&str, &Ldap, &Identity)> =
        std::iter::once((DEFAULT_DIRECTORY, default, identity))
            .chain(
                others
                    .iter()
                    .map(|d| (d.name.as_str(), &d.ldap, &d.identity)),
            )
            .collect();
    let mut seen: Vec<(String, &str)> = Vec::new();
    for (name, ldap, _) in &all {
        for d in &ldap.user.domains {
            let folded = fold(d.trim());
            if let Some((_, owner)) = seen.iter().find(|(f, _)| *f == folded) {
                return Err(cx.invalid_at(
                    domains_key(name),
                    format!("`{d}` is also a domain of the `{owner}` directory"),
                ));
            }
            seen.push((folded, name));
        }
    }
    for (what, pick) in [
        (
            "username_prefix",
            (|i: &Identity| &i.username_prefix) as fn(&Identity) -> &String,
        ),
        ("group_prefix", |i: &Identity| &i.group_prefix),
    ] {
        for (j, (name, _, ident)) in all.iter().enumerate() {
            let mine = pick(ident);
            let key = prefix_key(name, what);
            if mine.is_empty() {
                return Err(cx.invalid_at(
                    key,
                    "is required with more than one directory, different for each, so that \
                     names from different directories never collide",
                ));
            }
            for (other, _, theirs) in &all[..j] {
                let theirs = pick(theirs);
                let (a, b) = (fold(mine), fold(theirs));
                if a.starts_with(&b) || b.starts_with(&a) {
                    return Err(cx.invalid_at(
                        key,
                        format!(
                            "`{mine}` and `{theirs}` ({}) begin alike: a name from one \
                             directory could equal a name from the other; no prefix may \
                             begin another",
                            prefix_key(other, what)
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn domains_key(name: &str) -> String {
    if name == DEFAULT_DIRECTORY {
        "ldap.user.domains".into()
    } else {
        directory_key(name, "domains")
    }
}

fn prefix_key(name: &str, what: &str) -> String {
    if name == DEFAULT_DIRECTORY {
        format!("identity.{what}")
    } else {
        directory_key(name, what)
    }
}

#[cfg(test)]
mod tests;
