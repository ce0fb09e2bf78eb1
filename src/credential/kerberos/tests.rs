use std::cell::Cell;

use hyper::header::HeaderValue;
use time::OffsetDateTime;

use super::*;

fn issued(token: &str) -> Issued {
    Issued {
        token: Zeroizing::new(token.into()),
        expires: OffsetDateTime::UNIX_EPOCH,
        expiration_timestamp: "1970-01-01T00:00:00Z".into(),
        password: None,
    }
}

fn by_ticket() -> Attempt {
    Attempt::Issued {
        issued: issued("from-the-ticket"),
        principal: "alice@EXAMPLE.ORG".into(),
    }
}

/// The password login of a test: counts its calls.
fn password<'a>(
    calls: &'a Cell<u32>,
    answer: Result<&'a str, LoginError>,
) -> impl FnOnce() -> Result<(Issued, String), CredentialError> + 'a {
    move || {
        calls.set(calls.get() + 1);
        Ok((issued(answer?), "alice".into()))
    }
}

#[test]
fn with_a_ticket_the_daemon_accepts_no_password_is_asked() {
    let calls = Cell::new(0);
    let (token, username) = log_in(
        Some(by_ticket),
        None,
        password(&calls, Ok("from-the-password")),
    )
    .unwrap();
    assert_eq!(token.token.as_str(), "from-the-ticket");
    assert_eq!(username, "alice@EXAMPLE.ORG");
    assert_eq!(calls.get(), 0);
}

#[test]
fn a_kerberos_token_is_kept_under_the_username_given() {
    let calls = Cell::new(0);
    let (_, username) = log_in(Some(by_ticket), Some("alice"), password(&calls, Ok("p"))).unwrap();
    assert_eq!(username, "alice");
}

#[test]
fn without_a_ticket_the_password_is_asked() {
    let calls = Cell::new(0);
    let no_ticket = || Attempt::Skipped("no Kerberos ticket: No credentials cache found".into());
    let (token, _) = log_in(Some(no_ticket), None, password(&calls, Ok("pw"))).unwrap();
    assert_eq!(token.token.as_str(), "pw");
    assert_eq!(calls.get(), 1);
}

#[test]
fn a_ticket_the_daemon_refuses_falls_back_to_the_password() {
    let calls = Cell::new(0);
    let refused = || Attempt::Refused("Invalid username or password".into());
    let (token, _) = log_in(Some(refused), None, password(&calls, Ok("pw"))).unwrap();
    assert_eq!(token.token.as_str(), "pw");
    assert_eq!(calls.get(), 1);
}

#[test]
fn no_kerberos_asks_the_password_without_touching_the_ticket() {
    let calls = Cell::new(0);
    let never: Option<fn() -> Attempt> = None;
    let (token, _) = log_in(never, None, password(&calls, Ok("pw"))).unwrap();
    assert_eq!(token.token.as_str(), "pw");
    assert_eq!(calls.get(), 1);
}

#[test]
fn a_daemon_that_cannot_log_anyone_in_is_not_sent_a_password() {
    for failure in [
        LoginError::Unreachable {
            url: "https://login.example.org/login".into(),
            cause: "connection refused".into(),
        },
        LoginError::RateLimited("in 30 seconds".into()),
        LoginError::Unavailable("LDAP is unavailable".into()),
        LoginError::Answer("its Kerberos answer does not prove it holds the service key"),
    ] {
        let calls = Cell::new(0);
        let e = log_in(
            Some(|| Attempt::Failed(failure)),
            None,
            password(&calls, Ok("pw")),
        )
        .err()
        .unwrap();
        assert_eq!(calls.get(), 0);
        assert!(e.to_string().contains("Kerberos ticket failed"), "{e}");
    }
}

#[test]
fn a_failed_fallback_says_both_ways() {
    let calls = Cell::new(0);
    let e = log_in(
        Some(|| Attempt::Skipped("no Kerberos ticket: expired".into())),
        None,
        password(
            &calls,
            Err(LoginError::Refused("Invalid username or password".into())),
        ),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("Kerberos ticket was not used (no Kerberos ticket: expired)"),
        "{e}"
    );
    assert!(
        e.contains("password: login refused: Invalid username or password"),
        "{e}"
    );
}

#[test]
fn a_ticket_fits_the_same_name_in_any_realm_or_domain_form() {
    for username in ["alice", "ALICE", "alice@example.org", "EXAMPLE\\alice"] {
        assert!(
            ticket_fits("alice@EXAMPLE.ORG", Some(username)),
            "{username}"
        );
    }
    assert!(ticket_fits("alice@EXAMPLE.ORG", None));
}

#[test]
fn a_ticket_of_another_user_does_not_fit() {
    for username in ["bob", "alice2", "EXAMPLE\\bob", "bob@example.org", ""] {
        assert!(
            !ticket_fits("alice@EXAMPLE.ORG", Some(username)),
            "{username}"
        );
    }
    assert!(!ticket_fits("@EXAMPLE.ORG", Some("")));
}

#[test]
fn the_mutual_token_is_read_from_www_authenticate_negotiate() {
    let mut h = HeaderMap::new();
    assert_eq!(mutual_token(&h).unwrap(), None);
    h.append(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"x\""),
    );
    assert_eq!(mutual_token(&h).unwrap(), None);
    h.append(WWW_AUTHENTICATE, HeaderValue::from_static("Negotiate"));
    assert_eq!(mutual_token(&h).unwrap(), None);
    h.append(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("negotiate oYGZMIGWoAMKAQA="),
    );
    assert_eq!(
        mutual_token(&h).unwrap().as_deref(),
        Some(&b"\xa1\x81\x99\x30\x81\x96\xa0\x03\x0a\x01\x00"[..])
    );
}

#[test]
fn a_mutual_token_that_is_not_base64_or_too_long_is_refused() {
    let long = format!("Negotiate {}", "A".repeat(MAX_MUTUAL * 2));
    for bad in ["Negotiate %%%", long.as_str()] {
        let mut h = HeaderMap::new();
        h.insert(WWW_AUTHENTICATE, HeaderValue::from_str(bad).unwrap());
        assert!(mutual_token(&h).is_err(), "{bad:.40}");
    }
}

#[test]
fn debug_of_an_attempt_never_shows_the_token() {
    let text = format!("{:?}", by_ticket());
    assert!(!text.contains("from-the-ticket"), "{text}");
    assert!(text.contains("alice@EXAMPLE.ORG"), "{text}");
}
