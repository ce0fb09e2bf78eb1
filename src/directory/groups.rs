//! A user's groups: a group search, the membership attribute of the user entry, a nested
//! walk level by level, or Active Directory's in-chain rule. A list cut short by a size,
//! time or depth limit is an error, never a shorter list: a missing group can be a missing
//! deny as much as a missing grant.

use std::collections::HashSet;
use std::time::Instant;

use ldap3::adapters::PagedResults;
use ldap3::{ldap_escape, Ldap, LdapError, SearchEntry, SearchOptions};

use super::classify::{Attempt, OpError};
use super::pool::Server;
use super::{Directory, Entry, Query};
use crate::login::Login;

const PAGE_SIZE: i32 = 500;
/// More groups than this is a directory problem, not a user to pass on.
pub(crate) const MAX_GROUPS: usize = 10_000;
/// Groups per search when walking nested groups level by level.
const NESTED_BATCH: usize = 50;

/// The value of the first RDN of `dn` when its attribute type is `attr`, unescaped (RFC 4514).
pub(crate) fn first_rdn_value(dn: &str, attr: &str) -> Option<String> {
    let (ty, rest) = dn.split_once('=')?;
    if !ty.trim().eq_ignore_ascii_case(attr) {
        return None;
    }
    let mut out: Vec<u8> = Vec::new();
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(*bytes.get(i + 1)?);
                        i += 2;
                    }
                }
            }
            b',' | b'+' | b';' => break,
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().map(|s| s.trim().to_string())
}

/// Whether `entry` holds `attr` only as an AD range slice (`attr;range=0-1499`).
fn is_ranged(entry: &Entry, attr: &str) -> bool {
    entry.attrs.iter().any(|(k, _)| {
        k.split_once(';').is_some_and(|(name, opts)| {
            name.eq_ignore_ascii_case(attr) && opts.to_ascii_lowercase().starts_with("range=")
        })
    })
}

/// Groups collected so far: names, and the DNs seen (lowercased) that break cycles.
#[derive(Default)]
struct Collected {
    seen: HashSet<String>,
    names: Vec<String>,
}

impl Collected {
    /// Adds a group; returns whether it was new.
    fn add(&mut self, dn: &str, name: Option<String>) -> bool {
        if !self.seen.insert(dn.to_lowercase()) {
            return false;
        }
        self.names.extend(name);
        true
    }
}

impl Directory {
    /// Runs a paged subtree (or base) search and returns the entries, skipping
    /// continuation references. Only success is an answer: a size, time or admin limit, a
    /// referral for the base or a missing base is an error.
    async fn paged_search(
        &self,
        s: &Server,
        ldap: &mut Ldap,
        q: Query<'_>,
        deadline: Instant,
    ) -> Result<Vec<Entry>, OpError> {
        let attrs = vec![self.cfg.group.name_attribute.clone()];
        ldap.with_search_options(SearchOptions::new().sizelimit(MAX_GROUPS as i32 + 1));
        let work = async {
            let mut stream = ldap
                .streaming_search_with(
                    PagedResults::new(PAGE_SIZE),
                    q.base,
                    q.scope,
                    q.filter,
                    attrs,
                )
                .await?;
            let mut out = Vec::new();
            while let Some(re) = stream.next().await? {
                if re.is_ref() || re.is_intermediate() {
                    continue;
                }
                out.push(Entry::from_search(SearchEntry::construct(re)));
                if out.len() > MAX_GROUPS {
                    // A server that ignores the size limit: stop reading.
                    return Ok((out, None));
                }
            }
            Ok::<_, LdapError>((out, Some(stream.finish().await)))
        };
        let (out, res) = self.pool.op(s, "search_groups", deadline, work).await?;
        match res {
            Some(r) if r.rc == 0 => Ok(out),
            Some(r) => Err(OpError::Result {
                rc: r.rc,
                text: r.text,
            }),
            None => Err(OpError::Result {
                rc: 4,
                text: format!("more than {MAX_GROUPS} groups"),
            }),
        }
    }

    fn group_name(&self, g: &Entry) -> Option<String> {
        let attr = &self.cfg.group.name_attribute;
        g.values(attr)
            .find_map(|v| std::str::from_utf8(v).ok().map(str::to_string))
            .or_else(|| first_rdn_value(&g.dn, attr))
    }

    fn group_filter_for(&self, dn: &str, login: &Login) -> String {
        self.cfg
            .group
            .filter
            .replace("{dn}", &ldap_escape(dn))
            .replace("{username}", &ldap_escape(login.name()))
            .replace("{login}", &ldap_escape(login.typed()))
    }

    async fn search_groups(
        &self,
        s: &Server,
        ldap: &mut Ldap,
        filter: &str,
        deadline: Instant,
        what: &str,
    ) -> Result<Vec<Entry>, Attempt> {
        let q = Query::subtree(&self.cfg.group.base_dn, filter);
        self.paged_search(s, ldap, q, deadline)
            .await
            .map_err(|e| e.into_attempt(what))
    }

    /// The names of the user's groups.
    pub(crate) async fn groups(
        &self,
        s: &Server,
        ldap: &mut Ldap,
        user: &Entry,
        login: &Login,
        deadline: Instant,
    ) -> Result<Vec<String>, Attempt> {
        let g = &self.cfg.group;
        let mut got = Collected::default();
        let frontier = match self.membership_source(user) {
            Some(attr) => {
                self.listed_groups(s, ldap, user, attr, &mut got, deadline)
                    .await?
            }
            None => {
                let filter = self.group_filter_for(&user.dn, login);
                let found = self
                    .search_groups(s, ldap, &filter, deadline, "group search")
                    .await?;
                self.take_new(found, &mut got)
            }
        };
        if g.nested && !g.server_side_nesting && !g.filter.is_empty() {
            self.walk_up(s, ldap, frontier, login, &mut got, deadline)
                .await?;
        }
        if got.seen.len() > MAX_GROUPS {
            return Err(Attempt::error(format!("more than {MAX_GROUPS} groups")));
        }
        Ok(got.names)
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
                    let read = self.paged_search(s, ldap, Query::entry(dn), deadline).await;
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
        login: &Login,
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
                    .map(|dn| self.group_filter_for(dn, login))
                    .collect();
                let found = self
                    .search_groups(
                        s,
                        ldap,
                        &format!("(|{parts})"),
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
    fn first_rdn_is_unescaped() {
        assert_eq!(
            first_rdn_value("cn=dev\\2c ops,ou=g,dc=x", "cn").as_deref(),
            Some("dev, ops")
        );
        assert_eq!(
            first_rdn_value("CN=Domain Users,CN=Users,DC=x", "cn").as_deref(),
            Some("Domain Users")
        );
        assert_eq!(
            first_rdn_value("cn=a\\,b,dc=x", "cn").as_deref(),
            Some("a,b")
        );
        assert_eq!(first_rdn_value("uid=x,dc=x", "cn"), None);
    }

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
