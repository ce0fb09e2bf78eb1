//! A login name, parsed once before anything else looks at it.
//!
//! Directories fold what they compare: slapd's `uid` matching and AD both find `alice` for
//! `ａｌｉｃｅ` (fullwidth), `ALICE` or compatibility forms such as `ª`. Anything that keys
//! on the name (lockout budgets, the filters) must see the name as the directory will, or
//! one account gets one budget per spelling. So the login is NFKC-normalised first, and
//! keys are additionally case-folded.
//!
//! Shared vocabulary below `config` (which reads its [`LoginForms`]): imports nothing of the
//! crate.

use std::sync::Arc;

use serde::Deserialize;
use unicode_normalization::UnicodeNormalization;

/// Which spellings of a login name are accepted and reduced to the name the filter gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoginForms {
    /// The name is passed to the filter as typed.
    #[default]
    AsTyped,
    /// `DOMAIN\name` and `name@domain` are reduced to `name` (Active Directory).
    StripDomain,
}

/// A login name in its three readings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Login {
    /// The whole name as typed, NFKC-normalised: `{login}` in filters.
    typed: String,
    /// The account name: `typed` without `DOMAIN\` or `@domain` when the directory's
    /// login forms strip them; `{username}` in filters and templates.
    name: String,
    /// The domain part, when the name had one and domains are stripped.
    domain: Option<String>,
    /// The directory the domain part chose: 0 for `[ldap]`, `i` for the `i`-th of
    /// `[directories.*]`; with its name, which keys that must not be shared between
    /// directories carry (the same DN may exist in two forests).
    directory: usize,
    scope: Option<Arc<str>>,
}

impl Login {
    pub(crate) fn parse(raw: &str, forms: LoginForms) -> Login {
        let typed: String = raw.nfkc().collect();
        let (name, domain) = match forms {
            LoginForms::AsTyped => (typed.clone(), None),
            LoginForms::StripDomain => match split_domain(&typed) {
                Some((name, domain)) => (name.to_string(), Some(domain.to_string())),
                None => (typed.clone(), None),
            },
        };
        Login {
            typed,
            name,
            domain,
            directory: 0,
            scope: None,
        }
    }

    /// `raw` read for the directory its domain part selects: `others` are the directories
    /// besides the default one, in order, as (name, domains, login forms). A bare name, or
    /// one whose domain none of them lists, is the default directory's, read with
    /// `default_forms`.
    pub(crate) fn route<'a>(
        raw: &str,
        default_forms: LoginForms,
        others: impl IntoIterator<Item = (&'a str, &'a [String], LoginForms)>,
    ) -> Login {
        let typed: String = raw.nfkc().collect();
        if let Some((_, domain)) = split_domain(&typed) {
            let domain = fold(domain);
            for (i, (name, domains, forms)) in others.into_iter().enumerate() {
                if domains.iter().any(|d| fold(d) == domain) {
                    return Login {
                        directory: i + 1,
                        scope: Some(name.into()),
                        ..Login::parse(raw, forms)
                    };
                }
            }
        }
        Login::parse(raw, default_forms)
    }

    /// The login `name` of an account in the directory `index` (0 for `[ldap]`) named
    /// `scope` (`None` for `[ldap]`): what an issued token's re-check reads groups with.
    pub(crate) fn in_directory(
        name: &str,
        forms: LoginForms,
        index: usize,
        scope: Option<&str>,
    ) -> Login {
        Login {
            directory: index,
            scope: scope.map(Arc::from),
            ..Login::parse(name, forms)
        }
    }

    /// A Kerberos login: `principal` (`name@REALM`) as typed, `name` its name part, of the
    /// directory `index` named `scope` that its realm chose.
    pub(crate) fn kerberos(
        principal: &str,
        name: &str,
        index: usize,
        scope: Option<&str>,
    ) -> Login {
        let typed: String = principal.nfkc().collect();
        Login {
            domain: typed.rsplit_once('@').map(|(_, realm)| realm.to_string()),
            typed,
            name: name.nfkc().collect(),
            directory: index,
            scope: scope.map(Arc::from),
        }
    }

    /// The name of a directory other than `[ldap]` this login belongs to.
    pub(crate) fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The directory this login belongs to: 0 for `[ldap]`, `i` for the `i`-th other.
    pub(crate) fn directory(&self) -> usize {
        self.directory
    }

    /// `key` qualified by the login's directory (unchanged for the default directory), for
    /// lockout budgets: accounts of two directories never share one.
    pub(crate) fn scoped(&self, key: &str) -> String {
        match &self.scope {
            None => key.to_string(),
            // NUL: no directory name and no DN has it, so no scoped key equals another.
            Some(d) => format!("\0{d}\0{key}"),
        }
    }

    pub(crate) fn typed(&self) -> &str {
        &self.typed
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    #[cfg(test)]
    pub(crate) fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    /// The account name folded as directories compare it: the key under which names that
    /// matched nothing share one lockout budget, whatever their spelling.
    pub(crate) fn key(&self) -> String {
        self.scoped(&fold(&self.name))
    }

    /// Whether the domain part (if any) is one of `domains`; an empty list allows any.
    pub(crate) fn domain_allowed(&self, domains: &[String]) -> bool {
        match &self.domain {
            None => true,
            Some(_) if domains.is_empty() => true,
            Some(d) => domains.iter().any(|x| fold(x) == fold(d)),
        }
    }
}

