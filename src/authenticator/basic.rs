//! A basic token's round trip: find the account, check its lockout budget, bind (or spend
//! a decoy's work on a name that matched nothing), and build the Kubernetes user.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use super::{failed, Authenticator, Outcome, Resolved};
use crate::directory::state::password_version;
use crate::directory::{AccountState, Backend, Entry, Failure, Found, RejectReason};
use crate::identity;
use crate::issued::Subject;
use crate::lockout::{Key, Refused, Trust};
use crate::login::Login;
use crate::metrics::EventLabels;
use crate::secret::Password;
use crate::tokenreview::User;

impl<B: Backend> Authenticator<B> {
    pub(super) async fn resolve(
        &self,
        raw: &str,
        password: &Password,
        trust: Trust,
        deadline: Instant,
    ) -> Resolved {
        let login = self.config.login(raw);
        let account = match self.directory.find(&login, deadline).await {
            Ok(a) => a,
            Err(Failure::Rejected(r @ (RejectReason::UnknownUser | RejectReason::Ambiguous))) => {
                return self.unknown(&login, password, r, deadline).await
            }
            Err(f) => return failed(f, &login),
        };
        let attempt = match self
            .lockout
            .begin(Key::account(&login.scoped(&account.dn)), trust, deadline)
            .await
        {
            Ok(a) => a,
            Err(refused) => return self.refused(refused),
        };
        match self
            .directory
            .verify(&account, &login, password, deadline)
            .await
        {
            Ok(found) => {
                attempt.succeeded();
                self.accept(found, &login)
            }
            Err(
                f @ Failure::Rejected(
                    RejectReason::WrongPassword
                    | RejectReason::BadCredentials
                    | RejectReason::UnknownUser,
                ),
            ) => {
                attempt.failed();
                failed(f, &login).confirmed_as(self.confirmed_name(account.entry(), &login))
            }
            Err(f) => failed(f, &login).confirmed_as(self.confirmed_name(account.entry(), &login)),
        }
    }

    /// The account's name as a review's log line gives it (see [`identity::username`]);
    /// none without an entry (a direct bind that failed read nothing).
    fn confirmed_name(&self, entry: Option<&Entry>, login: &Login) -> Option<String> {
        let (ldap, ident) = self.config.directory_of(login);
        identity::username(entry?, login.name(), &ldap.user, ident).ok()
    }

    /// A name that matched nothing (or too much) draws on its own budget and costs a decoy
    /// bind and group search, so that it reads like a wrong password in time as in bytes.
    async fn unknown(
        &self,
        login: &Login,
        password: &Password,
        why: RejectReason,
        deadline: Instant,
    ) -> Resolved {
        match self
            .lockout
            .begin(Key::unknown(login.key()), Trust::Unknown, deadline)
            .await
        {
            Ok(attempt) => {
                self.directory.decoy(login, password, deadline).await;
                attempt.failed();
                Resolved::new(Outcome::Rejected, None, why.label())
            }
            Err(refused) => self.refused(refused),
        }
    }

    fn refused(&self, refused: Refused) -> Resolved {
        match refused {
            Refused::Locked => {
                self.metrics.lockout_refusals.inc();
                Resolved::locked_out()
            }
            Refused::Deadline => Resolved::new(
                Outcome::BackendError,
                None,
                "deadline reached waiting for other attempts on this account",
            ),
        }
    }

    pub(super) fn accept(&self, found: Found, login: &Login) -> Resolved {
        let (ldap, ident) = self.config.directory_of(login);
        let confirmed = self.confirmed_name(Some(&found.entry), login);
        let mapped = identity::map(&found.entry, login.name(), found.groups, &ldap.user, ident);
        let mapped = match mapped {
            Ok(m) => m,
            Err(e @ identity::IdentityError::ReservedUsername(_)) => {
                self.metrics
                    .reserved_names
                    .get_or_create(&EventLabels { event: "username" })
                    .inc();
                tracing::warn!(error = %e, "login refused");
                return Resolved::new(
                    Outcome::Rejected,
                    Some(login),
                    RejectReason::ReservedName.label(),
                )
                .confirmed_as(confirmed);
            }
            // Only reached with the right password, so it tells nothing to someone without.
            Err(identity::IdentityError::NotInRequiredGroup) => {
                let state = AccountState::NotInRequiredGroup;
                return Resolved::new(Outcome::AccountState(state), Some(login), state.label())
                    .confirmed_as(confirmed);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot build the Kubernetes user from the directory entry");
                return Resolved::new(Outcome::BackendError, Some(login), e.to_string())
                    .confirmed_as(confirmed);
            }
        };
        if !mapped.reserved_groups.is_empty() {
            let n = mapped.reserved_groups.len() as u64;
            self.metrics
                .reserved_names
                .get_or_create(&EventLabels { event: "group" })
                .inc_by(n);
            if let Some(held) = self.reserved_log.allow() {
                tracing::warn!(groups = ?mapped.reserved_groups, earlier_lines_held_back = held,
                    "dropped directory groups that would be system: groups in Kubernetes");
            }
        }
        let detail: Cow<'static, str> = match found.warning {
            None => Cow::Borrowed("bound"),
            Some(w) => {
                self.metrics
                    .password_warnings
                    .get_or_create(&EventLabels { event: w.label() })
                    .inc();
                Cow::Owned(format!("bound; password policy: {w:?}"))
            }
        };
        let account = Subject {
            uid: mapped.user.uid.clone(),
            directory: login.scope().unwrap_or_default().to_string(),
            dn: found.entry.dn.clone(),
            username: mapped.user.username.clone(),
            password_version: password_version(&found.entry),
        };
        Resolved {
            account: Some(Box::new(account)),
            ..Resolved::new(
                Outcome::Accepted(Arc::new(User::new(&mapped.user))),
                Some(login),
                detail,
            )
            .confirmed_as(Some(mapped.user.username.clone()))
        }
    }
}
