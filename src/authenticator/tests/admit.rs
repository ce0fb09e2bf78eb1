//! One policy decides whether an entry may log in ([`Authenticator::admit`]): a login and
//! the re-check of an issued token reach the same verdict on the same entry, and a token's
//! review applies every rule again once the cache's answer is over.

use std::sync::{MutexGuard, PoisonError};

use super::*;
use crate::issued::Verified;

/// An authenticator that signs tokens (a service account, a signing key), with `extra`
/// TOML after `[cache]`; the directory holding the key files goes with it.
pub(super) fn issuing(
    fake: Arc<Fake>,
    extra: &str,
) -> TestResult<(tempfile::TempDir, Arc<Authenticator<Fake>>)> {
    let d = tempfile::tempdir()?;
    crate::issued::keygen(d.path())?;
    let pw = d.path().join("service.pw");
    std::fs::write(&pw, "service-secret\n")?;
    let ldap = format!(
        "bind_dn = \"cn=svc\"\nbind_password_file = \"{}\"",
        pw.display()
    );
    let tokens = format!(
        "[tokens]\nsigning_key_file = \"{}\"\n{extra}",
        d.path().join("signing.key").display()
    );
    let a = authenticator_of(fake, config_for(&ldap, "", &tokens));
    Ok((d, a))
}

/// Logs `user` in and signs the token the login endpoint would hand out.
pub(super) async fn token_for(
    a: &Arc<Authenticator<Fake>>,
    user: &str,
    password: &str,
) -> TestResult<String> {
    let login = a.login(&token(user, password), deadline()).await;
    assert!(matches!(login.outcome, Outcome::Accepted(_)), "{login:?}");
    let account = login
        .account
        .ok_or("an accepted login without an account")?;
    Ok(a.config
        .tokens
        .issued
        .sign(&account, crate::clock::wall())?
        .token)
}

/// What re-checks see of every account from now on. The fake's data is whole even if a
/// test panicked holding the lock.
fn since(fake: &Fake) -> MutexGuard<'_, Since> {
    fake.since.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The review of `issued` once the cached answer (`cache.ttl`, 2 minutes) is over.
async fn review_after_ttl(a: &Arc<Authenticator<Fake>>, issued: &str) -> Review {
    tokio::time::advance(Duration::from_secs(121)).await;
    a.review(issued, deadline()).await
}

fn alice_now(attrs: &[(&str, &str)], groups: &[&str]) -> Found {
    let login = Login::parse("alice", crate::config::LoginForms::AsTyped);
    let attrs: Vec<_> = attrs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    Fake::found("uid=alice,ou=people", &login, &groups, &attrs)
}

#[tokio::test(start_paused = true)]
async fn a_token_is_refused_at_its_next_review_once_the_account_leaves_the_required_groups(
) -> TestResult {
    let fake = Arc::new(Fake::new());
    let (_keys, a) = issuing(fake.clone(), "[identity]\nrequired_groups = [\"devs\"]")?;
    let issued = token_for(&a, "alice", "alice-pw").await?;
    let r = a.review(&issued, deadline()).await;
    assert!(matches!(r.outcome, Outcome::Accepted(_)), "{r:?}");
    since(&fake).groups = Some(vec![]);
    let r = review_after_ttl(&a, &issued).await;
    let refused = Outcome::AccountState(AccountState::NotInRequiredGroup);
    assert_eq!(r.outcome.label(), refused.label(), "{r:?}");
    assert_eq!(r.source, Source::Directory);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_token_is_refused_at_its_next_review_once_the_account_is_disabled() -> TestResult {
    let fake = Arc::new(Fake::new());
    let (_keys, a) = issuing(fake.clone(), "")?;
    let issued = token_for(&a, "alice", "alice-pw").await?;
    since(&fake).attrs = vec![("nsAccountLock".into(), "TRUE".into())];
    let r = review_after_ttl(&a, &issued).await;
    assert!(
        matches!(r.outcome, Outcome::AccountState(AccountState::Disabled)),
        "{r:?}"
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_token_is_refused_at_its_next_review_once_the_password_changed() -> TestResult {
    let fake = Arc::new(Fake::new());
    let (_keys, a) = issuing(fake.clone(), "")?;
    let issued = token_for(&a, "alice", "alice-pw").await?;
    let changed = ("pwdChangedTime".to_string(), "20260501120000Z".to_string());
    since(&fake).attrs = vec![changed];
    let r = review_after_ttl(&a, &issued).await;
    assert!(
        matches!(
            r.outcome,
            Outcome::AccountState(AccountState::PasswordExpired)
        ),
        "{r:?}"
    );
    Ok(())
}

/// Attributes of the entry, its groups, the verdict's label.
type Case = (
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
    &'static str,
);

/// The same entry, judged for a login and for a token's re-check, meets the same rules.
#[tokio::test(start_paused = true)]
async fn a_login_and_a_recheck_judge_the_same_entry_alike() -> TestResult {
    let (_keys, a) = issuing(
        Arc::new(Fake::new()),
        "[identity]\nrequired_groups = [\"devs\"]",
    )?;
    let login = Login::parse("alice", crate::config::LoginForms::AsTyped);
    let signed = a.admit(alice_now(&[], &["devs"]), &login, None);
    let account = *signed.account.ok_or("accepted without an account")?;
    let token = Verified {
        subject: account,
        expires: crate::clock::wall() + Duration::from_secs(3600),
        signed_here: true,
        jti: "test".into(),
    };
    let cases: [Case; 4] = [
        (&[], &["devs"], "accepted"),
        (&[], &["ops"], "not_in_required_group"),
        (&[("nsAccountLock", "true")], &["devs"], "account_disabled"),
        (&[("pwdReset", "TRUE")], &["devs"], "must_change_password"),
    ];
    for (attrs, groups, label) in cases {
        let at_login = a.admit(alice_now(attrs, groups), &login, None);
        let at_recheck = a.admit(alice_now(attrs, groups), &login, Some(&token));
        assert_eq!(at_login.outcome.label(), label, "{attrs:?} {groups:?}");
        assert_eq!(at_recheck.outcome.label(), label, "{attrs:?} {groups:?}");
    }
    Ok(())
}

/// A token of another node's signing key (a review-only node, a key being rotated away)
/// carries a version this node cannot compute; the other rules still hold.
#[tokio::test(start_paused = true)]
async fn a_token_of_another_signing_key_is_rechecked_without_its_password_version() -> TestResult {
    let (_keys, a) = issuing(Arc::new(Fake::new()), "")?;
    let login = Login::parse("alice", crate::config::LoginForms::AsTyped);
    let signed = a.admit(alice_now(&[], &[]), &login, None);
    let mut account = *signed.account.ok_or("accepted without an account")?;
    account.password_version = "another key's version".into();
    let mut token = Verified {
        subject: account,
        expires: crate::clock::wall() + Duration::from_secs(3600),
        signed_here: false,
        jti: "test".into(),
    };
    let r = a.admit(alice_now(&[], &[]), &login, Some(&token));
    assert_eq!(r.outcome.label(), "accepted");
    let r = a.admit(
        alice_now(&[("nsAccountLock", "TRUE")], &[]),
        &login,
        Some(&token),
    );
    assert_eq!(r.outcome.label(), "account_disabled");
    token.signed_here = true;
    let r = a.admit(alice_now(&[], &[]), &login, Some(&token));
    assert_eq!(r.outcome.label(), "password_expired");
    Ok(())
}
