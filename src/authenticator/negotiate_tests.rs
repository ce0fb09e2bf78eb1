//! Kerberos logins ([`Authenticator::login_principal`]) against the fake directory: the
//! realm picks the directory or nothing is asked, and the account then goes through the
//! policy of every login.

use std::sync::Arc;

use super::tests::{authenticator_of, config_for, deadline, Fake, Mode};
use super::*;

/// `[ldap]` with a Kerberos filter, mapping the realm EXAMPLE.TEST.
fn kerberos() -> (Arc<Fake>, Arc<Authenticator<Fake>>) {
    let config = config_for(
        "",
        "dn_template = \"uid={username},ou=people\"\n\
         kerberos_filter = \"(krbPrincipalName={principal})\"\n\
         login = \"strip-domain\"\ndomains = [\"EXAMPLE\", \"EXAMPLE.TEST\"]",
        "",
    );
    let fake = Arc::new(Fake::new());
    (fake.clone(), authenticator_of(fake, config))
}

#[tokio::test(start_paused = true)]
async fn a_principal_of_a_mapped_realm_is_read_and_admitted() {
    let (fake, a) = kerberos();
    let r = a.login_principal("alice@EXAMPLE.TEST", deadline()).await;
    let Outcome::Accepted(user) = &r.outcome else {
        panic!("{r:?}")
    };
    assert_eq!(user.username(), "alice");
    assert_eq!(Fake::count(&fake.principals), 1);
    assert_eq!(
        Fake::count(&fake.verifies),
        0,
        "no bind: there is no password"
    );
    let Some(account) = r.account else {
        panic!("no account to sign a token for")
    };
    assert_eq!(
        account.login, "",
        "the re-check fills ldap.user.filter from the username"
    );
}

#[tokio::test(start_paused = true)]
async fn system_groups_are_dropped_as_for_a_password_login() {
    let (_, a) = kerberos();
    let r = a.login_principal("alice@EXAMPLE.TEST", deadline()).await;
    let Some(user) = r.outcome.user() else {
        panic!("not accepted: {r:?}")
    };
    assert!(user.json().contains("\"devs\""), "{}", user.json());
    assert!(!user.json().contains("system:masters"), "{}", user.json());
}

#[tokio::test(start_paused = true)]
async fn the_realm_compares_case_insensitively() {
    let (_, a) = kerberos();
    let r = a.login_principal("bob@example.test", deadline()).await;
    assert!(matches!(r.outcome, Outcome::Accepted(_)), "{r:?}");
}

#[tokio::test(start_paused = true)]
async fn an_unmapped_realm_never_reaches_the_directory() {
    let (fake, a) = kerberos();
    for principal in ["alice@OTHER.TEST", "alice@EXAMPLE.TEST.EVIL", "alice"] {
        let r = a.login_principal(principal, deadline()).await;
        assert!(matches!(r.outcome, Outcome::Rejected), "{principal}: {r:?}");
        assert_eq!(r.source, Source::Local, "{principal}");
    }
    assert_eq!(Fake::count(&fake.principals), 0);
}

#[tokio::test(start_paused = true)]
async fn a_principal_without_an_account_is_rejected() {
    let (fake, a) = kerberos();
    let r = a.login_principal("mallory@EXAMPLE.TEST", deadline()).await;
    assert!(matches!(r.outcome, Outcome::Rejected), "{r:?}");
    assert_eq!(Fake::count(&fake.principals), 1);
}

#[tokio::test(start_paused = true)]
async fn a_directory_outage_is_unavailable() {
    let (fake, a) = kerberos();
    fake.set(Mode::Outage);
    let r = a.login_principal("alice@EXAMPLE.TEST", deadline()).await;
    assert!(matches!(r.outcome, Outcome::Unavailable), "{r:?}");
}
