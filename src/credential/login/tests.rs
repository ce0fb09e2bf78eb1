//! The login URL, the answers of the login endpoint and the CA options.

use super::*;

#[test]
fn a_bare_origin_means_the_daemons_login_path() {
    for raw in [
        "https://login.example.org:8444",
        "https://login.example.org:8444/",
    ] {
        assert_eq!(
            login_url(raw).unwrap().as_str(),
            "https://login.example.org:8444/login"
        );
    }
    assert_eq!(
        login_url("https://proxy.example.org/k8s/login")
            .unwrap()
            .as_str(),
        "https://proxy.example.org/k8s/login"
    );
}

#[test]
fn clear_text_http_is_refused() {
    let e = login_url("http://login.example.org:8444/login").unwrap_err();
    assert!(e.to_string().contains("https://"), "{e}");
}

#[test]
fn credentials_in_the_url_are_refused_without_being_echoed() {
    let e = login_url("https://alice:hunter2@login.example.org/login").unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

#[test]
fn queries_fragments_and_non_urls_are_refused() {
    for raw in [
        "https://login.example.org/login?x=1",
        "https://login.example.org/login#x",
        "login.example.org:8444",
        "",
    ] {
        assert!(login_url(raw).is_err(), "{raw}");
    }
}

#[test]
fn a_login_answer_gives_the_token_and_its_expiry() {
    let i =
        issued(br#"{"token":"v4.public.abc","expirationTimestamp":"2030-01-01T08:00:00+01:00"}"#)
            .unwrap();
    assert_eq!(i.token.as_str(), "v4.public.abc");
    assert_eq!(i.expires.unix_timestamp(), 1_893_481_200);
    assert_eq!(i.expiration_timestamp, "2030-01-01T07:00:00Z");
}

#[test]
fn fractions_of_a_second_are_dropped_from_the_expiry() {
    let i = issued(br#"{"token":"t","expirationTimestamp":"2030-01-01T08:00:00.999Z"}"#).unwrap();
    assert_eq!(i.expiration_timestamp, "2030-01-01T08:00:00Z");
}

#[test]
fn a_login_answer_without_a_usable_token_is_refused() {
    for body in [
        &br#"{"token":"","expirationTimestamp":"2030-01-01T08:00:00Z"}"#[..],
        br#"{"token":"a b","expirationTimestamp":"2030-01-01T08:00:00Z"}"#,
        br#"{"token":"a\nb","expirationTimestamp":"2030-01-01T08:00:00Z"}"#,
        br#"{"token":"abc","expirationTimestamp":"tomorrow"}"#,
        br#"{"token":"abc"}"#,
        b"<html>",
    ] {
        assert!(issued(body).is_err(), "{}", String::from_utf8_lossy(body));
    }
}

#[test]
fn the_servers_message_is_shown_without_control_characters() {
    let m = message(br#"{"kind":"Status","message":"Credentials are expired\u001b[2J"}"#);
    assert_eq!(m.as_deref(), Some("Credentials are expired[2J"));
    assert_eq!(message(b"{}"), None);
    assert_eq!(message(b"not json"), None);
}

#[test]
fn retry_after_is_shown_in_seconds_or_as_given() {
    let mut h = HeaderMap::new();
    assert_eq!(retry_after(&h), "later");
    h.insert(RETRY_AFTER, HeaderValue::from_static("42"));
    assert_eq!(retry_after(&h), "in 42 seconds");
    h.insert(
        RETRY_AFTER,
        HeaderValue::from_static("Wed, 21 Oct 2030 07:28:00 GMT"),
    );
    assert_eq!(retry_after(&h), "after Wed, 21 Oct 2030 07:28:00 GMT");
}

#[test]
fn the_token_endpoint_is_beside_the_login_path() {
    for (login, token) in [
        (
            "https://login.example.org:8444",
            "https://login.example.org:8444/token",
        ),
        (
            "https://proxy.example.org/k8s/login",
            "https://proxy.example.org/k8s/token",
        ),
    ] {
        let e = Endpoint::new(login_url(login).unwrap(), Trust::System).unwrap();
        assert_eq!(e.token_url.as_str(), token);
    }
}

#[test]
fn ca_data_must_hold_a_certificate() {
    assert!(matches!(roots(Trust::Data("%%%")), Err(LoginError::CaData)));
    let not_pem = base64::engine::general_purpose::STANDARD.encode("hello");
    assert!(matches!(
        roots(Trust::Data(&not_pem)),
        Err(LoginError::CaData)
    ));
}
