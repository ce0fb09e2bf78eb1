//! `kube-ldap-webhook credential`: a kubectl exec credential plugin. It prints an
//! ExecCredential whose token is `base64(username:password)`, in the apiVersion kubectl
//! asked for. Prompts go to the terminal, never to stdout; a password never comes from argv.

use std::io::{IsTerminal, Read};
use std::path::Path;

use base64::Engine;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::secret::Password;

/// Why the plugin printed no credential; the text goes to kubectl's stderr.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("KUBERNETES_EXEC_INFO is not valid ExecCredential JSON")]
    /// `KUBERNETES_EXEC_INFO` could not be read.
    ExecInfo,
    #[error("unsupported apiVersion `{0}`: expected client.authentication.k8s.io/v1 or v1beta1")]
    /// kubectl asked for an ExecCredential version this plugin does not speak.
    ApiVersion(String),
    #[error("no username: pass --username or set KUBE_LDAP_WEBHOOK_USERNAME (kubectl is not interactive here)")]
    /// Not interactive and no username given.
    NoUsername,
    #[error(
        "no password: pass --password-file or --password-fd (kubectl is not interactive here)"
    )]
    /// Not interactive and no password source given.
    NoPassword,
    #[error("the username must not be empty or contain `:` or control characters")]
    /// A username that cannot go into a `username:password` token.
    BadUsername,
    #[error("the password is empty or contains control characters")]
    /// A password that cannot go into a token.
    BadPassword,
    #[error("cannot read the password from {what}: {source}")]
    /// The password file or descriptor could not be read.
    Read {
        /// The file or descriptor.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

#[derive(Deserialize)]
struct ExecInfo {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    spec: Option<ExecSpec>,
}

#[derive(Deserialize)]
struct ExecSpec {
    #[serde(default)]
    interactive: bool,
}

/// What the command line said.
pub struct Options<'a> {
    /// `--username` or `KUBE_LDAP_WEBHOOK_USERNAME`.
    pub username: Option<String>,
    /// `--password-file`.
    pub password_file: Option<&'a Path>,
    /// `--password-fd`.
    pub password_fd: Option<i32>,
}

const V1: &str = "client.authentication.k8s.io/v1";
const V1BETA1: &str = "client.authentication.k8s.io/v1beta1";

/// The ExecCredential JSON to print on stdout.
pub fn run(o: Options<'_>) -> Result<Zeroizing<String>, CredentialError> {
    let (api_version, interactive) = match std::env::var("KUBERNETES_EXEC_INFO") {
        Ok(s) if !s.trim().is_empty() => {
            let info: ExecInfo = serde_json::from_str(&s).map_err(|_| CredentialError::ExecInfo)?;
            let v = info.api_version.unwrap_or_else(|| V1.to_string());
            (v, info.spec.is_some_and(|s| s.interactive))
        }
        // Run by hand: answer in v1 and ask on the terminal if there is one.
        _ => (V1.to_string(), std::io::stdin().is_terminal()),
    };
    if api_version != V1 && api_version != V1BETA1 {
        return Err(CredentialError::ApiVersion(api_version));
    }

    let username = match o.username.filter(|u| !u.is_empty()) {
        Some(u) => u,
        None if interactive => prompt_line("Username: ")?,
        None => return Err(CredentialError::NoUsername),
    };
    if username.is_empty() || username.contains(':') || username.chars().any(char::is_control) {
        return Err(CredentialError::BadUsername);
    }

    let password = if let Some(f) = o.password_file {
        read_secret(std::fs::File::open(f), &f.display().to_string())?
    } else if let Some(fd) = o.password_fd {
        read_fd(fd)?
    } else if interactive {
        let p =
            rpassword::prompt_password(format!("Password for {username}: ")).map_err(|source| {
                CredentialError::Read {
                    what: "the terminal".into(),
                    source,
                }
            })?;
        Password::new(p)
    } else {
        return Err(CredentialError::NoPassword);
    };
    if password.is_empty() || password.expose().chars().any(char::is_control) {
        return Err(CredentialError::BadPassword);
    }

    let mut plain = Zeroizing::new(String::with_capacity(
        username.len() + password.expose().len() + 1,
    ));
    plain.push_str(&username);
    plain.push(':');
    plain.push_str(password.expose());
    let token = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(plain.as_bytes()));
    let out = serde_json::json!({
        "apiVersion": api_version,
        "kind": "ExecCredential",
        "status": { "token": token.as_str() },
    });
    Ok(Zeroizing::new(out.to_string()))
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
