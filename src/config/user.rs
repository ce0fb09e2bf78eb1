//! `[ldap.user]`: how a login name becomes a directory entry.

use super::presets::PresetDefaults;
use super::raw::RawUser;
use super::{ConfigError, Ctx, User};

/// `value`, else the preset's default; an empty or missing value is refused.
pub(super) fn need(
    cx: &Ctx,
    value: Option<String>,
    default: Option<&'static str>,
    key: &'static str,
) -> Result<String, ConfigError> {
    match value.or(default.map(str::to_string)) {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(cx.invalid(
            key,
            "is required (directory = \"custom\" has no default for it)",
        )),
    }
}

pub(super) fn resolve(
    u: RawUser,
    d: Option<&PresetDefaults>,
    has_service_account: bool,
    cx: &Ctx,
) -> Result<User, ConfigError> {
    let base_dn = u
        .base_dn
        .filter(|b| !b.trim().is_empty())
        .ok_or_else(|| cx.invalid("ldap.user.base_dn", "is required"))?;
    let filter = need(cx, u.filter, d.map(|d| d.user_filter), "ldap.user.filter")?;
    if !filter.contains("{username}") && !filter.contains("{login}") {
        return Err(cx.invalid("ldap.user.filter", "must contain {username} or {login}"));
    }
    check_filter_shape(&filter).map_err(|m| cx.invalid("ldap.user.filter", m))?;
    if filter.contains("{uid}") {
        return Err(cx.invalid(
            "ldap.user.filter",
            "{uid} is the found entry's own uid, for ldap.group.filter; search with {username}",
        ));
    }
    let kerberos_filter = u
        .kerberos_filter
        .or(d.and_then(|d| d.kerberos_filter).map(str::to_string))
        .filter(|f| !f.trim().is_empty());
    if let Some(f) = &kerberos_filter {
        if !f.contains("{principal}") && !f.contains("{username}") {
            return Err(cx.invalid(
                "ldap.user.kerberos_filter",
                "must contain {principal} or {username}",
            ));
        }
        check_filter_shape(f).map_err(|m| cx.invalid("ldap.user.kerberos_filter", m))?;
    }
    if let Some(t) = &u.dn_template {
        if !t.contains("{username}") {
            return Err(cx.invalid("ldap.user.dn_template", "must contain {username}"));
        }
    }
    if !has_service_account && u.dn_template.is_none() {
        return Err(cx.invalid(
            "ldap.bind_dn",
            "set ldap.bind_dn (search then bind) or ldap.user.dn_template (direct bind)",
        ));
    }
    for k in u.extra.keys() {
        if k != &k.to_lowercase() || !k.contains('/') || k.starts_with('/') {
            return Err(cx.invalid(
                "ldap.user.extra",
                format!(
                    "key `{k}` must be lowercase and domain-prefixed, like \"example.org/email\""
                ),
            ));
        }
    }
    if u.domains.iter().any(|d| d.trim().is_empty()) {
        return Err(cx.invalid("ldap.user.domains", "must not hold an empty domain"));
    }
    Ok(User {
        base_dn,
        filter,
        dn_template: u.dn_template,
        kerberos_filter,
        username_attribute: need(
            cx,
            u.username_attribute,
            d.map(|d| d.username_attribute),
            "ldap.user.username_attribute",
        )?,
        uid_attribute: need(
            cx,
            u.uid_attribute,
            d.map(|d| d.uid_attribute),
            "ldap.user.uid_attribute",
        )?,
        login: u.login.or(d.map(|d| d.login)).unwrap_or_default(),
        domains: u.domains,
        extra: u.extra,
    })
}

/// Catches the common slip of an unbalanced filter at load time instead of at the first login.
pub(super) fn check_filter_shape(filter: &str) -> Result<(), String> {
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
