//! An account's state read from its entry, for the re-check of an issued token: no bind
//! is made then (there is no password), so what a bind would have said is read from the
//! attributes Active Directory, OpenLDAP's ppolicy overlay and 389-ds (FreeIPA) keep about
//! the account.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{AccountState, Entry};

/// The attributes that change when the password does; read at login (into the token)
/// and at every re-check. OpenLDAP ppolicy: `pwdChangedTime`; AD: `pwdLastSet`; 389-ds:
/// `pwdUpdateTime`, and `passwordExpirationTime` (moved by every change while a policy
/// sets a maximum age); FreeIPA: `krbLastPwdChange`.
pub(crate) const PASSWORD_ATTRS: [&str; 5] = [
    "pwdChangedTime",
    "pwdLastSet",
    "pwdUpdateTime",
    "passwordExpirationTime",
    "krbLastPwdChange",
];

/// The attributes of the account state (every directory's names: a server ignores the
/// ones it does not know).
pub(crate) const STATE_ATTRS: [&str; 7] = [
    "userAccountControl",
    "msDS-User-Account-Control-Computed",
    "accountExpires",
    "pwdAccountLockedTime",
    "pwdReset",
    "nsAccountLock",
    "accountUnlockTime",
];

const UF_ACCOUNTDISABLE: u64 = 0x2;
const UF_LOCKOUT: u64 = 0x10;
const UF_PASSWORD_EXPIRED: u64 = 0x80_0000;
/// AD's "never" in `accountExpires`, besides 0.
const FILETIME_NEVER: u64 = 0x7FFF_FFFF_FFFF_FFFF;
/// Seconds from 1601-01-01 (FILETIME's epoch) to 1970-01-01.
const FILETIME_UNIX_OFFSET: u64 = 11_644_473_600;

fn text<'a>(entry: &'a Entry, attr: &'a str) -> Option<&'a str> {
    entry
        .values(attr)
        .next()
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::trim)
}

fn number(entry: &Entry, attr: &str) -> Option<u64> {
    // AD writes these as signed decimal text; a negative value has no bits we look at.
    text(entry, attr).and_then(|t| t.parse::<i64>().ok().map(|n| n as u64))
}

/// 389-ds' "at once" in `accountUnlockTime` (locked until an administrator unlocks) and
/// in `passwordExpirationTime` (an administrator reset the password: change it first).
const DS_EPOCH: &str = "19700101000000Z";

