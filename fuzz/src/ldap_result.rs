//! What a bind's result means: `classify_bind` over a result code, diagnostic text and
//! response controls from a hostile server, and the BER parser of the password policy
//! control (draft-behera) behind it.

use arbitrary::{Arbitrary, Unstructured};
use kube_ldap_webhook::fuzzing::{
    classify_bind, parse_ppolicy_value, policy_from_controls, BindVerdict, PasswordWarning,
    PolicyResponse,
};
use ldap3::controls::RawControl;

const PPOLICY_OID: &str = "1.3.6.1.4.1.42.2.27.8.5.1";
const NS_EXPIRED_OID: &str = "2.16.840.1.113730.3.4.4";
const NS_EXPIRING_OID: &str = "2.16.840.1.113730.3.4.5";

pub fn run(data: &[u8]) {
    // Every input is also a control value as it came off the wire.
    check_ppolicy_value(data);
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let ctrls: Vec<RawControl> = input.controls.iter().map(Ctrl::raw).collect();
    for c in &input.controls {
        if let Some(CtrlValue::Policy(p)) = &c.value {
            let (bytes, want) = p.encode();
            assert_eq!(parse_ppolicy_value(&bytes), Some(want), "{bytes:02x?}");
        }
        if let Some(v) = &c.raw().val {
            check_ppolicy_value(v);
        }
    }
    check_policy(&ctrls);
    check_verdict(input.rc.code(), &input.text.render(), &ctrls);
}

/// A value that parses is one the canonical encoding of the parse reproduces.
fn check_ppolicy_value(v: &[u8]) {
    if let Some(p) = parse_ppolicy_value(v) {
        let (bytes, _) = Policy::canonical(p).encode();
        assert_eq!(parse_ppolicy_value(&bytes), Some(p), "{v:02x?}");
    }
}

/// The controls combine as each one read alone: the first to say something wins, and
/// controls of other OIDs say nothing.
fn check_policy(ctrls: &[RawControl]) {
    let all = policy_from_controls(ctrls);
    let alone: Vec<PolicyResponse> = ctrls
        .iter()
        .map(|c| policy_from_controls(std::slice::from_ref(c)))
        .collect();
    assert_eq!(all.warning, alone.iter().find_map(|p| p.warning));
    assert_eq!(all.error, alone.iter().find_map(|p| p.error));
    for (c, p) in ctrls.iter().zip(&alone) {
        if ![PPOLICY_OID, NS_EXPIRED_OID, NS_EXPIRING_OID].contains(&c.ctype.as_str()) {
            assert_eq!(*p, PolicyResponse::default(), "unknown OID {}", c.ctype);
        }
    }
}

fn check_verdict(rc: u32, text: &str, ctrls: &[RawControl]) {
    let v = classify_bind(rc, text, ctrls);
    let policy = policy_from_controls(ctrls);
    match &v {
        BindVerdict::Bound(w) => {
            assert_eq!(rc, 0, "bound on result {rc}");
            assert_eq!(*w, policy.warning, "the warning is not the control's");
        }
        BindVerdict::ServerDown(_) => assert!(matches!(rc, 51 | 52), "down on result {rc}"),
        BindVerdict::Failed(_) => {}
    }
    if matches!(rc, 51 | 52) {
        assert!(
            matches!(v, BindVerdict::ServerDown(_)),
            "result {rc}: {v:?}"
        );
    }
    // Only a successful bind reads the controls, and only result 49 the text.
    let context_free = classify_bind(rc, "", &[]);
    match rc {
        0 => assert_eq!(v, classify_bind(0, "", ctrls), "result 0 read the text"),
        49 if policy.error.is_none() => assert_eq!(v, classify_bind(49, text, &[])),
        49 => {}
        _ => assert_eq!(v, context_free, "result {rc} read the text or the controls"),
    }
    if rc == 0 && policy.error.is_none() {
        assert!(
            matches!(v, BindVerdict::Bound(_)),
            "refused a bind without error: {v:?}"
        );
    }
}

#[derive(Debug, Arbitrary)]
struct Input {
    rc: Rc,
    text: Text,
    controls: Vec<Ctrl>,
}

#[derive(Debug, Arbitrary)]
enum Rc {
    /// The codes the classifier names, and their neighbours.
    Known(u8),
    Any(u32),
}

