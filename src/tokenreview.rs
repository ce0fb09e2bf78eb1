//! TokenReview in (`authentication.k8s.io/v1` or `v1beta1`) and out, in the request's version.
//! Also the `?timeout=` of a review request, in Go's duration syntax.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use zeroize::Zeroizing;

use crate::identity::UserInfo;

/// The TokenReview API version; a reply always uses the request's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `authentication.k8s.io/v1`.
    V1,
    /// `authentication.k8s.io/v1beta1`, what kube-apiserver sends by default.
    V1beta1,
}

impl Version {
    /// The `apiVersion` string.
    pub fn api_version(self) -> &'static str {
        match self {
            Version::V1 => "authentication.k8s.io/v1",
            Version::V1beta1 => "authentication.k8s.io/v1beta1",
        }
    }
}

/// The parts of a request this daemon uses; everything else is ignored, as Go's decoder would.
/// `apiVersion` and `kind` borrow from the body unless they hold JSON escapes.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(rename = "apiVersion", borrow)]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow)]
    kind: Option<Cow<'a, str>>,
    spec: Option<Object<WireSpec>>,
}

/// A struct read only from a JSON object, as Go reads one: serde's derive would also take
/// a JSON array of the field values (`["authentication.k8s.io/v1","TokenReview",...]`).
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(V(PhantomData)).map(Object)
    }
}

#[derive(Deserialize)]
struct WireSpec {
    token: Option<Zeroizing<String>>,
    #[serde(default)]
    audiences: Option<Vec<String>>,
}

/// A parsed TokenReview request. `Debug` never shows the token.
pub struct Request {
    /// The request's API version.
    pub version: Version,
    /// `spec.token`, zeroized on drop.
    pub token: Zeroizing<String>,
    /// `spec.audiences`.
    pub audiences: Vec<String>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("version", &self.version)
            .field("token", &"<redacted>")
            .field("audiences", &self.audiences)
            .finish()
    }
}

/// Why a body is not a usable TokenReview; the text goes back to the client (never the token).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("request body is not valid JSON")]
    /// Not JSON.
    Json,
    #[error("kind must be TokenReview")]
    /// Not `kind: TokenReview`.
    Kind,
    #[error("apiVersion must be authentication.k8s.io/v1 or authentication.k8s.io/v1beta1")]
    /// Neither v1 nor v1beta1.
    ApiVersion,
    #[error("spec.token is required")]
    /// No `spec.token`.
    MissingToken,
}

/// Parses a request body leniently, as Go's decoder would (unknown fields ignored).
pub fn parse(body: &[u8]) -> Result<Request, ParseError> {
    let Object(wire): Object<Wire> = serde_json::from_slice(body).map_err(|_| ParseError::Json)?;
    if wire.kind.as_deref() != Some("TokenReview") {
        return Err(ParseError::Kind);
    }
    let version = match wire.api_version.as_deref() {
        Some("authentication.k8s.io/v1") => Version::V1,
        Some("authentication.k8s.io/v1beta1") => Version::V1beta1,
        _ => return Err(ParseError::ApiVersion),
    };
    let Object(spec) = wire.spec.ok_or(ParseError::MissingToken)?;
    let token = spec
        .token
        .filter(|t| !t.is_empty())
        .ok_or(ParseError::MissingToken)?;
    Ok(Request {
        version,
        token,
        audiences: spec.audiences.unwrap_or_default(),
    })
}

/// `status.user` of an accepted review, rendered to JSON once, when the directory accepted
/// the user, and reused for every answer from the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    json: Box<str>,
    username: Box<str>,
    groups: usize,
}

impl User {
    /// Renders `status.user` once, for every reply that carries it.
    pub fn new(info: &UserInfo) -> User {
        User {
            // Serialising a struct of strings cannot fail.
            json: serde_json::to_string(info)
                .unwrap_or_default()
                .into_boxed_str(),
            username: info.username.as_str().into(),
            groups: info.groups.len(),
        }
    }

