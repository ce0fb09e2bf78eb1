//! A user's groups: a group search, the membership attribute of the user entry, a nested
//! walk level by level, or Active Directory's in-chain rule. A list cut short by a size,
//! time or depth limit is an error, never a shorter list: a missing group can be a missing
//! deny as much as a missing grant.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ldap3::asn1::parse_tag;
use ldap3::controls::{Control, ControlType, PagedResults};
use ldap3::{ldap_escape, Ldap, LdapError, LdapResult, SearchEntry, SearchOptions, SearchStream};
use tokio::sync::watch;

use super::classify::{Attempt, OpError};
use super::dn::first_rdn_value;
use super::pool::Server;
use super::{Directory, Entry, Group, Query};
use crate::login::Login;

const PAGE_SIZE: i32 = 500;
/// More groups than this is a directory problem, not a user to pass on.
pub(crate) const MAX_GROUPS: usize = 10_000;
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

/// Leave for a group read to send more than its first request. With search-then-bind the
/// first group search goes out beside the bind; every later request (a second page, a
/// group entry, a nesting level) waits for the bind's verdict and is never sent after a
/// failed one, and a failed bind ends the read of the first at once: a wrong password then
/// costs one group request and the bind's time whatever the number of groups, as the
/// decoy's does.
pub(crate) struct Gate {
    /// `Some(true)` once the bind succeeded, `Some(false)` once it failed; `None` for a
    /// read that waits for nothing (direct bind, re-check).
    verdict: Option<watch::Receiver<Option<bool>>>,
    sent: bool,
}

impl Gate {
    /// A gate that never closes.
    pub(crate) fn open() -> Gate {
        Gate {
            verdict: None,
            sent: false,
        }
    }

    /// A gate that opens past the first request when the bind reported on `verdict`
    /// succeeded; a sender dropped without a verdict counts as a failed bind.
    pub(crate) fn after(verdict: watch::Receiver<Option<bool>>) -> Gate {
        Gate {
            verdict: Some(verdict),
            sent: false,
        }
    }

    /// Resolves once the bind failed; never for a gate without a bind or after a success.
    async fn shut(&mut self) {
        let failed = match &mut self.verdict {
            Some(v) => !matches!(v.wait_for(Option::is_some).await.as_deref(), Ok(Some(true))),
            None => false,
        };
        if !failed {
            std::future::pending::<()>().await;
        }
    }

    /// Whether the next request may go out.
    async fn pass(&mut self) -> bool {
        let first = !std::mem::replace(&mut self.sent, true);
        match &mut self.verdict {
            Some(v) if !first => {
                matches!(v.wait_for(Option::is_some).await.as_deref(), Ok(Some(true)))
            }
            _ => true,
        }
    }
}

/// Reads what is left of a search nobody waits for, for at most `limit`: ldap3 logs a
/// warning for every entry of a search whose stream was dropped.
async fn drain(mut stream: SearchStream<'static, String, Vec<String>>, limit: Duration) {
    let _ = tokio::time::timeout(limit, async {
        while let Ok(Some(_)) = stream.next().await {}
        stream.finish().await
    })
    .await;
}

/// How a paged search ended.
enum End {
    Done(LdapResult),
    /// A server that ignores the size limit: reading stopped.
    TooMany,
    /// The gate stayed shut: the bind failed.
    Stopped,
    /// The paged-results control of a page's end did not parse.
    Malformed,
}

/// The paging cookie of a search's last page: empty when it was the last one (or the
/// server does not page), `None` when the control is malformed. Parsed here rather than by
/// ldap3's `PagedResults` parser, which panics on a malformed value.
fn next_cookie(res: &LdapResult) -> Option<Vec<u8>> {
    let cookie = |val: &[u8]| -> Option<Vec<u8>> {
        let (_, tag) = parse_tag(val).ok()?;
        let mut parts = tag.expect_constructed()?.into_iter();
        let _size = parts.next()?;
        parts.next()?.expect_primitive()
    };
    match res.ctrls.iter().find_map(|c| match c {
        Control(Some(ControlType::PagedResults), raw) => Some(raw.val.as_deref()),
        _ => None,
    }) {
        None => Some(Vec::new()),
        Some(val) => val.and_then(cookie),
    }
}

