//! Finding the user and checking the password: the user search, the user bind (with the
//! password policy control), the direct bind, and the decoy that makes an unknown name
//! cost what a wrong password costs.

use std::time::Instant;

use tokio::sync::watch;

use ldap3::{dn_escape, ldap_escape, Ldap, Scope, SearchEntry, SearchOptions};

use super::classify::{classify_bind, Attempt, BindVerdict, Failure, OpError, RejectReason};
use super::paging::Gate;
use super::pool::Server;
use super::ppolicy::{ppolicy_request, raw_controls, PasswordWarning};
use super::state::{PASSWORD_ATTRS, PASSWORD_EXPIRY_ATTR, STATE_ATTRS};
use super::{Directory, Entry, Query};
use crate::login::Login;

/// LDAP result code 32: the base of a search does not exist.
const NO_SUCH_OBJECT: u32 = 32;
use crate::secret::Password;

impl Directory {
    pub(crate) fn user_filter(&self, login: &Login) -> String {
        self.cfg
            .user
            .filter
            .replace("{username}", &ldap_escape(login.name()))
            .replace("{login}", &ldap_escape(login.typed()))
    }

    /// The DN a direct bind uses for this login.
    pub(crate) fn template_dn(&self, login: &Login) -> Option<String> {
        let template = self.cfg.user.dn_template.as_deref()?;
        Some(template.replace("{username}", &dn_escape(login.name())))
    }

    /// What the user search reads: the identity's attributes, and the password-change
    /// attributes an issued token records.
    fn user_attrs(&self) -> Vec<String> {
        let u = &self.cfg.user;
        let mut attrs = vec![u.username_attribute.clone(), u.uid_attribute.clone()];
        attrs.extend(PASSWORD_ATTRS.map(String::from));
        attrs.push(PASSWORD_EXPIRY_ATTR.to_string());
        attrs.extend(u.extra.values().cloned());
        let g = &self.cfg.group;
        attrs.extend(g.membership_attribute.iter().cloned());
        attrs.extend(g.member_uid_attribute.iter().cloned());
        attrs.sort();
        attrs.dedup();
        attrs
    }

    /// Reads exactly one entry. Two or more, or a search the server cut at its size limit,
    /// is ambiguous: two people must never become one Kubernetes user.
    pub(crate) async fn find_user(
        &self,
        s: &Server,
        ldap: &mut Ldap,
        q: Query<'_>,
        deadline: Instant,
    ) -> Result<Entry, Attempt> {
        self.find_user_with(s, ldap, q, self.user_attrs(), deadline)
            .await
    }

    /// The account behind an issued token, with its state: the entry itself, in one
    /// base-scope search with `ldap.user.filter` filled as the login's search filled it, so
    /// that an account gone and an account the filter no longer admits are both an unknown
    /// user. Read with the user attributes and the account-state attributes.
    pub(crate) async fn read_account(
        &self,
        s: &Server,
        ldap: &mut Ldap,
        dn: &str,
        login: &Login,
        deadline: Instant,
    ) -> Result<Entry, Attempt> {
        let mut attrs = self.user_attrs();
        attrs.extend(STATE_ATTRS.map(String::from));
        // A re-check tells nothing of the expiry: AD need not compute it.
        attrs.retain(|a| a != PASSWORD_EXPIRY_ATTR);
        let filter = self.user_filter(login);
        let q = Query::entry_matching(dn, &filter);
        self.find_user_with(s, ldap, q, attrs, deadline).await
    }

    /// The account of a Kerberos login: one subtree search under the user base with
    /// `ldap.user.kerberos_filter` (`{principal}` the whole principal, `{username}` its
    /// name part, both escaped), reading what [`Directory::read_account`] reads. `None`
    /// without a filter.
    pub(crate) async fn find_principal_entry(
        &self,
        s: &Server,
        ldap: &mut Ldap,
        login: &Login,
        deadline: Instant,
    ) -> Option<Result<Entry, Attempt>> {
        let filter = self
            .cfg
            .user
            .kerberos_filter
            .as_ref()?
            .replace("{principal}", &ldap_escape(login.typed()))
            .replace("{username}", &ldap_escape(login.name()));
        let mut attrs = self.user_attrs();
        attrs.extend(STATE_ATTRS.map(String::from));
        let q = Query::subtree(&self.cfg.user.base_dn, &filter);
        Some(self.find_user_with(s, ldap, q, attrs, deadline).await)
    }