/// NFKC, lower case, NFKC again: the closure of what directories fold (compatibility forms,
/// width, case), so that two spellings the directory treats as one get one key.
pub(crate) fn fold(s: &str) -> String {
    let lower: String = s.nfkc().collect::<String>().to_lowercase();
    lower.nfkc().collect()
}

/// `DOMAIN\name` -> (name, DOMAIN); `name@domain` -> (name, domain).
fn split_domain(login: &str) -> Option<(&str, &str)> {
    if let Some((domain, name)) = login.rsplit_once('\\') {
        return Some((name, domain));
    }
    login.split_once('@')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(s: &str) -> Login {
        Login::parse(s, LoginForms::StripDomain)
    }

    #[test]
    fn domain_forms_reduce_to_the_account_name() {
        assert_eq!(strip("EXAMPLE\\alice").name(), "alice");
        assert_eq!(strip("EXAMPLE\\alice").domain(), Some("EXAMPLE"));
        assert_eq!(strip("alice@example.test").name(), "alice");
        assert_eq!(strip("alice@example.test").domain(), Some("example.test"));
        assert_eq!(strip("alice").name(), "alice");
        assert_eq!(strip("EXAMPLE\\").name(), "");
        assert_eq!(strip("@example.test").name(), "");
    }

    #[test]
    fn names_are_kept_as_typed_without_domain_stripping() {
        let l = Login::parse("alice@example.test", LoginForms::AsTyped);
        assert_eq!(l.name(), "alice@example.test");
        assert_eq!(l.domain(), None);
    }

    #[test]
    fn spellings_the_directory_folds_share_one_key() {
        let key = Login::parse("alice", LoginForms::AsTyped).key();
        for spelling in [
            "ALICE",
            "Alice",
            "ａｌｉｃｅ",
            "ＡＬＩＣＥ",
            "\u{1d41a}lice",
            "ⓐlice",
        ] {
            assert_eq!(
                Login::parse(spelling, LoginForms::AsTyped).key(),
                key,
                "{spelling}"
            );
        }
        assert_eq!(fold("ª"), "a");
        assert_ne!(Login::parse("alicia", LoginForms::AsTyped).key(), key);
    }

    #[test]
    fn the_filter_sees_the_normalised_name() {
        assert_eq!(
            Login::parse("ａｌｉｃｅ", LoginForms::AsTyped).name(),
            "alice"
        );
        assert_eq!(strip("ＥＸＡＭＰＬＥ＼alice").name(), "alice");
    }

    fn routed(raw: &str) -> Login {
        let partner = vec!["PARTNER".to_string(), "partner.test".to_string()];
        let lab = vec!["lab.test".to_string()];
        Login::route(
            raw,
            LoginForms::AsTyped,
            [
                ("partner", partner.as_slice(), LoginForms::StripDomain),
                ("lab", lab.as_slice(), LoginForms::AsTyped),
            ],
        )
    }

    #[test]
    fn the_domain_part_chooses_the_directory_and_is_read_its_way() {
        for raw in [
            "PARTNER\\bob",
            "partner\\bob",
            "bob@Partner.Test",
            "bob@ｐａｒｔｎｅｒ.test",
        ] {
            let l = routed(raw);
            assert_eq!((l.directory(), l.name()), (1, "bob"), "{raw}");
        }
        let lab = routed("carol@lab.test");
        assert_eq!((lab.directory(), lab.name()), (2, "carol@lab.test"));
    }

    #[test]
    fn bare_names_and_unlisted_domains_stay_with_the_default_directory() {
        for raw in ["bob", "OTHER\\bob", "bob@other.test", "bob@"] {
            let l = routed(raw);
            assert_eq!((l.directory(), l.name()), (0, raw), "{raw}");
        }
    }

    #[test]
    fn keys_of_different_directories_never_meet() {
        let default = routed("bob");
        let partner = routed("PARTNER\\bob");
        assert_ne!(default.key(), partner.key());
        assert_eq!(
            default.key(),
            "bob",
            "the default directory's keys are unchanged"
        );
        assert_eq!(partner.key(), routed("bob@partner.test").key());
        assert_ne!(
            default.scoped("cn=bob,dc=example"),
            partner.scoped("cn=bob,dc=example")
        );
    }

    #[test]
    fn listed_domains_compare_folded() {
        let domains = vec!["EXAMPLE".to_string(), "example.test".to_string()];
        assert!(strip("example\\alice").domain_allowed(&domains));
        assert!(strip("alice@EXAMPLE.TEST").domain_allowed(&domains));
        assert!(strip("alice").domain_allowed(&domains));
        assert!(!strip("OTHER\\alice").domain_allowed(&domains));
        assert!(strip("OTHER\\alice").domain_allowed(&[]));
    }
}
