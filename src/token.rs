//! The token decoder: `base64(username:password)` into [`Credentials`], or why not.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use zeroize::Zeroizing;

use crate::secret::Password;

/// Longer tokens are not ours: no sane `username:password` needs 4 KiB.
pub const MAX_TOKEN_LEN: usize = 4096;
const MAX_USERNAME_LEN: usize = 256;

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(false);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// A decoded basic token. `Debug` never shows the password.
#[derive(Debug)]
pub struct Credentials {
    /// The login name as typed.
    pub username: String,
    /// The password, zeroized on drop.
    pub password: Password,
}

/// Why a token is not a usable `username:password`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a basic-style token at all (a JWT, an opaque token): someone else's.
    NotOurs,
    /// Of our form, but unusable: empty or oversized parts, control characters.
    Invalid,
}

/// Decodes a bearer token. Never logs, never keeps the decoded bytes beyond the call.
pub fn decode(token: &str) -> Result<Credentials, Refusal> {
    let token = token.trim();
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(Refusal::NotOurs);
    }
    let engine = if token.bytes().any(|b| b == b'-' || b == b'_') {
        &URL_SAFE
    } else {
        &STANDARD
    };
    let bytes = Zeroizing::new(engine.decode(token).map_err(|_| Refusal::NotOurs)?);
    let text = std::str::from_utf8(&bytes).map_err(|_| Refusal::NotOurs)?;
    let (username, password) = text.split_once(':').ok_or(Refusal::NotOurs)?;
    if username.is_empty() || password.is_empty() {
        return Err(Refusal::Invalid);
    }
    if username.len() > MAX_USERNAME_LEN
        || username.chars().any(char::is_control)
        || password.chars().any(char::is_control)
        || username.trim() != username
    {
        return Err(Refusal::Invalid);
    }
    Ok(Credentials {
        username: username.to_string(),
        password: Password::new(password.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD as STD, URL_SAFE_NO_PAD};

    fn enc(s: &str) -> String {
        STD.encode(s)
    }

    #[test]
    fn splits_at_the_first_colon() {
        let c = decode(&enc("bob:pa:ss:word")).unwrap();
        assert_eq!(c.username, "bob");
        assert_eq!(c.password.expose(), "pa:ss:word");
    }

    #[test]
    fn accepts_url_safe_and_unpadded() {
        let raw = "j\u{f6}rg:\u{1f511}?>>~";
        for t in [
            STD.encode(raw),
            URL_SAFE_NO_PAD.encode(raw),
            STD.encode(raw).trim_end_matches('=').to_string(),
        ] {
            let c = decode(&t).unwrap();
            assert_eq!(c.username, "j\u{f6}rg");
            assert_eq!(c.password.expose(), "\u{1f511}?>>~");
        }
    }

    #[test]
    fn jwt_is_not_ours() {
        let jwt = "eyJhbGciOiJSUzI1NiIsImtpZCI6IiJ9.eyJpc3MiOiJrdWJlcm5ldGVzIn0.c2lnbmF0dXJl";
        assert_eq!(decode(jwt).unwrap_err(), Refusal::NotOurs);
    }

    #[test]
    fn random_text_is_not_ours() {
        assert_eq!(decode("not base64 at all!").unwrap_err(), Refusal::NotOurs);
        assert_eq!(decode(&enc("no-colon-here")).unwrap_err(), Refusal::NotOurs);
        assert_eq!(
            decode(&STD.encode([0xff, 0xfe, b':', b'x'])).unwrap_err(),
            Refusal::NotOurs
        );
    }

    #[test]
    fn empty_parts_are_invalid() {
        assert_eq!(decode(&enc("alice:")).unwrap_err(), Refusal::Invalid);
        assert_eq!(decode(&enc(":secret")).unwrap_err(), Refusal::Invalid);
    }

    #[test]
    fn control_characters_are_invalid() {
        assert_eq!(decode(&enc("ali\0ce:pw")).unwrap_err(), Refusal::Invalid);
        assert_eq!(decode(&enc("alice:p\nw")).unwrap_err(), Refusal::Invalid);
    }

    #[test]
    fn oversized_tokens_are_not_ours() {
        let long = enc(&format!("alice:{}", "x".repeat(4000)));
        assert!(long.len() > MAX_TOKEN_LEN);
        assert_eq!(decode(&long).unwrap_err(), Refusal::NotOurs);
    }

    #[test]
    fn debug_hides_the_password() {
        let c = decode(&enc("alice:hunter2")).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
