//! The LDAP directory client: find the user, bind as the user, collect the groups.
//!
//! The review policy talks to a directory through [`Backend`] in three steps, so that it can
//! key lockout protection on the account the search found (not on the string typed) and
//! make a name that matches nothing cost what a wrong password costs:
//! [`Backend::find`] the account, [`Backend::verify`] its password and read its groups, or
//! [`Backend::decoy`] the same work for a name that matched nothing.
//!
//! Every failure is classified once, in [`classify`], into a [`Failure`]: the authenticator
//! maps those to outcomes and cache policy without looking at LDAP result codes.
//!
//! The authenticator holds [`Directories`], which hands each login to the [`Directory`] its
//! domain part chose (`routing`); a directory's servers are `ldap.urls` and, with
//! `ldap.discover`, those DNS names (`discovery`).

mod backend;
pub(crate) mod classify;
mod discovery;
mod groups;
mod paging;
mod pool;
pub(crate) mod ppolicy;
mod routing;
mod sid;
mod sid_cache;
pub(crate) mod state;
mod token_groups;
mod users;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

use ldap3::{Scope, SearchEntry};
use rand::RngCore;
use rustls::ClientConfig;

pub(crate) use classify::{AccountState, Failure, RejectReason};
pub(crate) use ppolicy::PasswordWarning;
use state::PasswordStamp;

pub(crate) use routing::{Directories, Readiness};

use classify::Attempt;
use discovery::Discovery;
use pool::{remaining, Origin, Pool, Server};

use crate::config;
use crate::login::Login;
use crate::metrics::Metrics;
use crate::secret::Password;

/// A directory entry with attribute names as the server spelled them and raw values.
#[derive(Debug, Clone, Default)]
pub(crate) struct Entry {
    pub dn: String,
    pub attrs: Vec<(String, Vec<Vec<u8>>)>,
}

impl Entry {
    /// Values of an attribute, matched case-insensitively as LDAP does.
    pub(crate) fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.attrs
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, vs)| vs.iter().map(Vec::as_slice))
    }

    fn from_search(se: SearchEntry) -> Entry {
        let mut attrs: Vec<(String, Vec<Vec<u8>>)> = se
            .attrs
            .into_iter()
            .map(|(k, vs)| (k, vs.into_iter().map(String::into_bytes).collect()))
            .collect();
        attrs.extend(se.bin_attrs);
        Entry { dn: se.dn, attrs }
    }
}

/// Where and what one search looks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Query<'a> {
    base: &'a str,
    scope: Scope,
    filter: &'a str,
}

impl<'a> Query<'a> {
    /// Entries matching `filter` anywhere below `base`.
    fn subtree(base: &'a str, filter: &'a str) -> Query<'a> {
        Query {
            base,
            scope: Scope::Subtree,
            filter,
        }
    }

    /// The entry `dn` itself.
    fn entry(dn: &'a str) -> Query<'a> {
        Query::entry_matching(dn, "(objectClass=*)")
    }

    /// The entry `dn` itself, if it matches `filter`.
    fn entry_matching(dn: &'a str, filter: &'a str) -> Query<'a> {
        Query {
            base: dn,
            scope: Scope::Base,
            filter,
        }
    }
}

/// The account a login names, before its password is checked.
#[derive(Debug, Clone)]
pub(crate) struct Account {
    /// The entry's DN as the directory spells it: the lockout key.
    pub dn: String,
    /// The entry the search found; `None` with direct bind, which reads it after the bind.
    entry: Option<Entry>,
}

impl Account {
    /// An account known only by its DN (direct bind; fakes in tests).
    pub(crate) fn by_dn(dn: String) -> Account {
        Account { dn, entry: None }
    }

    /// The entry the search found, if it searched.
    pub(crate) fn entry(&self) -> Option<&Entry> {
        self.entry.as_ref()
    }
}

/// A group the user is in: its DN as the directory spells it, and its name
/// (`ldap.group.name_attribute`) when it has one. Which of them Kubernetes sees is
/// `identity.groups.name`'s choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Group {
    pub dn: String,
    pub name: Option<String>,
}

/// A confirmed user: the entry found, their groups, what the password policy said on
/// the way, and what the directory reads from the entry about the account, so that the
/// review policy never looks at an LDAP attribute.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub entry: Entry,
    pub groups: Vec<Group>,
    pub warning: Option<PasswordWarning>,
    /// At a login: how long the password has left by what the entry says (AD's
    /// constructed expiry), however far off; the login's window decides whether that is
    /// worth a warning.
    pub expires_in: Option<std::time::Duration>,
    /// Why the account may not be used now, if it may not ([`state::account_state`]).
    pub state: Option<AccountState>,
    /// Its password-change attributes, for an issued token's password version.
    pub password: PasswordStamp,
}

