//! `[ldap]`: the servers, how to reach them safely, and the service account. The user and
//! group sections have their own resolvers.

use std::net::IpAddr;
use std::path::Path;

use super::defaults as d;
use super::raw::RawLdap;
use super::{group, presets, user, ConfigError, Ctx, Ldap, Preset, ServiceAccount};

pub(super) fn resolve(l: RawLdap, cx: &mut Ctx) -> Result<Ldap, ConfigError> {
    check_transport(&l, cx)?;
    let service = service_account(&l, cx)?;
    let defaults = presets::preset_defaults(l.directory);
    let user = user::resolve(l.user, defaults.as_ref(), service.is_some(), cx)?;
    let group = group::resolve(l.group, defaults.as_ref(), l.directory, &user.base_dn, cx)?;
    Ok(Ldap {
        connect_timeout: cx.duration(&d::CONNECT_TIMEOUT, l.connect_timeout)?,
        timeout: cx.duration(&d::LDAP_TIMEOUT, l.timeout)?,
        max_connections: cx.count(&d::LDAP_MAX_CONNECTIONS, l.max_connections)?,
        urls: l.urls,
        start_tls: l.start_tls,
        ca_file: l.ca_file,
        service,
        directory: l.directory,
        user,
        group,
    })
}

/// Passwords go to the directory in every bind. Over plain `ldap://` without StartTLS,
/// whoever sits on the path reads them, and can answer the bind with success and any
/// groups: refused unless the server is this machine or the operator says so explicitly.
fn check_transport(l: &RawLdap, cx: &mut Ctx) -> Result<(), ConfigError> {
    if l.urls.is_empty() {
        return Err(cx.invalid("ldap.urls", "at least one URL is required"));
    }
    let mut remote_plain = Vec::new();
    let mut any_plain = false;
    for u in &l.urls {
        let lower = u.to_ascii_lowercase();
        let plain = lower.starts_with("ldap://");
        if !plain && !lower.starts_with("ldaps://") {
            return Err(cx.invalid(
                "ldap.urls",
                format!("`{u}` must start with ldaps:// or ldap://"),
            ));
        }
        let url = url::Url::parse(u)
            .map_err(|_| cx.invalid("ldap.urls", format!("`{u}` is not a valid URL")))?;
        let host = url.host_str().unwrap_or_default();
        if host.is_empty() {
            return Err(cx.invalid("ldap.urls", format!("`{u}` names no host")));
        }
        any_plain |= plain;
        if plain && !is_loopback(host) {
            remote_plain.push(u.as_str());
        }
    }
    if l.start_tls || !any_plain {
        return Ok(());
    }
    if l.directory == Preset::ActiveDirectory {
        return Err(cx.invalid(
            "ldap.start_tls",
            "Active Directory refuses simple binds without TLS: use ldaps:// URLs or set start_tls = true",
        ));
    }
    match remote_plain.first() {
        None => Ok(()),
        Some(u) if !l.allow_insecure => Err(cx.invalid(
            "ldap.urls",
            format!(
                "`{u}` would send passwords in clear text to another host: use ldaps://, \
                 set ldap.start_tls = true, or, on a network you trust, ldap.allow_insecure = true"
            ),
        )),
        Some(_) => {
            cx.warn(format!(
                "ldap.urls has ldap:// to {} without ldap.start_tls (ldap.allow_insecure = true): \
                 passwords cross the network in clear text",
                remote_plain.join(", ")
            ));
            Ok(())
        }
    }
}

/// This machine by address (127.0.0.0/8, ::1, IPv4-mapped 127/8) or by the name
/// `localhost`. Anything else, including names that merely resolve to a loopback address
/// today, counts as another host.
fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => a.is_loopback(),
        Ok(IpAddr::V6(a)) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|m| m.is_loopback()),
        Err(_) => false,
    }
}

fn service_account(l: &RawLdap, cx: &mut Ctx) -> Result<Option<ServiceAccount>, ConfigError> {
    match (&l.bind_dn, &l.bind_password_file) {
        (Some(dn), Some(file)) => {
            if dn.trim().is_empty() {
                return Err(cx.invalid("ldap.bind_dn", "must not be empty"));
            }
            let dir = cx.file.parent().unwrap_or(Path::new("."));
            let (password, warning) = super::read_password_file(file, dir)
                .map_err(|m| cx.invalid("ldap.bind_password_file", m))?;
            cx.warnings.extend(warning);
            Ok(Some(ServiceAccount {
                bind_dn: dn.clone(),
                password,
            }))
        }
        (Some(_), None) => {
            Err(cx.invalid("ldap.bind_password_file", "is required with ldap.bind_dn"))
        }
        (None, Some(_)) => {
            Err(cx.invalid("ldap.bind_dn", "is required with ldap.bind_password_file"))
        }
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn loopback_is_127_slash_8_and_ipv6_one_and_localhost() {
        for h in [
            "127.0.0.1",
            "127.3.2.1",
            "[::1]",
            "localhost",
            "LocalHost",
            "[::ffff:127.0.0.1]",
        ] {
            assert!(is_loopback(h), "{h}");
        }
    }

    #[test]
    fn everything_else_is_another_host() {
        for h in [
            "ldap.example.org",
            "10.0.0.1",
            "128.0.0.1",
            "[::2]",
            "[::ffff:10.0.0.1]",
            "localhost.example.org",
            "127.1",
            "0x7f000001",
            "0.0.0.0",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
