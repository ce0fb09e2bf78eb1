//! Identity mapping: a directory entry and its groups become the Kubernetes user, under
//! the group policy of `[identity]` (see `groups`).

mod groups;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config;
use crate::directory::{Entry, Group};
use crate::reserved::is_reserved;

/// `status.user` of a TokenReview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    /// The Kubernetes username, prefix included.
    pub username: String,
    /// The directory's stable id of the account.
    pub uid: String,
    /// Group names, prefixed, sorted, without `system:` names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Extra keys and their attribute values.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum IdentityError {
    #[error("the directory entry has no `{0}` attribute (ldap.user.username_attribute)")]
    NoUsername(String),
    /// Kubernetes gives `system:` names powers no directory should grant (`system:masters`
    /// is cluster-admin that RBAC cannot take away).
    #[error("the username would be the reserved Kubernetes name `{0}`")]
    ReservedUsername(String),
    /// None of the user's groups (after the group policy) is in `identity.required_groups`.
    #[error("none of the user's groups is in identity.required_groups")]
    NotInRequiredGroup,
    #[error("the group `{0}` has no DC= parts to name its domain (identity.groups.name = \"cn@domain\")")]
    NoDomain(String),
}

/// The user, and the groups the directory offered that were dropped as reserved.
#[derive(Debug)]
pub(crate) struct Mapped {
    pub user: UserInfo,
    pub reserved_groups: Vec<String>,
}

/// The Kubernetes username of `entry` (prefix included; `system:` not yet refused): also
/// the name a review's log line gives once the directory confirmed the account, rather than
/// the login as typed (`EXAMPLE\\alice`).
pub(crate) fn username(
    entry: &Entry,
    typed: &str,
    user_cfg: &config::User,
    ident: &config::Identity,
) -> Result<String, IdentityError> {
    let names: Vec<&str> = entry
        .values(&user_cfg.username_attribute)
        .filter_map(|v| std::str::from_utf8(v).ok())
        .collect();
    let username = names
        .iter()
        .find(|n| n.eq_ignore_ascii_case(typed) || n.to_lowercase() == typed.to_lowercase())
        .or(names.first())
        .ok_or_else(|| IdentityError::NoUsername(user_cfg.username_attribute.clone()))?;
    let username = match ident.lowercase_username {
        true => username.to_lowercase(),
        false => username.to_string(),
    };
    Ok(format!("{}{}", ident.username_prefix, username))
}

/// Builds the user. `typed` is the login name as the user typed it: when the username
/// attribute holds several values, the one matching it is the username. Lower-casing
/// applies to the directory's spelling, before the operator-written prefix. A user with
/// none of `identity.required_groups` is an error. No name that begins with `system:`
/// after the prefixes leaves here: such a group is dropped, such a username is an error.
pub(crate) fn map(
    entry: &Entry,
    typed: &str,
    groups: Vec<Group>,
    user_cfg: &config::User,
    ident: &config::Identity,
) -> Result<Mapped, IdentityError> {
    let username = username(entry, typed, user_cfg, ident)?;
    let uid = entry
        .values(&user_cfg.uid_attribute)
        .next()
        .map(|v| render_uid(&user_cfg.uid_attribute, v))
        .unwrap_or_else(|| entry.dn.clone());

    let mut extra = BTreeMap::new();
    for (key, attr) in &user_cfg.extra {
        let vals: Vec<String> = entry
            .values(attr)
            .filter_map(|v| std::str::from_utf8(v).ok().map(str::to_string))
            .collect();
        if !vals.is_empty() {
            extra.insert(key.clone(), vals);
        }
    }

    if is_reserved(&username) {
        return Err(IdentityError::ReservedUsername(username));
    }
    let mut names = Vec::with_capacity(groups.len());
    for g in &groups {
        names.extend(groups::name(g, &ident.groups)?);
    }
    if !ident.required_groups.is_empty() && !names.iter().any(|n| ident.required_groups.contains(n))
    {
        return Err(IdentityError::NotInRequiredGroup);
    }
    let (reserved_groups, mut groups): (Vec<String>, Vec<String>) = names
        .into_iter()
        .map(|g| format!("{}{}", ident.group_prefix, g))
        .partition(|g| is_reserved(g));
    groups.sort_unstable();
    groups.dedup();

    Ok(Mapped {
        user: UserInfo {
            username,
            uid,
            groups,
            extra,
        },
        reserved_groups,
    })
}

