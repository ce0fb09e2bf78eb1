//! Where the username and the password come from: the command line, a file, a descriptor
//! handed over by a parent, or the terminal. Prompts go to stderr and the terminal, never
//! to stdout (kubectl's); a password never comes from argv.

use std::io::Read;
use std::path::Path;

use zeroize::Zeroizing;

use super::CredentialError;
use crate::secret::Password;

/// The sources the command line and kubectl allow.
pub(crate) struct Sources<'a> {
    /// `--username` or `KUBE_LDAP_WEBHOOK_USERNAME`.
    pub(crate) username: Option<&'a str>,
    /// `--password-file`.
    pub(crate) password_file: Option<&'a Path>,
    /// `--password-fd`.
    pub(crate) password_fd: Option<i32>,
    /// kubectl said a person is at the terminal.
    pub(crate) interactive: bool,
    /// Tell that person of a password about to expire (`--password-expiry-warning`).
    pub(crate) expiry_warning: bool,
}

impl Sources<'_> {
    /// The username given, else asked for on the terminal; refused when it cannot go into
    /// `username:password`.
    pub(crate) fn username(&self) -> Result<String, CredentialError> {
        let username = match self.username.filter(|u| !u.is_empty()) {
            Some(u) => u.to_string(),
            None if self.interactive => prompt_line("Username: ")?,
            None => return Err(CredentialError::NoUsername),
        };
        if !username_fits(&username) {
            return Err(CredentialError::BadUsername);
        }
        Ok(username)
    }

    /// The password from the file, the descriptor or the terminal, in that order.
    pub(crate) fn password(&self, username: &str) -> Result<Password, CredentialError> {
        let password = if let Some(f) = self.password_file {
            read_secret(std::fs::File::open(f), &f.display().to_string())?
        } else if let Some(fd) = self.password_fd {
            read_fd(fd)?
        } else if self.interactive {
            let p = rpassword::prompt_password(format!("Password for {username}: ")).map_err(
                |source| CredentialError::Read {
                    what: "the terminal".into(),
                    source,
                },
            )?;
            Password::new(p)
        } else {
            return Err(CredentialError::NoPassword);
        };
        if password.is_empty() || password.expose().chars().any(char::is_control) {
            return Err(CredentialError::BadPassword);
        }
        Ok(password)
    }
}

/// A username that fits `username:password` (the basic token and HTTP Basic alike).
pub(crate) fn username_fits(username: &str) -> bool {
    !(username.is_empty() || username.contains(':') || username.chars().any(char::is_control))
}

fn prompt_line(prompt: &str) -> Result<String, CredentialError> {
    // The prompt goes to the terminal (stderr): stdout belongs to kubectl.
    eprint!("{prompt}");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|source| CredentialError::Read {
            what: "the terminal".into(),
            source,
        })?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn read_secret(
    file: std::io::Result<std::fs::File>,
    what: &str,
) -> Result<Password, CredentialError> {
    let err = |source| CredentialError::Read {
        what: what.to_string(),
        source,
    };
    let mut f = file.map_err(err)?;
    let mut buf = Zeroizing::new(String::new());
    f.read_to_string(&mut buf).map_err(err)?;
    let text = buf.strip_suffix('\n').unwrap_or(&buf);
    let text = text.strip_suffix('\r').unwrap_or(text);
    Ok(Password::new(text.to_string()))
}

fn read_fd(fd: i32) -> Result<Password, CredentialError> {
    let what = format!("file descriptor {fd}");
    match crate::process::take_fd(fd) {
        Ok(file) => read_secret(Ok(file), &what),
        Err(source) => Err(CredentialError::Read { what, source }),
    }
}