/// A GeneralizedTime as 389-ds writes it (`YYYYMMDDHHMMSSZ`).
fn generalized(t: &str) -> Option<SystemTime> {
    let t = t.strip_suffix('Z')?;
    if t.len() != 14 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| t[r].parse::<u32>().ok();
    let month = time::Month::try_from(u8::try_from(n(4..6)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(
        i32::try_from(n(0..4)?).ok()?,
        month,
        u8::try_from(n(6..8)?).ok()?,
    )
    .ok()?;
    let at = date
        .with_hms(
            u8::try_from(n(8..10)?).ok()?,
            u8::try_from(n(10..12)?).ok()?,
            u8::try_from(n(12..14)?).ok()?,
        )
        .ok()?;
    Some(SystemTime::from(at.assume_utc()))
}

/// 389-ds' password policy, as a bind would apply it: locked by too many failures
/// (`accountUnlockTime` ahead, or "at once"), the password reset by an administrator
/// (`passwordExpirationTime` at the epoch) or expired.
fn ds_policy_state(entry: &Entry, now: SystemTime) -> Option<AccountState> {
    if let Some(t) = text(entry, "accountUnlockTime") {
        if t == DS_EPOCH || generalized(t).is_some_and(|u| u > now) {
            return Some(AccountState::Locked);
        }
    }
    let expires = text(entry, "passwordExpirationTime")?;
    if expires == DS_EPOCH {
        return Some(AccountState::MustChangePassword);
    }
    generalized(expires)
        .is_some_and(|t| t <= now)
        .then_some(AccountState::PasswordExpired)
}

/// A FILETIME (100 ns ticks since 1601) as a time; `None` for "never".
fn filetime(ticks: u64) -> Option<SystemTime> {
    if ticks == 0 || ticks >= FILETIME_NEVER {
        return None;
    }
    let secs = (ticks / 10_000_000).checked_sub(FILETIME_UNIX_OFFSET)?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// AD's constructed expiry of the password (a FILETIME): `pwdLastSet` plus the maximum age
/// of the domain or of the user's fine-grained policy. Read at a login, never part of the
/// password stamp: it moves when an administrator changes the policy, not the password.
pub(crate) const PASSWORD_EXPIRY_ATTR: &str = "msDS-UserPasswordExpiryTimeComputed";

/// How long the password of `entry` has left at `now`: AD's constructed expiry, else
/// 389-ds' `passwordExpirationTime` (kept while its policy sets a maximum age; the bind
/// warns only within `passwordWarning`, which may be shorter than the login's window).
/// `None` for "never" (0, `0x7FFFFFFFFFFFFFFF`), for a value that is not a number or not a
/// time, or is negative (the directory is not trusted), and for a time already past (389-ds'
/// epoch after a reset among them): an expired password is the account state's business,
/// not a warning's.
pub(crate) fn password_expires_in(entry: &Entry, now: SystemTime) -> Option<Duration> {
    let at = match text(entry, PASSWORD_EXPIRY_ATTR) {
        Some(t) => filetime(u64::try_from(t.parse::<i64>().ok()?).ok()?)?,
        None => generalized(text(entry, "passwordExpirationTime")?)?,
    };
    at.duration_since(now).ok().filter(|left| !left.is_zero())
}

/// Why this account may not be used now, if it may not: what a bind would have said.
pub(crate) fn account_state(entry: &Entry, now: SystemTime) -> Option<AccountState> {
    let uac = number(entry, "userAccountControl").unwrap_or(0);
    let computed = number(entry, "msDS-User-Account-Control-Computed").unwrap_or(0);
    // 389-ds and FreeIPA (`ipa user-disable`, `dsidm account lock`): `nsAccountLock`, also
    // as the virtual attribute a locked role's class of service gives its members.
    let ns_locked = text(entry, "nsAccountLock").is_some_and(|v| v.eq_ignore_ascii_case("TRUE"));
    if uac & UF_ACCOUNTDISABLE != 0 || ns_locked {
        return Some(AccountState::Disabled);
    }
    if number(entry, "accountExpires")
        .and_then(filetime)
        .is_some_and(|t| t <= now)
    {
        return Some(AccountState::AccountExpired);
    }
    // ppolicy keeps the lock time until the next successful bind, even after a timed lock
    // ran out; such an account is refused until its user logs in again with the password.
    if computed & UF_LOCKOUT != 0 || text(entry, "pwdAccountLockedTime").is_some() {
        return Some(AccountState::Locked);
    }
    if let Some(s) = ds_policy_state(entry, now) {
        return Some(s);
    }
    if computed & UF_PASSWORD_EXPIRED != 0 {
        return Some(AccountState::PasswordExpired);
    }
    let reset = text(entry, "pwdReset").is_some_and(|v| v.eq_ignore_ascii_case("TRUE"));
    if reset || number(entry, "pwdLastSet") == Some(0) {
        return Some(AccountState::MustChangePassword);
    }
    None
}

/// The password-change attributes of an entry as read, opaque to all but the issued-token
/// code, which keys them into a token's password version ([`PasswordStamp::version`]):
/// equal as long as the password was not changed, compared for equality only, so the
/// clocks of directory and daemon never matter. Its Debug output tells its length only:
/// the times in it are what the keyed version exists to hide.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct PasswordStamp(Vec<u8>);

impl PasswordStamp {
    /// Each of [`PASSWORD_ATTRS`] as `name=first value;`, in that order: the attribute
    /// name is part of the stamp, so one time under two attributes gives two stamps.
    pub(crate) fn of(entry: &Entry) -> PasswordStamp {
        let mut stamp = Vec::new();
        for attr in PASSWORD_ATTRS {
            stamp.extend_from_slice(attr.as_bytes());
            stamp.push(b'=');
            if let Some(v) = entry.values(attr).next() {
                stamp.extend_from_slice(v);
            }
            stamp.push(b';');
        }
        PasswordStamp(stamp)
    }

    /// The password version a token carries: a short digest of the stamp under `key`
    /// (derived from the signing key, `Tokens::password_key`). Keyed, because the stamp is
    /// times: an unkeyed digest of a time is found again by trying the seconds of a few
    /// days, and would tell a token's holder when the password was last changed.
    pub(crate) fn version(&self, key: &Hmac<Sha256>) -> String {
        let mut h = key.clone();
        h.update(&self.0);
        let mut v = URL_SAFE_NO_PAD.encode(h.finalize().into_bytes());
        v.truncate(22);
        v
    }
}

impl std::fmt::Debug for PasswordStamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PasswordStamp({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(attrs: &[(&str, &str)]) -> Entry {
        Entry {
            dn: "cn=x".into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), vec![v.as_bytes().to_vec()]))
                .collect(),
        }
    }

    fn state(attrs: &[(&str, &str)]) -> Option<AccountState> {
        account_state(&entry(attrs), crate::clock::wall())
    }

    #[test]
    fn a_plain_account_has_no_state() {
        assert_eq!(state(&[]), None);
        assert_eq!(
            state(&[("userAccountControl", "512"), ("accountExpires", "0")]),
            None
        );
        assert_eq!(state(&[("accountExpires", "9223372036854775807")]), None);
        assert_eq!(state(&[("pwdLastSet", "133500000000000000")]), None);
        assert_eq!(state(&[("pwdReset", "FALSE")]), None);
    }

    #[test]
    fn active_directory_states_are_read_from_the_control_bits() {
        assert_eq!(
            state(&[("userAccountControl", "514")]),
            Some(AccountState::Disabled)
        );
        assert_eq!(
            state(&[("msDS-User-Account-Control-Computed", "16")]),
            Some(AccountState::Locked)
        );
        assert_eq!(
            state(&[("msDS-User-Account-Control-Computed", "8388608")]),
            Some(AccountState::PasswordExpired)
        );
        assert_eq!(
            state(&[("pwdLastSet", "0")]),
            Some(AccountState::MustChangePassword)
        );
    }

    fn expires_in(value: &str) -> Option<Duration> {
        password_expires_in(
            &entry(&[(PASSWORD_EXPIRY_ATTR, value)]),
            crate::clock::wall(),
        )
    }

    #[test]
    fn a_password_expiry_ahead_is_the_time_left() {
        let in_three_days = crate::clock::wall() + Duration::from_secs(3 * 86_400 + 60);
        let secs = in_three_days.duration_since(UNIX_EPOCH).unwrap().as_secs();
        let ticks = (secs + FILETIME_UNIX_OFFSET) * 10_000_000;
        let left = expires_in(&ticks.to_string()).unwrap();
        assert!(left > Duration::from_secs(3 * 86_400), "{left:?}");
        assert!(left <= Duration::from_secs(3 * 86_400 + 60), "{left:?}");
    }

    fn ds_expires_in(value: &str) -> Option<Duration> {
        let e = entry(&[("passwordExpirationTime", value)]);
        password_expires_in(&e, crate::clock::wall())
    }

    #[test]
    fn a_389_ds_expiration_time_ahead_is_the_time_left_and_any_other_none() {
        let left = ds_expires_in("22000101000000Z");
        assert!(left.is_some_and(|l| l > Duration::from_secs(100 * 365 * 86_400)));
        for v in [
            DS_EPOCH,
            "20200101000000Z",
            "20201301000000Z",
            "2200010100000Z",
            "-2200010100000Z",
            "22000101000000",
            "",
        ] {
            assert_eq!(ds_expires_in(v), None, "{v}");
        }
    }

    #[test]
    fn a_password_that_never_expires_or_a_hostile_expiry_gives_no_time() {
        for v in [
            "0",
            "9223372036854775807",
            "-1",
            "-9223372036854775808",
            "132223104000000000", // 2020-01-01: past
            "18446744073709551615",
            "1e18",
            "",
            "soon",
        ] {
            assert_eq!(expires_in(v), None, "{v}");
        }
        assert_eq!(password_expires_in(&entry(&[]), crate::clock::wall()), None);
    }

    #[test]
    fn account_expiry_is_a_filetime_in_the_past() {
        // 2020-01-01T00:00:00Z
        assert_eq!(
            state(&[("accountExpires", "132223104000000000")]),
            Some(AccountState::AccountExpired)
        );
        // 2200-01-01
        assert_eq!(state(&[("accountExpires", "188980992000000000")]), None);
    }

    #[test]
    fn ppolicy_lock_and_reset_are_read_from_their_attributes() {
        assert_eq!(
            state(&[("pwdAccountLockedTime", "000001010000Z")]),
            Some(AccountState::Locked)
        );
        assert_eq!(
            state(&[("pwdAccountLockedTime", "20240501120000Z")]),
            Some(AccountState::Locked)
        );
        assert_eq!(
            state(&[("pwdReset", "TRUE")]),
            Some(AccountState::MustChangePassword)
        );
    }

    #[test]
    fn disabled_wins_over_the_other_states() {
        assert_eq!(
            state(&[
                ("userAccountControl", "514"),
                ("msDS-User-Account-Control-Computed", "16")
            ]),
            Some(AccountState::Disabled)
        );
    }

    #[test]
    fn the_password_stamp_changes_with_the_password_only() {
        let stamp = |attrs: &[(&str, &str)]| PasswordStamp::of(&entry(attrs));
        let before = stamp(&[("pwdChangedTime", "20240501120000Z"), ("mail", "a@b")]);
        let same = stamp(&[("pwdChangedTime", "20240501120000Z")]);
        let changed = stamp(&[("pwdChangedTime", "20240501120001Z")]);
        let ad = stamp(&[("pwdLastSet", "20240501120000Z")]);
        assert_eq!(before, same);
        assert_ne!(before, changed);
        assert_ne!(before, ad, "the attribute name is part of the stamp");
    }

    #[test]
    fn the_password_stamp_of_389_ds_and_freeipa_changes_with_the_password() {
        let stamp = |attrs: &[(&str, &str)]| PasswordStamp::of(&entry(attrs));
        for attr in [
            "pwdUpdateTime",
            "passwordExpirationTime",
            "krbLastPwdChange",
        ] {
            let before = stamp(&[(attr, "20240501120000Z")]);
            let after = stamp(&[(attr, "20240601120000Z")]);
            assert_ne!(before, after, "{attr}");
            assert_ne!(before, stamp(&[]), "{attr}");
        }
    }

    #[test]
    fn a_password_stamp_shows_no_time_in_debug_output() {
        let stamp = PasswordStamp::of(&entry(&[("pwdChangedTime", "20240501120000Z")]));
        assert!(!format!("{stamp:?}").contains("2024"), "{stamp:?}");
    }

    #[test]
    fn a_389_ds_account_is_disabled_by_ns_account_lock() {
        assert_eq!(
            state(&[("nsAccountLock", "TRUE")]),
            Some(AccountState::Disabled)
        );
        assert_eq!(
            state(&[("nsAccountLock", "true")]),
            Some(AccountState::Disabled)
        );
        assert_eq!(state(&[("nsAccountLock", "FALSE")]), None);
    }

    #[test]
    fn a_389_ds_password_policy_state_is_read_from_its_times() {
        // Locked until an administrator unlocks it, or until a time still ahead.
        assert_eq!(
            state(&[("accountUnlockTime", "19700101000000Z")]),
            Some(AccountState::Locked)
        );
        assert_eq!(
            state(&[("accountUnlockTime", "22000101000000Z")]),
            Some(AccountState::Locked)
        );
        assert_eq!(state(&[("accountUnlockTime", "20200101000000Z")]), None);
        // An administrator's reset under passwordMustChange, an expired password.
        assert_eq!(
            state(&[("passwordExpirationTime", "19700101000000Z")]),
            Some(AccountState::MustChangePassword)
        );
        assert_eq!(
            state(&[("passwordExpirationTime", "20200101000000Z")]),
            Some(AccountState::PasswordExpired)
        );
        assert_eq!(
            state(&[("passwordExpirationTime", "22000101000000Z")]),
            None
        );
        assert_eq!(state(&[("passwordExpirationTime", "garbage")]), None);
    }
}