/// Text values as they are; a 16-byte binary value (objectGUID, ipaUniqueID as bytes) as
/// the canonical GUID text; other binary values as hex.
fn render_uid(attr: &str, v: &[u8]) -> String {
    // ldap3 hands an objectGUID whose bytes happen to be valid UTF-8 over as text, so the
    // attribute name decides, not the encoding.
    let is_guid_attr = attr.eq_ignore_ascii_case("objectGUID");
    let guid = <&[u8; 16]>::try_from(v).ok();
    match (std::str::from_utf8(v), guid) {
        (Ok(s), _) if !is_guid_attr || guid.is_none() => s.to_string(),
        (_, Some(g)) => guid_text(g),
        _ => v.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// Microsoft's GUID layout: the first three fields are little-endian.
pub(crate) fn guid_text(b: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    let order = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
    for (i, &idx) in order.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{:02x}", b[idx]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_cfg() -> config::User {
        config::User {
            base_dn: "dc=x".into(),
            filter: "(uid={username})".into(),
            dn_template: None,
            kerberos_filter: None,
            username_attribute: "uid".into(),
            uid_attribute: "entryUUID".into(),
            login: config::LoginForms::AsTyped,
            domains: vec![],
            extra: [("example.org/email".to_string(), "mail".to_string())].into(),
        }
    }

    fn groups(names: &[&str]) -> Vec<Group> {
        names
            .iter()
            .map(|n| Group {
                dn: format!("cn={n},ou=groups,dc=example,dc=org"),
                name: Some(n.to_string()),
            })
            .collect()
    }

    fn entry(attrs: &[(&str, &[&[u8]])]) -> Entry {
        Entry {
            dn: "uid=alice,dc=x".into(),
            attrs: attrs
                .iter()
                .map(|(k, vs)| (k.to_string(), vs.iter().map(|v| v.to_vec()).collect()))
                .collect(),
        }
    }

    #[test]
    fn guid_renders_mixed_endian() {
        let b = [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        assert_eq!(guid_text(&b), "00112233-4455-6677-8899-aabbccddeeff");
    }

    #[test]
    fn maps_username_uid_groups_and_extra_with_prefixes() {
        let e = entry(&[
            ("UID", &[b"Alice"]),
            ("entryUUID", &[b"1234"]),
            ("mail", &[b"alice@example.org"]),
        ]);
        let ident = config::Identity {
            username_prefix: "ldap:".into(),
            group_prefix: "ldap:".into(),
            ..Default::default()
        };
        let u = map(&e, "alice", groups(&["b", "a", "b"]), &user_cfg(), &ident)
            .unwrap()
            .user;
        assert_eq!(u.username, "ldap:Alice");
        assert_eq!(u.uid, "1234");
        assert_eq!(u.groups, vec!["ldap:a", "ldap:b"]);
        assert_eq!(u.extra["example.org/email"], vec!["alice@example.org"]);
    }

    #[test]
    fn picks_the_username_value_that_was_typed() {
        let e = entry(&[("uid", &[b"asmith", b"alice"])]);
        let u = map(&e, "ALICE", vec![], &user_cfg(), &Default::default())
            .unwrap()
            .user;
        assert_eq!(u.username, "alice");
        assert_eq!(
            u.uid, "uid=alice,dc=x",
            "falls back to the DN without a uid attribute"
        );
    }

    #[test]
    fn active_directory_entry_gives_sam_account_name_and_guid_text() {
        let cfg = config::User {
            username_attribute: "sAMAccountName".into(),
            uid_attribute: "objectGUID".into(),
            login: config::LoginForms::StripDomain,
            ..user_cfg()
        };
        // alice of the Samba fixture, as ldapsearch shows it (AOAcoTQSvEqN7wEjRWeJqw==).
        let guid: &[u8] = &[
            0x00, 0xe0, 0x1c, 0xa1, 0x34, 0x12, 0xbc, 0x4a, 0x8d, 0xef, 0x01, 0x23, 0x45, 0x67,
            0x89, 0xab,
        ];
        let e = entry(&[("sAMAccountName", &[b"Alice"]), ("objectGUID", &[guid])]);
        let u = map(&e, "alice", vec![], &cfg, &Default::default())
            .unwrap()
            .user;
        assert_eq!(u.username, "Alice", "as the directory spells it");
        assert_eq!(u.uid, "a11ce000-1234-4abc-8def-0123456789ab");
        // A GUID that is valid UTF-8 is still a GUID.
        let e = entry(&[
            ("sAMAccountName", &[b"bob"]),
            ("objectGUID", &[b"0123456789abcdef"]),
        ]);
        let u = map(&e, "bob", vec![], &cfg, &Default::default())
            .unwrap()
            .user;
        assert_eq!(u.uid, "33323130-3534-3736-3839-616263646566");
    }

    #[test]
    fn missing_username_attribute_is_an_error() {
        let e = entry(&[("cn", &[b"x"])]);
        assert!(map(&e, "x", vec![], &user_cfg(), &Default::default()).is_err());
    }

    #[test]
    fn system_groups_from_the_directory_are_dropped() {
        let e = entry(&[("uid", &[b"alice"])]);
        let groups = groups(&["system:masters", "SYSTEM:nodes", "devs"]);
        let m = map(&e, "alice", groups, &user_cfg(), &Default::default()).unwrap();
        assert_eq!(m.user.groups, vec!["devs"]);
        assert_eq!(m.reserved_groups, vec!["system:masters", "SYSTEM:nodes"]);
    }

    #[test]
    fn a_prefix_keeps_directory_groups_out_of_system() {
        let e = entry(&[("uid", &[b"alice"])]);
        let ident = config::Identity {
            group_prefix: "ldap:".into(),
            ..Default::default()
        };
        let m = map(
            &e,
            "alice",
            groups(&["system:masters"]),
            &user_cfg(),
            &ident,
        )
        .unwrap();
        assert_eq!(m.user.groups, vec!["ldap:system:masters"]);
        assert!(m.reserved_groups.is_empty());
    }

    #[test]
    fn a_system_username_is_refused() {
        let e = entry(&[("uid", &[b"system:admin"])]);
        assert_eq!(
            map(&e, "system:admin", vec![], &user_cfg(), &Default::default()).err(),
            Some(IdentityError::ReservedUsername("system:admin".into()))
        );
    }

    #[test]
    fn lowercase_applies_to_the_directory_name_not_the_prefix() {
        let e = entry(&[("uid", &["ÅSA.Öberg".as_bytes()])]);
        let ident = config::Identity {
            username_prefix: "LDAP:".into(),
            group_prefix: "LDAP:".into(),
            lowercase_username: true,
            groups: config::GroupPolicy {
                lowercase: true,
                ..Default::default()
            },
            ..Default::default()
        };
        let u = map(
            &e,
            "åsa.öberg",
            groups(&["K8s-ÄDMINS"]),
            &user_cfg(),
            &ident,
        )
        .unwrap()
        .user;
        assert_eq!(u.username, "LDAP:åsa.öberg");
        assert_eq!(u.groups, vec!["LDAP:k8s-ädmins"]);
    }

    fn required(list: &[&str], include: &[&str]) -> config::Identity {
        config::Identity {
            group_prefix: "ldap:".into(),
            required_groups: list.iter().map(|s| s.to_string()).collect(),
            groups: config::GroupPolicy {
                include: include
                    .iter()
                    .map(|p| regex::Regex::new(&format!("^(?:{p})$")).unwrap())
                    .collect(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_user_in_none_of_the_required_groups_is_refused() {
        let e = entry(&[("uid", &[b"bob"])]);
        let ident = required(&["k8s-users"], &[]);
        let m = map(&e, "bob", groups(&["devs"]), &user_cfg(), &ident);
        assert_eq!(m.err(), Some(IdentityError::NotInRequiredGroup));
        let m = map(&e, "bob", vec![], &user_cfg(), &ident);
        assert_eq!(
            m.err(),
            Some(IdentityError::NotInRequiredGroup),
            "no groups at all"
        );
    }

    #[test]
    fn one_required_group_is_enough_and_is_compared_before_the_prefix() {
        let e = entry(&[("uid", &[b"alice"])]);
        let ident = required(&["k8s-users", "k8s-admins"], &[]);
        let u = map(
            &e,
            "alice",
            groups(&["k8s-admins", "devs"]),
            &user_cfg(),
            &ident,
        )
        .unwrap()
        .user;
        assert_eq!(u.groups, vec!["ldap:devs", "ldap:k8s-admins"]);
    }

    #[test]
    fn required_groups_are_compared_exactly_after_the_filters() {
        let e = entry(&[("uid", &[b"alice"])]);
        // K8S-USERS is not k8s-users without identity.groups.lowercase.
        let ident = required(&["k8s-users"], &[]);
        let m = map(&e, "alice", groups(&["K8S-USERS"]), &user_cfg(), &ident);
        assert_eq!(m.err(), Some(IdentityError::NotInRequiredGroup));
        // A group the include patterns leave out does not count.
        let ident = required(&["k8s-users"], &["k8s-users-.*"]);
        let m = map(&e, "alice", groups(&["k8s-users"]), &user_cfg(), &ident);
        assert_eq!(m.err(), Some(IdentityError::NotInRequiredGroup));
    }
}
