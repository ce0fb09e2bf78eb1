//! The LDAP directory client: find the user, bind as the user, collect the groups.
//!
//! Per configured server there is one service connection (bound as `bind_dn`) shared by all
//! searches, since ldap3 multiplexes operations on one connection, and a small pool of bind
//! connections, each used by one user bind at a time: a bind changes the identity of its
//! whole connection, so user binds never touch the service connection.
//!
//! Every failure is classified here, once, into a [`Failure`]: the authenticator maps those
//! to outcomes and cache policy without looking at LDAP result codes.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ldap3::adapters::PagedResults;
use ldap3::{
    dn_escape, ldap_escape, Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry,
    SearchOptions,
};
use rustls::ClientConfig;
use tokio::sync::Semaphore;

use crate::config::{self, LoginForms};
use crate::metrics::{ConnLabels, LdapOpLabels, Metrics, OperationLabels};
use crate::secret::Password;

/// A server that failed is tried last for this long.
const BACKOFF: Duration = Duration::from_secs(5);
const PAGE_SIZE: i32 = 500;
/// Bounds the nested-group walk on directories that cannot resolve nesting themselves.
const MAX_GROUPS: usize = 10_000;
/// Groups per search when walking nested groups level by level.
const NESTED_BATCH: usize = 50;

/// A directory entry with attribute names as the server spelled them and raw values.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    pub dn: String,
    pub attrs: Vec<(String, Vec<Vec<u8>>)>,
}

impl Entry {
    /// Values of an attribute, matched case-insensitively as LDAP does.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
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

/// Account states a directory reports once it has checked the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountState {
    PasswordExpired,
    Disabled,
    AccountExpired,
    MustChangePassword,
    Locked,
    Restricted,
}

impl AccountState {
    /// The `status.error` text the user sees.
    pub fn message(self) -> &'static str {
        match self {
            AccountState::PasswordExpired => "Credentials are expired",
            AccountState::Disabled => "Account is disabled",
            AccountState::AccountExpired => "Account has expired",
            AccountState::MustChangePassword => "Password must be changed before logging in",
            AccountState::Locked => "Account is locked",
            AccountState::Restricted => "Account may not log in at this time or from here",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            AccountState::PasswordExpired => "password_expired",
            AccountState::Disabled => "account_disabled",
            AccountState::AccountExpired => "account_expired",
            AccountState::MustChangePassword => "must_change_password",
            AccountState::Locked => "account_locked",
            AccountState::Restricted => "logon_restricted",
        }
    }
}

/// Why a user was turned away; the reasons stay inside (logs, metrics): outside they all
/// read the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    UnknownUser,
    WrongPassword,
    /// A direct bind failed: the name may not exist, so it is not confirmed (nor logged).
    BadCredentials,
    Ambiguous,
    EmptyPassword,
    /// `OTHER\name` or `name@other` where `ldap.user.domains` does not list the domain.
    ForeignDomain,
}

impl RejectReason {
    /// Whether the directory judged a password: only those count towards lockout
    /// protection (refusals decided here cannot lock anyone out of the directory).
    pub fn checked_a_password(self) -> bool {
        !matches!(
            self,
            RejectReason::EmptyPassword | RejectReason::ForeignDomain
        )
    }

