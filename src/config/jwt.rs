//! `[jwt]`: the issuer of JWTs for kube-apiserver's JWT authenticator. The keys are read
//! here, so that a bad key is refused by check-config, at start and at reload (all or
//! nothing with the rest of the file), naming the key.

use std::path::Path;
use std::sync::Arc;

use super::defaults as d;
use super::raw::RawJwt;
use super::tokens::relative_to;
use super::{ConfigError, Ctx};
use crate::jwt::{keys, Issuer};

pub(super) fn resolve(
    raw: Option<RawJwt>,
    has_login: bool,
    cx: &mut Ctx,
) -> Result<Option<Arc<Issuer>>, ConfigError> {
    // Like login.listen: without an issuer the section only holds settings, and the
    // issuer is off (the example config ships it so).
    let Some(j) = raw else {
        return Ok(None);
    };
    let url = match j.issuer.as_deref().map(str::trim) {
        None | Some("") => {
            if j.signing_key_file.is_some() || j.audiences.is_some() {
                cx.warn("[jwt] without jwt.issuer: the JWT issuer is off");
            }
            return Ok(None);
        }
        Some(u) => u,
    };
    let path = issuer_path(url).map_err(|m| cx.invalid("jwt.issuer", m))?;
    if !has_login {
        return Err(cx.invalid(
            "jwt.issuer",
            "the issuer is served on the login listener: set login.listen",
        ));
    }
    let audiences = audiences(j.audiences).map_err(|m| cx.invalid("jwt.audiences", m))?;
    let ttl = cx.duration(&d::JWT_TOKEN_TTL, j.token_ttl)?;
    let dir = cx.file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let Some(signing) = j.signing_key_file else {
        return Err(cx.invalid(
            "jwt.signing_key_file",
            "is required in [jwt] (create one with `kube-ldap-webhook keygen --algorithm \
             es256 --out DIR`)",
        ));
    };
    let path_of_key = super::password_file::secret_path(&signing, &dir);
    let signing = keys::load_signing_key(&path_of_key)
        .map_err(|e| cx.invalid("jwt.signing_key_file", e.to_string()))?;
    let verifying = j
        .verification_key_files
        .iter()
        .map(|f| keys::load_verifying_key(&relative_to(&dir, f)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cx.invalid("jwt.verification_key_files", e.to_string()))?;
    Ok(Some(Arc::new(Issuer::new(
        url.to_string(),
        path,
        audiences,
        ttl,
        signing,
        verifying,
    ))))
}

/// The path the issuer's documents are served under, from an https URL with a host and
/// nothing kube-apiserver would refuse or a client could misread (credentials, a query,
/// a fragment).
fn issuer_path(s: &str) -> Result<String, String> {
    let url = url::Url::parse(s).map_err(|e| format!("`{s}` is not a URL: {e}"))?;
    if url.scheme() != "https" {
        return Err(format!(
            "`{s}` must be an https URL: kube-apiserver fetches the issuer's keys over TLS only"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{s}` has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("`{s}` must not carry credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{s}` must have no query or fragment"));
    }
    Ok(url.path().trim_end_matches('/').to_string())
}

fn audiences(raw: Option<Vec<String>>) -> Result<Vec<String>, String> {
    let list = raw.unwrap_or_default();
    if list.is_empty() {
        return Err(
            "must name at least one audience (kube-apiserver's jwt.issuer.audiences)".into(),
        );
    }
    let mut seen: Vec<String> = Vec::with_capacity(list.len());
    for a in list {
        let a = a.trim().to_string();
        if a.is_empty() || a.chars().any(char::is_control) {
            return Err("every audience must be a non-empty name".into());
        }
        if seen.contains(&a) {
            return Err(format!("`{a}` is listed twice"));
        }
        seen.push(a);
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::{audiences, issuer_path};

    #[test]
    fn the_issuer_is_an_https_url_whose_path_prefixes_the_documents() {
        assert_eq!(issuer_path("https://login.example.org:8444").unwrap(), "");
        assert_eq!(issuer_path("https://login.example.org:8444/").unwrap(), "");
        assert_eq!(issuer_path("https://h/kube/").unwrap(), "/kube");
        for bad in [
            "http://h:8444",
            "login.example.org:8444",
            "https://user:pw@h",
            "https://h/?a=b",
            "https://h/#x",
            "",
        ] {
            assert!(issuer_path(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn audiences_are_a_non_empty_list_of_distinct_names() {
        assert_eq!(audiences(Some(vec!["k8s".into()])).unwrap(), ["k8s"]);
        assert!(audiences(None).is_err());
        assert!(audiences(Some(vec![])).is_err());
        assert!(audiences(Some(vec![" ".into()])).is_err());
        assert!(audiences(Some(vec!["a".into(), "a".into()])).is_err());
        assert!(audiences(Some(vec!["a\u{0}".into()])).is_err());
    }
}
