//! A basic token's round trip: a login takes its place under `login.max_logins_per_directory`, find
//! the account, check its lockout budget, bind (or spend a decoy's work on a name that
//! matched nothing), and build the Kubernetes user. A credential the directory accepted
//! before skips the ceiling and the lockout budget: the directory decides for it.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{failed, Authenticator, Outcome, PasswordNotice, Resolved};
use crate::audit::{Event, Kind};
use crate::directory::{
    AccountState, Backend, Entry, Failure, Found, PasswordWarning, RejectReason,
};
use crate::identity;
use crate::issued::{Subject, Verified};
use crate::lockout::{Blocked, Key, Trust};
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
        ceiling: bool,
        deadline: Instant,
    ) -> Resolved {
        let login = self.config.login(raw);
        self.resolve_login(&login, password, trust, ceiling, deadline)
            .await
            .at(&login)
    }

    async fn resolve_login(
        &self,
        login: &Login,
        password: &Password,
        trust: Trust,
        ceiling: bool,
        deadline: Instant,
    ) -> Resolved {
        let proof = self.lockout.proof(login, password);
        let window = self.trust_window();
        let trust = trust.or(self.lockout.accepted_before(&proof, window));
        let _slot = match (ceiling, trust) {
            (true, Trust::Unknown) => match self.ceiling.enter(login.directory()) {
                Some(slot) => Some(slot),
                None => return over_ceiling(),
            },
            _ => None,
        };
        let account = match self.directory.find(login, deadline).await {
            Ok(a) => a,
            Err(Failure::Rejected(r @ (RejectReason::UnknownUser | RejectReason::Ambiguous))) => {
                return self.unknown(login, password, r, deadline).await
            }
            Err(f) => return failed(f, login),
        };
        let key = Key::account(&login.scoped(&account.dn));
        let attempt = match self.lockout.begin(key.clone(), trust, deadline).await {
            Ok(a) => a,
            Err(refused) => return self.refused(refused),
        };
        match self
            .directory
            .verify(&account, login, password, deadline)
            .await
        {
            Ok(found) => {
                attempt.succeeded();
                let resolved = self.admit(found, login, None);
                match resolved.outcome {
                    Outcome::Accepted(_) => self.lockout.remember(proof, &key, window),
                    _ => self.lockout.forget(&proof),
                }
                resolved
            }
            Err(
                f @ Failure::Rejected(
                    RejectReason::WrongPassword
                    | RejectReason::BadCredentials
                    | RejectReason::UnknownUser,
                ),
            ) => {
                if attempt.failed() {
                    self.lockout_started(login, self.confirmed_name(account.entry(), login));
                }
                self.lockout.forget(&proof);
                failed(f, login).confirmed_as(self.confirmed_name(account.entry(), login))
            }
            Err(f @ (Failure::Rejected(_) | Failure::AccountState(_))) => {
                self.lockout.forget(&proof);
                failed(f, login).confirmed_as(self.confirmed_name(account.entry(), login))
            }
            Err(f) => failed(f, login).confirmed_as(self.confirmed_name(account.entry(), login)),
        }
    }

    /// How long a credential the directory accepted stays trusted: as long as a review
    /// would trust its cached answer (`cache.stale_ttl`, or `cache.ttl` when longer).
    fn trust_window(&self) -> Duration {
        self.config.cache.ttl.max(self.config.cache.stale_ttl)
    }

    /// The log line's detail of an accepted bind, and what a login tells the user: the
    /// bind's password-policy warning, else the entry's expiry once it is within
    /// `login.password_expiry_warning` (AD computes one for every account, which is no
    /// warning while it is weeks away). Each warning is counted.
    fn password_warning(
        &self,
        warning: Option<PasswordWarning>,
        expires_in: Option<Duration>,
    ) -> (Cow<'static, str>, Option<PasswordNotice>) {
        let window = self.password_expiry_window();
        let warning = warning.or_else(|| {
            expires_in
                .filter(|left| *left <= window)
                .map(|left| PasswordWarning::Expiring(left.as_secs()))
        });
        let Some(w) = warning else {
            return (Cow::Borrowed("bound"), None);
        };
        self.metrics
            .password_warnings
            .get_or_create(&EventLabels { event: w.label() })
            .inc();
        let notice = PasswordNotice::of(w, window, crate::clock::wall());
        (Cow::Owned(format!("bound; password policy: {w:?}")), notice)
    }

    /// `login.password_expiry_warning`; none without a login endpoint, the only place
    /// that tells.
    fn password_expiry_window(&self) -> Duration {
        self.config
            .login
            .as_ref()
            .map_or(Duration::ZERO, |l| l.password_expiry_warning)
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
                if attempt.failed() {
                    self.lockout_started(login, None);
                }
                Resolved::new(Outcome::Rejected, None, why.label())
            }
            Err(refused) => self.refused(refused),
        }
    }

    /// The audit event of a failure that used up an account's budget. `name` is the
    /// account as the directory spells it; a name that matched nothing is not written, as
    /// in the log: what was typed there may be a password typed into the wrong field.
    fn lockout_started(&self, login: &Login, name: Option<String>) {
        let reason = format!(
            "{} failed logins within cache.failure_window: further attempts are refused without a bind",
            self.config.cache.max_failures
        );
        self.audit.record(Event {
            directory: self.config.directory_name(login.directory()),
            username: name.as_deref(),
            ..Event::new(Kind::LockoutStart, "locked", &reason)
        });
    }

    fn refused(&self, refused: Blocked) -> Resolved {
        match refused {
            Blocked::Locked => {
                self.metrics.lockout_refusals.inc();
                Resolved::locked_out()
            }
            Blocked::Deadline => Resolved::new(
                Outcome::BackendError,
                None,
                "deadline reached waiting for other attempts on this account",
            ),
        }
    }

    /// Whether `found` may log in, and as whom: every rule of a login once the directory
    /// vouched for the entry (the user filter matched it, in the search; the password
    /// bound, or a token names it). A login and the re-check of an issued token both end
    /// here, so a rule added here holds on both paths. In order: the Kubernetes identity
    /// (required groups, a `system:` name refused, `system:` groups dropped); with a
    /// `token`, the same uid and name as when it was signed; the account's state as the
    /// directory read it ([`Found::read`]); with a `token`, the same password.
    pub(super) fn admit(&self, found: Found, login: &Login, token: Option<&Verified>) -> Resolved {
        let state = found.state;
        let version = (self.config.tokens.issued.password_key()).map(|k| found.password.version(k));
        let resolved = self.identify(found, login, version.clone().unwrap_or_default());
        let (Outcome::Accepted(_), Some(account)) = (&resolved.outcome, &resolved.account) else {
            return resolved;
        };
        if let Some(t) = token {
            let s = &t.subject;
            if account.uid != s.uid || account.username != s.username {
                // Deleted and recreated, or renamed: not the person the token was issued to.
                return Resolved::new(
                    Outcome::Rejected,
                    None,
                    "the account's uid or name changed since the token was issued",
                );
            }
        }
        if let Some(s) = state {
            return Resolved::new(Outcome::AccountState(s), Some(login), s.label());
        }
        // Only the signing key's own tokens carry a version this node can compute.
        if let Some(t) = token.filter(|t| t.signed_here) {
            if version.as_ref() != Some(&t.subject.password_version) {
                return Resolved::new(
                    Outcome::AccountState(AccountState::PasswordExpired),
                    Some(login),
                    "password changed since the token was issued",
                );
            }
        }
        resolved
    }

    /// The Kubernetes user an entry makes, with the account a login signs a token for.
    fn identify(&self, found: Found, login: &Login, password_version: String) -> Resolved {
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
        let (detail, password) = self.password_warning(found.warning, found.expires_in);
        let account = Subject {
            uid: mapped.user.uid.clone(),
            directory: login.scope().unwrap_or_default().to_string(),
            dn: found.entry.dn.clone(),
            username: mapped.user.username.clone(),
            login: login.typed().to_string(),
            password_version,
        };
        Resolved {
            account: Some(Box::new(account)),
            password,
            ..Resolved::new(
                Outcome::Accepted(Arc::new(User::new(&mapped.user))),
                Some(login),
                detail,
            )
            .confirmed_as(Some(mapped.user.username.clone()))
        }
    }
}

/// A login beyond `login.max_logins_per_directory`: answered as an unavailable backend, not cached.
pub(super) fn over_ceiling() -> Resolved {
    Resolved {
        local: true,
        ..Resolved::new(
            Outcome::Unavailable,
            None,
            "too many logins in flight at this directory (login.max_logins_per_directory)",
        )
    }
}
