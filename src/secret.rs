//! Secrets in memory: zeroed on drop and never shown by `Debug`.

use std::fmt;
use zeroize::Zeroizing;

/// A password (a user's or the service account's). The only way to read it is
/// [`Password::expose`], so every use is easy to find.
#[derive(Clone)]
pub struct Password(Zeroizing<String>);

impl Password {
    /// Takes ownership of a password; it is zeroized when dropped.
    pub fn new(s: String) -> Self {
        Password(Zeroizing::new(s))
    }

    /// The password itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is empty (an unauthenticated bind, never sent).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let p = Password::new("hunter2".into());
        assert!(!format!("{p:?}").contains("hunter2"));
        assert!(!format!("{:#?}", Some(&p)).contains("hunter2"));
    }
}
