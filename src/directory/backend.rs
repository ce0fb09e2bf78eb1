//! The LDAP side of [`Backend`] for one [`Directory`]: the three steps of a login (find,
//! verify, or the decoy's equal work), the re-check of an issued token's account and the
//! Kerberos principal's lookup, each on some server of the directory.

use std::time::Instant;

use super::classify::Attempt;
use super::paging::Gate;
use super::{Account, Backend, Directory, Entry, Failure, Found, Query, RejectReason};
use crate::login::Login;
use crate::secret::Password;

impl Backend for Directory {
    async fn find(&self, login: &Login, deadline: Instant) -> Result<Account, Failure> {
        // `EXAMPLE\` or `@example.test` name nobody once the domain is stripped; an empty
        // value in the filter would only ask the directory to confirm that.
        if login.name().is_empty() {
            return Err(Failure::Rejected(RejectReason::UnknownUser));
        }
        if !login.domain_allowed(&self.cfg.user.domains) {
            return Err(Failure::Rejected(RejectReason::ForeignDomain));
        }
        if let Some(dn) = self.template_dn(login) {
            return Ok(Account::by_dn(dn));
        }
        let filter = self.user_filter(login);
        let base = self.cfg.user.base_dn.as_str();
        self.on_some_server(deadline, |s| {
            let filter = filter.as_str();
            async move {
                let mut svc = self.pool.service(&s, deadline).await?;
                let entry = self
                    .find_user(&s, &mut svc, Query::subtree(base, filter), deadline)
                    .await?;
                Ok(Account {
                    dn: entry.dn.clone(),
                    entry: Some(entry),
                })
            }
        })
        .await
    }

    async fn verify(
        &self,
        account: &Account,
        login: &Login,
        password: &Password,
        deadline: Instant,
    ) -> Result<Found, Failure> {
        // An empty password is an unauthenticated bind (RFC 4513 5.1.2) that some servers,
        // AD among them, report as success. It never reaches a server.
        if password.is_empty() {
            return Err(Failure::Rejected(RejectReason::EmptyPassword));
        }
        self.on_some_server(deadline, |s| async move {
            match &account.entry {
                None => {
                    self.direct(&s, &account.dn, login, password, deadline)
                        .await
                }
                Some(entry) => {
                    let (warning, groups) = self
                        .bind_and_groups(&s, entry, login, password, deadline)
                        .await?;
                    Ok(Found::login(
                        entry.clone(),
                        groups,
                        warning,
                        crate::clock::wall(),
                    ))
                }
            }
        })
        .await
    }

    async fn decoy(&self, login: &Login, password: &Password, deadline: Instant) {
        if self.cfg.user.dn_template.is_some() || password.is_empty() {
            return;
        }
        // With {uid} in the group filter, the decoy's group search needs a uid too, one
        // that no group lists, or an unknown name would skip the search and answer faster.
        let attrs = match &self.cfg.group.member_uid_attribute {
            Some(attr) => vec![(attr.clone(), vec![self.decoy_uid().into_bytes()])],
            None => Vec::new(),
        };
        let entry = Entry {
            dn: self.decoy_dn.clone(),
            attrs,
        };
        // Whatever the decoy's bind says (it cannot succeed: nothing has this DN), the
        // answer stays a rejection; only its cost matters.
        let spent = self
            .on_some_server(deadline, |s| {
                let entry = &entry;
                async move {
                    match self
                        .bind_and_groups(&s, entry, login, password, deadline)
                        .await
                    {
                        Err(Attempt::ServerDown(m)) => Err(Attempt::ServerDown(m)),
                        _ => Ok(()),
                    }
                }
            })
            .await;
        if let Err(f) = spent {
            tracing::debug!(failure = ?f, "decoy bind did not complete");
        }
    }

    async fn recheck(&self, dn: &str, login: &Login, deadline: Instant) -> Result<Found, Failure> {
        // Direct bind has nobody to read the entry with: no password, no service account.
        // check-config refuses issued tokens there; a token that still reaches this is
        // refused, never accepted unchecked.
        if self.cfg.service.is_none() {
            return Err(Failure::Error(
                "issued tokens need a service account (ldap.bind_dn)".into(),
            ));
        }
        self.on_some_server(deadline, |s| async move {
            let mut svc = self.pool.service(&s, deadline).await?;
            let entry = self.read_account(&s, &mut svc, dn, login, deadline).await?;
            let groups = self
                .groups(&s, &mut svc, &entry, login, Gate::open(), deadline)
                .await?;
            Ok(Found::read(entry, groups, None, crate::clock::wall()))
        })
        .await
    }

    async fn find_principal(&self, login: &Login, deadline: Instant) -> Result<Found, Failure> {
        if self.cfg.service.is_none() || self.cfg.user.kerberos_filter.is_none() {
            return Err(Failure::Error(
                "Kerberos logins need ldap.bind_dn and ldap.user.kerberos_filter".into(),
            ));
        }
        self.on_some_server(deadline, |s| async move {
            let mut svc = self.pool.service(&s, deadline).await?;
            let entry = match self
                .find_principal_entry(&s, &mut svc, login, deadline)
                .await
            {
                Some(found) => found?,
                None => return Err(Attempt::Final(Failure::Rejected(RejectReason::UnknownUser))),
            };
            let groups = self
                .groups(&s, &mut svc, &entry, login, Gate::open(), deadline)
                .await?;
            Ok(Found::login(entry, groups, None, crate::clock::wall()))
        })
        .await
    }
}
