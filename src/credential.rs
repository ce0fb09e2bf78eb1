//! `kube-ldap-webhook credential`: a kubectl exec credential plugin. It prints an
//! ExecCredential in the apiVersion kubectl asked for, in one of two modes:
//!
//! - without `--login-url`, the token is `base64(username:password)`, made afresh by every
//!   run (the basic token);
//! - with `--login-url`, the plugin logs in at the daemon's login endpoint once (with the
//!   user's Kerberos ticket when there is one, [`kerberos`], else the password), keeps the
//!   issued token in a private cache (never the password) and prints it with its
//!   `expirationTimestamp` until it is about to expire or the daemon stops accepting it
//!   ([`issued`]); with `--jwt` as well, it prints a short-lived JWT the daemon exchanged
//!   that token for, which kube-apiserver verifies itself ([`jwt`]).
//!
//! Prompts go to the terminal, never to stdout; a password never comes from argv.

mod cache;
mod expiry;
mod issued;
mod jwt;
mod kerberos;
mod login;
mod prompt;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub use cache::CacheError;
pub use expiry::ExpiryWarning;
pub use login::LoginError;
// What `kubeconfig --user-login` checks before writing them into a kubeconfig.
pub(crate) use login::login_url;
pub(crate) use prompt::username_fits;

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
        "no password: pass --password-file or --password-fd, or set KUBE_LDAP_WEBHOOK_PASSWORD_FILE (kubectl is not interactive here)"
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
    #[error(transparent)]
    /// The login endpoint gave no token.
    Login(#[from] LoginError),
    #[error("login with the Kerberos ticket failed: {0}")]
    /// The Kerberos login failed in a way the password would not mend.
    Kerberos(#[source] LoginError),
    #[error("the Kerberos ticket was not used ({kerberos}); login with the password: {password}")]
    /// Neither the ticket nor the password gave a token.
    NeitherWay {
        /// Why the ticket was not used.
        kerberos: String,
        /// Why the password login failed.
        #[source]
        password: Box<CredentialError>,
    },
    #[error(transparent)]
    /// The token cache cannot be used.
    Cache(#[from] CacheError),
    #[error("the issuer did not exchange the session for a token: {0}")]
    /// `POST /token` gave no JWT: the daemon could not be asked or did not answer one, or
    /// refused a session that had just come from a login.
    Exchange(#[source] LoginError),
    #[error("cannot refresh the token for kube-apiserver ({last}): {source}")]
    /// No new JWT, because the daemon could not be asked, and no cached one still valid.
    CannotRefresh {
        /// The cached JWT's expiry, or that there is none.
        last: String,
        /// Why the daemon could not be asked.
        #[source]
        source: Box<CredentialError>,
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
    /// `--login-url` and what goes with it; `None` for the basic token.
    pub login: Option<Login<'a>>,
    /// `--password-expiry-warning`: when a login's password-expiry line is printed.
    pub expiry_warning: ExpiryWarning,
}

/// The issued-token mode.
pub struct Login<'a> {
    /// `--login-url`.
    pub url: &'a str,
    /// `--ca-file`: the CA of the login endpoint's certificate.
    pub ca_file: Option<&'a Path>,
    /// `--ca-data`: the same as base64 of PEM.
    pub ca_data: Option<&'a str>,
    /// `--logout`: forget the cached token instead of printing one.
    pub logout: bool,
    /// `--jwt`: print a JWT from the daemon's issuer instead of the session token.
    pub jwt: bool,
    /// Try the user's Kerberos ticket before the password (off with `--no-kerberos`).
    pub kerberos: bool,
}

/// Names the password file when neither `--password-file` nor `--password-fd` does: a
/// script running kubectl with a handed-out kubeconfig cannot add flags to the plugin's
/// arguments, but kubectl passes its environment on. A path, never the password itself.
pub const PASSWORD_FILE_ENV: &str = "KUBE_LDAP_WEBHOOK_PASSWORD_FILE";

/// The password file of [`PASSWORD_FILE_ENV`], unless a flag named a source (flags win);
/// empty means unset.
fn password_file_from_env(o: &Options<'_>) -> Option<PathBuf> {
    if o.password_file.is_some() || o.password_fd.is_some() {
        return None;
    }
    std::env::var_os(PASSWORD_FILE_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

const V1: &str = "client.authentication.k8s.io/v1";
const V1BETA1: &str = "client.authentication.k8s.io/v1beta1";

/// The ExecCredential JSON to print on stdout; `None` after `--logout`, which prints
/// nothing.
pub fn run(o: Options<'_>) -> Result<Option<Zeroizing<String>>, CredentialError> {
    let username = o.username.as_deref().filter(|u| !u.is_empty());
    if let Some(login) = o.login.as_ref().filter(|l| l.logout) {
        issued::logout(login, username)?;
        return Ok(None);
    }
    let (api_version, interactive, from_kubectl) = exec_request()?;
    let env_file = password_file_from_env(&o);
    let sources = prompt::Sources {
        username,
        password_file: o.password_file.or(env_file.as_deref()),
        password_fd: o.password_fd,
        interactive,
        expiry_warning: o.expiry_warning.show(from_kubectl.then_some(interactive)),
    };
    let json = match &o.login {
        Some(login) if login.jwt => jwt::credential(&api_version, &sources, login)?,
        Some(login) => issued::credential(&api_version, &sources, login)?,
        None => basic(&api_version, &sources)?,
    };
    Ok(Some(json))
}

/// The apiVersion kubectl wants, whether a person is at the terminal, and whether kubectl
/// said so (`KUBERNETES_EXEC_INFO` set) rather than the plugin guessing it.
fn exec_request() -> Result<(String, bool, bool), CredentialError> {
    let (api_version, interactive, from_kubectl) = match std::env::var("KUBERNETES_EXEC_INFO") {
        Ok(s) if !s.trim().is_empty() => {
            let info: ExecInfo = serde_json::from_str(&s).map_err(|_| CredentialError::ExecInfo)?;
            let v = info.api_version.unwrap_or_else(|| V1.to_string());
            (v, info.spec.is_some_and(|s| s.interactive), true)
        }
        // Run by hand: answer in v1 and ask on the terminal if there is one.
        _ => (
            V1.to_string(),
            {
                use std::io::IsTerminal;
                std::io::stdin().is_terminal()
            },
            false,
        ),
    };
    if api_version != V1 && api_version != V1BETA1 {
        return Err(CredentialError::ApiVersion(api_version));
    }
    Ok((api_version, interactive, from_kubectl))
}

/// The basic token: `base64(username:password)`, asked for on every run.
fn basic(
    api_version: &str,
    sources: &prompt::Sources<'_>,
) -> Result<Zeroizing<String>, CredentialError> {
    use base64::Engine;
    let username = sources.username()?;
    let password = sources.password(&username)?;
    let mut plain = Zeroizing::new(String::with_capacity(
        username.len() + password.expose().len() + 1,
    ));
    plain.push_str(&username);
    plain.push(':');
    plain.push_str(password.expose());
    let token = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(plain.as_bytes()));
    Ok(exec_credential(api_version, &token, None))
}

#[derive(Serialize)]
struct ExecCredential<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    kind: &'static str,
    status: ExecStatus<'a>,
}

#[derive(Serialize)]
struct ExecStatus<'a> {
    token: &'a str,
    /// client-go runs the plugin again once this has passed.
    #[serde(
        rename = "expirationTimestamp",
        skip_serializing_if = "Option::is_none"
    )]
    expiration_timestamp: Option<&'a str>,
}

fn exec_credential(api_version: &str, token: &str, expires: Option<&str>) -> Zeroizing<String> {
    let credential = ExecCredential {
        api_version,
        kind: "ExecCredential",
        status: ExecStatus {
            token,
            expiration_timestamp: expires,
        },
    };
    // Serializing borrowed strings into a String cannot fail.
    Zeroizing::new(serde_json::to_string(&credential).unwrap_or_default())
}
