//! An account's state read from its entry, for the re-check of an issued token: no bind
//! is made then (there is no password), so what a bind would have said is read from the
//! attributes Active Directory and OpenLDAP's ppolicy overlay keep about the account.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::{AccountState, Entry};

/// The attributes that change when the password does; read at login (into the token)
/// and at every re-check.
pub(crate) const PASSWORD_ATTRS: [&str; 2] = ["pwdChangedTime", "pwdLastSet"];

/// The attributes of the account state (both directories' names: a server ignores the
/// ones it does not know).
pub(crate) const STATE_ATTRS: [&str; 5] = [
    "userAccountControl",
    "msDS-User-Account-Control-Computed",
    "accountExpires",
    "pwdAccountLockedTime",
    "pwdReset",
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

/// A FILETIME (100 ns ticks since 1601) as a time; `None` for "never".
fn filetime(ticks: u64) -> Option<SystemTime> {
    if ticks == 0 || ticks >= FILETIME_NEVER {
        return None;
    }
    let secs = (ticks / 10_000_000).checked_sub(FILETIME_UNIX_OFFSET)?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Why this account may not be used now, if it may not: what a bind would have said.
pub(crate) fn account_state(entry: &Entry, now: SystemTime) -> Option<AccountState> {
    let uac = number(entry, "userAccountControl").unwrap_or(0);
    let computed = number(entry, "msDS-User-Account-Control-Computed").unwrap_or(0);
    if uac & UF_ACCOUNTDISABLE != 0 {
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
    if computed & UF_PASSWORD_EXPIRED != 0 {
        return Some(AccountState::PasswordExpired);
    }
    let reset = text(entry, "pwdReset").is_some_and(|v| v.eq_ignore_ascii_case("TRUE"));
    if reset || number(entry, "pwdLastSet") == Some(0) {
        return Some(AccountState::MustChangePassword);
    }
    None
}

/// A short digest of the password-change attributes: equal as long as the password was
/// not changed. Compared for equality only, so the clocks of directory and daemon never
/// matter, and the token does not show when the password was changed.
pub(crate) fn password_version(entry: &Entry) -> String {
    let mut h = Sha256::new();
    for attr in PASSWORD_ATTRS {
        h.update(attr.as_bytes());
        h.update(b"=");
        if let Some(v) = entry.values(attr).next() {
            h.update(v);
        }
        h.update(b";");
    }
    let mut v = URL_SAFE_NO_PAD.encode(h.finalize());
    v.truncate(16);
    v
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
        account_state(&entry(attrs), SystemTime::now())
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
    fn the_password_version_changes_with_the_password_only() {
        let before = password_version(&entry(&[
            ("pwdChangedTime", "20240501120000Z"),
            ("mail", "a@b"),
        ]));
        let same = password_version(&entry(&[("pwdChangedTime", "20240501120000Z")]));
        let changed = password_version(&entry(&[("pwdChangedTime", "20240501120001Z")]));
        let ad = password_version(&entry(&[("pwdLastSet", "20240501120000Z")]));
        assert_eq!(before, same);
        assert_ne!(before, changed);
        assert_ne!(before, ad, "the attribute name is part of the digest");
        assert_eq!(before.len(), 16);
    }
}
