//! TokenReview in (`authentication.k8s.io/v1` or `v1beta1`) and out, in the request's version.
//! Also the `?timeout=` of a review request, in Go's duration syntax.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use zeroize::Zeroizing;

use crate::identity::UserInfo;

pub use audiences::Audiences;

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
    api_version: Option<Text<'a>>,
    #[serde(borrow)]
    kind: Option<Text<'a>>,
    #[serde(borrow)]
    spec: Option<Object<WireSpec<'a>>>,
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

/// A JSON string borrowed from the body, or unescaped into a string of its own where it
/// held escapes. serde's `#[serde(borrow)]` borrows a `Cow` field but not an
/// `Option<Cow>`, which it always copies.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                s: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(s))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(s.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(s))
            }
        }
        d.deserialize_str(V).map(Text)
    }
}

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

#[derive(Deserialize)]
struct WireSpec<'a> {
    #[serde(borrow)]
    token: Option<Text<'a>>,
    #[serde(default, borrow)]
    audiences: Option<&'a RawValue>,
}

/// A parsed TokenReview request, borrowing from the request body: a cache hit copies
/// nothing out of it. `Debug` never shows the token.
pub struct Request<'a> {
    /// The request's API version.
    pub version: Version,
    /// `spec.token`.
    pub token: Token<'a>,
    /// `spec.audiences`.
    pub audiences: Audiences<'a>,
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("version", &self.version)
            .field("token", &"<redacted>")
            .field("audiences", &self.audiences)
            .finish()
    }
}

/// `spec.token`: the body's own bytes, or, where the JSON string held escapes, a copy
/// that is zeroized on drop. `Debug` never shows it.
pub enum Token<'a> {
    /// No escapes: the text as it is in the body.
    Borrowed(&'a str),
    /// Unescaped into a string of its own.
    Owned(Zeroizing<String>),
}

impl Token<'_> {
    /// The token's text.
    pub fn as_str(&self) -> &str {
        match self {
            Token::Borrowed(s) => s,
            Token::Owned(s) => s,
        }
    }
}

impl std::ops::Deref for Token<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for Token<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'a> From<Cow<'a, str>> for Token<'a> {
    fn from(c: Cow<'a, str>) -> Token<'a> {
        match c {
            Cow::Borrowed(s) => Token::Borrowed(s),
            Cow::Owned(s) => Token::Owned(Zeroizing::new(s)),
        }
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
pub fn parse(body: &[u8]) -> Result<Request<'_>, ParseError> {
    let Object(wire): Object<Wire> = serde_json::from_slice(body).map_err(|_| ParseError::Json)?;
    // Part of reading the JSON, as when serde read the audiences into strings: anything
    // but an array of strings makes the body not JSON, before its kind is looked at.
    let audiences = match &wire.spec {
        Some(Object(spec)) => Audiences::from_raw(spec.audiences).ok_or(ParseError::Json)?,
        None => Audiences::default(),
    };
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
        token: token.0.into(),
        audiences,
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

/// Everything of a reply before `status.authenticated`'s value, for API version `$v`: the
/// same for every reply of that version, so it is written at compile time.
macro_rules! head {
    ($v:literal) => {
        concat!(
            "{\"apiVersion\":\"",
            $v,
            "\",\"kind\":\"TokenReview\",\"metadata\":{\"creationTimestamp\":null},\"spec\":{},\"status\":{\"authenticated\":"
        )
    };
}

impl Version {
    /// The start of every reply in this version (see [`head!`]).
    fn head(self) -> &'static [u8] {
        match self {
            Version::V1 => head!("authentication.k8s.io/v1").as_bytes(),
            Version::V1beta1 => head!("authentication.k8s.io/v1beta1").as_bytes(),
        }
    }
}

const ACCEPTED: &[u8] = b"true,\"user\":";
const REFUSED: &[u8] = b"false";
const AUDIENCES: &[u8] = b",\"audiences\":";
const ERROR: &[u8] = b",\"error\":";
const END: &[u8] = b"}}";

/// The body of an answer. `user` is set for accepted reviews, `error` for failed ones;
/// the request's audiences are echoed for accepted ones (the credential is not bound to
/// an audience, so it is valid for every audience asked for).
///
/// Nothing is formatted here: the version's head is fixed at compile time, `status.user`
/// was rendered once when the directory accepted the user (a cache hit reuses it), and
/// only the request's audiences and the error text are escaped, by hand. The reply is
/// one allocation of its exact size, so that it becomes the response body without
/// another. The bytes are those serde would write (see the tests).
pub fn render(
    version: Version,
    user: Option<&User>,
    audiences: &Audiences<'_>,
    error: Option<&str>,
) -> Vec<u8> {
    let head = version.head();
    // Refusals echo no audiences.
    let audiences = match user {
        Some(_) => *audiences,
        None => Audiences::default(),
    };
    let len = head.len()
        + user.map_or(REFUSED.len(), |u| ACCEPTED.len() + u.json.len())
        + if audiences.is_empty() {
            0
        } else {
            AUDIENCES.len() + audiences.json_len()
        }
        + error.map_or(0, |e| ERROR.len() + json::string_len(e))
        + END.len();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(head);
    match user {
        Some(u) => {
            out.extend_from_slice(ACCEPTED);
            out.extend_from_slice(u.json.as_bytes());
        }
        None => out.extend_from_slice(REFUSED),
    }
    if !audiences.is_empty() {
        out.extend_from_slice(AUDIENCES);
        audiences.write_json(&mut out);
    }
    if let Some(e) = error {
        out.extend_from_slice(ERROR);
        json::write_string(&mut out, e);
    }
    out.extend_from_slice(END);
    debug_assert_eq!(out.len(), len, "the reply's length was worked out wrong");
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

mod audiences;
mod json;
#[cfg(test)]
mod tests;
