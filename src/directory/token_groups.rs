//! `ldap.group.token_groups`: Active Directory's own answer to "which groups is this user
//! in". One base-scope read of the user's constructed `tokenGroups` (the SIDs of every
//! security group the user is in, nested ones too, computed by the DC), then the SIDs
//! resolved to group entries under `ldap.group.base_dn` in batched `objectSid` searches,
//! remembered briefly ([`super::sid_cache`]). It does the work the in-chain matching rule
//! makes the DC do for every group of the domain once per user, and answers the same:
//!
//! - the in-chain rule follows `member` values, and a user's primary group (Domain Users)
//!   is no `member` value: it is a number on the user entry (`primaryGroupID`). The token
//!   holds it, and the groups it is nested in (BUILTIN\Users). Those (found by a walk up
//!   from the primary group, remembered for a while) are left out unless the user reaches
//!   them through `member` as well, which the in-chain rule, limited to those few of them
//!   that are under the group base, answers;
//! - groups outside the group base are left out, as a search under it never finds them.
//!
//! The directory is not trusted: a value that is not a SID is skipped and counted
//! (`kube_ldap_webhook_ldap_malformed_sids_total`), never a panic; a user entry without
//! `tokenGroups` at all (a bind account that may not read it, or not AD) is an error, not
//! a user without groups.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use ldap3::{dn_escape, ldap_escape, Ldap};

use super::classify::Attempt;
use super::paging::{Gate, MAX_GROUPS};
use super::pool::Server;
use super::sid::{Sid, SidError};
use super::{Directory, Entry, Group, Query};
use crate::metrics::DirectoryLabels;

/// SIDs per resolving search: a filter of about 9 KB.
pub(crate) const SID_BATCH: usize = 100;
/// Groups per search when walking up from the primary group, as the level walk.
const NESTED_BATCH: usize = 50;
/// LDAP_MATCHING_RULE_IN_CHAIN.
const IN_CHAIN: &str = "1.2.840.113556.1.4.1941";

/// What the user's entry says about its token.
#[derive(Debug, PartialEq)]
pub(super) struct Token {
    /// The SIDs of `tokenGroups` that parsed, sorted, without repeats.
    pub sids: Vec<Sid>,
    /// Why each value that did not parse did not.
    pub malformed: Vec<SidError>,
    /// The primary group: the user's `objectSid` with `primaryGroupID` as its RID.
    pub primary: Sid,
}

impl Token {
    /// Reads `tokenGroups`, `objectSid` and `primaryGroupID` of a base-scope read.
    pub(super) fn read(entry: &Entry) -> Result<Token, String> {
        let mut values = entry.values("tokenGroups").peekable();
        if values.peek().is_none() {
            return Err(
                "the user entry has no tokenGroups: the bind account may not read it \
                 (Active Directory's \"Read tokenGroups\"), or the directory is not Active \
                 Directory"
                    .into(),
            );
        }
        let (mut sids, mut malformed) = (Vec::new(), Vec::new());
        for v in values {
            match Sid::parse(v) {
                Ok(sid) => sids.push(sid),
                Err(e) => malformed.push(e),
            }
        }
        sids.sort_unstable();
        sids.dedup();
        let user = match entry.values("objectSid").collect::<Vec<_>>().as_slice() {
            [one] => Sid::parse(one).map_err(|e| format!("the user's objectSid: {e}"))?,
            other => {
                return Err(format!(
                    "the user entry has {} objectSid values",
                    other.len()
                ))
            }
        };
        let rid = match entry
            .values("primaryGroupID")
            .collect::<Vec<_>>()
            .as_slice()
        {
            [one] => std::str::from_utf8(one)
                .ok()
                .and_then(|t| t.parse::<u32>().ok())
                .ok_or("the user's primaryGroupID is not a number")?,
            other => {
                return Err(format!(
                    "the user entry has {} primaryGroupID values",
                    other.len()
                ))
            }
        };
        let primary = user
            .sibling(rid)
            .ok_or("the user's objectSid has no RID to find the primary group by")?;
        Ok(Token {
            sids,
            malformed,
            primary,
        })
    }
}