impl Found {
    /// The account `entry` is at `now`, with its `groups` and the bind's `warning`.
    ///
    /// At a login the bind already answered for the account's state, and the entry was
    /// read before it without the lock attributes (a bind clears a timed-out ppolicy lock
    /// that the entry still shows): the state then comes from the password attributes
    /// alone, which say what the bind said (AD's must-change, 389-ds' reset password); a
    /// 389-ds password past its expiration is refused even while the server grants grace
    /// binds, which are for changing it, as a re-check would refuse it.
    pub(crate) fn read(
        entry: Entry,
        groups: Vec<Group>,
        warning: Option<PasswordWarning>,
        now: SystemTime,
    ) -> Found {
        Found {
            state: state::account_state(&entry, now),
            password: PasswordStamp::of(&entry),
            entry,
            groups,
            warning,
            expires_in: None,
        }
    }

    /// [`Found::read`] at a login, with what the entry tells of the password's expiry
    /// (AD's constructed attribute: AD sends no warning with a bind, and a Kerberos login
    /// makes no bind at all).
    pub(crate) fn login(
        entry: Entry,
        groups: Vec<Group>,
        warning: Option<PasswordWarning>,
        now: SystemTime,
    ) -> Found {
        let expires_in = state::password_expires_in(&entry, now);
        Found {
            expires_in,
            ..Found::read(entry, groups, warning, now)
        }
    }
}

/// What the review policy needs from a directory (the seam its unit tests fake).
pub(crate) trait Backend: Send + Sync + 'static {
    /// The one account `login` names. No password is involved yet.
    fn find(
        &self,
        login: &Login,
        deadline: Instant,
    ) -> impl Future<Output = Result<Account, Failure>> + Send;

    /// Binds as the account with `password` and reads its groups.
    fn verify(
        &self,
        account: &Account,
        login: &Login,
        password: &Password,
        deadline: Instant,
    ) -> impl Future<Output = Result<Found, Failure>> + Send;

    /// The LDAP work of [`Backend::verify`], spent on a name that matched nothing, so that
    /// an unknown name and a wrong password take the same round trips. Always a rejection.
    fn decoy(
        &self,
        login: &Login,
        password: &Password,
        deadline: Instant,
    ) -> impl Future<Output = ()> + Send;

    /// Reads the account behind an issued token with the service account: the entry at
    /// `dn` if `ldap.user.filter` (filled from `login` as [`Backend::find`] fills it) still
    /// matches it, with its account-state attributes (see [`state`]), and its groups as
    /// [`Backend::verify`] reads them. No bind as the user: there is no password. An entry
    /// gone or no longer matched is [`RejectReason::UnknownUser`].
    fn recheck(
        &self,
        dn: &str,
        login: &Login,
        deadline: Instant,
    ) -> impl Future<Output = Result<Found, Failure>> + Send;

    /// Reads the account of a Kerberos login (the ticket proved who it is) with the service
    /// account: the one entry `ldap.user.kerberos_filter` finds for the principal, with its
    /// account state and its groups, as [`Backend::recheck`] reads them. No bind as the
    /// user. Nothing found (or two) is [`RejectReason::UnknownUser`] (`Ambiguous`).
    fn find_principal(
        &self,
        login: &Login,
        deadline: Instant,
    ) -> impl Future<Output = Result<Found, Failure>> + Send;
}

/// The LDAP client of one configured directory.
pub(crate) struct Directory {
    name: String,
    cfg: Arc<config::Ldap>,
    pool: Arc<Pool>,
    /// Servers from DNS, when `ldap.discover` is set.
    discovery: Option<Arc<Discovery>>,
    /// Stops the background lookups when the directory goes (a reload replaced it).
    discovering: OnceLock<tokio::sync::watch::Sender<()>>,
    /// A DN under the user base that no entry has: the decoy binds to it.
    decoy_dn: String,
    /// `ldap.group.token_groups`: SIDs resolved to groups, briefly.
    sids: sid_cache::SidCache,
    metrics: Arc<Metrics>,
}

impl Directory {
    pub(crate) fn new(
        name: &str,
        cfg: config::Ldap,
        tls: Arc<ClientConfig>,
        metrics: Arc<Metrics>,
    ) -> Directory {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        let decoy_dn = format!("cn=kube-ldap-webhook-decoy-{nonce},{}", cfg.user.base_dn);
        metrics.seed_directory(name, cfg.discover.is_some());
        let discovery = cfg
            .discover
            .as_ref()
            .map(|d| Arc::new(Discovery::new(name, &cfg, d, &metrics)));
        let cfg = Arc::new(cfg);
        Directory {
            name: name.to_string(),
            pool: Arc::new(Pool::new(name, cfg.clone(), tls, metrics.clone())),
            cfg,
            discovery,
            discovering: OnceLock::new(),
            decoy_dn,
            sids: sid_cache::SidCache::new(),
            metrics,
        }
    }

    /// The RDN value of the decoy DN: a name no entry and no group has.
    fn decoy_uid(&self) -> String {
        crate::dn::first_rdn_value(&self.decoy_dn, "cn").unwrap_or_default()
    }