impl Rc {
    fn code(&self) -> u32 {
        const KNOWN: [u32; 12] = [0, 1, 19, 32, 48, 49, 50, 51, 52, 53, 54, 80];
        match self {
            Rc::Known(i) => KNOWN[usize::from(*i) % KNOWN.len()],
            Rc::Any(rc) => *rc,
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Text {
    Any(String),
    /// Active Directory's shape: `..., data 52e, v4563`.
    Ad {
        code: u16,
        before: String,
        after: String,
    },
}

impl Text {
    fn render(&self) -> String {
        match self {
            Text::Any(s) => s.clone(),
            Text::Ad {
                code,
                before,
                after,
            } => format!("{before}data {code:x}{after}"),
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Ctrl {
    oid: Oid,
    crit: bool,
    value: Option<CtrlValue>,
}

impl Ctrl {
    fn raw(&self) -> RawControl {
        RawControl {
            ctype: match &self.oid {
                Oid::Ppolicy => PPOLICY_OID.into(),
                Oid::NsExpired => NS_EXPIRED_OID.into(),
                Oid::NsExpiring => NS_EXPIRING_OID.into(),
                Oid::Other(s) => s.clone(),
            },
            crit: self.crit,
            val: self.value.as_ref().map(|v| match v {
                CtrlValue::Raw(b) => b.clone(),
                CtrlValue::Seconds(s) => s.to_string().into_bytes(),
                CtrlValue::Policy(p) => p.encode().0,
            }),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Oid {
    Ppolicy,
    NsExpired,
    NsExpiring,
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum CtrlValue {
    Raw(Vec<u8>),
    Seconds(u64),
    Policy(Policy),
}

/// A well-formed password policy response, in any of BER's spellings of it.
#[derive(Debug, Arbitrary)]
struct Policy {
    /// (grace logins rather than seconds, the number)
    warning: Option<(bool, u64)>,
    error: Option<u32>,
    error_first: bool,
    /// Extra length octets (long form, leading zeros) per element, 0-4 used.
    long_lengths: [u8; 4],
    /// Extra leading zero octets of the integers (BER allows them; at most 9 octets in all).
    padding: [u8; 2],
}

impl Policy {
    fn canonical(p: PolicyResponse) -> Policy {
        Policy {
            warning: p.warning.map(|w| match w {
                PasswordWarning::Expiring(n) => (false, n),
                PasswordWarning::GraceLogins(n) => (true, n),
            }),
            error: p.error,
            error_first: false,
            long_lengths: [0; 4],
            padding: [0; 2],
        }
    }

    /// The bytes, and what they say.
    fn encode(&self) -> (Vec<u8>, PolicyResponse) {
        let mut body = Vec::new();
        let mut want = PolicyResponse::default();
        let mut warning = Vec::new();
        if let Some((grace, n)) = self.warning {
            let int = uint(n, self.padding[0]);
            let inner = tlv(if grace { 0x81 } else { 0x80 }, &int, self.long_lengths[0]);
            warning = tlv(0xa0, &inner, self.long_lengths[1]);
            want.warning = Some(if grace {
                PasswordWarning::GraceLogins(n)
            } else {
                PasswordWarning::Expiring(n)
            });
        }
        let mut error = Vec::new();
        if let Some(e) = self.error {
            error = tlv(
                0x81,
                &uint(u64::from(e), self.padding[1]),
                self.long_lengths[2],
            );
            want.error = Some(e);
        }
        if self.error_first {
            body.extend(error);
            body.extend(warning);
        } else {
            body.extend(warning);
            body.extend(error);
        }
        (tlv(0x30, &body, self.long_lengths[3]), want)
    }
}

/// A non-negative INTEGER's contents: minimal two's complement, plus leading zeros while
/// the whole stays within the 9 octets a u64 needs.
fn uint(n: u64, pad: u8) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count().min(7);
    let mut out = Vec::new();
    if bytes[skip] & 0x80 != 0 {
        out.push(0);
    }
    out.extend_from_slice(&bytes[skip..]);
    let room = 9 - out.len();
    let mut padded = vec![0; usize::from(pad).min(room)];
    padded.extend(out);
    padded
}

/// Tag, length (short form, or long form with `long % 5` octets), contents.
fn tlv(tag: u8, contents: &[u8], long: u8) -> Vec<u8> {
    let len = contents.len();
    let octets = usize::from(long % 5);
    let mut out = vec![tag];
    let needed = (usize::BITS - len.leading_zeros()).div_ceil(8) as usize;
    if octets == 0 && len < 0x80 {
        out.push(len as u8);
    } else {
        let octets = octets.max(needed).max(1);
        out.push(0x80 | octets as u8);
        out.extend((0..octets).rev().map(|i| (len >> (8 * i)) as u8));
    }
    out.extend_from_slice(contents);
    out
}