    /// The Kubernetes username, prefix included.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// How many groups, for the log line.
    pub fn group_count(&self) -> usize {
        self.groups
    }

    /// `status.user` as JSON.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// The group names, read back from the rendered JSON: for an audit event, which is
    /// rarer than a reply, rather than a second copy in every cached answer.
    pub(crate) fn group_names(&self) -> Vec<String> {
        #[derive(Deserialize)]
        struct Groups {
            #[serde(default)]
            groups: Vec<String>,
        }
        serde_json::from_str::<Groups>(&self.json)
            .map(|g| g.groups)
            .unwrap_or_default()
    }
}

/// The body of an answer. `user` is set for accepted reviews, `error` for failed ones;
/// the request's audiences are echoed for accepted ones (the credential is not bound to
/// an audience, so it is valid for every audience asked for).
///
/// Written out directly rather than through serde: this runs for every review, and all of
/// it but the audiences and the error text is fixed or already rendered. The bytes are
/// those serde would write (see the tests).
pub fn render(
    version: Version,
    user: Option<&User>,
    audiences: &[String],
    error: Option<&str>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(192 + user.map_or(0, |u| u.json.len()));
    out.extend_from_slice(b"{\"apiVersion\":\"");
    out.extend_from_slice(version.api_version().as_bytes());
    out.extend_from_slice(
        b"\",\"kind\":\"TokenReview\",\"metadata\":{\"creationTimestamp\":null},\"spec\":{},\"status\":{\"authenticated\":",
    );
    match user {
        Some(u) => {
            out.extend_from_slice(b"true,\"user\":");
            out.extend_from_slice(u.json.as_bytes());
            if !audiences.is_empty() {
                out.extend_from_slice(b",\"audiences\":");
                // Writing strings into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut out, audiences);
            }
        }
        None => out.extend_from_slice(b"false"),
    }
    if let Some(e) = error {
        out.extend_from_slice(b",\"error\":");
        let _ = serde_json::to_writer(&mut out, e);
    }
    out.extend_from_slice(b"}}");
    out
}

/// A Kubernetes `Status` object for HTTP-level failures (400, 404, 405, 413, ...).
pub(crate) fn render_status(code: u16, reason: &str, message: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct StatusObj<'a> {
        #[serde(rename = "apiVersion")]
        api_version: &'static str,
        kind: &'static str,
        metadata: BTreeMap<String, String>,
        status: &'static str,
        message: &'a str,
        reason: &'a str,
        code: u16,
    }
    serde_json::to_vec(&StatusObj {
        api_version: "v1",
        kind: "Status",
        metadata: BTreeMap::new(),
        status: "Failure",
        message,
        reason,
        code,
    })
    .unwrap_or_default()
}

/// Go's `time.Duration` text, as kube-apiserver writes it in the `?timeout=30s` of a
/// TokenReview request ("1m30s", "500ms").
pub fn parse_go_duration(s: &str) -> Option<std::time::Duration> {
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    std::time::Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_go_sends_for_v1beta1() {
        let body = br#"{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1beta1","metadata":{"creationTimestamp":null},"spec":{"token":"dG9rZW4=","audiences":["https://kubernetes.default.svc"]},"status":{"user":{}}}
"#;
        let r = parse(body).unwrap();
        assert_eq!(r.version, Version::V1beta1);
        assert_eq!(r.token.as_str(), "dG9rZW4=");
        assert_eq!(
            r.audiences,
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
            parse(
                br#"{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":["x"]}"#
            )
            .unwrap_err(),
            ParseError::Json
        );
    }

    #[test]
    fn rejection_reply_carries_the_request_version_and_no_user() {
        let body = render(
            Version::V1beta1,
            None,
            &["a".into()],
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
        ];
        for version in [Version::V1, Version::V1beta1] {
            for info in [&full, &bare] {
                for aud in [&audiences[..], &[]] {
                    assert_eq!(
                        String::from_utf8(render(version, Some(&User::new(info)), aud, None))
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
                    render(version, None, &audiences, error),
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
}
