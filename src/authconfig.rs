//! `kube-ldap-webhook authentication-config`: the `AuthenticationConfiguration`
//! (apiserver.config.k8s.io/v1) that points kube-apiserver's JWT authenticator at this
//! issuer, for `--authentication-config`.
//!
//! The daemon already applied the prefixes and dropped `system:` names, so the claim
//! mappings are plain (prefix ""); the `system:` rule is repeated as a claim validation in
//! case a key ever signs something else. Every scalar is written as a JSON string, which
//! YAML reads as the same double-quoted string, so no name in the config can change the
//! document's shape.

use std::fmt::Write;
use std::path::Path;

use crate::config::{self, ConfigError};
use crate::tls::TlsError;

/// Why no configuration could be printed.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// The daemon's configuration was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The configuration has no `jwt.issuer`.
    #[error("{0}: no jwt.issuer: the JWT issuer is off")]
    NoIssuer(String),
    /// The CA file could not be read or holds no certificate.
    #[error("--ca-file: {0}")]
    Ca(#[from] TlsError),
}

/// The CEL rules kube-apiserver applies to every JWT of this issuer, with their messages.
const RULES: [(&str, &str); 2] = [
    (
        "!claims.username.matches('^(?i)system:')",
        "usernames starting with system: are reserved for Kubernetes",
    ),
    // A claim is of CEL type `any`, which kube-apiserver refuses to range over
    // ("cannot be range of a comprehension"): `dyn()` makes it a list at run time.
    (
        "!has(claims.groups) || dyn(claims.groups).all(g, !g.matches('^(?i)system:'))",
        "groups starting with system: are reserved for Kubernetes",
    ),
];

/// The YAML for the configuration at `config_path`; `ca_file` holds the CA that signs the
/// login listener's certificate (absent: the system's roots, as with a publicly trusted
/// certificate).
pub fn authentication_config(
    config_path: &Path,
    ca_file: Option<&Path>,
) -> Result<String, AuthConfigError> {
    let cfg = config::load(config_path)?;
    let issuer = cfg
        .jwt
        .as_ref()
        .ok_or_else(|| AuthConfigError::NoIssuer(config_path.display().to_string()))?;
    let ca = match ca_file {
        Some(f) => {
            let mut pem = String::new();
            for cert in crate::tls::load_certs(f)? {
                pem.push_str(&crate::jwt::keys::pem("CERTIFICATE", &cert));
            }
            Some(pem)
        }
        None => None,
    };
    Ok(render(&issuer.url, &issuer.audiences, ca.as_deref()))
}

fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn render(url: &str, audiences: &[String], ca: Option<&str>) -> String {
    let mut y = String::from(
        "# kube-apiserver --authentication-config: JWTs of kube-ldap-webhook's issuer.\n\
         apiVersion: apiserver.config.k8s.io/v1\n\
         kind: AuthenticationConfiguration\n\
         jwt:\n\
         - issuer:\n",
    );
    let _ = writeln!(y, "    url: {}", q(url));
    y.push_str("    audiences:\n");
    for a in audiences {
        let _ = writeln!(y, "    - {}", q(a));
    }
    if audiences.len() > 1 {
        y.push_str("    audienceMatchPolicy: MatchAny\n");
    }
    if let Some(ca) = ca {
        y.push_str("    certificateAuthority: |\n");
        for line in ca.lines() {
            let _ = writeln!(y, "      {line}");
        }
    }
    y.push_str("  claimValidationRules:\n");
    for (expression, message) in RULES {
        let _ = writeln!(y, "  - expression: {}", q(expression));
        let _ = writeln!(y, "    message: {}", q(message));
    }
    y.push_str(
        "  claimMappings:\n\
         \x20   username:\n\
         \x20     claim: username\n\
         \x20     prefix: \"\"\n\
         \x20   groups:\n\
         \x20     claim: groups\n\
         \x20     prefix: \"\"\n\
         \x20   uid:\n\
         \x20     claim: sub\n",
    );
    y
}

#[cfg(test)]
mod tests {
    use super::{render, RULES};
    use serde_norway::Value;

    fn get<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
        path.iter().fold(v, |v, k| &v[*k])
    }

    #[test]
    fn the_configuration_parses_as_yaml_with_the_issuer_mappings_and_rules() {
        let ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let y = render("https://login.example.org:8444", &["k8s".into()], Some(ca));
        let doc: Value = serde_norway::from_str(&y).unwrap();
        assert_eq!(doc["apiVersion"], "apiserver.config.k8s.io/v1");
        assert_eq!(doc["kind"], "AuthenticationConfiguration");
        let jwt = &doc["jwt"][0];
        assert_eq!(
            get(jwt, &["issuer", "url"]),
            "https://login.example.org:8444"
        );
        assert_eq!(get(jwt, &["issuer", "audiences"])[0], "k8s");
        assert_eq!(get(jwt, &["issuer", "certificateAuthority"]), ca);
        assert!(get(jwt, &["issuer", "audienceMatchPolicy"]).is_null());
        let m = &jwt["claimMappings"];
        assert_eq!(get(m, &["username", "claim"]), "username");
        assert_eq!(get(m, &["username", "prefix"]), "");
        assert_eq!(get(m, &["groups", "claim"]), "groups");
        assert_eq!(get(m, &["groups", "prefix"]), "");
        assert_eq!(get(m, &["uid", "claim"]), "sub");
        let rules = jwt["claimValidationRules"].as_sequence().unwrap();
        assert_eq!(rules.len(), RULES.len());
        assert_eq!(rules[0]["expression"], RULES[0].0);
        assert_eq!(rules[1]["expression"], RULES[1].0);
    }

    #[test]
    fn several_audiences_match_any_and_names_cannot_change_the_shape() {
        let y = render(
            "https://h/kube",
            &["a\nkind: x".into(), "b: [c]".into()],
            None,
        );
        let doc: Value = serde_norway::from_str(&y).unwrap();
        let issuer = &doc["jwt"][0]["issuer"];
        assert_eq!(issuer["audiences"][0], "a\nkind: x");
        assert_eq!(issuer["audiences"][1], "b: [c]");
        assert_eq!(issuer["audienceMatchPolicy"], "MatchAny");
        assert!(issuer["certificateAuthority"].is_null());
        assert_eq!(doc["kind"], "AuthenticationConfiguration");
    }
}