    async fn find_user_with(
        &self,
        s: &Server,
        ldap: &mut Ldap,
        q: Query<'_>,
        attrs: Vec<String>,
        deadline: Instant,
    ) -> Result<Entry, Attempt> {
        ldap.with_search_options(SearchOptions::new().sizelimit(2))
            .with_timeout(self.pool.op_timeout(deadline));
        let search = ldap.search(q.base, q.scope, q.filter, attrs);
        let res = self.pool.op(s, "search_user", deadline, search).await;
        let ldap3::SearchResult(entries, result) = match res {
            Ok(r) => r,
            Err(OpError::Result { rc: 4, .. }) => {
                return Err(Attempt::Final(Failure::Rejected(RejectReason::Ambiguous)))
            }
            Err(OpError::Result {
                rc: NO_SUCH_OBJECT, ..
            }) if matches!(q.scope, Scope::Base) => {
                return Err(Attempt::Final(Failure::Rejected(RejectReason::UnknownUser)))
            }
            Err(e) => return Err(e.into_attempt("user search")),
        };
        let mut entries: Vec<_> = entries
            .into_iter()
            .filter(|e| !e.is_ref() && !e.is_intermediate())
            .collect();
        match result.rc {
            0 => {}
            4 => return Err(Attempt::Final(Failure::Rejected(RejectReason::Ambiguous))),
            // The entry itself is gone (a base search): the account was deleted.
            NO_SUCH_OBJECT if matches!(q.scope, Scope::Base) => {
                return Err(Attempt::Final(Failure::Rejected(RejectReason::UnknownUser)))
            }
            rc => {
                return Err(OpError::Result {
                    rc,
                    text: result.text,
                }
                .into_attempt("user search"))
            }
        }
        match entries.len() {
            0 => Err(Attempt::Final(Failure::Rejected(RejectReason::UnknownUser))),
            1 => Ok(Entry::from_search(SearchEntry::construct(
                entries.remove(0),
            ))),
            _ => Err(Attempt::Final(Failure::Rejected(RejectReason::Ambiguous))),
        }
    }

    /// Binds as `dn` on a pool connection, asking for the password policy state. A
    /// connection whose bind failed in transit is not reused.
    pub(crate) async fn bind_user(
        &self,
        s: &Server,
        dn: &str,
        password: &Password,
        deadline: Instant,
    ) -> Result<Option<PasswordWarning>, Attempt> {
        let mut conn = self.pool.checkout(s, deadline).await?;
        let bind = conn
            .ldap
            .with_controls(ppolicy_request())
            .simple_bind(dn, password.expose());
        match self.pool.op(s, "bind", deadline, bind).await {
            Ok(r) => {
                self.pool.checkin(s, conn);
                match classify_bind(r.rc, &r.text, &raw_controls(r.ctrls)) {
                    BindVerdict::Bound(w) => Ok(w),
                    BindVerdict::Failed(f) => Err(Attempt::Final(f)),
                    BindVerdict::ServerDown(m) => Err(Attempt::ServerDown(m)),
                }
            }
            Err(e) => {
                self.pool.discard(s, conn);
                Err(e.into_attempt("user bind"))
            }
        }
    }

    /// Direct bind: no service account; the user binds by a DN made from a template and then
    /// reads their own entry and groups on that same connection.
    pub(crate) async fn direct(
        &self,
        s: &Server,
        dn: &str,
        login: &Login,
        password: &Password,
        deadline: Instant,
    ) -> Result<super::Found, Attempt> {
        let mut conn = self.pool.checkout(s, deadline).await?;
        let bind = conn
            .ldap
            .with_controls(ppolicy_request())
            .simple_bind(dn, password.expose());
        let r = match self.pool.op(s, "bind", deadline, bind).await {
            Ok(r) => r,
            Err(e) => {
                self.pool.discard(s, conn);
                return Err(e.into_attempt("user bind"));
            }
        };
        let warning = match classify_bind(r.rc, &r.text, &raw_controls(r.ctrls)) {
            BindVerdict::Bound(w) => w,
            BindVerdict::ServerDown(m) => {
                self.pool.checkin(s, conn);
                return Err(Attempt::ServerDown(m));
            }
            BindVerdict::Failed(f) => {
                self.pool.checkin(s, conn);
                // Without a search first, "wrong password" may be "no such user".
                return Err(Attempt::Final(match f {
                    Failure::Rejected(_) => Failure::Rejected(RejectReason::BadCredentials),
                    f => f,
                }));
            }
        };
        let result = async {
            let entry = self
                .find_user(s, &mut conn.ldap, Query::entry(dn), deadline)
                .await?;
            let groups = self
                .groups(s, &mut conn.ldap, &entry, login, Gate::open(), deadline)
                .await?;
            Ok(super::Found::login(
                entry,
                groups,
                warning,
                crate::clock::wall(),
            ))
        }
        .await;
        self.pool.checkin(s, conn);
        result
    }

    /// Search-then-bind for an entry already found: the bind on a pool connection and the
    /// group search on the service connection go out together (the group search needs only
    /// the DN), so a miss costs the user search plus the slower of the two. The bind's
    /// verdict comes first: a wrong password is a rejection whatever the groups said, and
    /// the group read sends nothing past its first request until the bind succeeded.
    pub(crate) async fn bind_and_groups(
        &self,
        s: &Server,
        entry: &Entry,
        login: &Login,
        password: &Password,
        deadline: Instant,
    ) -> Result<(Option<PasswordWarning>, Vec<super::Group>), Attempt> {
        let mut svc = self.pool.service(s, deadline).await?;
        let (verdict, gate) = watch::channel(None);
        let bind = async {
            let bound = self.bind_user(s, &entry.dn, password, deadline).await;
            verdict.send_replace(Some(bound.is_ok()));
            bound
        };
        let groups = self.groups(s, &mut svc, entry, login, Gate::after(gate), deadline);
        let (bound, groups) = tokio::join!(bind, groups);
        let warning = bound?;
        Ok((warning, groups?))
    }
}
