//! What an LDAP answer means, decided here once: the rest of the daemon sees a
//! [`Failure`] (or a [`PasswordWarning`] on success) and never a result code.
//!
//! The rule that matters most: only a server that did not answer (transport trouble, a
//! timeout, or result 51 busy / 52 unavailable) is *down*. Any other result code is an
//! answer about this review: a rejection, an account state or an error, never a reason to
//! fail over, mark the server down or serve a stale answer.

use ldap3::controls::RawControl;
use ldap3::LdapError;

use super::ppolicy::{policy_from_controls, PasswordWarning, NS_EXPIRED};

/// Account states known once the password checked out: those a directory reports, and
/// the daemon's own group policy, which answers the same way (its own text, cached for
/// `negative_ttl`, no lockout failure) without being a directory answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountState {
    PasswordExpired,
    Disabled,
    AccountExpired,
    MustChangePassword,
    Locked,
    Restricted,
    /// In none of `identity.required_groups`.
    NotInRequiredGroup,
}

impl AccountState {
    /// The `status.error` text the user sees.
    pub fn message(self) -> &'static str {
        match self {
            AccountState::PasswordExpired => "Credentials are expired",
            AccountState::Disabled => "Account is disabled",
            AccountState::AccountExpired => "Account has expired",
            AccountState::MustChangePassword => "Password must be changed before logging in",
            AccountState::Locked => "Account is locked",
            AccountState::Restricted => "Account may not log in at this time or from here",
            AccountState::NotInRequiredGroup => "Not a member of a group allowed to log in",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            AccountState::PasswordExpired => "password_expired",
            AccountState::Disabled => "account_disabled",
            AccountState::AccountExpired => "account_expired",
            AccountState::MustChangePassword => "must_change_password",
            AccountState::Locked => "account_locked",
            AccountState::Restricted => "logon_restricted",
            AccountState::NotInRequiredGroup => "not_in_required_group",
        }
    }
}

/// Why a user was turned away; the reasons stay inside (logs, metrics): outside they all
/// read the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    UnknownUser,
    WrongPassword,
    /// A direct bind failed: the name may not exist, so it is not confirmed (nor logged).
    BadCredentials,
    Ambiguous,
    EmptyPassword,
    /// `OTHER\name` or `name@other` where `ldap.user.domains` does not list the domain.
    ForeignDomain,
    /// The directory's name for the user would be a `system:` name in Kubernetes.
    ReservedName,
}

impl RejectReason {
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::UnknownUser => "unknown_user",
            RejectReason::WrongPassword => "wrong_password",
            RejectReason::BadCredentials => "bad_credentials",
            RejectReason::Ambiguous => "ambiguous_user",
            RejectReason::EmptyPassword => "empty_password",
            RejectReason::ForeignDomain => "foreign_domain",
            RejectReason::ReservedName => "reserved_name",
        }
    }
}

/// How a review that did not produce a user ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Rejected(RejectReason),
    AccountState(AccountState),
    /// Every server failed at the transport level, timed out or said it was busy or
    /// unavailable: the only failure that may be bridged with a stale answer.
    Outage(String),
    /// The directory answered, but not with an answer about the user (an unexpected result
    /// code, a search cut short by a limit, a full connection pool). The text is for logs.
    Error(String),
}

/// What went wrong with one server: an answer (final) or the server (try the next one).
#[derive(Debug)]
pub(crate) enum Attempt {
    Final(Failure),
    ServerDown(String),
}

impl Attempt {
    pub(crate) fn error(why: impl Into<String>) -> Attempt {
        Attempt::Final(Failure::Error(why.into()))
    }
}

/// One LDAP operation's error, before classification.
#[derive(Debug)]
pub(crate) enum OpError {
    /// The server answered with a result code.
    Result { rc: u32, text: String },
    /// Transport trouble or timeout: the server (or the way to it) is the problem.
    Transport(String),
}

impl From<LdapError> for OpError {
    fn from(e: LdapError) -> Self {
        match e {
            LdapError::LdapResult { result } => OpError::Result {
                rc: result.rc,
                text: result.text,
            },
            other => OpError::Transport(other.to_string()),
        }
    }
}

/// busy (51) and unavailable (52): the server says it cannot serve now.
fn server_cannot_serve(rc: u32) -> bool {
    matches!(rc, 51 | 52)
}

