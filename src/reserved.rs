//! The names Kubernetes keeps for itself. `config` refuses prefixes that would produce one,
//! and the identity mapping refuses the usernames and drops the groups that are one; both
//! read the one rule here, which imports nothing of the crate.

/// Names Kubernetes reserves for itself (`system:`), compared without regard to case:
/// `system:masters` is cluster-admin that RBAC cannot take away.
pub(crate) fn is_reserved(name: &str) -> bool {
    name.get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("system:"))
}

#[cfg(test)]
mod tests {
    use super::is_reserved;

    #[test]
    fn system_names_are_reserved_in_any_case() {
        assert!(is_reserved("system:masters"));
        assert!(is_reserved("SYSTEM:nodes"));
        assert!(is_reserved("System:"));
    }

    #[test]
    fn other_names_are_not_reserved() {
        assert!(!is_reserved("system"));
        assert!(!is_reserved("sys"));
        assert!(!is_reserved("alice:system:masters"));
        assert!(!is_reserved(""));
    }
}
