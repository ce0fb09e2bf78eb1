//! `[identity]`: prefixes, lower-casing, the group policy. Every mistake that would make a
//! rule silently match nothing (a group name that can never occur, a pattern that does not
//! compile) is refused here, naming the key, rather than discovered as a locked-out cluster.

use regex::{Regex, RegexBuilder};

use super::raw::{RawGroupPolicy, RawIdentity};
use super::{ConfigError, Ctx, Group, GroupNaming, GroupPolicy, Identity};
use crate::dn;
use crate::reserved::is_reserved;

/// The most memory one compiled pattern may take. Real group patterns need a few KiB; a
/// pattern like `(\w{100}){100}` would need hundreds of MiB and is refused instead.
pub(crate) const REGEX_SIZE_LIMIT: usize = 1 << 20;

pub(super) fn resolve(i: RawIdentity, group: &Group, cx: &Ctx) -> Result<Identity, ConfigError> {
    // A prefix that begins with `system:` would make every directory name a name
    // Kubernetes reserves for itself (`system:masters` is cluster-admin).
    for (key, prefix) in [
        ("identity.username_prefix", &i.username_prefix),
        ("identity.group_prefix", &i.group_prefix),
    ] {
        if is_reserved(prefix) {
            return Err(cx.invalid(
                key,
                "must not begin with `system:`, a name Kubernetes reserves",
            ));
        }
    }
    let groups = group_policy(i.groups, group, cx)?;
    check_required(&i.required_groups, &groups, &i.group_prefix, cx)?;
    Ok(Identity {
        username_prefix: i.username_prefix,
        group_prefix: i.group_prefix,
        lowercase_username: i.lowercase_username,
        required_groups: i.required_groups,
        groups,
    })
}

fn group_policy(g: RawGroupPolicy, group: &Group, cx: &Ctx) -> Result<GroupPolicy, ConfigError> {
    if g.name == GroupNaming::CnAtDomain && dn::domain(&group.base_dn).is_none() {
        return Err(cx.invalid(
            "identity.groups.name",
            format!(
                "\"cn@domain\" takes the domain from the DC= parts of each group's DN, and \
                 ldap.group.base_dn `{}` has none: use \"cn\" or \"dn\"",
                group.base_dn
            ),
        ));
    }
    Ok(GroupPolicy {
        name: g.name,
        include: patterns(&g.include, "identity.groups.include", cx)?,
        exclude: patterns(&g.exclude, "identity.groups.exclude", cx)?,
        lowercase: g.lowercase,
    })
}

/// Compiles each pattern to match a whole name (`k8s-.*` matches `k8s-dev`, not
/// `old-k8s-dev`), within [`REGEX_SIZE_LIMIT`].
fn patterns(list: &[String], key: &'static str, cx: &Ctx) -> Result<Vec<Regex>, ConfigError> {
    let compile = |p: &str| RegexBuilder::new(p).size_limit(REGEX_SIZE_LIMIT).build();
    list.iter()
        .enumerate()
        .map(|(n, p)| {
            let which = format!("entry {} (`{p}`)", n + 1);
            if p.is_empty() {
                return Err(cx.invalid(key, format!("{which} is empty and would match no group")));
            }
            // Compiled as written first, so that an error points into the operator's text.
            compile(p)
                .and_then(|_| compile(&format!("^(?:{p})$")))
                .map_err(|e| {
                    cx.invalid(
                        key,
                        format!("{which} is not a usable regular expression: {e}"),
                    )
                })
        })
        .collect()
}

