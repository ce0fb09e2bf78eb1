//! The password policy of a bind: the request control sent with every user bind, and the
//! response controls read from its answer (draft-behera's, and the Netscape expired and
//! expiring controls of 389-ds and eDirectory). The BER is parsed here by a small reader
//! that checks every length: these bytes come from the directory, which is not trusted.

use ldap3::controls::{Control, RawControl};

/// Password policy request/response control (draft-behera-ldap-password-policy).
pub(super) const PPOLICY_OID: &str = "1.3.6.1.4.1.42.2.27.8.5.1";
/// Netscape "password expired" response control (389-ds, eDirectory, Oracle).
pub(super) const NS_PASSWORD_EXPIRED_OID: &str = "2.16.840.1.113730.3.4.4";
/// Netscape "password expiring" response control; its value is the seconds left.
pub(super) const NS_PASSWORD_EXPIRING_OID: &str = "2.16.840.1.113730.3.4.5";

/// The request control sent with every user bind: servers answer with the account's
/// password policy state only when asked.
pub(super) fn ppolicy_request() -> RawControl {
    RawControl {
        ctype: PPOLICY_OID.to_string(),
        crit: false,
        val: None,
    }
}

/// A password-policy warning on a successful bind: accepted, logged and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordWarning {
    /// The password expires in this many seconds.
    Expiring(u64),
    /// The password has expired; this many grace logins are left.
    GraceLogins(u64),
}

impl PasswordWarning {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            PasswordWarning::Expiring(_) => "password_expiring",
            PasswordWarning::GraceLogins(_) => "grace_login",
        }
    }
}

/// The password policy response (draft-behera 6.2), as far as it concerns a login.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PolicyResponse {
    /// A warning that does not stop the login.
    pub warning: Option<PasswordWarning>,
    /// The `error` enumeration: 0 expired, 1 locked, 2 change after reset, others about
    /// password changes.
    pub error: Option<u32>,
}

/// Reads the response controls of a bind: draft-behera's and the two Netscape ones.
/// Malformed values are ignored (the result code still decides).
pub fn policy_from_controls(ctrls: &[RawControl]) -> PolicyResponse {
    let mut out = PolicyResponse::default();
    for c in ctrls {
        match c.ctype.as_str() {
            PPOLICY_OID => {
                if let Some(p) = c.val.as_deref().and_then(parse_ppolicy_value) {
                    out.warning = out.warning.or(p.warning);
                    out.error = out.error.or(p.error);
                }
            }
            NS_PASSWORD_EXPIRED_OID => out.error = out.error.or(Some(NS_EXPIRED)),
            NS_PASSWORD_EXPIRING_OID => {
                let secs = c
                    .val
                    .as_deref()
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|s| s.trim().parse::<u64>().ok());
                if let Some(s) = secs {
                    out.warning = out.warning.or(Some(PasswordWarning::Expiring(s)));
                }
            }
            _ => {}
        }
    }
    out
}

/// Stands for the Netscape expired control in [`PolicyResponse::error`]: on a failed bind it
/// means expired, on a successful one "change it now" (389-ds after a reset).
pub(super) const NS_EXPIRED: u32 = 1000;

/// The raw controls of a result, whatever ldap3 made of them.
pub(super) fn raw_controls(ctrls: Vec<Control>) -> Vec<RawControl> {
    ctrls.into_iter().map(|Control(_, raw)| raw).collect()
}

/// A tiny BER reader for the one structure we need; every length is checked.
struct Ber<'a>(&'a [u8]);

impl<'a> Ber<'a> {
    /// The next element: (tag byte, contents).
    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.0.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let (bytes, after) = rest.split_at(n);
            rest = after;
            bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        if rest.len() < len {
            return None;
        }
        let (body, after) = rest.split_at(len);
        self.0 = after;
        Some((tag, body))
    }
}

/// A non-negative BER integer of at most 8 bytes.
fn ber_uint(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 9 || b[0] & 0x80 != 0 {
        return None;
    }
    let b = if b.len() == 9 {
        if b[0] != 0 {
            return None;
        }
        &b[1..]
    } else {
        b
    };
    Some(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
}

/// `SEQUENCE { warning [0] CHOICE { [0] INTEGER, [1] INTEGER } OPTIONAL,
///             error [1] ENUMERATED OPTIONAL }`
pub fn parse_ppolicy_value(v: &[u8]) -> Option<PolicyResponse> {
    let (tag, body) = Ber(v).next()?;
    if tag != 0x30 {
        return None;
    }
    let mut inner = Ber(body);
    let mut out = PolicyResponse::default();
    while let Some((tag, value)) = inner.next() {
        match tag {
            0xa0 => {
                let (choice, n) = Ber(value).next()?;
                let n = ber_uint(n)?;
                out.warning = match choice {
                    0x80 => Some(PasswordWarning::Expiring(n)),
                    0x81 => Some(PasswordWarning::GraceLogins(n)),
                    _ => return None,
                };
            }
            0x81 => out.error = Some(u32::try_from(ber_uint(value)?).ok()?),
            _ => return None,
        }
    }
    Some(out)
}
