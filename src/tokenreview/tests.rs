//! The TokenReview parser and the replies, against what serde reads and writes.

use super::*;

#[test]
fn parses_what_go_sends_for_v1beta1() {
    let body = br#"{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1beta1","metadata":{"creationTimestamp":null},"spec":{"token":"dG9rZW4=","audiences":["https://kubernetes.default.svc"]},"status":{"user":{}}}
"#;
    let r = parse(body).unwrap();
    assert_eq!(r.version, Version::V1beta1);
    assert_eq!(r.token.as_str(), "dG9rZW4=");
    assert_eq!(
        r.audiences.to_vec(),
        vec!["https://kubernetes.default.svc".to_string()]
    );
}

#[test]
fn ignores_unknown_fields_and_empty_metadata() {
    let body = br#"{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","metadata":{},"spec":{"token":"x","future":1},"extra":true}"#;
    assert_eq!(parse(body).unwrap().version, Version::V1);
}

#[test]
fn refuses_wrong_kind_version_and_missing_token() {
    assert_eq!(parse(b"{").unwrap_err(), ParseError::Json);
    assert_eq!(
        parse(br#"{"kind":"SubjectAccessReview","apiVersion":"authentication.k8s.io/v1","spec":{"token":"x"}}"#).unwrap_err(),
        ParseError::Kind
    );
    assert_eq!(
        parse(br#"{"kind":"TokenReview","apiVersion":"v1","spec":{"token":"x"}}"#).unwrap_err(),
        ParseError::ApiVersion
    );
    assert_eq!(
        parse(br#"{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{}}"#)
            .unwrap_err(),
        ParseError::MissingToken
    );
}

#[test]
fn arrays_of_the_field_values_are_not_json_objects() {
    assert_eq!(
        parse(br#"["authentication.k8s.io/v1","TokenReview",{"token":"x"}]"#).unwrap_err(),
        ParseError::Json
    );
    assert_eq!(
        parse(br#"{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":["x"]}"#)
            .unwrap_err(),
        ParseError::Json
    );
}

#[test]
fn rejection_reply_carries_the_request_version_and_no_user() {
    let body = render(
        Version::V1beta1,
        None,
        &audiences(r#"["a"]"#),
        Some("Credentials are expired"),
    );
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["apiVersion"], "authentication.k8s.io/v1beta1");
    assert_eq!(v["kind"], "TokenReview");
    assert_eq!(v["status"]["authenticated"], false);
    assert_eq!(v["status"]["error"], "Credentials are expired");
    assert!(v["status"].get("user").is_none());
    assert!(v["status"].get("audiences").is_none());
}

/// The audiences of a JSON array of strings.
fn audiences(json: &str) -> Audiences<'_> {
    Audiences::from_json(json).unwrap()
}

/// What `render` wrote when it went through serde; the hand-written one must match it
/// byte for byte.
fn serde_render(
    version: Version,
    user: Option<&UserInfo>,
    audiences: &[String],
    error: Option<&str>,
) -> Vec<u8> {
    #[derive(Serialize)]
    struct Reply<'a> {
        #[serde(rename = "apiVersion")]
        api_version: &'static str,
        kind: &'static str,
        metadata: Metadata,
        spec: Empty,
        status: Status<'a>,
    }
    #[derive(Serialize)]
    struct Metadata {
        #[serde(rename = "creationTimestamp")]
        creation_timestamp: Option<()>,
    }
    #[derive(Serialize)]
    struct Empty {}
    #[derive(Serialize)]
    struct Status<'a> {
        authenticated: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        user: Option<&'a UserInfo>,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        audiences: &'a [String],
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a str>,
    }
    serde_json::to_vec(&Reply {
        api_version: version.api_version(),
        kind: "TokenReview",
        metadata: Metadata {
            creation_timestamp: None,
        },
        spec: Empty {},
        status: Status {
            authenticated: user.is_some(),
            user,
            audiences: if user.is_some() { audiences } else { &[] },
            error,
        },
    })
    .unwrap()
}

#[test]
fn replies_are_what_serde_would_write() {
    let full = UserInfo {
        username: "ldap:j\u{f6}rg \"q\" \\ \u{1}".into(),
        uid: "f81d4fae-7dec-11d0-a765-00a0c91e6bf6".into(),
        groups: vec!["ldap:admins".into(), "ldap:dev, ops".into()],
        extra: [(
            "example.org/email".to_string(),
            vec!["j@example.org".to_string()],
        )]
        .into_iter()
        .collect(),
    };
    let bare = UserInfo {
        username: "alice".into(),
        uid: "uid=alice,ou=people".into(),
        groups: vec![],
        extra: Default::default(),
    };
    let audiences = vec![
        "https://kubernetes.default.svc".to_string(),
        "a\"b".to_string(),
        "\u{0}\u{8}\t\n\u{c}\r\u{1f}\u{7f}\\/\u{2028}\u{f6}\u{1f600}".to_string(),
    ];
    let json = serde_json::to_string(&audiences).unwrap();
    let parsed = self::audiences(&json);
    for version in [Version::V1, Version::V1beta1] {
        for info in [&full, &bare] {
            for (aud, ours) in [(&audiences[..], parsed), (&[], Audiences::default())] {
                assert_eq!(
                    String::from_utf8(render(version, Some(&User::new(info)), &ours, None))
                        .unwrap(),
                    String::from_utf8(serde_render(version, Some(info), aud, None)).unwrap()
                );
            }
        }
        for error in [
            None,
            Some("Invalid username or password"),
            Some("odd \"text\"\n"),
        ] {
            assert_eq!(
                render(version, None, &parsed, error),
                serde_render(version, None, &audiences, error)
            );
        }
    }
    let u = User::new(&full);
    assert_eq!((u.username(), u.group_count()), (full.username.as_str(), 2));
}

#[test]
fn go_durations_parse() {
    use std::time::Duration;
    assert_eq!(parse_go_duration("30s"), Some(Duration::from_secs(30)));
    assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
    assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
    assert_eq!(parse_go_duration("30"), None);
    assert_eq!(parse_go_duration("soon"), None);
    assert_eq!(parse_go_duration(""), None);
}

#[test]
fn a_reply_is_one_allocation_of_its_exact_size() {
    // Bytes::from(Vec) takes a vector whose capacity is its length without allocating again.
    let info = UserInfo {
        username: "alice".into(),
        uid: "uid=alice,ou=people".into(),
        groups: vec!["ldap:dev".into()],
        extra: Default::default(),
    };
    let user = User::new(&info);
    let audiences = audiences(r#"["https://kubernetes.default.svc","\"x\""]"#);
    for version in [Version::V1, Version::V1beta1] {
        for (user, error) in [(Some(&user), None), (None, Some("odd \"text\"\n"))] {
            let body = render(version, user, &audiences, error);
            assert_eq!(body.capacity(), body.len(), "{version:?}");
        }
    }
}

#[test]
fn a_token_without_escapes_is_borrowed_from_the_body() {
    let body = br#"{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{"token":"dG9rZW4=","audiences":["a"]}}"#;
    let r = parse(body).unwrap();
    assert!(
        matches!(r.token, Token::Borrowed("dG9rZW4=")),
        "{:?}",
        r.token.as_str()
    );
}

#[test]
fn a_token_with_escapes_is_unescaped_into_its_own_string() {
    let body = br#"{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{"token":"a\/b\u0063\"d"}}"#;
    let r = parse(body).unwrap();
    assert!(matches!(&r.token, Token::Owned(t) if t.as_str() == "a/bc\"d"));
}

#[test]
fn audiences_that_are_not_strings_make_the_body_not_json_before_its_kind_is_read() {
    for audiences in [r#"[1]"#, r#""a""#, r#"{}"#, r#"["a",null]"#] {
        let body = format!(
            r#"{{"kind":"Other","apiVersion":"v0","spec":{{"token":"x","audiences":{audiences}}}}}"#
        );
        assert_eq!(
            parse(body.as_bytes()).unwrap_err(),
            ParseError::Json,
            "{audiences}"
        );
    }
}

#[test]
fn null_and_empty_audiences_are_none() {
    for audiences in ["null", "[]"] {
        let body = format!(
            r#"{{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{{"token":"x","audiences":{audiences}}}}}"#
        );
        assert!(
            parse(body.as_bytes()).unwrap().audiences.is_empty(),
            "{audiences}"
        );
    }
}

#[test]
fn duplicate_fields_are_not_json() {
    for body in [
        r#"{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{"token":"x","token":"y"}}"#,
        r#"{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{"token":"x","audiences":["a"],"audiences":["b"]}}"#,
        r#"{"kind":"TokenReview","kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{"token":"x"}}"#,
    ] {
        assert_eq!(
            parse(body.as_bytes()).unwrap_err(),
            ParseError::Json,
            "{body}"
        );
    }
}

#[test]
fn a_token_that_is_not_utf8_is_not_json() {
    let mut body =
        br#"{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{"token":"x"#
            .to_vec();
    body.extend_from_slice(b"\xff\"}}");
    assert_eq!(parse(&body).unwrap_err(), ParseError::Json);
}

#[test]
fn audiences_that_are_not_utf8_are_not_json() {
    let mut body = br#"{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{"token":"x","audiences":["a"#.to_vec();
    body.extend_from_slice(b"\xff\"]}}");
    assert_eq!(parse(&body).unwrap_err(), ParseError::Json);
}

#[test]
fn debug_of_a_request_never_shows_the_token() {
    let body = br#"{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{"token":"s3cr\u0065t","audiences":["aud"]}}"#;
    let shown = format!("{:?}", parse(body).unwrap());
    assert!(!shown.contains("s3cr") && shown.contains("aud"), "{shown}");
}