    pub fn label(self) -> &'static str {
        match self {
            RejectReason::UnknownUser => "unknown_user",
            RejectReason::WrongPassword => "wrong_password",
            RejectReason::BadCredentials => "bad_credentials",
            RejectReason::Ambiguous => "ambiguous_user",
            RejectReason::EmptyPassword => "empty_password",
            RejectReason::ForeignDomain => "foreign_domain",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Rejected(RejectReason),
    AccountState(AccountState),
    /// No server could answer. The text is for logs; it never holds a secret.
    Unavailable(String),
}

/// A confirmed user: the entry found and the names of their groups.
#[derive(Debug, Clone)]
pub struct Found {
    pub entry: Entry,
    pub groups: Vec<String>,
}

/// What went wrong with one server: either the answer (final) or the server (try the next).
enum Attempt {
    Final(Failure),
    ServerDown(String),
}

/// One LDAP operation's error, before classification.
#[derive(Debug)]
enum OpError {
    /// The server answered with a result code.
    Result { rc: u32, text: String },
    /// Transport trouble or timeout: the server (or the way to it) is the problem.
    Transport(String),
}

impl From<LdapError> for OpError {
    fn from(e: LdapError) -> Self {
        match e {
            LdapError::LdapResult { result } => OpError::Result {
                rc: result.rc,
                text: result.text,
            },
            other => OpError::Transport(other.to_string()),
        }
    }
}

impl OpError {
    fn into_attempt(self, what: &str) -> Attempt {
        match self {
            OpError::Transport(m) => Attempt::ServerDown(format!("{what}: {m}")),
            // busy, unavailable, unwilling, other: the server cannot serve now.
            OpError::Result { rc, text } => {
                Attempt::ServerDown(format!("{what}: result {rc} {}", text.trim()))
            }
        }
    }
}

struct Server {
    url: String,
    label: String,
    starttls: bool,
    service: Mutex<Option<Ldap>>,
    connecting: tokio::sync::Mutex<()>,
    idle: Mutex<Vec<Ldap>>,
    permits: Semaphore,
    down_until: Mutex<Option<Instant>>,
}

pub struct Directory {
    cfg: config::Ldap,
    tls: Arc<ClientConfig>,
    servers: Vec<Server>,
    preferred: AtomicUsize,
    metrics: Arc<Metrics>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these short locks leaves consistent data behind.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// AD (and Samba) put `data NNN` (hex) in the diagnostic text of a failed bind.
fn ad_data_code(text: &str) -> Option<u32> {
    let i = text.find("data ")?;
    let hex: String = text[i + 5..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    u32::from_str_radix(&hex, 16).ok()
}

fn classify_bind(rc: u32, text: &str) -> Option<Failure> {
    match rc {
        0 => None,
        49 => Some(match ad_data_code(text) {
            Some(0x532) => Failure::AccountState(AccountState::PasswordExpired),
            Some(0x533) => Failure::AccountState(AccountState::Disabled),
            Some(0x701) => Failure::AccountState(AccountState::AccountExpired),
            Some(0x773) => Failure::AccountState(AccountState::MustChangePassword),
            Some(0x775) => Failure::AccountState(AccountState::Locked),
            Some(0x530) | Some(0x531) => Failure::AccountState(AccountState::Restricted),
            Some(0x525) => Failure::Rejected(RejectReason::UnknownUser),
            _ => Failure::Rejected(RejectReason::WrongPassword),
        }),
        // inappropriateAuthentication, unwillingToPerform: refusing this user's bind.
        48 | 53 => Some(Failure::Rejected(RejectReason::WrongPassword)),
        _ => Some(Failure::Unavailable(format!("bind result {rc}"))),
    }
}

/// The value of the first RDN of `dn` when its attribute type is `attr`, unescaped (RFC 4514).
pub fn first_rdn_value(dn: &str, attr: &str) -> Option<String> {
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

/// Reduces `DOMAIN\name` and `name@domain` to `name`.
fn strip_domain(login: &str) -> &str {
    if let Some((_, name)) = login.rsplit_once('\\') {
        return name;
    }
    if let Some((name, _)) = login.split_once('@') {
        return name;
    }
    login
}

impl Directory {
    pub fn new(cfg: config::Ldap, tls: Arc<ClientConfig>, metrics: Arc<Metrics>) -> Directory {
        let servers = cfg
            .urls
            .iter()
            .map(|u| {
                let label = url::Url::parse(u)
                    .ok()
                    .and_then(|p| {
                        p.host_str()
                            .map(|h| format!("{h}:{}", p.port().unwrap_or(0)))
                    })
                    .unwrap_or_else(|| u.clone());
                Server {
                    url: u.clone(),
                    label,
                    starttls: cfg.start_tls && u.to_ascii_lowercase().starts_with("ldap://"),
                    service: Mutex::new(None),
                    connecting: tokio::sync::Mutex::new(()),
                    idle: Mutex::new(Vec::new()),
                    permits: Semaphore::new(cfg.max_connections),
                    down_until: Mutex::new(None),
                }
            })
            .collect();
        Directory {
            cfg,
            tls,
            servers,
            preferred: AtomicUsize::new(0),
            metrics,
        }
    }

    /// The name the filters get for a login name (AD's spellings reduced to the account name).
    pub fn canonical_login<'a>(&self, login: &'a str) -> &'a str {
        match self.cfg.user.login {
            LoginForms::AsTyped => login,
            LoginForms::StripDomain => strip_domain(login),
        }
    }

    /// With `ldap.user.domains`, `DOMAIN\name` and `name@domain` must name a listed domain;
    /// otherwise `alice@anywhere` would reach the account `alice`.
    fn domain_allowed(&self, login: &str) -> bool {
        let u = &self.cfg.user;
        if u.login != LoginForms::StripDomain || u.domains.is_empty() {
            return true;
        }
        let domain = match login.rsplit_once('\\') {
            Some((d, _)) => Some(d),
            None => login.split_once('@').map(|(_, d)| d),
        };
        domain.is_none_or(|d| u.domains.iter().any(|x| x.eq_ignore_ascii_case(d)))
    }

    /// Servers in the order to try: the last one that worked first, servers in back-off last.
    fn order(&self) -> Vec<usize> {
        let n = self.servers.len();
        let start = self.preferred.load(Ordering::Relaxed) % n;
        let now = Instant::now();
        let (mut up, mut down): (Vec<usize>, Vec<usize>) = (0..n)
            .map(|i| (start + i) % n)
            .partition(|&i| lock(&self.servers[i].down_until).is_none_or(|t| t <= now));
        up.append(&mut down);
        up
    }

    fn mark_down(&self, i: usize, why: &str) {
        let s = &self.servers[i];
        *lock(&s.down_until) = Some(Instant::now() + BACKOFF);
        if lock(&s.service).take().is_some() {
            self.conn_gauge(s, "service").dec();
        }
        tracing::warn!(server = %s.label, reason = %why, "LDAP server failed; trying the next one");
    }

    fn conn_gauge(
        &self,
        s: &Server,
        kind: &'static str,
    ) -> prometheus_client::metrics::gauge::Gauge {
        self.metrics
            .ldap_connections
            .get_or_create(&ConnLabels {
                server: s.label.clone(),
                kind,
            })
            .clone()
    }

    fn record(&self, s: &Server, operation: &'static str, result: &'static str, started: Instant) {
        self.metrics
            .ldap_operations
            .get_or_create(&LdapOpLabels {
                server: s.label.clone(),
                operation,
                result,
            })
            .inc();
        self.metrics
            .ldap_seconds
            .get_or_create(&OperationLabels { operation })
            .observe(started.elapsed().as_secs_f64());
    }

    /// Runs one LDAP operation under the smaller of `ldap.timeout` and the review's deadline,
    /// and records it.
    async fn op<T, F>(
        &self,
        s: &Server,
        operation: &'static str,
        deadline: Instant,
        fut: F,
    ) -> Result<T, OpError>
    where
        F: std::future::Future<Output = Result<T, LdapError>>,
    {
        let started = Instant::now();
        let t = self.cfg.timeout.min(remaining(deadline));
        let r = match tokio::time::timeout(t, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(OpError::from(e)),
            Err(_) => Err(OpError::Transport(format!(
                "{operation} timed out after {t:?}"
            ))),
        };
        let result = match &r {
            Ok(_) => "ok",
            Err(OpError::Result { .. }) => "error",
            Err(OpError::Transport(_)) => "unreachable",
        };
        self.record(s, operation, result, started);
        r
    }

    async fn connect(&self, s: &Server, deadline: Instant) -> Result<Ldap, OpError> {
        let t = self.cfg.connect_timeout.min(remaining(deadline));
        let settings = LdapConnSettings::new()
            .set_conn_timeout(t)
            .set_config(self.tls.clone())
            .set_starttls(s.starttls);
        let started = Instant::now();
        let r = tokio::time::timeout(t, LdapConnAsync::with_settings(settings, &s.url)).await;
        let (conn, ldap) = match r {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => {
                self.record(s, "connect", "unreachable", started);
                return Err(OpError::Transport(format!("connect: {e}")));
            }
            Err(_) => {
                self.record(s, "connect", "unreachable", started);
                return Err(OpError::Transport(format!("connect timed out after {t:?}")));
            }
        };
        self.record(s, "connect", "ok", started);
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "LDAP connection ended");
            }
        });
        Ok(ldap)
    }

    /// The shared search connection, connected and bound on first use and after it died.
    async fn service(&self, s: &Server, deadline: Instant) -> Result<Ldap, Attempt> {
        if let Some(mut l) = lock(&s.service).clone() {
            if !l.is_closed() {
                return Ok(l);
            }
        }
        let _guard = tokio::time::timeout(remaining(deadline), s.connecting.lock())
            .await
            .map_err(|_| {
                Attempt::ServerDown("waiting for the service connection timed out".into())
            })?;
        {
            let mut slot = lock(&s.service);
            if let Some(mut l) = slot.clone() {
                if !l.is_closed() {
                    return Ok(l);
                }
                *slot = None;
                self.conn_gauge(s, "service").dec();
            }
        }
        let mut ldap = self
            .connect(s, deadline)
            .await
            .map_err(|e| e.into_attempt("connect"))?;
        if let Some(sa) = &self.cfg.service {
            let r = self
                .op(
                    s,
                    "service_bind",
                    deadline,
                    ldap.simple_bind(&sa.bind_dn, sa.password.expose()),
                )
                .await
                .map_err(|e| e.into_attempt("service bind"))?;
            if r.rc != 0 {
                // Wrong service credentials are an operator problem: shout, and treat the
                // server as unable to serve so that nobody is told their password is wrong.
                tracing::error!(server = %s.label, rc = r.rc, text = %r.text.trim(), "the service account (ldap.bind_dn) could not bind");
                return Err(Attempt::ServerDown(format!("service bind result {}", r.rc)));
            }
        }
        *lock(&s.service) = Some(ldap.clone());
        self.conn_gauge(s, "service").inc();
        Ok(ldap)
    }

    /// A connection for one user bind, from the idle pool or new.
    async fn checkout<'s>(
        &self,
        s: &'s Server,
        deadline: Instant,
    ) -> Result<(Ldap, tokio::sync::SemaphorePermit<'s>), Attempt> {
        let permit = tokio::time::timeout(remaining(deadline), s.permits.acquire())
            .await
            .map_err(|_| Attempt::ServerDown("no free LDAP connection before the deadline".into()))?
            .map_err(|_| Attempt::ServerDown("connection pool closed".into()))?;
        loop {
            let next = lock(&s.idle).pop();
            match next {
                Some(mut l) => {
                    if !l.is_closed() {
                        return Ok((l, permit));
                    }
                    self.conn_gauge(s, "bind").dec();
                }
                None => break,
            }
        }
        let l = self
            .connect(s, deadline)
            .await
            .map_err(|e| e.into_attempt("connect"))?;
        self.conn_gauge(s, "bind").inc();
        Ok((l, permit))
    }

    fn checkin(&self, s: &Server, l: Ldap) {
        let mut idle = lock(&s.idle);
        if idle.len() < self.cfg.max_connections {
            idle.push(l);
        } else {
            self.conn_gauge(s, "bind").dec();
        }
    }

    fn discard(&self, s: &Server) {
        self.conn_gauge(s, "bind").dec();
    }

    /// Finds the user, binds as the user with `password`, and collects the groups.
    pub async fn authenticate(
        &self,
        login: &str,
        password: &Password,
        deadline: Instant,
    ) -> Result<Found, Failure> {
        // An empty password is an unauthenticated bind (RFC 4513 5.1.2) that some servers,
        // AD among them, report as success. It never reaches a server.
        if password.is_empty() {
            return Err(Failure::Rejected(RejectReason::EmptyPassword));
        }
        // `EXAMPLE\` or `@example.test` name nobody once the domain is stripped; an empty
        // value in the filter would only ask the directory to confirm that.
        if self.canonical_login(login).is_empty() {
            return Err(Failure::Rejected(RejectReason::UnknownUser));
        }
        if !self.domain_allowed(login) {
            return Err(Failure::Rejected(RejectReason::ForeignDomain));
        }
        let mut last = String::from("no LDAP server configured");
        for (n, i) in self.order().into_iter().enumerate() {
            if remaining(deadline).is_zero() {
                last = "deadline reached".into();
                break;
            }
            if n > 0 {
                self.metrics.ldap_failovers.inc();
            }
            let s = &self.servers[i];
            let r = if self.cfg.user.dn_template.is_some() {
                self.direct(s, login, password, deadline).await
            } else {
                self.search_then_bind(s, login, password, deadline).await
            };
            match r {
                Ok(found) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    *lock(&s.down_until) = None;
                    return Ok(found);
                }
                Err(Attempt::Final(f)) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Err(f);
                }
                Err(Attempt::ServerDown(why)) => {
                    self.mark_down(i, &why);
                    last = why;
                }
            }
        }
        Err(Failure::Unavailable(last))
    }

    fn user_filter(&self, login: &str) -> String {
        let name = self.canonical_login(login);
        self.cfg
            .user
            .filter
            .replace("{username}", &ldap_escape(name))
            .replace("{login}", &ldap_escape(login))
    }

    fn user_attrs(&self) -> Vec<String> {
        let u = &self.cfg.user;
        let mut attrs = vec![u.username_attribute.clone(), u.uid_attribute.clone()];
        attrs.extend(u.extra.values().cloned());
        if let Some(m) = &self.cfg.group.membership_attribute {
            attrs.push(m.clone());
        }
        attrs.sort();
        attrs.dedup();
        attrs
    }

    async fn find_user(
        &self,
        s: &Server,
        ldap: &mut Ldap,
        base: &str,
        scope: Scope,
        filter: &str,
        deadline: Instant,
    ) -> Result<Entry, Attempt> {
        let attrs = self.user_attrs();
        let t = self.cfg.timeout.min(remaining(deadline));
        ldap.with_search_options(SearchOptions::new().sizelimit(2))
            .with_timeout(t);
        let res = self
            .op(
                s,
                "search_user",
                deadline,
                ldap.search(base, scope, filter, attrs),
            )
            .await;
        let ldap3::SearchResult(entries, result) = match res {
            Ok(r) => r,
            Err(OpError::Result { rc: 32, .. }) => {
                return Err(Attempt::Final(Failure::Rejected(RejectReason::UnknownUser)))
            }
            Err(e) => return Err(e.into_attempt("user search")),
        };
        let mut entries: Vec<_> = entries
            .into_iter()
            .filter(|e| !e.is_ref() && !e.is_intermediate())
            .collect();
        match result.rc {
            // success, sizeLimitExceeded (two matches), referral, noSuchObject
            0 | 4 | 10 | 32 => {}
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

    async fn search_then_bind(
        &self,
        s: &Server,
        login: &str,
        password: &Password,
        deadline: Instant,
    ) -> Result<Found, Attempt> {
        let mut svc = self.service(s, deadline).await?;
        let filter = self.user_filter(login);
        let entry = self
            .find_user(
                s,
                &mut svc,
                &self.cfg.user.base_dn,
                Scope::Subtree,
                &filter,
                deadline,
            )
            .await?;

        // The group search does not depend on the bind's answer, so both go out at once: a
        // miss costs the user search plus the slower of bind and group search, not all three
        // in a row. A wrong password wastes one group search; lockout protection bounds those.
        let bind = async {
            let (mut conn, _permit) = self.checkout(s, deadline).await?;
            let bound = self
                .op(
                    s,
                    "bind",
                    deadline,
                    conn.simple_bind(&entry.dn, password.expose()),
                )
                .await;
            match bound {
                Ok(r) => {
                    self.checkin(s, conn);
                    match classify_bind(r.rc, &r.text) {
                        None => Ok(()),
                        Some(Failure::Unavailable(m)) => Err(Attempt::ServerDown(m)),
                        Some(f) => Err(Attempt::Final(f)),
                    }
                }
                Err(e) => {
                    self.discard(s);
                    Err(e.into_attempt("user bind"))
                }
            }
        };
        let mut group_conn = svc.clone();
        let groups = self.groups(s, &mut group_conn, &entry, login, deadline);
        // Both run to completion (nothing is cancelled halfway), and the bind's verdict
        // comes first: a wrong password is a rejection whatever the group search did.
        let (bound, groups) = tokio::join!(bind, groups);
        bound?;
        let groups = groups?;
        Ok(Found { entry, groups })
    }

    /// Direct bind: no service account; the user binds by a DN made from a template and then
    /// reads their own entry and groups on that same connection.
    async fn direct(
        &self,
        s: &Server,
        login: &str,
        password: &Password,
        deadline: Instant,
    ) -> Result<Found, Attempt> {
        let template = self.cfg.user.dn_template.as_deref().unwrap_or_default();
        let dn = template.replace("{username}", &dn_escape(self.canonical_login(login)));
        let (mut conn, _permit) = self.checkout(s, deadline).await?;
        let r = match self
            .op(
                s,
                "bind",
                deadline,
                conn.simple_bind(&dn, password.expose()),
            )
            .await
        {
            Ok(r) => r,
            Err(e) => {
                self.discard(s);
                return Err(e.into_attempt("user bind"));
            }
        };
        if let Some(f) = classify_bind(r.rc, &r.text) {
            self.checkin(s, conn);
            return Err(match f {
                Failure::Unavailable(m) => Attempt::ServerDown(m),
                // Without a search first, "wrong password" may be "no such user".
                Failure::Rejected(_) => {
                    Attempt::Final(Failure::Rejected(RejectReason::BadCredentials))
                }
                f => Attempt::Final(f),
            });
        }
        let result = async {
            let entry = self
                .find_user(s, &mut conn, &dn, Scope::Base, "(objectClass=*)", deadline)
                .await?;
            let groups = self.groups(s, &mut conn, &entry, login, deadline).await?;
            Ok(Found { entry, groups })
        }
        .await;
        self.checkin(s, conn);
        result
    }

    /// Runs a paged subtree search and returns the entries, skipping continuation references.
    async fn paged_search(
        &self,
        s: &Server,
        ldap: &mut Ldap,
        base: &str,
        filter: &str,
        attrs: Vec<String>,
        deadline: Instant,
    ) -> Result<Vec<Entry>, OpError> {
        let started = Instant::now();
        let t = self.cfg.timeout.min(remaining(deadline));
        let work = async {
            let mut stream = ldap
                .streaming_search_with(
                    PagedResults::new(PAGE_SIZE),
                    base,
                    Scope::Subtree,
                    filter,
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
                    break;
                }
            }
            let res = stream.finish().await;
            Ok::<_, LdapError>((out, res))
        };
        let r = match tokio::time::timeout(t, work).await {
            Ok(Ok((out, res))) => match res.rc {
                0 | 4 | 10 | 32 => Ok(out),
                rc => Err(OpError::Result { rc, text: res.text }),
            },
            Ok(Err(e)) => Err(OpError::from(e)),
            Err(_) => Err(OpError::Transport(format!(
                "group search timed out after {t:?}"
            ))),
        };
        let result = match &r {
            Ok(_) => "ok",
            Err(OpError::Result { .. }) => "error",
            Err(OpError::Transport(_)) => "unreachable",
        };
        self.record(s, "search_groups", result, started);
        r
    }

    fn group_name(&self, g: &Entry) -> Option<String> {
        let attr = &self.cfg.group.name_attribute;
        g.values(attr)
            .find_map(|v| std::str::from_utf8(v).ok().map(str::to_string))
            .or_else(|| first_rdn_value(&g.dn, attr))
    }

    fn group_filter_for(&self, dn: &str, login: &str) -> String {
        self.cfg
            .group
            .filter
            .replace("{dn}", &ldap_escape(dn))
            .replace("{username}", &ldap_escape(self.canonical_login(login)))
            .replace("{login}", &ldap_escape(login))
    }

    async fn groups(
        &self,
        s: &Server,
        ldap: &mut Ldap,
        user: &Entry,
        login: &str,
        deadline: Instant,
    ) -> Result<Vec<String>, Attempt> {
        let g = &self.cfg.group;
        let attrs = vec![g.name_attribute.clone()];
        // (lowercased DN) of every group seen, and the names collected.
        let mut seen: HashSet<String> = HashSet::new();
        let mut names = Vec::new();
        let mut frontier: Vec<String> = Vec::new();

        // AD returns a multi-valued attribute in slices (`memberOf;range=0-1499`) once it
        // has more values than MaxValRange, and then none under the plain name: search for
        // the groups instead of reporting a silently short list.
        let ranged = g
            .membership_attribute
            .as_deref()
            .is_some_and(|m| is_ranged(user, m));
        if ranged {
            if g.filter.is_empty() {
                tracing::warn!(attribute = ?g.membership_attribute, "the membership attribute is returned in ranges and ldap.group.filter is empty: groups are incomplete");
            } else {
                tracing::debug!(attribute = ?g.membership_attribute, "the membership attribute is returned in ranges; searching for the groups");
            }
        }
        let from_entry = g
            .membership_attribute
            .as_ref()
            .filter(|_| !ranged || g.filter.is_empty());
        if let Some(m) = from_entry {
            for dn in user.values(m).filter_map(|v| std::str::from_utf8(v).ok()) {
                if !seen.insert(dn.to_lowercase()) {
                    continue;
                }
                match first_rdn_value(dn, &g.name_attribute) {
                    Some(n) => names.push(n),
                    None => {
                        // The RDN is not the name attribute: read the group entry.
                        let mut found = self
                            .paged_search(s, ldap, dn, "(objectClass=*)", attrs.clone(), deadline)
                            .await
                            .map_err(|e| e.into_attempt("group lookup"))?;
                        if let Some(n) = found.pop().and_then(|e| self.group_name(&e)) {
                            names.push(n);
                        }
                    }
                }
                frontier.push(dn.to_string());
            }
        } else {
            let filter = self.group_filter_for(&user.dn, login);
            let found = self
                .paged_search(s, ldap, &g.base_dn, &filter, attrs.clone(), deadline)
                .await
                .map_err(|e| e.into_attempt("group search"))?;
            for e in found {
                if seen.insert(e.dn.to_lowercase()) {
                    if let Some(n) = self.group_name(&e) {
                        names.push(n);
                    }
                    frontier.push(e.dn);
                }
            }
        }

        // Breadth-first walk up the group graph for directories that do not resolve nesting
        // themselves; `seen` breaks cycles, depth and count bound the work.
        if g.nested && !g.server_side_nesting && !g.filter.is_empty() {
            let mut depth = 0;
            while !frontier.is_empty() && depth < g.max_nested_depth && seen.len() < MAX_GROUPS {
                depth += 1;
                let mut next = Vec::new();
                for chunk in frontier.chunks(NESTED_BATCH) {
                    let parts: String = chunk
                        .iter()
                        .map(|dn| self.group_filter_for(dn, login))
                        .collect();
                    let filter = format!("(|{parts})");
                    let found = self
                        .paged_search(s, ldap, &g.base_dn, &filter, attrs.clone(), deadline)
                        .await
                        .map_err(|e| e.into_attempt("nested group search"))?;
                    for e in found {
                        if seen.insert(e.dn.to_lowercase()) {
                            if let Some(n) = self.group_name(&e) {
                                names.push(n);
                            }
                            next.push(e.dn);
                        }
                    }
                }
                frontier = next;
            }
        }
        Ok(names)
    }

    /// Whether some server answers: connects (and binds the service account) and reads the
    /// root DSE. Used by /readyz and `check-config --connect`.
    pub async fn probe(&self, deadline: Instant) -> Result<String, String> {
        let mut errors = Vec::new();
        for i in self.order() {
            let s = &self.servers[i];
            let attempt = async {
                let mut ldap = match self.cfg.service {
                    Some(_) => self.service(s, deadline).await?,
                    None => self
                        .connect(s, deadline)
                        .await
                        .map_err(|e| e.into_attempt("connect"))?,
                };
                let base = match self.cfg.service {
                    Some(_) => self.cfg.user.base_dn.clone(),
                    None => String::new(),
                };
                ldap.with_timeout(self.cfg.timeout.min(remaining(deadline)));
                let r = self
                    .op(
                        s,
                        "probe",
                        deadline,
                        ldap.search(&base, Scope::Base, "(objectClass=*)", vec!["1.1"]),
                    )
                    .await
                    .map_err(|e| e.into_attempt("probe search"))?;
                if r.1.rc != 0 {
                    return Err(Attempt::ServerDown(format!(
                        "search of {base:?}: result {} {}",
                        r.1.rc,
                        r.1.text.trim()
                    )));
                }
                Ok::<_, Attempt>(())
            };
            match attempt.await {
                Ok(()) => return Ok(s.url.clone()),
                Err(Attempt::ServerDown(m)) | Err(Attempt::Final(Failure::Unavailable(m))) => {
                    errors.push(format!("{}: {m}", s.url))
                }
                Err(Attempt::Final(f)) => errors.push(format!("{}: {f:?}", s.url)),
            }
        }
        Err(errors.join("; "))
    }
}

