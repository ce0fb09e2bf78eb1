//! `[ldap.group]`: where a user's groups come from.

use super::defaults as d;
use super::presets::PresetDefaults;
use super::raw::RawGroup;
use super::user::{check_filter_shape, need};
use super::{ConfigError, Ctx, Group, Preset};

pub(super) fn resolve(
    g: RawGroup,
    defaults: Option<&PresetDefaults>,
    directory: Preset,
    user_base_dn: &str,
    cx: &mut Ctx,
) -> Result<Group, ConfigError> {
    let nested = g.nested.unwrap_or(false);
    let membership_attribute = g.membership_attribute.filter(|m| !m.trim().is_empty());
    let sources = Sources {
        nested,
        membership_attribute: membership_attribute.is_some(),
        filter: g.filter.is_some(),
    };
    let token_groups = token_groups(g.token_groups, sources, directory, cx)?;
    // With a membership attribute the direct groups come from the user entry, and the walk
    // above them needs the plain member filter: the in-chain rule would skip it.
    let in_chain = nested
        && directory == Preset::ActiveDirectory
        && g.filter.is_none()
        && membership_attribute.is_none();
    let server_side_nesting = in_chain && !token_groups;
    let group_default = defaults.map(|d| {
        if in_chain {
            d.nested_group_filter
        } else {
            d.group_filter
        }
    });
    let filter = match membership_attribute {
        // The filter is still used for nested walks above the directly listed groups.
        Some(_) => g
            .filter
            .or(group_default.map(str::to_string))
            .unwrap_or_default(),
        None => need(cx, g.filter, group_default, "ldap.group.filter")?,
    };
    if !filter.is_empty() {
        if !["{dn}", "{username}", "{login}", "{uid}"]
            .iter()
            .any(|p| filter.contains(p))
        {
            return Err(cx.invalid(
                "ldap.group.filter",
                "must contain {dn}, {uid}, {username} or {login}",
            ));
        }
        check_filter_shape(&filter).map_err(|m| cx.invalid("ldap.group.filter", m))?;
        if nested && !filter.contains("{dn}") {
            return Err(cx.invalid(
                "ldap.group.nested",
                "groups nest by DN, and ldap.group.filter has no {dn}: every level would find \
                 the same groups (posixGroups listing memberUid do not nest)",
            ));
        }
    }
    // With a membership attribute and no nesting the filter is never sent.
    let filter_used = membership_attribute.is_none() || nested;
    let member_uid_attribute = member_uid(&filter, filter_used, g.member_uid_attribute, cx)?;
    Ok(Group {
        base_dn: g
            .base_dn
            .filter(|b| !b.trim().is_empty())
            .unwrap_or_else(|| user_base_dn.to_string()),
        filter,
        name_attribute: need(
            cx,
            g.name_attribute,
            defaults.map(|d| d.name_attribute),
            "ldap.group.name_attribute",
        )?,
        membership_attribute,
        nested,
        max_nested_depth: cx.count(&d::MAX_NESTED_DEPTH, g.max_nested_depth)?,
        server_side_nesting,
        token_groups,
        member_uid_attribute,
    })
}

/// What else of `[ldap.group]` the file set.
#[derive(Clone, Copy)]
struct Sources {
    nested: bool,
    membership_attribute: bool,
    filter: bool,
}

/// `ldap.group.token_groups`: on by default for nested groups on Active Directory with the
/// preset's filter (the filter is then not sent, so a filter of one's own keeps the search
/// it describes); set, it must be the only source of groups.
fn token_groups(
    set: Option<bool>,
    g: Sources,
    directory: Preset,
    cx: &mut Ctx,
) -> Result<bool, ConfigError> {
    const KEY: &str = "ldap.group.token_groups";
    let Some(wanted) = set else {
        return Ok(directory == Preset::ActiveDirectory
            && g.nested
            && !g.filter
            && !g.membership_attribute);
    };
    if !wanted {
        return Ok(false);
    }
    let refusal = if directory != Preset::ActiveDirectory {
        Some("tokenGroups is Active Directory's: it needs ldap.directory = \"active-directory\"")
    } else if !g.nested {
        Some("tokenGroups holds nested groups too: it needs ldap.group.nested = true")
    } else if g.membership_attribute {
        Some(
            "the groups come from tokenGroups or from ldap.group.membership_attribute, not \
             both: remove one",
        )
    } else if g.filter {
        Some(
            "ldap.group.filter is not sent when the groups come from tokenGroups: remove one \
             (the groups are the security groups under ldap.group.base_dn)",
        )
    } else {
        None
    };
    match refusal {
        Some(why) => Err(cx.invalid(KEY, why)),
        None => Ok(true),
    }
}

