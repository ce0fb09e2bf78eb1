//! Logins against lockout protection and the ceiling on logins in flight, with the fake
//! directory of `tests` on tokio's paused clock: a credential the directory accepted
//! before is never held back by either; one never accepted is.

use std::sync::Arc;
use std::time::Duration;

use super::tests::{
    authenticator, authenticator_on, config, config_with, deadline, review, token, Fake, TestResult,
};
use super::*;
use crate::directory::Found;
use crate::directory::PasswordWarning;
use crate::metrics::{DirectoryLabels, EventLabels};

const GUESSES: [&str; 3] = ["guess0", "guess1", "guess2"];

fn lockout() -> Arc<Lockout> {
    Arc::new(Lockout::new(3, Duration::from_secs(300)))
}

async fn login(a: &Arc<Authenticator<Fake>>, user: &str, password: &str) -> Review {
    a.login(&token(user, password), deadline()).await
}

/// A config with a login endpoint whose ceiling is `max` (and the service account and
/// signing key a login endpoint needs).
fn with_login(max: u32) -> TestResult<Arc<Config>> {
    with_login_and(max, "")
}

/// [`with_login`] and a second directory, `partner`, chosen by `PARTNER\name`.
fn with_partner(max: u32) -> TestResult<Arc<Config>> {
    with_login_and(
        max,
        "[identity]\nusername_prefix = \"example:\"\ngroup_prefix = \"example:\"\n\
         [directories.partner]\ndomains = [\"PARTNER\"]\nurls = [\"ldap://127.0.0.1:2\"]\n\
         username_prefix = \"partner:\"\ngroup_prefix = \"partner:\"\n\
         bind_dn = \"cn=svc\"\nbind_password_file = \"PW\"\n\
         [directories.partner.user]\nbase_dn = \"ou=people\"\n\
         dn_template = \"uid={username},ou=people\"\n",
    )
}

fn with_login_and(max: u32, directories: &str) -> TestResult<Arc<Config>> {
    let d = tempfile::tempdir()?;
    crate::issued::keys::keygen(&d.path().join("keys"))?;
    let pw = d.path().join("pw");
    std::fs::write(&pw, "secret\n")?;
    let ldap = format!(
        "bind_dn = \"cn=svc\"\nbind_password_file = \"{}\"",
        pw.display()
    );
    let key = d.path().join("keys").join(crate::issued::keys::SIGNING_KEY);
    let directories = directories.replace("PW", &pw.display().to_string());
    let extra = format!(
        "{directories}[login]\nlisten = \"127.0.0.1:0\"\nmax_logins_per_directory = {max}\n\
         [tokens]\nsigning_key_file = \"{}\"",
        key.display()
    );
    Ok(config_with(&ldap, &extra))
}

fn accepted(r: &Review) -> bool {
    matches!(r.outcome, Outcome::Accepted(_))
}

#[tokio::test(start_paused = true)]
async fn a_login_accepted_before_is_not_locked_out_by_wrong_logins() {
    let fake = Arc::new(Fake::new());
    let a = authenticator(fake.clone());
    assert!(accepted(&login(&a, "alice", "alice-pw").await));
    for g in GUESSES {
        login(&a, "alice", g).await;
    }
    let r = login(&a, "alice", "alice-pw").await;
    assert!(accepted(&r), "{r:?}");
    assert_eq!(r.source, Source::Directory, "the directory decided");
    assert_eq!(Fake::count(&fake.verifies), 5);
}

#[tokio::test(start_paused = true)]
async fn a_login_of_a_token_reviews_accepted_is_not_locked_out_by_guesses_in_reviews() {
    let fake = Arc::new(Fake::new());
    let a = authenticator(fake.clone());
    assert!(accepted(&review(&a, "alice", "alice-pw").await));
    for g in GUESSES {
        review(&a, "alice", g).await;
    }
    let r = login(&a, "alice", "alice-pw").await;
    assert!(accepted(&r), "{r:?}");
    assert_eq!(Fake::count(&fake.verifies), 5, "the login bound");
}

#[tokio::test(start_paused = true)]
async fn a_credential_never_accepted_is_still_held_by_lockout() {
    let fake = Arc::new(Fake::new());
    let a = authenticator(fake.clone());
    for g in GUESSES {
        review(&a, "alice", g).await;
    }
    let r = login(&a, "alice", "alice-pw").await;
    assert!(matches!(r.outcome, Outcome::Rejected), "{r:?}");
    assert_eq!(r.source, Source::Local);
    assert_eq!(Fake::count(&fake.verifies), 3, "no bind");
}