/// `(|(objectSid=…)(objectSid=…)…)`, each SID escaped byte by byte.
fn any_of(sids: &[&Sid]) -> String {
    let parts: String = sids
        .iter()
        .map(|s| format!("(objectSid={})", s.filter_value()))
        .collect();
    format!("(|{parts})")
}

/// `DC=example,DC=test` for a DN in the domain example.test.
fn domain_root(dn: &str) -> Option<String> {
    let domain = crate::dn::domain(dn)?;
    let rdns: Vec<String> = domain
        .split('.')
        .map(|label| format!("DC={}", dn_escape(label)))
        .collect();
    Some(rdns.join(","))
}

/// The `objectSid` of each entry that has a well-formed one.
fn sids_of(entries: Vec<Entry>) -> impl Iterator<Item = (Sid, Entry)> {
    entries.into_iter().filter_map(|e| {
        let sid = Sid::parse(e.values("objectSid").next()?).ok()?;
        Some((sid, e))
    })
}

impl Directory {
    /// The user's groups from `tokenGroups`; every request after the first passes `gate`.
    pub(super) async fn token_groups(
        &self,
        s: &Server,
        ldap: &mut Ldap,
        user: &Entry,
        gate: &mut Gate,
        deadline: Instant,
    ) -> Result<Vec<Group>, Attempt> {
        let attrs = ["tokenGroups", "objectSid", "primaryGroupID"].map(String::from);
        let read = self
            .paged_search_for(
                s,
                ldap,
                Query::entry(&user.dn),
                attrs.to_vec(),
                gate,
                deadline,
            )
            .await
            .map_err(|e| e.into_attempt("tokenGroups read"))?;
        let Some(entry) = read.first() else {
            return Err(Attempt::error("the user entry was not returned"));
        };
        let token = Token::read(entry).map_err(Attempt::error)?;
        self.count_malformed(&user.dn, &token.malformed);
        if token.sids.len() > MAX_GROUPS {
            return Err(Attempt::error(format!("more than {MAX_GROUPS} groups")));
        }
        let found = self.resolve(s, ldap, &token.sids, gate, deadline).await?;
        let primary_side = self
            .primary_side(s, ldap, &token.primary, &user.dn, gate, deadline)
            .await?;
        let suspects: Vec<&Sid> = found
            .keys()
            .filter(|sid| primary_side.contains(*sid))
            .collect();
        let confirmed = self
            .reached_by_member(s, ldap, &user.dn, &suspects, gate, deadline)
            .await?;
        Ok(found
            .into_iter()
            .filter(|(sid, _)| !primary_side.contains(sid) || confirmed.contains(sid))
            .map(|(_, g)| g)
            .collect())
    }

    fn count_malformed(&self, dn: &str, malformed: &[SidError]) {
        let Some(first) = malformed.first() else {
            return;
        };
        let n = malformed.len();
        self.metrics
            .ldap_malformed_sids
            .get_or_create(&DirectoryLabels {
                directory: self.name.clone(),
            })
            .inc_by(n as u64);
        tracing::warn!(directory = %self.name, user = dn, skipped = n, first = %first, "tokenGroups values that are not SIDs were skipped");
    }

    /// Each SID's group under the group base, from the cache or in batched searches.
    async fn resolve(
        &self,
        s: &Server,
        ldap: &mut Ldap,
        sids: &[Sid],
        gate: &mut Gate,
        deadline: Instant,
    ) -> Result<HashMap<Sid, Group>, Attempt> {
        let now = crate::clock::now();
        let mut found = HashMap::new();
        let mut unknown = Vec::new();
        for sid in sids {
            match self.sids.group(sid, now) {
                Some(Some(g)) => drop(found.insert(sid.clone(), g)),
                Some(None) => {}
                None => unknown.push(sid),
            }
        }
        let attrs = vec![self.cfg.group.name_attribute.clone(), "objectSid".into()];
        for batch in unknown.chunks(SID_BATCH) {
            let filter = format!("(&(objectClass=group){})", any_of(batch));
            let q = Query::subtree(&self.cfg.group.base_dn, &filter);
            let entries = self
                .paged_search_for(s, ldap, q, attrs.clone(), gate, deadline)
                .await
                .map_err(|e| e.into_attempt("tokenGroups group search"))?;
            let mut groups: HashMap<Sid, Group> = sids_of(entries)
                .map(|(sid, e)| {
                    let name = self.group_name(&e);
                    (sid, Group { dn: e.dn, name })
                })
                .collect();
            // Only the SIDs asked for: an entry the filter should not have matched names
            // nothing.
            for &sid in batch {
                let group = groups.remove(sid);
                self.sids.put_group(sid.clone(), group.clone(), now);
                if let Some(g) = group {
                    found.insert(sid.clone(), g);
                }
            }
        }
        Ok(found)
    }