/// The attribute `{uid}` comes from (`uid` unless set), needed only when a filter with
/// `{uid}` is sent; set otherwise, it does nothing, which is worth a warning.
fn member_uid(
    filter: &str,
    filter_used: bool,
    attr: Option<String>,
    cx: &mut Ctx,
) -> Result<Option<String>, ConfigError> {
    const KEY: &str = "ldap.group.member_uid_attribute";
    if attr.as_deref().is_some_and(|a| a.trim().is_empty()) {
        return Err(cx.invalid(KEY, "must not be empty"));
    }
    let why_unused = match (filter.contains("{uid}"), filter_used) {
        (true, true) => return Ok(Some(attr.unwrap_or_else(|| "uid".into()))),
        (false, _) => "ldap.group.filter has no {uid}",
        (true, false) => {
            "ldap.group.filter is not sent (groups come from membership_attribute, nested = false)"
        }
    };
    if let Some(a) = attr {
        cx.warn(format!("{KEY} = \"{a}\" is not used: {why_unused}"));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{minimal, write};
    use crate::config::{load, Config, Preset};

    /// The minimal config with `ldap` lines before `[ldap.user]` and a `[ldap.group]` section.
    fn with(ldap: &str, group: &str) -> Result<Config, String> {
        let d = tempfile::tempdir().unwrap();
        let body = minimal(d.path()).replace("[ldap.user]", &format!("{ldap}\n[ldap.user]"))
            + &format!("\n[ldap.group]\n{group}\n");
        load(&write(d.path(), &body)).map_err(|e| e.to_string())
    }

    #[test]
    fn the_rfc2307_preset_lists_members_by_uid() {
        let c = with("directory = \"rfc2307\"", "").unwrap();
        assert_eq!(c.ldap.directory, Preset::Rfc2307);
        assert_eq!(
            c.ldap.user.filter,
            "(&(objectClass=posixAccount)(uid={username}))"
        );
        assert_eq!(c.ldap.user.username_attribute, "uid");
        assert_eq!(c.ldap.user.uid_attribute, "uidNumber");
        assert_eq!(
            c.ldap.group.filter,
            "(&(objectClass=posixGroup)(memberUid={uid}))"
        );
        assert_eq!(c.ldap.group.member_uid_attribute.as_deref(), Some("uid"));
        assert!(
            !c.warnings.iter().any(|w| w.contains("member_uid")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn member_uid_attribute_is_read_only_for_a_filter_with_uid() {
        let c = with("", "").unwrap();
        assert_eq!(c.ldap.group.member_uid_attribute, None, "openldap preset");
        let c = with(
            "",
            "filter = \"(|(member={dn})(memberUid={uid}))\"\nmember_uid_attribute = \"posixName\"",
        )
        .unwrap();
        assert_eq!(
            c.ldap.group.member_uid_attribute.as_deref(),
            Some("posixName")
        );
    }

    #[test]
    fn uid_is_not_read_when_the_groups_come_from_the_user_entry() {
        let c = with(
            "directory = \"rfc2307\"",
            "membership_attribute = \"memberOf\"",
        )
        .unwrap();
        assert_eq!(c.ldap.group.member_uid_attribute, None);
    }

    #[test]
    fn an_unused_member_uid_attribute_is_warned_about() {
        let c = with("", "member_uid_attribute = \"uid\"").unwrap();
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("ldap.group.member_uid_attribute")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn an_empty_member_uid_attribute_is_refused() {
        let e = with("directory = \"rfc2307\"", "member_uid_attribute = \"\"").unwrap_err();
        assert!(e.contains("key `ldap.group.member_uid_attribute`"), "{e}");
    }

    #[test]
    fn uid_in_the_user_filter_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let body = minimal(d.path()).replace(
            "base_dn = \"ou=people",
            "filter = \"(uid={uid})\"\nbase_dn = \"ou=people",
        );
        let e = load(&write(d.path(), &body)).unwrap_err().to_string();
        assert!(e.contains("key `ldap.user.filter`"), "{e}");
        assert!(e.contains("{username}"), "says what to use instead: {e}");
    }

    #[test]
    fn nesting_without_dn_in_the_filter_is_refused() {
        let e = with("directory = \"rfc2307\"", "nested = true").unwrap_err();
        assert!(e.contains("key `ldap.group.nested`"), "{e}");
        assert!(
            with(
                "directory = \"rfc2307\"",
                "nested = true\nfilter = \"(|(member={dn})(memberUid={uid}))\""
            )
            .is_ok(),
            "rfc2307bis: groups that list DNs nest"
        );
    }

    const AD: &str = "directory = \"active-directory\"";

    #[test]
    fn an_explicit_group_filter_keeps_its_search_on_active_directory() {
        let Ok(c) = with(
            AD,
            "nested = true\nfilter = \"(&(objectClass=group)(member={dn}))\"",
        ) else {
            panic!("a nested AD config with a filter loads");
        };
        assert!(!c.ldap.group.token_groups);
        assert!(!c.ldap.group.server_side_nesting, "walked level by level");
    }

    #[test]
    fn token_groups_is_refused_where_it_cannot_be_the_one_source_of_groups() {
        for (ldap, group, says) in [
            ("", "nested = true\ntoken_groups = true", "active-directory"),
            (AD, "token_groups = true", "ldap.group.nested = true"),
            (
                AD,
                "nested = true\ntoken_groups = true\nmembership_attribute = \"memberOf\"",
                "membership_attribute",
            ),
            (
                AD,
                "nested = true\ntoken_groups = true\nfilter = \"(member={dn})\"",
                "ldap.group.filter",
            ),
        ] {
            let Err(e) = with(ldap, group) else {
                panic!("[{group}] with [{ldap}] must be refused");
            };
            assert!(e.contains("key `ldap.group.token_groups`"), "{e}");
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn a_group_filter_without_any_placeholder_is_refused() {
        let e = with("", "filter = \"(objectClass=posixGroup)\"").unwrap_err();
        assert!(e.contains("key `ldap.group.filter`"), "{e}");
        assert!(e.contains("{uid}"), "{e}");
    }
}
