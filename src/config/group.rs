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
    // With a membership attribute the direct groups come from the user entry, and the walk
    // above them needs the plain member filter: the in-chain rule would skip it.
    let server_side_nesting = nested
        && directory == Preset::ActiveDirectory
        && g.filter.is_none()
        && membership_attribute.is_none();
    let group_default = defaults.map(|d| {
        if server_side_nesting {
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
        member_uid_attribute,
    })
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

    #[test]
    fn a_group_filter_without_any_placeholder_is_refused() {
        let e = with("", "filter = \"(objectClass=posixGroup)\"").unwrap_err();
        assert!(e.contains("key `ldap.group.filter`"), "{e}");
        assert!(e.contains("{uid}"), "{e}");
    }
}