    /// The primary group and every group it is nested in, anywhere in the user's domain:
    /// the part of the token the user may not reach through `member`. Walked up level by
    /// level from `(member=<SID=…>)`, each level one search per [`NESTED_BATCH`] groups:
    /// the in-chain rule from the primary group would be the DC following every group's
    /// members, the very cost tokenGroups avoids, and a primary group is in few groups.
    async fn primary_side(
        &self,
        s: &Server,
        ldap: &mut Ldap,
        primary: &Sid,
        user_dn: &str,
        gate: &mut Gate,
        deadline: Instant,
    ) -> Result<Arc<HashSet<Sid>>, Attempt> {
        let now = crate::clock::now();
        if let Some(known) = self.sids.nested_in(primary, now) {
            return Ok(known);
        }
        let root = domain_root(user_dn).unwrap_or_else(|| self.cfg.group.base_dn.clone());
        let attrs = vec!["objectSid".to_string()];
        let mut side = HashSet::from([primary.clone()]);
        let mut seen = HashSet::new();
        let mut filters = vec![format!("(member=<SID={primary}>)")];
        let max_depth = self.cfg.group.max_nested_depth;
        for depth in 0.. {
            if filters.is_empty() {
                break;
            }
            if depth > max_depth {
                return Err(Attempt::error(format!(
                    "the primary group is nested deeper than ldap.group.max_nested_depth \
                     ({max_depth})"
                )));
            }
            let mut next = Vec::new();
            for filter in &filters {
                let q = Query::subtree(&root, filter);
                let entries = self
                    .paged_search_for(s, ldap, q, attrs.clone(), gate, deadline)
                    .await
                    .map_err(|e| e.into_attempt("primary group search"))?;
                for (sid, e) in sids_of(entries) {
                    if seen.insert(e.dn.to_lowercase()) {
                        side.insert(sid);
                        next.push(e.dn);
                    }
                }
                if side.len() > MAX_GROUPS {
                    return Err(Attempt::error(format!(
                        "the primary group is in more than {MAX_GROUPS} groups"
                    )));
                }
            }
            filters = next
                .chunks(NESTED_BATCH)
                .map(|batch| {
                    let parts: String = batch
                        .iter()
                        .map(|dn| format!("(member={})", ldap_escape(dn)))
                        .collect();
                    format!("(|{parts})")
                })
                .collect();
        }
        let side = Arc::new(side);
        self.sids.put_nested_in(primary.clone(), side.clone(), now);
        Ok(side)
    }

    /// Which of `suspects` the user is in through `member` values, by the in-chain rule
    /// limited to them (they are few: the primary group's side of the token).
    async fn reached_by_member(
        &self,
        s: &Server,
        ldap: &mut Ldap,
        user_dn: &str,
        suspects: &[&Sid],
        gate: &mut Gate,
        deadline: Instant,
    ) -> Result<HashSet<Sid>, Attempt> {
        let mut confirmed = HashSet::new();
        for batch in suspects.chunks(SID_BATCH) {
            let filter = format!(
                "(&{}(member:{IN_CHAIN}:={}))",
                any_of(batch),
                ldap_escape(user_dn)
            );
            let q = Query::subtree(&self.cfg.group.base_dn, &filter);
            let entries = self
                .paged_search_for(s, ldap, q, vec!["objectSid".into()], gate, deadline)
                .await
                .map_err(|e| e.into_attempt("primary group membership search"))?;
            confirmed.extend(sids_of(entries).map(|(sid, _)| sid));
        }
        Ok(confirmed)
    }
}

#[cfg(test)]
mod tests;
