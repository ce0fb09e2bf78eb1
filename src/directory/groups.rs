//! A user's groups: a group search, the membership attribute of the user entry, a nested
//! walk level by level, Active Directory's in-chain rule, or its `tokenGroups`
//! (`token_groups.rs`). A list cut short by a size,
//! time or depth limit is an error, never a shorter list: a missing group can be a missing
//! deny as much as a missing grant.

use std::collections::HashSet;
use std::time::Instant;

use ldap3::{ldap_escape, Ldap};

use super::classify::{Attempt, OpError};
use super::paging::{Gate, MAX_GROUPS};
use super::pool::Server;
use super::{Directory, Entry, Group, Query};
use crate::dn::first_rdn_value;
use crate::login::Login;

/// Groups per search when walking nested groups level by level.
const NESTED_BATCH: usize = 50;

/// Whether `entry` holds `attr` only as an AD range slice (`attr;range=0-1499`).
fn is_ranged(entry: &Entry, attr: &str) -> bool {
    entry.attrs.iter().any(|(k, _)| {
        k.split_once(';').is_some_and(|(name, opts)| {
            name.eq_ignore_ascii_case(attr) && opts.to_ascii_lowercase().starts_with("range=")
        })
    })
}

/// Groups collected so far, and the DNs seen (lowercased) that break cycles.
struct Collected {
    seen: HashSet<String>,
    groups: Vec<Group>,
    /// What every request of this read passes.
    gate: Gate,
}

impl Collected {
    fn new(gate: Gate) -> Collected {
        Collected {
            seen: HashSet::new(),
            groups: Vec::new(),
            gate,
        }
    }

    /// Adds a group; returns whether it was new.
    fn add(&mut self, dn: &str, name: Option<String>) -> bool {
        if !self.seen.insert(dn.to_lowercase()) {
            return false;
        }
        self.groups.push(Group {
            dn: dn.to_string(),
            name,
        });
        true
    }
}

/// The values of a group filter's placeholders for one user, RFC 4515-escaped once.
struct Placeholders {
    username: String,
    login: String,
    /// `{uid}`: from the user's entry, never from the login; `None` when the filter has none.
    uid: Option<String>,
}

/// `{uid}`: the user's POSIX name as the entry found holds it (`attr`, usually `uid`), the
/// name `memberUid` lists. Never the login: `memberUid` matches case-exactly, and `ALICE`
/// or `ａｌｉｃｅ` find alice's entry but are not what her groups list. An entry with several
/// values gives the one its RDN names, as nslcd and SSSD do; with none of them in the RDN,
/// which one the groups list is anybody's guess, and guessing could grant another
/// account's groups, so that is an error.
fn member_uid(user: &Entry, attr: &str) -> Result<String, Attempt> {
    let values: Vec<&str> = user
        .values(attr)
        .filter_map(|v| std::str::from_utf8(v).ok())
        .collect();
    match values.as_slice() {
        [] => Err(Attempt::error(format!(
            "the user entry has no `{attr}` for {{uid}} in ldap.group.filter \
             (ldap.group.member_uid_attribute)"
        ))),
        [one] => Ok(one.to_string()),
        several => {
            let rdn = first_rdn_value(&user.dn, attr);
            several
                .iter()
                .find(|v| {
                    rdn.as_deref()
                        .is_some_and(|r| r.to_lowercase() == v.to_lowercase())
                })
                .map(|v| v.to_string())
                .ok_or_else(|| {
                    Attempt::error(format!(
                        "the user entry has {} values of `{attr}` and its RDN names none of \
                         them: which one {{uid}} stands for is ambiguous",
                        several.len()
                    ))
                })
        }
    }
}

impl Directory {
    pub(super) fn group_name(&self, g: &Entry) -> Option<String> {
        let attr = &self.cfg.group.name_attribute;
        g.values(attr)
            .find_map(|v| std::str::from_utf8(v).ok().map(str::to_string))
            .or_else(|| first_rdn_value(&g.dn, attr))
    }

    fn group_filter_for(&self, dn: &str, p: &Placeholders) -> String {
        let f = self
            .cfg
            .group
            .filter
            .replace("{dn}", &ldap_escape(dn))
            .replace("{username}", &p.username)
            .replace("{login}", &p.login);
        match &p.uid {
            Some(uid) => f.replace("{uid}", uid),
            None => f,
        }
    }

    fn placeholders(&self, user: &Entry, login: &Login) -> Result<Placeholders, Attempt> {
        let uid = match &self.cfg.group.member_uid_attribute {
            Some(attr) => Some(ldap_escape(&member_uid(user, attr)?).into_owned()),
            None => None,
        };
        Ok(Placeholders {
            username: ldap_escape(login.name()).into_owned(),
            login: ldap_escape(login.typed()).into_owned(),
            uid,
        })
    }

    async fn search_groups(
        &self,
        s: &Server,
        ldap: &mut Ldap,
        filter: &str,
        gate: &mut Gate,
        deadline: Instant,
        what: &str,
    ) -> Result<Vec<Entry>, Attempt> {
        let q = Query::subtree(&self.cfg.group.base_dn, filter);
        self.paged_search(s, ldap, q, gate, deadline)
            .await
            .map_err(|e| e.into_attempt(what))
    }

