//! `token::decode`: `base64(username:password)` from an untrusted bearer token.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use kube_ldap_webhook::fuzzing::{decode, Credentials, Password, Refusal, MAX_TOKEN_LEN};

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    as_token(text);
    as_plaintext(text);
}

/// The input is the bearer token itself.
fn as_token(token: &str) {
    match decode(token) {
        Ok(c) => {
            assert!(token.trim().len() <= MAX_TOKEN_LEN);
            check_credentials(&c);
            // What was accepted is what an honest client would send for it.
            let again = decode(&STANDARD.encode(joined(&c)));
            assert!(
                again.is_ok_and(|a| same(&a, &c)),
                "re-encoded credentials decode differently"
            );
        }
        Err(Refusal::NotOurs | Refusal::Invalid) => {}
    }
}

/// The input is `username:password` before encoding: padded standard and unpadded
/// URL-safe base64 of it must get the same answer, and an accepted one is the input.
fn as_plaintext(plain: &str) {
    let std = STANDARD.encode(plain);
    if std.len() > MAX_TOKEN_LEN {
        return;
    }
    let a = decode(&std);
    let b = decode(&URL_SAFE_NO_PAD.encode(plain));
    match (&a, &b) {
        (Ok(a), Ok(b)) => {
            assert!(same(a, b), "base64 alphabets decode differently");
            assert_eq!(joined(a), plain, "accepted credentials are not the input");
        }
        (Err(x), Err(y)) => assert_eq!(x, y, "base64 alphabets refuse differently"),
        _ => panic!("one base64 alphabet accepted what the other refused"),
    }
}

fn check_credentials(c: &Credentials) {
    let (u, p) = (c.username.as_str(), c.password.expose());
    assert!(!u.is_empty() && !p.is_empty(), "empty username or password");
    assert!(!u.contains(':'), "the username holds a colon");
    assert!(u.len() <= 256, "the username is over 256 bytes");
    assert_eq!(u.trim(), u, "the username has surrounding white space");
    assert!(
        !u.chars().chain(p.chars()).any(char::is_control),
        "control characters were accepted"
    );
    // Debug must not depend on the password at all.
    let other = Credentials {
        username: c.username.clone(),
        password: Password::new("x".into()),
    };
    assert_eq!(
        format!("{c:?}"),
        format!("{other:?}"),
        "Debug shows the password"
    );
}

fn joined(c: &Credentials) -> String {
    format!("{}:{}", c.username, c.password.expose())
}

fn same(a: &Credentials, b: &Credentials) -> bool {
    a.username == b.username && a.password.expose() == b.password.expose()
}