impl OpError {
    pub(crate) fn into_attempt(self, what: &str) -> Attempt {
        match self {
            OpError::Transport(m) => Attempt::ServerDown(format!("{what}: {m}")),
            OpError::Result { rc, text } if server_cannot_serve(rc) => {
                Attempt::ServerDown(format!("{what}: result {rc} {}", text.trim()))
            }
            OpError::Result { rc, text } => {
                Attempt::error(format!("{what}: result {rc} {}", text.trim()))
            }
        }
    }

    pub(crate) fn label(&self) -> &'static str {
        match self {
            OpError::Result { .. } => "error",
            OpError::Transport(_) => "unreachable",
        }
    }
}

/// AD (and Samba) put `data NNN` (hex) in the diagnostic text of a failed bind.
fn ad_data_code(text: &str) -> Option<u32> {
    let i = text.find("data ")?;
    let hex: String = text[i + 5..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .take(8)
        .collect();
    u32::from_str_radix(&hex, 16).ok()
}

/// The outcome of a user bind.
#[derive(Debug, PartialEq, Eq)]
pub enum BindVerdict {
    /// The password is right; the policy may have warned.
    Bound(Option<PasswordWarning>),
    /// An answer about the user.
    Failed(Failure),
    /// The server cannot serve now (busy, unavailable): try another.
    ServerDown(String),
}

/// Classifies a user bind's result code, diagnostic text and response controls.
pub fn classify_bind(rc: u32, text: &str, ctrls: &[RawControl]) -> BindVerdict {
    let policy = policy_from_controls(ctrls);
    let state = |s| BindVerdict::Failed(Failure::AccountState(s));
    match rc {
        0 => match policy.error {
            // The bind worked, but the session is only good for changing the password:
            // ppolicy's changeAfterReset, or 389-ds' expired control on a success.
            Some(2) | Some(NS_EXPIRED) => state(AccountState::MustChangePassword),
            Some(0) => state(AccountState::PasswordExpired),
            Some(1) => state(AccountState::Locked),
            _ => BindVerdict::Bound(policy.warning),
        },
        49 => match (policy.error, ad_data_code(text)) {
            (Some(0) | Some(NS_EXPIRED), _) => state(AccountState::PasswordExpired),
            (Some(1), _) => state(AccountState::Locked),
            (Some(2), _) => state(AccountState::MustChangePassword),
            (_, Some(0x532)) => state(AccountState::PasswordExpired),
            (_, Some(0x533)) => state(AccountState::Disabled),
            (_, Some(0x701)) => state(AccountState::AccountExpired),
            (_, Some(0x773)) => state(AccountState::MustChangePassword),
            (_, Some(0x775)) => state(AccountState::Locked),
            (_, Some(0x530) | Some(0x531)) => state(AccountState::Restricted),
            (_, Some(0x525)) => BindVerdict::Failed(Failure::Rejected(RejectReason::UnknownUser)),
            _ => BindVerdict::Failed(Failure::Rejected(RejectReason::WrongPassword)),
        },
        // 389-ds answers constraintViolation once its retry limit locked the account.
        19 => state(AccountState::Locked),
        // inappropriateAuthentication, unwillingToPerform: refusing this user's bind.
        48 | 53 => BindVerdict::Failed(Failure::Rejected(RejectReason::WrongPassword)),
        rc if server_cannot_serve(rc) => BindVerdict::ServerDown(format!("bind result {rc}")),
        rc => BindVerdict::Failed(Failure::Error(format!("bind result {rc}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::ppolicy::{
        parse_ppolicy_value, NS_PASSWORD_EXPIRED_OID, NS_PASSWORD_EXPIRING_OID, PPOLICY_OID,
    };
    use super::*;

    fn ad(code: &str) -> String {
        format!("80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data {code}, v4563")
    }

    fn control(oid: &str, value: &[u8]) -> Vec<RawControl> {
        vec![RawControl {
            ctype: oid.into(),
            crit: false,
            val: Some(value.to_vec()),
        }]
    }

    fn ppolicy(value: &[u8]) -> Vec<RawControl> {
        control(PPOLICY_OID, value)
    }

    fn failed_state(s: AccountState) -> BindVerdict {
        BindVerdict::Failed(Failure::AccountState(s))
    }

    #[test]
    fn ad_bind_codes_are_classified() {
        let c = |code: &str| classify_bind(49, &ad(code), &[]);
        let rejected = |r| BindVerdict::Failed(Failure::Rejected(r));
        assert_eq!(c("52e"), rejected(RejectReason::WrongPassword));
        assert_eq!(c("525"), rejected(RejectReason::UnknownUser));
        assert_eq!(c("532"), failed_state(AccountState::PasswordExpired));
        assert_eq!(c("533"), failed_state(AccountState::Disabled));
        assert_eq!(c("701"), failed_state(AccountState::AccountExpired));
        assert_eq!(c("773"), failed_state(AccountState::MustChangePassword));
        assert_eq!(c("775"), failed_state(AccountState::Locked));
        assert_eq!(c("530"), failed_state(AccountState::Restricted));
        assert_eq!(
            classify_bind(49, "", &[]),
            rejected(RejectReason::WrongPassword)
        );
        assert_eq!(classify_bind(0, "", &[]), BindVerdict::Bound(None));
    }

    #[test]
    fn only_busy_and_unavailable_bind_results_mean_the_server_is_down() {
        assert!(matches!(
            classify_bind(51, "", &[]),
            BindVerdict::ServerDown(_)
        ));
        assert!(matches!(
            classify_bind(52, "", &[]),
            BindVerdict::ServerDown(_)
        ));
        for rc in [1, 2, 50, 54, 80] {
            assert!(
                matches!(
                    classify_bind(rc, "", &[]),
                    BindVerdict::Failed(Failure::Error(_))
                ),
                "result {rc}"
            );
        }
        assert_eq!(
            classify_bind(19, "Exceed password retry limit", &[]),
            failed_state(AccountState::Locked)
        );
    }

    #[test]
    fn a_successful_bind_after_a_reset_must_change_the_password() {
        // SEQUENCE { error [1] changeAfterReset(2) }
        let v = [0x30, 0x03, 0x81, 0x01, 0x02];
        assert_eq!(
            classify_bind(0, "", &ppolicy(&v)),
            failed_state(AccountState::MustChangePassword)
        );
        let ns = control(NS_PASSWORD_EXPIRED_OID, b"0");
        assert_eq!(
            classify_bind(0, "", &ns),
            failed_state(AccountState::MustChangePassword)
        );
    }

    #[test]
    fn ppolicy_errors_on_failed_binds_name_the_state() {
        let expired = [0x30, 0x03, 0x81, 0x01, 0x00];
        let locked = [0x30, 0x03, 0x81, 0x01, 0x01];
        assert_eq!(
            classify_bind(49, "", &ppolicy(&expired)),
            failed_state(AccountState::PasswordExpired)
        );
        assert_eq!(
            classify_bind(49, "", &ppolicy(&locked)),
            failed_state(AccountState::Locked)
        );
    }

    #[test]
    fn ppolicy_warnings_are_accepted_and_reported() {
        // SEQUENCE { warning [0] { graceAuthNsRemaining [1] 2 } }
        let grace = [0x30, 0x05, 0xa0, 0x03, 0x81, 0x01, 0x02];
        assert_eq!(
            classify_bind(0, "", &ppolicy(&grace)),
            BindVerdict::Bound(Some(PasswordWarning::GraceLogins(2)))
        );
        // SEQUENCE { warning [0] { timeBeforeExpiration [0] 3600 } }
        let expiring = [0x30, 0x06, 0xa0, 0x04, 0x80, 0x02, 0x0e, 0x10];
        assert_eq!(
            classify_bind(0, "", &ppolicy(&expiring)),
            BindVerdict::Bound(Some(PasswordWarning::Expiring(3600)))
        );
        let ns = control(NS_PASSWORD_EXPIRING_OID, b"86400");
        assert_eq!(
            classify_bind(0, "", &ns),
            BindVerdict::Bound(Some(PasswordWarning::Expiring(86400)))
        );
    }

    #[test]
    fn malformed_policy_values_are_ignored() {
        for v in [
            &[][..],
            &[0x30],
            &[0x30, 0x05, 0x81, 0x01],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x04, 0x00],
            &[0x30, 0x03, 0x81, 0x01, 0x80],
            &[0x30, 0x04, 0xa0, 0x02, 0x82, 0x00],
        ] {
            assert_eq!(parse_ppolicy_value(v), None, "{v:?}");
            assert_eq!(classify_bind(0, "", &ppolicy(v)), BindVerdict::Bound(None));
        }
    }

    #[test]
    fn result_codes_other_than_busy_and_unavailable_are_answers() {
        let a = OpError::Result {
            rc: 80,
            text: "other".into(),
        }
        .into_attempt("user search");
        assert!(matches!(a, Attempt::Final(Failure::Error(_))));
        let a = OpError::Result {
            rc: 51,
            text: String::new(),
        }
        .into_attempt("user search");
        assert!(matches!(a, Attempt::ServerDown(_)));
        let a = OpError::Transport("reset".into()).into_attempt("user search");
        assert!(matches!(a, Attempt::ServerDown(_)));
    }
}
