//! `[ldap]`: the servers, how to reach them safely, and the service account. The user and
//! group sections have their own resolvers.

use std::net::IpAddr;
use std::path::Path;

use super::defaults as d;
use super::raw::RawLdap;
use super::{group, presets, user, ConfigError, Ctx, Discover, Ldap, Preset, ServiceAccount};

pub(super) fn resolve(l: RawLdap, cx: &mut Ctx) -> Result<Ldap, ConfigError> {
    if cx.directory.is_none() {
        only_in_other_directories(&l, cx)?;
    }
    check_transport(&l, cx)?;
    let discover = discovery(&l, cx)?;
    let service = service_account(&l, cx)?;
    let defaults = presets::preset_defaults(l.directory);
    let user = user::resolve(l.user, defaults.as_ref(), service.is_some(), cx)?;
    let group = group::resolve(l.group, defaults.as_ref(), l.directory, &user.base_dn, cx)?;
    Ok(Ldap {
        connect_timeout: cx.duration(&d::CONNECT_TIMEOUT, l.connect_timeout)?,
        timeout: cx.duration(&d::LDAP_TIMEOUT, l.timeout)?,
        max_connections: cx.count(&d::LDAP_MAX_CONNECTIONS, l.max_connections)?,
        urls: l.urls,
        discover,
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
    if l.urls.is_empty() && l.discover.is_none() {
        return Err(cx.invalid(
            "ldap.urls",
            format!(
                "at least one URL is required (or {} to find the servers in DNS)",
                cx.key("ldap.discover")
            ),
        ));
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
                "{} has ldap:// to {} without ldap.start_tls (ldap.allow_insecure = true): \
                 passwords cross the network in clear text",
                cx.key("ldap.urls"),
                remote_plain.join(", ")
            ));
            Ok(())
        }
    }
}

/// The keys that describe a directory among several; the default directory has its own.
fn only_in_other_directories(l: &RawLdap, cx: &Ctx) -> Result<(), ConfigError> {
    if !l.domains.is_empty() {
        return Err(cx.invalid(
            "ldap.domains",
            "belongs in [directories.NAME]; the domains of the default directory are ldap.user.domains",
        ));
    }
    for (key, set, instead) in [
        (
            "ldap.username_prefix",
            l.username_prefix.is_some(),
            "identity.username_prefix",
        ),
        (
            "ldap.group_prefix",
            l.group_prefix.is_some(),
            "identity.group_prefix",
        ),
    ] {
        if set {
            return Err(cx.invalid(
                key,
                format!("belongs in [directories.NAME]; the default directory's is {instead}"),
            ));
        }
    }
    Ok(())
}

/// `ldap.discover` and the keys that go with it. Servers found in DNS are reached over
/// LDAPS on port 636, or with `ldap.start_tls` over StartTLS on the record's port: never in
/// clear text, since no one can vouch for a host DNS named.
fn discovery(l: &RawLdap, cx: &mut Ctx) -> Result<Option<Discover>, ConfigError> {
    let refresh_min = cx.duration(&d::DISCOVER_REFRESH_MIN, l.discover_refresh_min)?;
    let refresh_max = cx.duration(&d::DISCOVER_REFRESH_MAX, l.discover_refresh_max)?;
    if refresh_max < refresh_min {
        return Err(cx.invalid(
            d::DISCOVER_REFRESH_MAX.key,
            format!(
                "must not be below {} ({})",
                cx.key(d::DISCOVER_REFRESH_MIN.key),
                humantime::format_duration(refresh_min)
            ),
        ));
    }
    let Some(domain) = &l.discover else {
        if l.ad_site.is_some() {
            return Err(cx.invalid(
                "ldap.ad_site",
                format!("needs {} (the AD domain)", cx.key("ldap.discover")),
            ));
        }
        return Ok(None);
    };
    let domain = dns_name(domain).map_err(|m| cx.invalid("ldap.discover", m))?;
    let site = match &l.ad_site {
        None => None,
        Some(_) if l.directory != Preset::ActiveDirectory => {
            return Err(cx.invalid(
                "ldap.ad_site",
                "sites are Active Directory's: it needs directory = \"active-directory\"",
            ))
        }
        Some(s) if is_dns_label(s.trim()) => Some(s.trim().to_string()),
        Some(s) => {
            return Err(cx.invalid(
                "ldap.ad_site",
                format!("`{s}` is not a site name that can appear in DNS (letters, digits, `-`)"),
            ))
        }
    };
    check_discovery_ca(l, cx)?;
    Ok(Some(Discover {
        domain,
        site,
        refresh_min,
        refresh_max,
    }))
}

/// DNS is unauthenticated: whoever answers it names the servers, and a server is then
/// trusted by its certificate alone. With the system's roots any publicly trusted
/// certificate for a name under the domain would do, so discovery needs `ldap.ca_file`
/// (the CA the operator chose) unless the operator accepts the public PKI explicitly.
fn check_discovery_ca(l: &RawLdap, cx: &mut Ctx) -> Result<(), ConfigError> {
    if l.ca_file.is_some() {
        return Ok(());
    }
    if !l.allow_system_roots {
        return Err(cx.invalid(
            "ldap.discover",
            format!(
                "servers found in DNS are trusted by their certificate alone: set {} to the CA \
                 that issues your directory's certificates, or {} = true to accept any \
                 certificate the system's roots vouch for",
                cx.key("ldap.ca_file"),
                cx.key("ldap.allow_system_roots")
            ),
        ));
    }
    cx.warn(format!(
        "{} without {} ({} = true): whoever can answer DNS needs only a publicly trusted \
         certificate for a name under the domain",
        cx.key("ldap.discover"),
        cx.key("ldap.ca_file"),
        cx.key("ldap.allow_system_roots")
    ));
    Ok(())
}

/// A DNS domain as the SRV lookups use it: ASCII (an internationalised name in its `xn--`
/// form), lower case, no trailing dot.
fn dns_name(s: &str) -> Result<String, String> {
    let name = s.trim().trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() || name.len() > 253 || !name.split('.').all(is_dns_label) {
        return Err(format!(
            "`{s}` is not a DNS domain like \"example.test\" (ASCII letters, digits, `-`; an \
             internationalised name in its xn-- form)"
        ));
    }
    Ok(name)
}

/// One label of a host name: letters, digits and inner hyphens, 1 to 63 of them.
pub(crate) fn is_dns_label(l: &str) -> bool {
    (1..=63).contains(&l.len())
        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !l.starts_with('-')
        && !l.ends_with('-')
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
    use super::{dns_name, is_loopback};

    #[test]
    fn discovery_domains_are_ascii_dns_names() {
        assert_eq!(dns_name("Example.Test.").unwrap(), "example.test");
        assert_eq!(
            dns_name("xn--bcher-kva.example").unwrap(),
            "xn--bcher-kva.example"
        );
        for bad in [
            "",
            ".",
            "a..b",
            "-a.test",
            "a_b.test",
            "bücher.example",
            "a b.test",
        ] {
            assert!(dns_name(bad).is_err(), "{bad:?}");
        }
        assert!(dns_name(&format!("{}.test", "a".repeat(64))).is_err());
    }

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