/// A directory replaced by a reload closes its connections: take them off the gauges.
impl Drop for Directory {
    fn drop(&mut self) {
        for s in &self.servers {
            if lock(&s.service).take().is_some() {
                self.conn_gauge(s, "service").dec();
            }
            let idle = std::mem::take(&mut *lock(&s.idle));
            self.conn_gauge(s, "bind").dec_by(idle.len() as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ad_bind_codes_are_classified() {
        let t = |code: &str| {
            format!("80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data {code}, v4563")
        };
        assert_eq!(
            classify_bind(49, &t("52e")),
            Some(Failure::Rejected(RejectReason::WrongPassword))
        );
        assert_eq!(
            classify_bind(49, &t("525")),
            Some(Failure::Rejected(RejectReason::UnknownUser))
        );
        assert_eq!(
            classify_bind(49, &t("532")),
            Some(Failure::AccountState(AccountState::PasswordExpired))
        );
        assert_eq!(
            classify_bind(49, &t("533")),
            Some(Failure::AccountState(AccountState::Disabled))
        );
        assert_eq!(
            classify_bind(49, &t("701")),
            Some(Failure::AccountState(AccountState::AccountExpired))
        );
        assert_eq!(
            classify_bind(49, &t("773")),
            Some(Failure::AccountState(AccountState::MustChangePassword))
        );
        assert_eq!(
            classify_bind(49, &t("775")),
            Some(Failure::AccountState(AccountState::Locked))
        );
        assert_eq!(
            classify_bind(49, ""),
            Some(Failure::Rejected(RejectReason::WrongPassword))
        );
        assert_eq!(classify_bind(0, ""), None);
    }

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
    fn domain_forms_reduce_to_the_account_name() {
        assert_eq!(strip_domain("EXAMPLE\\alice"), "alice");
        assert_eq!(strip_domain("alice@example.test"), "alice");
        assert_eq!(strip_domain("alice"), "alice");
        assert_eq!(strip_domain("EXAMPLE\\"), "");
        assert_eq!(strip_domain("@example.test"), "");
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