    /// The user's groups, each request after the first passing `gate`.
    pub(crate) async fn groups(
        &self,
        s: &Server,
        ldap: &mut Ldap,
        user: &Entry,
        login: &Login,
        gate: Gate,
        deadline: Instant,
    ) -> Result<Vec<Group>, Attempt> {
        let g = &self.cfg.group;
        let mut got = Collected::new(gate);
        if g.token_groups {
            return self
                .token_groups(s, ldap, user, &mut got.gate, deadline)
                .await;
        }
        let p = self.placeholders(user, login)?;
        let frontier = match self.membership_source(user) {
            Some(attr) => {
                self.listed_groups(s, ldap, user, attr, &mut got, deadline)
                    .await?
            }
            None => {
                let filter = self.group_filter_for(&user.dn, &p);
                let found = self
                    .search_groups(s, ldap, &filter, &mut got.gate, deadline, "group search")
                    .await?;
                self.take_new(found, &mut got)
            }
        };
        if g.nested && !g.server_side_nesting && !g.filter.is_empty() {
            self.walk_up(s, ldap, frontier, &p, &mut got, deadline)
                .await?;
        }
        if got.seen.len() > MAX_GROUPS {
            return Err(Attempt::error(format!("more than {MAX_GROUPS} groups")));
        }
        Ok(got.groups)
    }

    /// The membership attribute to read the direct groups from, unless AD sent it in
    /// ranges (more values than MaxValRange), in which case the group search is complete
    /// and the attribute is not.
    fn membership_source<'a>(&'a self, user: &Entry) -> Option<&'a str> {
        let g = &self.cfg.group;
        let attr = g.membership_attribute.as_deref()?;
        if is_ranged(user, attr) {
            if g.filter.is_empty() {
                tracing::warn!(attribute = attr, "the membership attribute is returned in ranges and ldap.group.filter is empty: reading the partial list");
                return Some(attr);
            }
            tracing::debug!(
                attribute = attr,
                "the membership attribute is returned in ranges; searching for the groups"
            );
            return None;
        }
        Some(attr)
    }

    /// Direct groups from the user entry's membership attribute; returns their DNs.
    async fn listed_groups(
        &self,
        s: &Server,
        ldap: &mut Ldap,
        user: &Entry,
        attr: &str,
        got: &mut Collected,
        deadline: Instant,
    ) -> Result<Vec<String>, Attempt> {
        let name_attr = &self.cfg.group.name_attribute;
        let mut frontier = Vec::new();
        for dn in user
            .values(attr)
            .filter_map(|v| std::str::from_utf8(v).ok())
        {
            let name = match first_rdn_value(dn, name_attr) {
                Some(n) => Some(n),
                None => {
                    // The RDN is not the name attribute: read the group entry.
                    let q = Query::entry(dn);
                    let read = self.paged_search(s, ldap, q, &mut got.gate, deadline).await;
                    match read {
                        Ok(mut found) => found.pop().and_then(|e| self.group_name(&e)),
                        // A stale membership value (the group is gone) names no group.
                        Err(OpError::Result { rc: 32, .. }) => continue,
                        Err(e) => return Err(e.into_attempt("group lookup")),
                    }
                }
            };
            if got.add(dn, name) {
                frontier.push(dn.to_string());
            }
        }
        Ok(frontier)
    }

    fn take_new(&self, found: Vec<Entry>, got: &mut Collected) -> Vec<String> {
        let mut new = Vec::new();
        for e in found {
            if got.add(&e.dn, self.group_name(&e)) {
                new.push(e.dn);
            }
        }
        new
    }

    /// Breadth-first walk up the group graph for directories that do not resolve nesting
    /// themselves; `seen` breaks cycles. Reaching `max_nested_depth` with groups that still
    /// have parents is an error: the list would be silently short.
    async fn walk_up(
        &self,
        s: &Server,
        ldap: &mut Ldap,
        mut frontier: Vec<String>,
        p: &Placeholders,
        got: &mut Collected,
        deadline: Instant,
    ) -> Result<(), Attempt> {
        let max_depth = self.cfg.group.max_nested_depth;
        let mut depth = 0;
        while !frontier.is_empty() {
            let mut next = Vec::new();
            for chunk in frontier.chunks(NESTED_BATCH) {
                let parts: String = chunk
                    .iter()
                    .map(|dn| self.group_filter_for(dn, p))
                    .collect();
                let found = self
                    .search_groups(
                        s,
                        ldap,
                        &format!("(|{parts})"),
                        &mut got.gate,
                        deadline,
                        "nested group search",
                    )
                    .await?;
                next.extend(self.take_new(found, got));
                if got.seen.len() > MAX_GROUPS {
                    return Err(Attempt::error(format!("more than {MAX_GROUPS} groups")));
                }
            }
            if !next.is_empty() && depth >= max_depth {
                return Err(Attempt::error(format!(
                    "groups nested deeper than ldap.group.max_nested_depth ({max_depth})"
                )));
            }
            depth += 1;
            frontier = next;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranged_attributes_are_recognised() {
        let e = |name: &str| Entry {
            dn: "CN=x".into(),
            attrs: vec![(name.to_string(), vec![b"CN=g".to_vec()])],
        };
        assert!(is_ranged(&e("memberOf;range=0-1499"), "memberOf"));
        assert!(is_ranged(&e("MEMBEROF;Range=0-*"), "memberOf"));
        assert!(!is_ranged(&e("memberOf"), "memberOf"));
        assert!(!is_ranged(&e("member;range=0-1499"), "memberOf"));
    }
}
