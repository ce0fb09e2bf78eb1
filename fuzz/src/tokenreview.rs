//! `tokenreview::parse` on an untrusted request body, and `render` of the answer.
//!
//! The oracle is `serde_json::Value`: what the body holds as plain JSON decides what the
//! parser must answer, and an answer rendered for the request must read back as such.

use std::collections::BTreeMap;

use kube_ldap_webhook::fuzzing::{parse, render, ParseError, Request, User, UserInfo, Version};
use serde_json::{json, Value};

pub fn run(data: &[u8]) {
    let got = parse(data);
    // Go reads invalid UTF-8 and lone surrogate escapes as U+FFFD; the parser may refuse
    // them (as not JSON) or, in a field it skips unread, not notice.
    let text = lone_surrogates_replaced(&String::from_utf8_lossy(data));
    let value = match serde_json::from_str::<Value>(&text) {
        Ok(v) => v,
        // Value stops at 128 levels and at numbers beyond f64; in a field the parser skips
        // unread, neither matters to it (nor to Go). Nothing to compare with.
        Err(e) if skipped_fields_may_hold(&e) => {
            if let Ok(req) = got {
                round_trip(&req);
                check_render(&req);
            }
            return;
        }
        Err(_) => {
            assert_eq!(got.err(), Some(ParseError::Json), "parsed what is not JSON");
            return;
        }
    };
    // The oracle has no duplicate keys: written back out, the body must get exactly the
    // answer the oracle expects. The original may only differ by being refused as JSON
    // (serde refuses a duplicate field, Value keeps the last).
    let expected = expect(&value).map_err(|e| e.to_string());
    let canonical = serde_json::to_vec(&value).unwrap_or_default();
    let clean = parse(&canonical);
    assert_eq!(summary(&clean), expected, "canonical body: {value}");
    match &got {
        Err(ParseError::Json) => {}
        other => assert_eq!(summary(other), expected, "body: {value}"),
    }
    if let Ok(req) = got {
        round_trip(&req);
        check_render(&req);
    }
}

fn skipped_fields_may_hold(e: &serde_json::Error) -> bool {
    let e = e.to_string();
    e.contains("recursion limit") || e.contains("number out of range")
}

/// `\uD800`-`\uDFFF` escapes that do not form a pair become `\uFFFD`, as Go decodes them.
fn lone_surrogates_replaced(text: &str) -> String {
    let escape = |s: &str| -> Option<u32> {
        let hex = s.strip_prefix("\\u")?.get(..4)?;
        u32::from_str_radix(hex, 16).ok()
    };
    let (mut out, mut rest, mut in_string) = (String::new(), text, false);
    while let Some(c) = rest.chars().next() {
        let mut take = c.len_utf8();
        if in_string && c == '\\' {
            take = 2.min(rest.len());
            if let Some(unit @ 0xd800..=0xdfff) = escape(rest) {
                take = 6;
                let pair = (0xd800..0xdc00).contains(&unit)
                    && escape(&rest[6..]).is_some_and(|n| (0xdc00..0xe000).contains(&n));
                if pair {
                    take = 12;
                } else {
                    out.push_str("\\ufffd");
                    rest = &rest[take..];
                    continue;
                }
            }
        } else if c == '"' {
            in_string = !in_string;
        }
        let take = (take..=rest.len())
            .find(|&n| rest.is_char_boundary(n))
            .unwrap_or(rest.len());
        out.push_str(&rest[..take]);
        rest = &rest[take..];
    }
    out
}

/// The answer as comparable data: version, token, audiences, or the error's text.
type Summary = Result<(Version, String, Vec<String>), String>;

fn summary(r: &Result<Request, ParseError>) -> Summary {
    match r {
        Ok(req) => Ok((req.version, req.token.to_string(), req.audiences.to_vec())),
        Err(e) => Err(e.to_string()),
    }
}

/// What Go's decoder makes of the body, as this daemon uses it: a JSON object whose
/// `kind`, `apiVersion`, `spec.token` and `spec.audiences` have the right types (or are
/// null or absent); anything else in it is ignored.
fn expect(v: &Value) -> Result<(Version, String, Vec<String>), ParseError> {
    let Value::Object(top) = v else {
        return Err(ParseError::Json);
    };
    let kind = opt_str(top.get("kind"))?;
    let api_version = opt_str(top.get("apiVersion"))?;
    let spec = match top.get("spec") {
        None | Some(Value::Null) => None,
        Some(Value::Object(s)) => Some(s),
        Some(_) => return Err(ParseError::Json),
    };
    let token = spec.map(|s| opt_str(s.get("token"))).transpose()?.flatten();
    let audiences = match spec.and_then(|s| s.get("audiences")) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map(str::to_string).ok_or(ParseError::Json))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ParseError::Json),
    };
    if kind != Some("TokenReview") {
        return Err(ParseError::Kind);
    }
    let version = match api_version {
        Some("authentication.k8s.io/v1") => Version::V1,
        Some("authentication.k8s.io/v1beta1") => Version::V1beta1,
        _ => return Err(ParseError::ApiVersion),
    };
    match token {
        Some(t) if !t.is_empty() => Ok((version, t.to_string(), audiences)),
        _ => Err(ParseError::MissingToken),
    }
}

fn opt_str(v: Option<&Value>) -> Result<Option<&str>, ParseError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ParseError::Json),
    }
}

/// The request as kube-apiserver would write it parses back to the same request.
fn round_trip(req: &Request) {
    let body = json!({
        "apiVersion": req.version.api_version(),
        "kind": "TokenReview",
        "spec": {"token": req.token.as_str(), "audiences": req.audiences.to_vec()},
    });
    let text = body.to_string();
    let again = parse(text.as_bytes()).expect("a re-written request parses");
    assert_eq!(again.version, req.version);
    assert_eq!(
        again.token.as_str(),
        req.token.as_str(),
        "the token changed"
    );
    assert_eq!(again.audiences, req.audiences);
}

/// Answers built from the request's own strings (hostile text in every field) are JSON
/// that reads back as what was meant.
fn check_render(req: &Request) {
    let token = req.token.as_str();
    let audiences = req.audiences.to_vec();
    let info = UserInfo {
        username: token.to_string(),
        uid: audiences.first().cloned().unwrap_or_default(),
        groups: audiences.clone(),
        extra: BTreeMap::from([(token.to_string(), audiences.clone())]),
    };
    let user = User::new(&info);
    for (user, error) in [(Some(&user), None), (None, Some(token))] {
        let out = render(req.version, user, &req.audiences, error);
        let v: Value = serde_json::from_slice(&out).expect("the answer is JSON");
        assert_eq!(v["apiVersion"], req.version.api_version());
        assert_eq!(v["kind"], "TokenReview");
        let status = &v["status"];
        assert_eq!(status["authenticated"], user.is_some());
        match user {
            Some(_) => {
                let want = serde_json::to_value(&info).expect("UserInfo serialises");
                assert_eq!(status["user"], want, "status.user");
                let audiences = status.get("audiences").cloned().unwrap_or(json!([]));
                assert_eq!(audiences, json!(req.audiences.to_vec()), "status.audiences");
            }
            None => {
                assert!(status.get("user").is_none() && status.get("audiences").is_none());
                assert_eq!(status["error"], token, "status.error");
            }
        }
    }
}