    /// The directory's name: `default` for `[ldap]`, `NAME` for `[directories.NAME]`.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Starts the DNS lookups, once; a no-op without `ldap.discover`. Needs a tokio runtime.
    pub(crate) fn start(&self) {
        if let Some(d) = &self.discovery {
            self.discovering
                .get_or_init(|| d.spawn(Arc::downgrade(&self.pool)));
        }
    }

    /// The servers to try, in order, once DNS had its first say (or `deadline` came).
    async fn servers(&self, deadline: Instant) -> Vec<Arc<Server>> {
        if let Some(d) = &self.discovery {
            self.start();
            d.first_lookup(deadline).await;
        }
        self.pool.order()
    }

    /// Runs `step` on each server in failover order until one gives an answer. A server
    /// that is down is marked so and the next is tried; an answer (even a failure) ends it.
    async fn on_some_server<'a, T, F, Fut>(
        &'a self,
        deadline: Instant,
        step: F,
    ) -> Result<T, Failure>
    where
        F: Fn(Arc<Server>) -> Fut,
        Fut: Future<Output = Result<T, Attempt>> + 'a,
    {
        let mut last = match &self.discovery {
            Some(d) => format!("no LDAP server: {}", d.describe()),
            None => String::from("no LDAP server configured"),
        };
        for (n, s) in self.servers(deadline).await.into_iter().enumerate() {
            if remaining(deadline).is_zero() {
                last = "deadline reached".into();
                break;
            }
            if n > 0 {
                self.pool.failover();
            }
            match step(s.clone()).await {
                Ok(v) => {
                    self.pool.answered(&s);
                    return Ok(v);
                }
                Err(Attempt::Final(f)) => {
                    self.pool.answered(&s);
                    return Err(f);
                }
                Err(Attempt::ServerDown(why)) => {
                    self.pool.mark_down(&s, &why);
                    last = why;
                }
            }
        }
        Err(Failure::Outage(last))
    }

    /// The servers in the order listed, each with where it came from, and what DNS said
    /// last: for /readyz and `check-config --connect`. Empty without `ldap.discover`, where
    /// the list is the configured one.
    pub(crate) fn describe(&self) -> Vec<String> {
        let Some(d) = &self.discovery else {
            return Vec::new();
        };
        let mut lines = vec![d.describe()];
        for l in self.pool.listed().iter() {
            let from = match &l.origin {
                Origin::Configured => config::directory_key(&self.name, "urls"),
                Origin::Dns {
                    record,
                    priority,
                    weight,
                } => format!("{record} priority {priority} weight {weight}"),
            };
            lines.push(format!("server {} ({from})", l.server.url));
        }
        lines
    }

    /// Whether some server answers: connects (and binds the service account) and reads the
    /// root DSE or the user base. Used at start, by /readyz and `check-config --connect`;
    /// like a review, it marks a server down or as the one to start with.
    pub(crate) async fn probe(&self, deadline: Instant) -> Result<String, String> {
        let mut errors = Vec::new();
        for s in self.servers(deadline).await {
            let s = &*s;
            let attempt = async {
                let (mut ldap, base) = match self.cfg.service {
                    Some(_) => (
                        self.pool.service(s, deadline).await?,
                        self.cfg.user.base_dn.as_str(),
                    ),
                    None => (self.pool.anonymous(s, deadline).await?, ""),
                };
                ldap.with_timeout(self.pool.op_timeout(deadline));
                let search = ldap.search(base, Scope::Base, "(objectClass=*)", vec!["1.1"]);
                let r = self
                    .pool
                    .op(s, "probe", deadline, search)
                    .await
                    .map_err(|e| e.into_attempt("probe search"))?;
                if r.1.rc != 0 {
                    return Err(Attempt::error(format!(
                        "search of {base:?}: result {} {}",
                        r.1.rc,
                        r.1.text.trim()
                    )));
                }
                Ok::<_, Attempt>(())
            };
            // What the probe learns, the reviews use: they start at the server that
            // answered and try one that is down last.
            match attempt.await {
                Ok(()) => {
                    self.pool.answered(s);
                    return Ok(s.url.clone());
                }
                Err(Attempt::ServerDown(m)) => {
                    self.pool.mark_down(s, &m);
                    errors.push(format!("{}: {m}", s.url));
                }
                Err(Attempt::Final(Failure::Outage(m)))
                | Err(Attempt::Final(Failure::Error(m))) => errors.push(format!("{}: {m}", s.url)),
                Err(Attempt::Final(f)) => errors.push(format!("{}: {f:?}", s.url)),
            }
        }
        if errors.is_empty() {
            errors.push(match &self.discovery {
                Some(d) => format!("no LDAP server: {}", d.describe()),
                None => "no LDAP server configured".into(),
            });
        }
        Err(errors.join("; "))
    }
}
