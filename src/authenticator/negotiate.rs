//! A Kerberos login: the ticket already proved who the client is ([`crate::negotiate`]), so
//! what is left is a password login without the password: the realm picks the directory
//! (an unmapped realm is refused without LDAP traffic), the login takes its place under
//! `login.max_logins_per_directory`, the service account reads the entry
//! `ldap.user.kerberos_filter` finds with its state and groups, and the login's policy
//! decides ([`Authenticator::admit`]): account state, required groups, `system:` names.
//!
//! No lockout budget is spent or checked: nothing is guessed, and the directory's own
//! lockout (a locked account) is read as the account's state. The signed token records no
//! `login`, so its re-check fills `ldap.user.filter` from the account's username, as for a
//! token that never recorded one.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use super::basic::over_ceiling;
use super::{failed, local, Authenticator, Outcome, Resolved, Review, Source};
use crate::directory::Backend;

impl<B: Backend> Authenticator<B> {
    /// Logs in the Kerberos client `principal` (`name@REALM`).
    pub(crate) async fn login_principal(
        self: &Arc<Self>,
        principal: &str,
        deadline: Instant,
    ) -> Review {
        let Some(login) = self.config.kerberos_login(principal) else {
            return local(
                Outcome::Rejected,
                "Kerberos realm not mapped to a directory",
            );
        };
        let auth = self.clone();
        // In a task of its own, as a password login's round trip: a client that goes away
        // does not cut a search halfway.
        let work = tokio::spawn(async move {
            let Some(_slot) = auth.ceiling.enter(login.directory()) else {
                return over_ceiling();
            };
            match auth.directory.find_principal(&login, deadline).await {
                Ok(found) => {
                    let mut resolved = auth.admit(found, &login, None);
                    if let Some(account) = resolved.account.as_mut() {
                        account.login.clear();
                    }
                    resolved.at(&login)
                }
                Err(f) => failed(f, &login).at(&login),
            }
        });
        let resolved = work.await.unwrap_or_else(|_| {
            Resolved::new(
                Outcome::BackendError,
                None,
                Cow::Borrowed("the Kerberos login's directory task failed"),
            )
        });
        Review {
            outcome: resolved.outcome,
            source: if resolved.local {
                Source::Local
            } else {
                Source::Directory
            },
            username: resolved.username,
            detail: resolved.detail,
            account: resolved.account,
            directory: resolved.directory,
            token_id: None,
            password: resolved.password,
        }
    }
}