#[tokio::test(start_paused = true)]
async fn trust_outlives_a_reload_and_ends_with_the_window() {
    let (fake, shared) = (Arc::new(Fake::new()), lockout());
    let metrics = Arc::new(Metrics::new());
    let before = authenticator_on(config(""), fake.clone(), shared.clone(), metrics.clone());
    login(&before, "alice", "alice-pw").await;
    // A reload: a new runtime with an empty cache, the same lockout.
    let a = authenticator_on(config(""), fake.clone(), shared.clone(), metrics);
    for g in GUESSES {
        login(&a, "alice", g).await;
    }
    assert!(accepted(&login(&a, "alice", "alice-pw").await));
    // stale_ttl is 1h (longer than ttl): past it, the same credential is a stranger's.
    tokio::time::advance(Duration::from_secs(3601)).await;
    for g in GUESSES {
        login(&a, "alice", g).await;
    }
    let r = login(&a, "alice", "alice-pw").await;
    assert_eq!((r.source, r.outcome.label()), (Source::Local, "rejected"));
}

#[tokio::test(start_paused = true)]
async fn beyond_the_ceiling_a_login_is_unavailable_without_asking_the_directory() -> TestResult {
    let fake = Arc::new(Fake::new());
    let metrics = Arc::new(Metrics::new());
    let a = authenticator_on(with_login(2)?, fake.clone(), lockout(), metrics.clone());
    // Three names that match nothing at once: each costs a decoy that takes a while.
    let logins: Vec<_> = ["mallory", "trudy", "eve"]
        .into_iter()
        .map(|name| {
            let a = a.clone();
            tokio::spawn(async move { login(&a, name, "guess").await })
        })
        .collect();
    let mut refused = 0;
    for l in logins {
        let r = l.await?;
        if matches!(r.outcome, Outcome::Unavailable) {
            assert_eq!(r.source, Source::Local);
            refused += 1;
        }
    }
    assert_eq!(refused, 1);
    assert_eq!(Fake::count(&fake.finds), 2, "the third asked nothing");
    let labels = DirectoryLabels {
        directory: "default".into(),
    };
    assert_eq!(
        metrics.login_ceiling_refusals.get_or_create(&labels).get(),
        1
    );
    assert_eq!(metrics.logins_in_flight.get_or_create(&labels).get(), 0);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_full_ceiling_lets_a_credential_accepted_before_through() -> TestResult {
    let fake = Arc::new(Fake::new());
    let metrics = Arc::new(Metrics::new());
    let a = authenticator_on(with_login(1)?, fake.clone(), lockout(), metrics.clone());
    assert!(accepted(&login(&a, "alice", "alice-pw").await));
    let stranger = {
        let a = a.clone();
        tokio::spawn(async move { login(&a, "mallory", "guess").await })
    };
    let labels = DirectoryLabels {
        directory: "default".into(),
    };
    while metrics.logins_in_flight.get_or_create(&labels).get() == 0 {
        tokio::task::yield_now().await;
    }
    let r = login(&a, "bob", "bob-pw").await;
    assert!(matches!(r.outcome, Outcome::Unavailable), "full: {r:?}");
    let r = login(&a, "alice", "alice-pw").await;
    assert!(accepted(&r), "{r:?}");
    assert!(matches!(stranger.await?.outcome, Outcome::Rejected));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn reviews_are_not_counted_against_the_login_ceiling() -> TestResult {
    let fake = Arc::new(Fake::new());
    let a = authenticator_on(
        with_login(1)?,
        fake.clone(),
        lockout(),
        Arc::new(Metrics::new()),
    );
    let reviews: Vec<_> = ["mallory", "trudy", "eve"]
        .into_iter()
        .map(|name| {
            let a = a.clone();
            tokio::spawn(async move { review(&a, name, "guess").await })
        })
        .collect();
    for r in reviews {
        assert!(matches!(r.await?.outcome, Outcome::Rejected));
    }
    assert_eq!(Fake::count(&fake.decoys), 3);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn each_directory_has_a_ceiling_of_its_own() -> TestResult {
    let fake = Arc::new(Fake::new());
    let metrics = Arc::new(Metrics::new());
    let a = authenticator_on(with_partner(1)?, fake.clone(), lockout(), metrics.clone());
    let stranger = {
        let a = a.clone();
        tokio::spawn(async move { login(&a, "mallory", "guess").await })
    };
    let default = DirectoryLabels {
        directory: "default".into(),
    };
    while metrics.logins_in_flight.get_or_create(&default).get() == 0 {
        tokio::task::yield_now().await;
    }
    let r = login(&a, "trudy", "guess").await;
    assert!(matches!(r.outcome, Outcome::Unavailable), "{r:?}");
    // Let in while the default directory's only place is still taken.
    assert_eq!(metrics.logins_in_flight.get_or_create(&default).get(), 1);
    let r = login(&a, "PARTNER\\eve", "guess").await;
    assert!(matches!(r.outcome, Outcome::Rejected), "{r:?}");
    stranger.await?;
    let partner = DirectoryLabels {
        directory: "partner".into(),
    };
    let refusals = |l| metrics.login_ceiling_refusals.get_or_create(l).get();
    assert_eq!((refusals(&default), refusals(&partner)), (1, 0));
    Ok(())
}

fn alice_entry(attrs: &[(&str, String)]) -> crate::directory::Entry {
    let mut all = vec![("uid".to_string(), vec![b"alice".to_vec()])];
    all.extend(
        attrs
            .iter()
            .map(|(k, v)| (k.to_string(), vec![v.as_bytes().to_vec()])),
    );
    crate::directory::Entry {
        dn: "uid=alice".into(),
        attrs: all,
    }
}

/// What `admit` makes of `found` under `config`: the notice a login tells, and how many
/// `password_expiring` warnings were counted.
fn notice_of(config: Arc<Config>, found: Found) -> (Option<PasswordNotice>, u64) {
    let metrics = Arc::new(Metrics::new());
    let a = authenticator_on(config, Arc::new(Fake::new()), lockout(), metrics.clone());
    let login = Login::parse("alice", crate::config::LoginForms::AsTyped);
    let notice = a.admit(found, &login, None).password;
    let label = EventLabels {
        event: "password_expiring",
    };
    let counted = metrics.password_warnings.get_or_create(&label).get();
    (notice, counted)
}

/// A bind that warned, `secs` before expiry.
fn bind_warned(secs: u64) -> Found {
    let warning = Some(PasswordWarning::Expiring(secs));
    Found::read(alice_entry(&[]), vec![], warning, crate::clock::wall())
}

/// An entry whose AD expiry is `secs` away, read at a login.
fn ad_expiring(secs: u64) -> Found {
    let now = crate::clock::wall();
    let unix = (now + Duration::from_secs(secs))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let filetime = (unix + 11_644_473_600) * 10_000_000;
    let attr = ("msDS-UserPasswordExpiryTimeComputed", filetime.to_string());
    Found::login(alice_entry(&[attr]), vec![], None, now)
}

const DAY: u64 = 86_400;

#[test]
fn a_login_tells_a_bind_warning_within_the_default_window_and_not_beyond() -> TestResult {
    let (soon, _) = notice_of(with_login(8)?, bind_warned(3 * DAY));
    assert!(
        matches!(soon, Some(PasswordNotice::ExpiresAt(_))),
        "{soon:?}"
    );
    let (later, counted) = notice_of(with_login(8)?, bind_warned(15 * DAY));
    assert_eq!(later, None);
    assert_eq!(counted, 1, "the directory warned: counted as before");
    Ok(())
}

#[test]
fn an_entry_expiry_within_the_window_is_told_and_counted() -> TestResult {
    let (notice, counted) = notice_of(with_login(8)?, ad_expiring(3 * DAY));
    assert!(
        matches!(notice, Some(PasswordNotice::ExpiresAt(_))),
        "{notice:?}"
    );
    assert_eq!(counted, 1);
    Ok(())
}

#[test]
fn an_entry_expiry_weeks_away_is_neither_told_nor_counted() -> TestResult {
    let (notice, counted) = notice_of(with_login(8)?, ad_expiring(42 * DAY));
    assert_eq!(notice, None);
    assert_eq!(counted, 0);
    Ok(())
}

#[test]
fn without_a_login_endpoint_nothing_is_told() {
    let (notice, _) = notice_of(config(""), bind_warned(60));
    assert_eq!(notice, None);
}
