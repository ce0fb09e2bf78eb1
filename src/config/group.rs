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
    cx: &Ctx,
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
        if !filter.contains("{dn}") && !filter.contains("{username}") {
            return Err(cx.invalid("ldap.group.filter", "must contain {dn} or {username}"));
        }
        check_filter_shape(&filter).map_err(|m| cx.invalid("ldap.group.filter", m))?;
    }
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
    })
}
