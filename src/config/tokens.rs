//! `[login]` and `[tokens]`: the login endpoint and which tokens reviews accept. The key
//! files are read here, so that a bad key is refused by check-config, at start and at
//! reload, naming the key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::defaults as d;
use super::raw::{RawLogin, RawTokens};
use super::{ConfigError, Ctx, Login, Tokens};
use crate::issued::{self, keys};

pub(super) fn resolve(
    l: RawLogin,
    t: RawTokens,
    has_service_account: bool,
    cx: &mut Ctx,
) -> Result<(Option<Login>, Tokens), ConfigError> {
    let dir = cx.file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let login = resolve_login(l, &dir, cx)?;
    let has_keys = t.signing_key_file.is_some() || !t.verification_key_files.is_empty();
    // The re-check of an issued token reads the account with the service account.
    let needs_service = if login.is_some() {
        Some("login.listen")
    } else if t.signing_key_file.is_some() {
        Some("tokens.signing_key_file")
    } else if has_keys {
        Some("tokens.verification_key_files")
    } else {
        None
    };
    if let (Some(key), false) = (needs_service, has_service_account) {
        return Err(cx.invalid(
            key,
            "issued tokens need a service account (ldap.bind_dn): the account is re-checked \
             with it at every review",
        ));
    }
    if login.is_some() && t.signing_key_file.is_none() {
        return Err(cx.invalid(
            "tokens.signing_key_file",
            "is required with login.listen (create one with `kube-ldap-webhook keygen --out DIR`)",
        ));
    }
    let accept_basic = t.accept_basic.unwrap_or(true);
    if !accept_basic && !has_keys {
        return Err(cx.invalid(
            "tokens.accept_basic",
            "false without tokens.signing_key_file or tokens.verification_key_files would \
             accept no token at all",
        ));
    }
    let not_before = match t.not_before.as_deref() {
        Some(s) => Some(issued::parse_rfc3339(s).map_err(|m| cx.invalid("tokens.not_before", m))?),
        None => None,
    };
    let issuer = name(cx, "tokens.issuer", t.issuer)?;
    let audience = name(cx, "tokens.audience", t.audience)?;
    let signing = match &t.signing_key_file {
        Some(f) => {
            let path = super::password_file::secret_path(f, &dir);
            let key = keys::load_signing_key(&path)
                .map_err(|e| cx.invalid("tokens.signing_key_file", e.to_string()))?;
            Some(key)
        }
        None => None,
    };
    let verifying = t
        .verification_key_files
        .iter()
        .map(|f| keys::load_verifying_key(&relative_to(&dir, f)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cx.invalid("tokens.verification_key_files", e.to_string()))?;
    let ttl = login.as_ref().map_or(d::TOKEN_TTL.default, |l| l.token_ttl);
    let issued = issued::Tokens::new(signing, verifying, issuer, audience, ttl, not_before);
    Ok((
        login,
        Tokens {
            accept_basic,
            not_before,
            issued: Arc::new(issued),
        },
    ))
}

fn resolve_login(l: RawLogin, dir: &Path, cx: &mut Ctx) -> Result<Option<Login>, ConfigError> {
    let token_ttl = cx.duration(&d::TOKEN_TTL, l.token_ttl)?;
    let rate = cx.limit(&d::LOGIN_RATE, l.rate)?;
    let burst = cx.limit(&d::LOGIN_BURST, l.burst)?;
    let max_logins_per_directory = cx.limit(
        &d::LOGIN_MAX_LOGINS_PER_DIRECTORY,
        l.max_logins_per_directory,
    )?;
    let max_in_flight = cx.limit(&d::LOGIN_MAX_IN_FLIGHT, l.max_in_flight)?;
    let listen = match l.listen.as_deref().map(str::trim) {
        None | Some("") if l.keytab_file.is_some() => {
            return Err(cx.invalid(
                "login.keytab_file",
                "Kerberos logins are made at the login endpoint: set login.listen too",
            ))
        }
        None | Some("") => return Ok(None),
        Some(s) => s.parse().map_err(|_| {
            cx.invalid(
                "login.listen",
                format!("`{s}` is not an address like 0.0.0.0:8444"),
            )
        })?,
    };
    let negotiate = super::keytab::resolve(
        l.keytab_file.as_deref(),
        l.replay_cache_file.as_deref(),
        dir,
        cx,
    )?;
    let password_expiry_warning =
        cx.duration(&d::PASSWORD_EXPIRY_WARNING, l.password_expiry_warning)?;
    let password_change_url = l
        .password_change_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| change_url(u).map_err(|m| cx.invalid("login.password_change_url", m)))
        .transpose()?;
    // The ranges fit a u32.
    Ok(Some(Login {
        listen,
        token_ttl,
        rate: u32::try_from(rate).unwrap_or(u32::MAX),
        burst: u32::try_from(burst).unwrap_or(u32::MAX),
        max_logins_per_directory: u32::try_from(max_logins_per_directory).unwrap_or(u32::MAX),
        max_in_flight: usize::try_from(max_in_flight).unwrap_or(usize::MAX),
        negotiate,
        password_expiry_warning,
        password_change_url,
    }))
}

/// `login.password_change_url`: shown to users on their terminal, so an absolute http(s)
/// URL with a host, no credentials and nothing a terminal would act on. The messages never
/// repeat the value, which may hold a password.
fn change_url(raw: &str) -> Result<String, String> {
    const MAX: usize = 1000;
    let url = url::Url::parse(raw).map_err(|e| format!("is not a URL ({e})"))?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none_or(str::is_empty) {
        return Err("must be an https:// (or http://) URL with a host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not hold a user name or password".into());
    }
    if raw.len() > MAX || raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "must be at most {MAX} characters, without spaces or control characters"
        ));
    }
    Ok(raw.to_string())
}

fn name(cx: &Ctx, key: &'static str, value: Option<String>) -> Result<String, ConfigError> {
    let v = value.unwrap_or_else(|| d::TOKEN_ISSUER.to_string());
    if v.trim().is_empty() || v.chars().any(char::is_control) {
        return Err(cx.invalid(key, "must be a non-empty name"));
    }
    Ok(v)
}

pub(super) fn relative_to(dir: &Path, f: &Path) -> PathBuf {
    if f.is_relative() {
        dir.join(f)
    } else {
        f.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::change_url;

    #[test]
    fn a_password_change_url_is_kept_as_written() {
        let url = "https://password.example.org/change?from=kubectl";
        assert_eq!(change_url(url).as_deref(), Ok(url));
    }

    #[test]
    fn a_password_change_url_a_terminal_or_a_user_could_be_fooled_by_is_refused() {
        for bad in [
            "password.example.org",
            "ftp://password.example.org/",
            "javascript:alert(1)",
            "https://user:secret@password.example.org/",
            "ftp://user:secret@password.example.org/",
            "https://user:secret@/",
            "https://password.example.org/\u{1b}[2J",
            "https://password.example.org/a b",
        ] {
            let e = change_url(bad).unwrap_err();
            assert!(!e.contains("secret"), "{bad:?}: {e}");
        }
        let long = format!("https://password.example.org/{}", "a".repeat(1000));
        assert!(change_url(&long).is_err());
    }
}
