use serde_json::json;

use super::*;

/// Monday 2030-03-04 09:30:00 UTC.
fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_898_847_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn stamp(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn line_of(value: serde_json::Value) -> Option<String> {
    Notice::from_answer(Some(value))?.line(now())
}

#[test]
fn a_password_expiring_within_the_week_names_the_weekday_and_the_url() {
    let at = now() + Duration::days(3) + Duration::hours(2) + Duration::minutes(30);
    let line = line_of(json!({
        "expirationTimestamp": stamp(at),
        "changeUrl": "https://password.example.org/change"
    }));
    assert_eq!(
        line.as_deref(),
        Some(
            "Your password expires in 3 days (Thursday 12:00 UTC); \
             change it at https://password.example.org/change"
        )
    );
}

#[test]
fn without_a_change_url_the_clause_is_left_out() {
    let at = now() + Duration::hours(5);
    let line = line_of(json!({ "expirationTimestamp": stamp(at) }));
    assert_eq!(
        line.as_deref(),
        Some("Your password expires in 5 hours (Monday 14:30 UTC)")
    );
}

#[test]
fn an_expiry_beyond_the_week_names_the_date_too() {
    let at = now() + Duration::days(10);
    let line = line_of(json!({ "expirationTimestamp": stamp(at) }));
    assert_eq!(
        line.as_deref(),
        Some("Your password expires in 10 days (Thursday 14 March 09:30 UTC)")
    );
}

#[test]
fn the_time_left_is_said_in_the_largest_whole_unit() {
    assert_eq!(in_words(Duration::days(1)), "in 1 day");
    assert_eq!(in_words(Duration::hours(23)), "in 23 hours");
    assert_eq!(in_words(Duration::minutes(1)), "in 1 minute");
    assert_eq!(in_words(Duration::seconds(59)), "in less than a minute");
    assert_eq!(in_words(Duration::seconds(-5)), "in less than a minute");
}

#[test]
fn grace_logins_get_their_own_line() {
    let url = "https://password.example.org/";
    let two = line_of(json!({ "graceLoginsRemaining": 2, "changeUrl": url }));
    assert_eq!(
        two.as_deref(),
        Some(
            "Your password has expired: 2 grace logins left; \
             change it at https://password.example.org/ now"
        )
    );
    let last = line_of(json!({ "graceLoginsRemaining": 0 }));
    assert_eq!(
        last.as_deref(),
        Some("Your password has expired: this was the last grace login; change it now")
    );
}

#[test]
fn an_answer_without_password_expiry_prints_nothing() {
    assert_eq!(Notice::from_answer(None), None);
}

#[test]
fn a_malformed_or_absurd_password_expiry_prints_nothing() {
    let far = stamp(now() + Duration::days(401));
    for value in [
        json!("soon"),
        json!({}),
        json!({ "expirationTimestamp": "next Friday" }),
        json!({ "expirationTimestamp": 1_900_000_000 }),
        json!({ "expirationTimestamp": far }),
        json!({ "graceLoginsRemaining": -1 }),
        json!({ "graceLoginsRemaining": u64::MAX }),
        json!({ "graceLoginsRemaining": 1, "expirationTimestamp": stamp(now()) }),
    ] {
        assert_eq!(line_of(value.clone()), None, "{value}");
    }
}

#[test]
fn a_change_url_a_terminal_would_act_on_is_left_out() {
    let at = stamp(now() + Duration::days(2));
    for url in [
        "https://evil.example/\u{1b}]0;owned\u{7}",
        "https://x.example/ and more",
        "javascript:alert(1)",
        "not a url",
    ] {
        let line = line_of(json!({ "expirationTimestamp": at, "changeUrl": url }));
        let Some(line) = line else {
            panic!("{url:?}: the expiry itself is still told")
        };
        assert!(!line.contains("change it"), "{url:?}: {line}");
    }
}

#[test]
fn auto_follows_kubectl_and_the_flag_overrides_it() {
    assert!(ExpiryWarning::Auto.show(Some(true)));
    assert!(!ExpiryWarning::Auto.show(Some(false)));
    assert!(ExpiryWarning::Always.show(Some(false)));
    assert!(!ExpiryWarning::Never.show(Some(true)));
}
