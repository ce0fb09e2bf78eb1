//! When a cached JWT is printed, refreshed, or printed although it could not be refreshed.

use super::*;

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap()
}

fn secs(n: i64) -> OffsetDateTime {
    now() + time::Duration::seconds(n)
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// A JWT obtained at `obtained` that expires at `expires`.
fn jwt(obtained: Option<OffsetDateTime>, expires: OffsetDateTime) -> Entry {
    Entry {
        token: Zeroizing::new("eyJhbGciOiJFUzI1NiJ9.e30.c2ln".into()),
        expiration_timestamp: rfc3339(expires),
        login_url: "https://login.example.org:8444/login".into(),
        username: "alice".into(),
        obtained: obtained.map(rfc3339),
    }
}

fn unreachable_daemon() -> CredentialError {
    CredentialError::Exchange(LoginError::Unreachable {
        url: "https://login.example.org:8444/token".into(),
        cause: "connection refused".into(),
    })
}

#[test]
fn a_five_minute_jwt_is_used_until_thirty_seconds_before_it_expires() {
    let j = jwt(Some(secs(-60)), secs(240));
    assert_eq!(judge(Some(&j), now()), Cached::Fresh);
    assert_eq!(judge(Some(&j), secs(209)), Cached::Fresh);
    assert_eq!(judge(Some(&j), secs(210)), Cached::Due);
}

#[test]
fn a_short_lived_jwt_is_used_for_three_quarters_of_its_lifetime() {
    // token_ttl = "20s": replaced 5 s before it expires, not after 0 s of use.
    let j = jwt(Some(now()), secs(20));
    assert_eq!(judge(Some(&j), secs(14)), Cached::Fresh);
    assert_eq!(judge(Some(&j), secs(15)), Cached::Due);
}

#[test]
fn a_jwt_without_its_time_of_issue_keeps_the_full_margin() {
    let j = jwt(None, secs(20));
    assert_eq!(judge(Some(&j), now()), Cached::Due);
}

#[test]
fn an_expired_jwt_or_none_is_gone() {
    assert_eq!(
        judge(Some(&jwt(Some(secs(-300)), now())), now()),
        Cached::Gone
    );
    assert_eq!(judge(None, now()), Cached::Gone);
}

#[test]
fn a_daemon_out_of_reach_leaves_a_jwt_still_valid_in_use_with_a_warning() {
    let cached = jwt(Some(secs(-290)), secs(10));
    let (used, warning) = fallback(Cached::Due, Some(cached), unreachable_daemon()).unwrap();
    assert_eq!(used.expiration_timestamp, rfc3339(secs(10)));
    assert!(warning.contains("cannot refresh"), "{warning}");
    assert!(warning.contains("connection refused"), "{warning}");
    assert!(warning.contains(&rfc3339(secs(10))), "{warning}");
}

#[test]
fn a_daemon_out_of_reach_after_the_jwt_expired_is_an_error_saying_it_cannot_refresh() {
    let expired = jwt(Some(secs(-300)), secs(-1));
    for (cached, what) in [
        (
            Some(expired),
            format!("the last one expired at {}", rfc3339(secs(-1))),
        ),
        (None, "none is cached".to_string()),
    ] {
        let Err(e) = fallback(Cached::Gone, cached, unreachable_daemon()) else {
            panic!("an expired JWT must not be printed");
        };
        let text = e.to_string();
        assert!(
            text.starts_with("cannot refresh the token for kube-apiserver"),
            "{text}"
        );
        assert!(text.contains(&what), "{text}");
        assert!(text.contains("connection refused"), "{text}");
    }
}

#[test]
fn a_verdict_about_the_user_is_shown_even_while_a_jwt_is_still_valid() {
    for verdict in [
        CredentialError::Login(LoginError::Refused("Account disabled".into())),
        CredentialError::Exchange(LoginError::Refused("Account disabled".into())),
        CredentialError::NoPassword,
    ] {
        let cached = jwt(Some(secs(-290)), secs(10));
        let Err(e) = fallback(Cached::Due, Some(cached), verdict) else {
            panic!("a refusal must not be papered over with the cached JWT");
        };
        assert!(!e.to_string().contains("cannot refresh"), "{e}");
    }
}

#[test]
fn a_directory_or_daemon_that_cannot_answer_now_counts_as_out_of_reach() {
    for e in [
        LoginError::Unavailable("The authentication backend is unavailable".into()),
        LoginError::RateLimited("in 3 seconds".into()),
        LoginError::Status {
            status: 502,
            message: String::new(),
        },
    ] {
        assert!(unreachable(&CredentialError::Login(e)));
    }
}
