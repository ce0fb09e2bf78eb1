//! The review policy against a fake directory, on tokio's paused clock: single flight,
//! lockout budgets, stale answers only for outages, cache expiry. The same behaviours are
//! proven against real slapd and Samba by the integration tests; these pin the policy down
//! in milliseconds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;

use super::*;
use crate::directory::{Account, AccountState, Entry, Found, Group, PasswordWarning};
use crate::secret::Password;

/// What a test returns when a step of its own can fail (a scratch file, a key, a spawned
/// task): `?` fails the test with that step's error.
pub(super) type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// What the fake directory does on `verify`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Mode {
    Normal,
    Outage,
    Error,
    Panic,
}

/// A directory of a few users, keyed by folded name, that counts what it was asked.
pub(super) struct Fake {
    users: HashMap<String, (String, String, Vec<String>)>,
    mode: Mutex<Mode>,
    /// Time each verify takes (on the paused clock).
    latency: Duration,
    pub(super) finds: AtomicUsize,
    pub(super) verifies: AtomicUsize,
    pub(super) decoys: AtomicUsize,
    pub(super) rechecks: AtomicUsize,
    pub(super) principals: AtomicUsize,
    /// What the directory says about the accounts since their logins, for re-checks.
    since: Mutex<Since>,
}

/// Changes to the fake's accounts after their logins, seen by re-checks only.
#[derive(Default)]
struct Since {
    /// Attributes every entry has now (`nsAccountLock`, `pwdChangedTime`...).
    attrs: Vec<(String, String)>,
    /// Groups every account is in now, when changed.
    groups: Option<Vec<String>>,
}

impl Fake {
    pub(super) fn new() -> Fake {
        let mut users = HashMap::new();
        users.insert(
            "alice".to_string(),
            (
                "uid=alice,ou=people".to_string(),
                "alice-pw".to_string(),
                vec!["devs".to_string(), "system:masters".to_string()],
            ),
        );
        users.insert(
            "bob".to_string(),
            (
                "uid=bob,ou=people".to_string(),
                "bob-pw".to_string(),
                vec![],
            ),
        );
        Fake {
            users,
            mode: Mutex::new(Mode::Normal),
            latency: Duration::from_millis(5),
            finds: AtomicUsize::new(0),
            verifies: AtomicUsize::new(0),
            decoys: AtomicUsize::new(0),
            rechecks: AtomicUsize::new(0),
            principals: AtomicUsize::new(0),
            since: Mutex::new(Since::default()),
        }
    }

    pub(super) fn set(&self, m: Mode) {
        *self.mode.lock().unwrap() = m;
    }

    pub(super) fn count(c: &AtomicUsize) -> usize {
        c.load(Ordering::SeqCst)
    }
}

impl Fake {
    fn found(dn: &str, login: &Login, groups: &[String], attrs: &[(String, String)]) -> Found {
        let mut all = vec![("uid".to_string(), vec![login.key().into_bytes()])];
        all.extend(
            attrs
                .iter()
                .map(|(k, v)| (k.clone(), vec![v.clone().into_bytes()])),
        );
        let entry = Entry {
            dn: dn.to_string(),
            attrs: all,
        };
        let groups = groups
            .iter()
            .map(|n| Group {
                dn: format!("cn={n},ou=groups"),
                name: Some(n.clone()),
            })
            .collect();
        // A directory reads the account's state and password stamp as the real one does.
        Found::read(entry, groups, None, crate::clock::wall())
    }
}

impl Backend for Fake {
    async fn find(&self, login: &Login, _deadline: Instant) -> Result<Account, Failure> {
        self.finds.fetch_add(1, Ordering::SeqCst);
        match self.users.get(&login.key()) {
            Some((dn, _, _)) => Ok(Account::by_dn(dn.clone())),
            None => Err(Failure::Rejected(RejectReason::UnknownUser)),
        }
    }

