//! Lockout protection's rules, on tokio's clock.

use super::*;

fn later() -> Instant {
    clock::now() + Duration::from_secs(5)
}

fn lockout(max: u32, window: Duration) -> Arc<Lockout> {
    Arc::new(Lockout::new(max, window))
}

fn alice() -> Key {
    Key::account("uid=alice,ou=people,dc=example,dc=org")
}

/// A wrong password for `key`; true when it started a lockout.
async fn fail(l: &Arc<Lockout>, key: Key) -> bool {
    l.begin(key, Trust::Unknown, later())
        .await
        .unwrap()
        .failed()
}

#[tokio::test]
async fn only_the_failure_that_uses_up_the_budget_starts_a_lockout() {
    let l = lockout(2, Duration::from_secs(300));
    assert!(!fail(&l, alice()).await, "one failure of two");
    assert!(fail(&l, alice()).await, "the second uses up the budget");
    let trusted = l.begin(alice(), Trust::AcceptedBefore, later()).await;
    assert!(
        !trusted.unwrap().failed(),
        "already locked: no second start"
    );
}

#[tokio::test]
async fn refuses_after_max_failures_for_the_account_whatever_the_dn_case() {
    let l = lockout(3, Duration::from_secs(300));
    fail(&l, Key::account("uid=Alice,ou=People,dc=example,dc=org")).await;
    fail(&l, Key::account("UID=ALICE,OU=PEOPLE,DC=EXAMPLE,DC=ORG")).await;
    fail(&l, alice()).await;
    let r = l.begin(alice(), Trust::Unknown, later()).await;
    assert_eq!(r.err(), Some(Blocked::Locked));
    assert!(l.is_locked(&alice()));
    let bob = Key::account("uid=bob,ou=people,dc=example,dc=org");
    assert!(l.begin(bob, Trust::Unknown, later()).await.is_ok());
}

#[tokio::test]
async fn a_token_accepted_before_is_never_refused() {
    let l = lockout(1, Duration::from_secs(300));
    fail(&l, alice()).await;
    assert!(l.is_locked(&alice()));
    let a = l.begin(alice(), Trust::AcceptedBefore, later()).await;
    assert!(a.is_ok(), "the directory decides for a known-good token");
    a.unwrap().succeeded();
    assert!(!l.is_locked(&alice()), "its success resets the count");
}

#[tokio::test]
async fn a_flood_of_unknown_names_does_not_evict_a_locked_account() {
    let l = lockout(2, Duration::from_secs(300));
    fail(&l, alice()).await;
    fail(&l, alice()).await;
    for i in 0..(MAX_UNKNOWN + 500) {
        fail(&l, Key::unknown(format!("nobody{i}"))).await;
    }
    assert!(l.is_locked(&alice()));
    let (accounts, unknown) = l.tracked();
    assert_eq!(accounts, 1);
    assert_eq!(unknown, MAX_UNKNOWN, "unknown names are bounded");
}

#[tokio::test]
async fn unknown_names_have_their_own_budget() {
    let l = lockout(2, Duration::from_secs(300));
    let ghost = || Key::unknown("ghost".into());
    fail(&l, ghost()).await;
    fail(&l, ghost()).await;
    let r = l.begin(ghost(), Trust::Unknown, later()).await;
    assert_eq!(r.err(), Some(Blocked::Locked));
    assert!(!l.is_locked(&alice()));
}

#[tokio::test]
async fn users_without_failures_leave_no_state_behind() {
    let l = lockout(3, Duration::from_secs(300));
    l.begin(alice(), Trust::Unknown, later())
        .await
        .unwrap()
        .succeeded();
    drop(
        l.begin(Key::unknown("bob".into()), Trust::Unknown, later())
            .await,
    );
    fail(&l, Key::account("uid=carol")).await;
    assert_eq!(l.tracked(), (1, 0), "only carol's failure is kept");
    l.begin(Key::account("uid=carol"), Trust::Unknown, later())
        .await
        .unwrap()
        .succeeded();
    assert_eq!(l.tracked(), (0, 0));
}