/// A required group that no group name can ever equal would refuse every login: each one
/// must be a name the group policy can produce.
fn check_required(
    required: &[String],
    g: &GroupPolicy,
    group_prefix: &str,
    cx: &Ctx,
) -> Result<(), ConfigError> {
    const KEY: &str = "identity.required_groups";
    for r in required {
        let never = if r.trim().is_empty() {
            Some("is empty".to_string())
        } else if g.lowercase && *r != r.to_lowercase() {
            Some("has upper case, and identity.groups.lowercase = true makes every group name lower case".into())
        } else if g.name == GroupNaming::Dn && !r.contains('=') {
            Some(
                "is not a DN, and identity.groups.name = \"dn\" names every group by its DN".into(),
            )
        } else if g.name == GroupNaming::CnAtDomain && !r.contains('@') {
            Some(
                "has no @domain, and identity.groups.name = \"cn@domain\" gives every group one"
                    .into(),
            )
        } else if !g.include.is_empty() && !g.include.iter().any(|re| re.is_match(r)) {
            Some(
                "matches no pattern of identity.groups.include, so it never reaches the check"
                    .into(),
            )
        } else if g.exclude.iter().any(|re| re.is_match(r)) {
            Some(
                "matches a pattern of identity.groups.exclude, so it never reaches the check"
                    .into(),
            )
        } else if is_reserved(&format!("{group_prefix}{r}")) {
            Some("would be a `system:` name in Kubernetes, which is always dropped".into())
        } else {
            None
        };
        if let Some(why) = never {
            return Err(cx.invalid(KEY, format!("`{r}` {why}: nobody could log in")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{minimal, write};
    use crate::config::{load, GroupNaming};

    /// Loads the minimal config with `identity` as the `[identity]` section (and whatever
    /// sections follow in it).
    fn with(identity: &str) -> Result<crate::config::Config, String> {
        let d = tempfile::tempdir().unwrap();
        let body = format!("{}\n[identity]\n{identity}\n", minimal(d.path()));
        load(&write(d.path(), &body)).map_err(|e| e.to_string())
    }

    fn refused(identity: &str, key: &str) -> String {
        let e = with(identity).expect_err(identity);
        assert!(e.contains(&format!("key `{key}`")), "{identity}: {e}");
        e
    }

    #[test]
    fn a_full_policy_loads_with_anchored_patterns() {
        let c = with(
            "lowercase_username = true\nrequired_groups = [\"k8s-users@example.org\"]\n\
             [identity.groups]\nname = \"cn@domain\"\ninclude = [\"k8s-.*@example\\\\.org\"]\n\
             exclude = [\"k8s-old-.*\"]\nlowercase = true",
        )
        .unwrap();
        let i = c.identity;
        assert!(i.lowercase_username && i.groups.lowercase);
        assert_eq!(i.groups.name, GroupNaming::CnAtDomain);
        assert!(i.groups.include[0].is_match("k8s-dev@example.org"));
        assert!(!i.groups.include[0].is_match("x-k8s-dev@example.org"));
        assert!(!i.groups.include[0].is_match("k8s-dev@example.org.evil"));
    }

    #[test]
    fn the_defaults_keep_every_group_by_cn_as_spelled() {
        let i = with("").unwrap().identity;
        assert_eq!(i.groups.name, GroupNaming::Cn);
        assert!(i.groups.include.is_empty() && i.groups.exclude.is_empty());
        assert!(!i.groups.lowercase && !i.lowercase_username);
        assert!(i.required_groups.is_empty());
    }

    #[test]
    fn a_pattern_that_does_not_compile_is_named_with_its_entry() {
        let e = refused(
            "[identity.groups]\ninclude = [\"ok\", \"k8s-[\"]",
            "identity.groups.include",
        );
        assert!(e.contains("entry 2 (`k8s-[`)"), "{e}");
        assert!(e.contains("unclosed character class"), "{e}");
        refused(
            "[identity.groups]\nexclude = [\"(\"]",
            "identity.groups.exclude",
        );
    }

    #[test]
    fn a_pattern_that_would_take_too_much_memory_is_refused() {
        let e = refused(
            "[identity.groups]\ninclude = [\"(\\\\w{100}){100}\"]",
            "identity.groups.include",
        );
        assert!(e.contains("size limit"), "{e}");
    }

    #[test]
    fn an_empty_pattern_is_refused() {
        refused(
            "[identity.groups]\nexclude = [\"\"]",
            "identity.groups.exclude",
        );
    }

    #[test]
    fn an_unknown_naming_is_refused_naming_the_key() {
        let e = with("[identity.groups]\nname = \"sAMAccountName\"").unwrap_err();
        assert!(e.contains("identity.groups.name"), "{e}");
        assert!(e.contains("cn@domain"), "the choices are listed: {e}");
    }

    #[test]
    fn cn_at_domain_needs_dc_parts_in_the_group_base() {
        let d = tempfile::tempdir().unwrap();
        let body = minimal(d.path()).replace("ou=people,dc=example,dc=org", "ou=people,o=example")
            + "\n[identity.groups]\nname = \"cn@domain\"\n";
        let e = load(&write(d.path(), &body)).unwrap_err().to_string();
        assert!(e.contains("key `identity.groups.name`"), "{e}");
        assert!(e.contains("o=example"), "{e}");
    }

    #[test]
    fn a_required_group_that_no_group_name_can_equal_is_refused() {
        let key = "identity.required_groups";
        for (why, identity) in [
            ("empty", "required_groups = [\" \"]"),
            (
                "upper case",
                "required_groups = [\"K8s-Users\"]\n[identity.groups]\nlowercase = true",
            ),
            (
                "not a DN",
                "required_groups = [\"k8s-users\"]\n[identity.groups]\nname = \"dn\"",
            ),
            (
                "no @domain",
                "required_groups = [\"k8s-users\"]\n[identity.groups]\nname = \"cn@domain\"",
            ),
            (
                "not included",
                "required_groups = [\"users\"]\n[identity.groups]\ninclude = [\"k8s-.*\"]",
            ),
            (
                "excluded",
                "required_groups = [\"k8s-users\"]\n[identity.groups]\nexclude = [\"k8s-.*\"]",
            ),
            ("system", "required_groups = [\"system:masters\"]"),
        ] {
            let e = refused(identity, key);
            assert!(e.contains("nobody could log in"), "{why}: {e}");
        }
    }

    #[test]
    fn a_required_group_the_policy_can_produce_is_accepted() {
        let i = with(
            "group_prefix = \"ldap:\"\nrequired_groups = [\"k8s-users@example.org\"]\n\
             [identity.groups]\nname = \"cn@domain\"\ninclude = [\"k8s-.*\"]",
        )
        .unwrap()
        .identity;
        assert_eq!(i.required_groups, ["k8s-users@example.org"]);
        // With a prefix, system:masters would reach Kubernetes as ldap:system:masters.
        assert!(with("group_prefix = \"ldap:\"\nrequired_groups = [\"system:masters\"]").is_ok());
    }
}