    async fn verify(
        &self,
        account: &Account,
        login: &Login,
        password: &Password,
        _deadline: Instant,
    ) -> Result<Found, Failure> {
        self.verifies.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.latency).await;
        let mode = *self.mode.lock().unwrap();
        match mode {
            Mode::Outage => return Err(Failure::Outage("connection refused".into())),
            Mode::Error => return Err(Failure::Error("search result 80".into())),
            Mode::Panic => panic!("a bug in the directory client"),
            Mode::Normal => {}
        }
        let (_, pw, groups) = &self.users[&login.key()];
        if password.expose() != pw {
            return Err(Failure::Rejected(RejectReason::WrongPassword));
        }
        Ok(Fake::found(&account.dn, login, groups, &[]))
    }

    async fn decoy(&self, _login: &Login, _password: &Password, _deadline: Instant) {
        self.decoys.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.latency).await;
    }

    /// The account as it is now (see [`Since`]); the user filter is the real directory's
    /// part, proven in tests/it/issued_tokens.rs.
    async fn recheck(&self, dn: &str, login: &Login, _deadline: Instant) -> Result<Found, Failure> {
        self.rechecks.fetch_add(1, Ordering::SeqCst);
        if *self.mode.lock().unwrap() == Mode::Outage {
            return Err(Failure::Outage("connection refused".into()));
        }
        let (_, _, groups) = self
            .users
            .get(&login.key())
            .ok_or(Failure::Rejected(RejectReason::UnknownUser))?;
        let since = self.since.lock().unwrap();
        let groups = since.groups.as_ref().unwrap_or(groups);
        Ok(Fake::found(dn, login, groups, &since.attrs))
    }

    async fn find_principal(&self, login: &Login, _deadline: Instant) -> Result<Found, Failure> {
        self.principals.fetch_add(1, Ordering::SeqCst);
        if *self.mode.lock().unwrap() == Mode::Outage {
            return Err(Failure::Outage("connection refused".into()));
        }
        let (dn, _, groups) = self
            .users
            .get(&login.key())
            .ok_or(Failure::Rejected(RejectReason::UnknownUser))?;
        let since = self.since.lock().unwrap();
        Ok(Fake::found(dn, login, groups, &since.attrs))
    }
}

pub(super) fn config(extra: &str) -> Arc<Config> {
    config_with("", extra)
}

/// With `ldap` lines in `[ldap]`, and `extra` after `[cache]`; direct bind.
pub(super) fn config_with(ldap: &str, extra: &str) -> Arc<Config> {
    config_for(ldap, "dn_template = \"uid={username},ou=people\"", extra)
}

/// With `ldap` and `user` TOML at the ends of `[ldap]` and `[ldap.user]`, and `extra`
/// after `[cache]`.
pub(super) fn config_for(ldap: &str, user: &str, extra: &str) -> Arc<Config> {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("config.toml");
    let body = format!(
        r#"
[ldap]
urls = ["ldap://127.0.0.1:1"]
{ldap}
[ldap.user]
base_dn = "ou=people"
{user}
[cache]
ttl = "2m"
negative_ttl = "10s"
stale_ttl = "1h"
max_failures = 3
failure_window = "5m"
{extra}
"#
    );
    std::fs::write(&f, body).unwrap();
    Arc::new(crate::config::load(&f).unwrap())
}

pub(super) fn authenticator(fake: Arc<Fake>) -> Arc<Authenticator<Fake>> {
    authenticator_with(fake, "")
}

/// With `extra` TOML appended after the `[cache]` section (so it starts with a header).
pub(super) fn authenticator_with(fake: Arc<Fake>, extra: &str) -> Arc<Authenticator<Fake>> {
    authenticator_of(fake, config(extra))
}

pub(super) fn authenticator_of(fake: Arc<Fake>, config: Arc<Config>) -> Arc<Authenticator<Fake>> {
    let lockout = Arc::new(Lockout::new(3, Duration::from_secs(300)));
    authenticator_on(config, fake, lockout, Arc::new(Metrics::new()))
}