#[tokio::test]
async fn success_resets_the_count() {
    let l = lockout(3, Duration::from_secs(300));
    fail(&l, alice()).await;
    fail(&l, alice()).await;
    l.begin(alice(), Trust::Unknown, later())
        .await
        .unwrap()
        .succeeded();
    fail(&l, alice()).await;
    fail(&l, alice()).await;
    assert!(l.begin(alice(), Trust::Unknown, later()).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn window_expiry_lifts_the_refusal() {
    let l = lockout(1, Duration::from_secs(300));
    fail(&l, alice()).await;
    assert!(l.is_locked(&alice()));
    tokio::time::advance(Duration::from_secs(299)).await;
    assert!(l.is_locked(&alice()));
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(!l.is_locked(&alice()));
    assert!(l.begin(alice(), Trust::Unknown, later()).await.is_ok());
}

#[tokio::test]
async fn attempts_in_flight_hold_the_budget() {
    let l = lockout(2, Duration::from_secs(300));
    let a = l.begin(alice(), Trust::Unknown, later()).await.unwrap();
    let b = l.begin(alice(), Trust::Unknown, later()).await.unwrap();
    let soon = clock::now() + Duration::from_millis(30);
    let r = l.begin(alice(), Trust::Unknown, soon).await;
    assert_eq!(r.err(), Some(Blocked::Deadline));
    a.failed();
    b.failed();
    let r = l.begin(alice(), Trust::Unknown, later()).await;
    assert_eq!(r.err(), Some(Blocked::Locked));
}

#[tokio::test]
async fn a_reload_changes_the_settings_and_keeps_the_counts() {
    let l = lockout(3, Duration::from_secs(300));
    fail(&l, alice()).await;
    fail(&l, alice()).await;
    assert!(!l.is_locked(&alice()));
    l.configure(2, Duration::from_secs(300));
    assert!(l.is_locked(&alice()));
}

#[tokio::test]
async fn zero_max_failures_turns_protection_off() {
    let l = lockout(0, Duration::from_secs(300));
    for _ in 0..10 {
        fail(&l, alice()).await;
    }
    assert!(l.begin(alice(), Trust::Unknown, later()).await.is_ok());
    assert_eq!(l.tracked(), (0, 0));
}

fn login(name: &str) -> Login {
    Login::parse(name, crate::config::LoginForms::AsTyped)
}

fn password(p: &str) -> Password {
    Password::new(p.to_string())
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn a_remembered_credential_is_trusted_for_the_window_only() {
    let l = lockout(3, Duration::from_secs(300));
    let proof = l.proof(&login("alice"), &password("pw"));
    assert_eq!(l.accepted_before(&proof, HOUR), Trust::Unknown);
    l.remember(proof, &alice(), HOUR);
    assert_eq!(l.accepted_before(&proof, HOUR), Trust::AcceptedBefore);
    let other = l.proof(&login("alice"), &password("guess"));
    assert_eq!(l.accepted_before(&other, HOUR), Trust::Unknown);
    tokio::time::advance(HOUR).await;
    assert_eq!(l.accepted_before(&proof, HOUR), Trust::Unknown);
}

#[tokio::test]
async fn a_credential_the_directory_refused_is_forgotten() {
    let l = lockout(3, Duration::from_secs(300));
    let proof = l.proof(&login("alice"), &password("pw"));
    l.remember(proof, &alice(), HOUR);
    l.forget(&proof);
    assert_eq!(l.accepted_before(&proof, HOUR), Trust::Unknown);
    assert_eq!(l.remembered(), (0, 0));
}

#[tokio::test]
async fn spellings_the_directory_folds_alike_are_one_credential() {
    let l = lockout(3, Duration::from_secs(300));
    l.remember(l.proof(&login("alice"), &password("pw")), &alice(), HOUR);
    let shouted = l.proof(&login("ＡＬＩＣＥ"), &password("pw"));
    assert_eq!(l.accepted_before(&shouted, HOUR), Trust::AcceptedBefore);
}

#[tokio::test]
async fn one_account_cannot_push_other_accounts_credentials_out() {
    let l = lockout(3, Duration::from_secs(300));
    let bob = l.proof(&login("bob"), &password("bob-pw"));
    l.remember(bob, &Key::account("uid=bob"), HOUR);
    // Spellings that fold apart but find one entry (a filter on uid or mail), many times.
    for i in 0..1000 {
        let spelling = l.proof(&login(&format!("alice{i}")), &password("pw"));
        l.remember(spelling, &alice(), HOUR);
    }
    assert_eq!(l.remembered(), (accepted::PER_ACCOUNT + 1, 2));
    assert_eq!(l.accepted_before(&bob, HOUR), Trust::AcceptedBefore);
}

#[tokio::test]
async fn remembered_credentials_are_bounded() {
    let l = lockout(3, Duration::from_secs(300));
    for i in 0..(accepted::MAX_ENTRIES + 100) {
        let proof = l.proof(&login(&format!("user{i}")), &password("pw"));
        l.remember(proof, &Key::account(&format!("uid=user{i}")), HOUR);
    }
    assert_eq!(
        l.remembered(),
        (accepted::MAX_ENTRIES, accepted::MAX_ENTRIES)
    );
    let newest = l.proof(
        &login(&format!("user{}", accepted::MAX_ENTRIES + 99)),
        &password("pw"),
    );
    assert_eq!(l.accepted_before(&newest, HOUR), Trust::AcceptedBefore);
    let oldest = l.proof(&login("user0"), &password("pw"));
    assert_eq!(l.accepted_before(&oldest, HOUR), Trust::Unknown);
}
