//! Paged searches (RFC 2696) for the group read, page by page, each page passing a
//! [`Gate`]: with search-then-bind, nothing past the first request goes out before the
//! bind succeeded, and a failed bind ends the read at once.

use std::time::{Duration, Instant};

use ldap3::asn1::parse_tag;
use ldap3::controls::{Control, ControlType, PagedResults};
use ldap3::{Ldap, LdapError, LdapResult, SearchEntry, SearchOptions, SearchStream};
use tokio::sync::watch;

use super::classify::OpError;
use super::pool::Server;
use super::{Directory, Entry, Query};

const PAGE_SIZE: i32 = 500;
/// More groups than this is a directory problem, not a user to pass on: the paged read
/// stops there, and the group walk (`groups.rs`) counts against it too.
pub(crate) const MAX_GROUPS: usize = 10_000;

/// Leave for a group read to send more than its first request. With search-then-bind the
/// first group search goes out beside the bind; every later request (a second page, a
/// group entry, a nesting level) waits for the bind's verdict and is never sent after a
/// failed one, and a failed bind ends the read of the first at once: a wrong password then
/// costs one group request and is answered when the bind failed, whatever the number of
/// groups, as the decoy's is.
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
    pub(super) async fn paged_search(
        &self,
        s: &Server,
        ldap: &mut Ldap,
        q: Query<'_>,
        gate: &mut Gate,
        deadline: Instant,
    ) -> Result<Vec<Entry>, OpError> {
        let attrs = vec![self.cfg.group.name_attribute.clone()];
        self.paged_search_for(s, ldap, q, attrs, gate, deadline)
            .await
    }

    /// [`Directory::paged_search`] reading `attrs` instead of the group name.
    pub(super) async fn paged_search_for(
        &self,
        s: &Server,
        ldap: &mut Ldap,
        q: Query<'_>,
        attrs: Vec<String>,
        gate: &mut Gate,
        deadline: Instant,
    ) -> Result<Vec<Entry>, OpError> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