impl Directory {
    /// Runs a paged subtree (or base) search and returns the entries, skipping
    /// continuation references. Only success is an answer: a size, time or admin limit, a
    /// referral for the base or a missing base is an error. Each page passes `gate` first.
    async fn paged_search(
        &self,
        s: &Server,
        ldap: &mut Ldap,
        q: Query<'_>,
        gate: &mut Gate,
        deadline: Instant,
    ) -> Result<Vec<Entry>, OpError> {
        let attrs = vec![self.cfg.group.name_attribute.clone()];
        let work = async {
            let mut out = Vec::new();
            let mut cookie = Vec::new();
            loop {
                if !gate.pass().await {
                    return Ok((out, End::Stopped));
                }
                ldap.with_search_options(SearchOptions::new().sizelimit(MAX_GROUPS as i32 + 1))
                    .with_controls(PagedResults {
                        size: PAGE_SIZE,
                        cookie: std::mem::take(&mut cookie),
                    });
                let mut stream = ldap
                    .streaming_search(q.base, q.scope, q.filter, attrs.clone())
                    .await?;
                loop {
                    let re = tokio::select! {
                        biased;
                        () = gate.shut() => {
                            // The bind failed: no waiting for the rest of a page whose size
                            // tells how many groups the user has. It is read and dropped in
                            // the background, which keeps the shared connection quiet.
                            tokio::spawn(drain(stream, self.pool.op_timeout(deadline)));
                            return Ok((out, End::Stopped));
                        }
                        re = stream.next() => re?,
                    };
                    let Some(re) = re else { break };
                    if re.is_ref() || re.is_intermediate() {
                        continue;
                    }
                    out.push(Entry::from_search(SearchEntry::construct(re)));
                    if out.len() > MAX_GROUPS {
                        return Ok((out, End::TooMany));
                    }
                }
                let res = stream.finish().await;
                if res.rc != 0 {
                    return Ok::<_, LdapError>((out, End::Done(res)));
                }
                match next_cookie(&res) {
                    Some(next) if next.is_empty() => return Ok((out, End::Done(res))),
                    Some(next) => cookie = next,
                    None => return Ok((out, End::Malformed)),
                }
            }
        };
        let (out, end) = self.pool.op(s, "search_groups", deadline, work).await?;
        match end {
            End::Done(r) if r.rc == 0 => Ok(out),
            End::Done(r) => Err(OpError::Result {
                rc: r.rc,
                text: r.text,
            }),
            End::TooMany => Err(OpError::Result {
                rc: 4,
                text: format!("more than {MAX_GROUPS} groups"),
            }),
            End::Malformed => Err(OpError::Result {
                rc: 2,
                text: "a malformed paged-results control".into(),
            }),
            // "other": never seen, as the bind's failure is the answer.
            End::Stopped => Err(OpError::Result {
                rc: 80,
                text: "the bind failed: groups not read".into(),
            }),
        }
    }

    fn group_name(&self, g: &Entry) -> Option<String> {
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
        let p = self.placeholders(user, login)?;
        let mut got = Collected::new(gate);
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

    fn page_end(val: Option<Vec<u8>>) -> LdapResult {
        let raw = ldap3::controls::RawControl {
            ctype: "1.2.840.113556.1.4.319".to_string(),
            crit: false,
            val,
        };
        LdapResult {
            rc: 0,
            matched: String::new(),
            text: String::new(),
            refs: vec![],
            ctrls: vec![Control(Some(ControlType::PagedResults), raw)],
        }
    }

    #[test]
    fn the_paging_cookie_is_read_and_a_malformed_control_is_no_cookie_but_an_error() {
        let pr = |cookie: &[u8]| {
            let raw: ldap3::controls::RawControl = PagedResults {
                size: 0,
                cookie: cookie.to_vec(),
            }
            .into();
            page_end(raw.val)
        };
        assert_eq!(next_cookie(&pr(b"more")), Some(b"more".to_vec()));
        assert_eq!(next_cookie(&pr(b"")), Some(Vec::new()));
        for bad in [
            None,
            Some(vec![]),
            Some(vec![0x30, 0x03, 0x02, 0x01]),
            Some(vec![0x04, 0x00]),
        ] {
            assert_eq!(next_cookie(&page_end(bad.clone())), None, "{bad:?}");
        }
        let unpaged = LdapResult {
            ctrls: vec![],
            ..page_end(None)
        };
        assert_eq!(
            next_cookie(&unpaged),
            Some(Vec::new()),
            "a server that does not page"
        );
    }
}