/// An authenticator of `config` sharing `lockout` and `metrics`, as runtimes do.
pub(super) fn authenticator_on(
    config: Arc<Config>,
    fake: Arc<Fake>,
    lockout: Arc<Lockout>,
    metrics: Arc<Metrics>,
) -> Arc<Authenticator<Fake>> {
    let audit = Arc::new(crate::audit::Audit::off(metrics.clone()));
    Arc::new(Authenticator::new(config, fake, lockout, metrics, audit))
}

pub(super) fn token(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

pub(super) fn deadline() -> Instant {
    now() + Duration::from_secs(30)
}

pub(super) async fn review(a: &Arc<Authenticator<Fake>>, user: &str, password: &str) -> Review {
    a.review(&token(user, password), deadline()).await
}

#[tokio::test(start_paused = true)]
async fn concurrent_reviews_of_one_token_share_one_directory_round_trip() {
    let fake = Arc::new(Fake::new());
    let a = authenticator(fake.clone());
    let reviews: Vec<_> = (0..50)
        .map(|_| {
            let a = a.clone();
            tokio::spawn(async move { review(&a, "alice", "alice-pw").await })
        })
        .collect();
    let mut sources = Vec::new();
    for r in reviews {
        let r = r.await.unwrap();
        assert!(matches!(r.outcome, Outcome::Accepted(_)));
        sources.push(r.source);
    }
    assert_eq!(Fake::count(&fake.verifies), 1);
    assert_eq!(
        sources.iter().filter(|s| **s == Source::Directory).count(),
        1
    );
}

/// What a login signs comes with the directory's answer, also to a login that joined a
/// review's round trip; answers from the cache carry none (logins never take them).
#[tokio::test(start_paused = true)]
async fn a_login_joining_a_reviews_round_trip_gets_the_account_to_sign() {
    let fake = Arc::new(Fake::new());
    let a = authenticator(fake.clone());
    let leader = {
        let a = a.clone();
        tokio::spawn(async move { review(&a, "alice", "alice-pw").await })
    };
    tokio::task::yield_now().await;
    let login = a.login(&token("alice", "alice-pw"), deadline()).await;
    let leader = leader.await.unwrap();
    assert_eq!(Fake::count(&fake.verifies), 1, "one round trip for both");
    assert_eq!(
        (leader.source, login.source),
        (Source::Directory, Source::Coalesced)
    );
    let account = login.account.expect("the login's account");
    assert_eq!(
        (account.dn.as_str(), account.username.as_str()),
        ("uid=alice,ou=people", "alice")
    );
    let hit = review(&a, "alice", "alice-pw").await;
    assert_eq!(hit.source, Source::Cache);
    assert!(hit.account.is_none());
}

#[tokio::test(start_paused = true)]
async fn an_accepted_answer_is_served_from_the_cache_until_ttl() {
    let fake = Arc::new(Fake::new());
    let a = authenticator(fake.clone());
    assert_eq!(
        review(&a, "alice", "alice-pw").await.source,
        Source::Directory
    );
    tokio::time::advance(Duration::from_secs(119)).await;
    assert_eq!(review(&a, "alice", "alice-pw").await.source, Source::Cache);
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(
        review(&a, "alice", "alice-pw").await.source,
        Source::Directory
    );
    assert_eq!(Fake::count(&fake.verifies), 2);
}

#[tokio::test(start_paused = true)]
async fn reserved_groups_never_reach_the_answer() {
    let a = authenticator(Arc::new(Fake::new()));
    let r = review(&a, "alice", "alice-pw").await;
    let user = r.outcome.user().unwrap();
    assert_eq!(
        user.group_count(),
        1,
        "system:masters is dropped, devs kept"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stale_answer_bridges_an_outage_only() {
    let fake = Arc::new(Fake::new());
    let a = authenticator(fake.clone());
    review(&a, "alice", "alice-pw").await;
    tokio::time::advance(Duration::from_secs(600)).await;

    fake.set(Mode::Error);
    let r = review(&a, "alice", "alice-pw").await;
    assert!(matches!(r.outcome, Outcome::BackendError), "{r:?}");

    fake.set(Mode::Outage);
    let r = review(&a, "alice", "alice-pw").await;
    assert!(matches!(r.outcome, Outcome::Accepted(_)), "{r:?}");
    assert!(matches!(r.source, Source::Stale(age) if age >= Duration::from_secs(600)));

    tokio::time::advance(Duration::from_secs(3600)).await;
    let r = review(&a, "alice", "alice-pw").await;
    assert!(
        matches!(r.outcome, Outcome::Unavailable),
        "past stale_ttl: {r:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_rejection_is_cached_for_negative_ttl() {
    let fake = Arc::new(Fake::new());
    let a = authenticator(fake.clone());
    assert!(matches!(
        review(&a, "bob", "wrong").await.outcome,
        Outcome::Rejected
    ));
    let r = review(&a, "bob", "wrong").await;
    assert_eq!((r.source, Fake::count(&fake.verifies)), (Source::Cache, 1));
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(review(&a, "bob", "wrong").await.source, Source::Directory);
}

#[tokio::test(start_paused = true)]
async fn wrong_passwords_in_any_spelling_draw_on_one_budget() {
    let fake = Arc::new(Fake::new());
    let a = authenticator(fake.clone());
    for spelling in ["alice", "ALICE", "ａｌｉｃｅ"] {
        let r = review(&a, spelling, "guess").await;
        assert!(matches!(r.outcome, Outcome::Rejected));
    }
    assert_eq!(Fake::count(&fake.verifies), 3);
    for spelling in ["Alice", "ＡＬＩＣＥ", "\u{1d41a}lice"] {
        let r = review(&a, spelling, "alice-pw").await;
        assert!(matches!(r.outcome, Outcome::Rejected), "{spelling}: {r:?}");
        assert_eq!(r.source, Source::Local);
    }
    assert_eq!(Fake::count(&fake.verifies), 3, "no bind once locked");
}

#[tokio::test(start_paused = true)]
async fn a_token_accepted_before_is_not_locked_out_by_someone_elses_guesses() {
    let fake = Arc::new(Fake::new());
    let a = authenticator(fake.clone());
    review(&a, "alice", "alice-pw").await;
    tokio::time::advance(Duration::from_secs(180)).await;
    for i in 0..3 {
        review(&a, "alice", &format!("guess{i}")).await;
    }
    let r = review(&a, "alice", "alice-pw").await;
    assert!(matches!(r.outcome, Outcome::Accepted(_)), "{r:?}");
    assert_eq!(r.source, Source::Directory, "the directory decided");
}

#[tokio::test(start_paused = true)]
async fn an_unknown_name_costs_a_decoy_and_reads_like_a_wrong_password() {
    let fake = Arc::new(Fake::new());
    let a = authenticator(fake.clone());
    let unknown = review(&a, "mallory", "x").await;
    let wrong = review(&a, "bob", "x").await;
    assert_eq!(Fake::count(&fake.decoys), 1);
    assert_eq!(unknown.outcome.error(), wrong.outcome.error());
    assert_eq!(unknown.username, None, "an unconfirmed name is not logged");
}

#[tokio::test(start_paused = true)]
async fn unknown_names_are_locked_out_like_accounts() {
    let fake = Arc::new(Fake::new());
    let a = authenticator(fake.clone());
    for i in 0..5 {
        review(&a, "mallory", &format!("guess{i}")).await;
    }
    assert_eq!(Fake::count(&fake.decoys), 3);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_round_trip_does_not_leave_the_token_stuck() {
    let fake = Arc::new(Fake::new());
    let a = authenticator(fake.clone());
    fake.set(Mode::Panic);
    let r = review(&a, "alice", "alice-pw").await;
    assert!(matches!(r.outcome, Outcome::BackendError), "{r:?}");
    fake.set(Mode::Normal);
    let r = review(&a, "alice", "alice-pw").await;
    assert!(matches!(r.outcome, Outcome::Accepted(_)), "{r:?}");
}

#[tokio::test(start_paused = true)]
async fn account_states_and_warnings_keep_their_meaning() {
    // Exercised through `failed` and `accept`, the two places that give them meaning.
    let login = Login::parse("alice", crate::config::LoginForms::AsTyped);
    let r = failed(Failure::AccountState(AccountState::PasswordExpired), &login);
    assert_eq!(r.outcome.error(), Some("Credentials are expired"));
    let a = authenticator(Arc::new(Fake::new()));
    let entry = Entry {
        dn: "uid=alice".into(),
        attrs: vec![("uid".into(), vec![b"alice".to_vec()])],
    };
    let warning = Some(PasswordWarning::GraceLogins(1));
    let found = Found::read(entry, vec![], warning, crate::clock::wall());
    let r = a.admit(found, &login, None);
    assert!(matches!(r.outcome, Outcome::Accepted(_)));
    assert!(r.detail.contains("GraceLogins"), "{}", r.detail);
}

/// alice is in devs, bob in no group.
fn devs_only(fake: Arc<Fake>) -> Arc<Authenticator<Fake>> {
    authenticator_with(fake, "[identity]\nrequired_groups = [\"devs\"]")
}

#[tokio::test(start_paused = true)]
async fn a_user_outside_the_required_groups_is_refused_with_its_own_error() {
    let a = devs_only(Arc::new(Fake::new()));
    let r = review(&a, "bob", "bob-pw").await;
    assert!(
        matches!(
            r.outcome,
            Outcome::AccountState(AccountState::NotInRequiredGroup)
        ),
        "{r:?}"
    );
    assert_eq!(
        r.outcome.error(),
        Some("Not a member of a group allowed to log in")
    );
    assert_eq!(r.outcome.label(), "not_in_required_group");
    assert_eq!(r.username.as_deref(), Some("bob"));
    let r = review(&a, "alice", "alice-pw").await;
    assert!(matches!(r.outcome, Outcome::Accepted(_)), "{r:?}");
}

#[tokio::test(start_paused = true)]
async fn without_the_password_the_group_policy_tells_nothing() {
    let a = devs_only(Arc::new(Fake::new()));
    let outside = review(&a, "bob", "guess").await;
    let inside = review(&a, "alice", "guess").await;
    assert!(matches!(outside.outcome, Outcome::Rejected), "{outside:?}");
    assert_eq!(outside.outcome.error(), inside.outcome.error());
    assert_eq!(outside.outcome.label(), inside.outcome.label());
}

#[tokio::test(start_paused = true)]
async fn the_group_policy_refusal_is_cached_for_negative_ttl() {
    let fake = Arc::new(Fake::new());
    let a = devs_only(fake.clone());
    review(&a, "bob", "bob-pw").await;
    let r = review(&a, "bob", "bob-pw").await;
    assert_eq!(r.source, Source::Cache);
    assert!(matches!(r.outcome, Outcome::AccountState(_)), "{r:?}");
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(review(&a, "bob", "bob-pw").await.source, Source::Directory);
    assert_eq!(Fake::count(&fake.verifies), 2);
}

#[tokio::test(start_paused = true)]
async fn group_policy_refusals_are_not_lockout_failures() {
    let fake = Arc::new(Fake::new());
    let a = devs_only(fake.clone());
    // More refusals than max_failures (3), each one a fresh directory round trip.
    for _ in 0..5 {
        let r = review(&a, "bob", "bob-pw").await;
        assert_eq!(r.source, Source::Directory);
        tokio::time::advance(Duration::from_secs(11)).await;
    }
    let r = review(&a, "bob", "guess").await;
    assert_eq!(r.source, Source::Directory, "not refused locally: {r:?}");
}

mod admit;
mod exchange;
mod times;
