//! The group policy (`[identity.groups]`): what a directory group is called in Kubernetes,
//! and whether it goes there at all. One order, so that every key sees the same string:
//! name it (`name`), lower-case it (`lowercase`), keep it if `include` and not `exclude`
//! match. `identity.required_groups` is compared with what comes out; the prefix is added
//! after all of them, on the way out.

use super::IdentityError;
use crate::config::{GroupNaming, GroupPolicy};
use crate::directory::Group;
use crate::dn;

/// The group's name under `policy`, before the prefix; `None` when it has no name to give
/// (no name attribute in a naming that needs one) or the filters leave it out.
pub(super) fn name(g: &Group, policy: &GroupPolicy) -> Result<Option<String>, IdentityError> {
    let named = match (policy.name, &g.name) {
        (GroupNaming::Dn, _) => g.dn.clone(),
        (_, None) => return Ok(None),
        (GroupNaming::Cn, Some(n)) => n.clone(),
        (GroupNaming::CnAtDomain, Some(n)) => {
            let domain = dn::domain(&g.dn).ok_or_else(|| IdentityError::NoDomain(g.dn.clone()))?;
            format!("{n}@{domain}")
        }
    };
    let named = if policy.lowercase {
        named.to_lowercase()
    } else {
        named
    };
    let kept = (policy.include.is_empty() || policy.include.iter().any(|re| re.is_match(&named)))
        && !policy.exclude.iter().any(|re| re.is_match(&named));
    Ok(kept.then_some(named))
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    fn group(dn: &str, name: Option<&str>) -> Group {
        Group {
            dn: dn.into(),
            name: name.map(str::to_string),
        }
    }

    fn anchored(p: &str) -> Regex {
        Regex::new(&format!("^(?:{p})$")).unwrap()
    }

    fn named(g: &Group, policy: &GroupPolicy) -> Option<String> {
        name(g, policy).unwrap()
    }

    const OPS: &str = "CN=Ops,OU=Groups,DC=Example,DC=test";

    #[test]
    fn cn_is_the_name_attribute() {
        let g = group(OPS, Some("Ops"));
        assert_eq!(named(&g, &GroupPolicy::default()).as_deref(), Some("Ops"));
        assert_eq!(named(&group(OPS, None), &GroupPolicy::default()), None);
    }

    #[test]
    fn dn_is_the_dn_as_the_directory_spells_it_even_without_a_name() {
        let p = GroupPolicy {
            name: GroupNaming::Dn,
            ..Default::default()
        };
        assert_eq!(named(&group(OPS, None), &p).as_deref(), Some(OPS));
    }

    #[test]
    fn cn_at_domain_takes_the_domain_from_the_dn() {
        let p = GroupPolicy {
            name: GroupNaming::CnAtDomain,
            ..Default::default()
        };
        assert_eq!(
            named(&group(OPS, Some("Ops")), &p).as_deref(),
            Some("Ops@example.test")
        );
        assert_eq!(
            name(&group("cn=x,o=Example", Some("x")), &p),
            Err(IdentityError::NoDomain("cn=x,o=Example".into()))
        );
    }

    #[test]
    fn a_name_cannot_claim_another_domain() {
        let p = GroupPolicy {
            name: GroupNaming::CnAtDomain,
            ..Default::default()
        };
        let g = group(
            "cn=admins@other.test,ou=groups,dc=example,dc=org",
            Some("admins@other.test"),
        );
        assert_eq!(
            named(&g, &p).as_deref(),
            Some("admins@other.test@example.org")
        );
    }

    #[test]
    fn lowercase_is_unicode_and_comes_before_the_filters() {
        let p = GroupPolicy {
            name: GroupNaming::CnAtDomain,
            lowercase: true,
            include: vec![anchored("équipe-.*")],
            ..Default::default()
        };
        assert_eq!(
            named(
                &group(
                    OPS.replace("Ops", "ÉQUIPE-Ops").as_str(),
                    Some("ÉQUIPE-Ops")
                ),
                &p
            )
            .as_deref(),
            Some("équipe-ops@example.test")
        );
    }

    #[test]
    fn include_and_exclude_match_whole_names() {
        let p = GroupPolicy {
            include: vec![anchored("k8s-.*"), anchored("ops")],
            exclude: vec![anchored("k8s-legacy-.*")],
            ..Default::default()
        };
        let keep = |n: &str| named(&group("cn=x,dc=x", Some(n)), &p).is_some();
        assert!(keep("k8s-dev"));
        assert!(keep("ops"));
        assert!(!keep("old-k8s-dev"), "include is anchored at the start");
        assert!(!keep("ops-team"), "and at the end");
        assert!(!keep("k8s-legacy-admins"), "exclude wins");
        assert!(!keep("Domain Users"));
    }
}
