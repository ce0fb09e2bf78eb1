//! The plugin's single sign-on: `POST /login` with `Authorization: Negotiate` (SPNEGO,
//! RFC 4559, Kerberos inside) made from the user's default credential cache
//! (`KRB5CCNAME`), for the service `HTTP@<host of the login URL>`. No ticket, or a ticket
//! the daemon refuses, falls back to the password; a daemon that cannot be reached, is
//! rate limiting or cannot log anyone in does not (a password would fare no better), nor
//! does an answer whose mutual authentication fails (a password must not go there).
//!
//! GSSAPI calls block (the library may ask the KDC for a service ticket): they run on the
//! plugin's main thread, outside the HTTPS client's `block_on`, never on a runtime thread.
//! The ticket is never delegated to the daemon.

use std::fmt;

use base64::Engine;
use hyper::header::{HeaderMap, WWW_AUTHENTICATE};
use libgssapi::context::{ClientCtx, CtxFlags};
use libgssapi::name::Name;
use libgssapi::oid::{GSS_MECH_SPNEGO, GSS_NT_HOSTBASED_SERVICE};
use zeroize::Zeroizing;

use super::login::{Endpoint, Issued, LoginError};
use super::CredentialError;

/// A mutual-authentication token is a Kerberos AP-REP in SPNEGO: far below this.
const MAX_MUTUAL: usize = 16 * 1024;

/// How the Kerberos try went.
pub(crate) enum Attempt {
    /// The daemon issued a token; `principal` is the ticket's client principal.
    Issued { issued: Issued, principal: String },
    /// Nothing was sent: no ticket, an expired one, one for another user than
    /// `--username`, no service ticket for the login host.
    Skipped(String),
    /// The daemon refused the ticket (401 with a reason other than "unavailable").
    Refused(String),
    /// Any other failure: trying the password would not help, or must not be done.
    Failed(LoginError),
}

impl fmt::Debug for Attempt {
    // Never the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attempt::Issued { principal, .. } => write!(f, "Issued({principal})"),
            Attempt::Skipped(why) => write!(f, "Skipped({why})"),
            Attempt::Refused(why) => write!(f, "Refused({why})"),
            Attempt::Failed(e) => write!(f, "Failed({e})"),
        }
    }
}

/// The login: the ticket first (`kerberos`, `None` with `--no-kerberos`), then the
/// password when the ticket could not be used. Returns the token and the username to keep
/// it under. The way a login went is said only when it failed.
pub(super) fn log_in(
    kerberos: Option<impl FnOnce() -> Attempt>,
    username: Option<&str>,
    password: impl FnOnce() -> Result<(Issued, String), CredentialError>,
) -> Result<(Issued, String), CredentialError> {
    let Some(kerberos) = kerberos else {
        return password();
    };
    let why = match kerberos() {
        Attempt::Issued { issued, principal } => {
            return Ok((issued, username.map_or(principal, str::to_string)))
        }
        Attempt::Failed(e) => return Err(CredentialError::Kerberos(e)),
        Attempt::Skipped(why) | Attempt::Refused(why) => why,
    };
    password().map_err(|e| CredentialError::NeitherWay {
        kerberos: why,
        password: Box::new(e),
    })
}

/// Whether a ticket of `principal` may log in for `--username`: the same name, compared
/// without realm or domain (`alice@EXAMPLE.ORG` for `alice`, `EXAMPLE\alice`,
/// `alice@example.org`), case-insensitively as AD compares. Anything else is another
/// user, whose token must not land in this username's cache slot.
pub(crate) fn ticket_fits(principal: &str, username: Option<&str>) -> bool {
    fn bare(name: &str) -> &str {
        let name = name.rsplit_once('\\').map_or(name, |(_, n)| n);
        name.split_once('@').map_or(name, |(n, _)| n)
    }
    match username {
        None => true,
        Some(u) => {
            let (p, u) = (bare(principal), bare(u));
            !p.is_empty() && p.eq_ignore_ascii_case(u)
        }
    }
}

/// The real try: a SPNEGO token from the default credential cache, `POST /login`, and
/// the check of the daemon's mutual-authentication token.
pub(super) fn attempt(endpoint: &Endpoint, username: Option<&str>) -> Attempt {
    let (mut ctx, principal, token) = match initiate(endpoint.host()) {
        Ok(started) => started,
        Err(why) => return Attempt::Skipped(why),
    };
    if !ticket_fits(&principal, username) {
        return Attempt::Skipped(format!(
            "the ticket is {principal}'s, not {}'s",
            username.unwrap_or_default()
        ));
    }
    let header = Zeroizing::new(format!(
        "Negotiate {}",
        base64::engine::general_purpose::STANDARD.encode(&token)
    ));
    drop(token);
    match endpoint.log_in_with(&header) {
        Ok((issued, headers)) => match verify_mutual(&mut ctx, &headers) {
            Ok(()) => Attempt::Issued { issued, principal },
            Err(e) => Attempt::Failed(e),
        },
        Err(LoginError::Refused(why)) => Attempt::Refused(why),
        // A daemon from before issue 19 may refuse the scheme itself.
        Err(LoginError::Status { status: 400, .. }) => {
            Attempt::Refused("the login endpoint does not take Kerberos".into())
        }
        Err(e) => Attempt::Failed(e),
    }
}

fn gss(what: &str) -> impl FnOnce(libgssapi::error::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// The context, the ticket's principal and the first token for `HTTP@host`, from the
/// credential cache `KRB5CCNAME` names (named to GSSAPI, see `negotiate::gss::initiator`:
/// an empty cache file crashed MIT krb5 1.20 when left to the default); the error
/// says why no token could be made (the library's words: no credentials, expired, no
/// such service principal).
fn initiate(host: &str) -> Result<(ClientCtx, String, Zeroizing<Vec<u8>>), String> {
    let ccache = std::env::var("KRB5CCNAME").ok().filter(|c| !c.is_empty());
    let cred =
        crate::negotiate::gss::initiator(ccache.as_deref()).map_err(gss("no Kerberos ticket"))?;
    let principal = cred
        .name()
        .and_then(|n| n.display_name())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(gss("no Kerberos ticket"))?;
    let service = format!("HTTP@{host}");
    let target = Name::new(service.as_bytes(), Some(GSS_NT_HOSTBASED_SERVICE))
        .map_err(gss(&format!("the service name {service}")))?;
    // Mutual authentication; never GSS_C_DELEG_FLAG: the daemon gets no ticket of the
    // user's to act with.
    let mut ctx = ClientCtx::new(
        Some(cred),
        target,
        CtxFlags::GSS_C_MUTUAL_FLAG,
        Some(GSS_MECH_SPNEGO),
    );
    let token = ctx
        .step(None, None)
        .map_err(gss(&format!("no ticket for {service}")))?
        .ok_or_else(|| format!("no token for {service}"))?;
    Ok((ctx, principal, Zeroizing::new(token.to_vec())))
}

/// A 200 may carry `WWW-Authenticate: Negotiate <token>`: the daemon proving it holds the
/// service key. When it does, the context must accept it; a 200 without one is trusted
/// on the TLS certificate alone, as the password login is.
fn verify_mutual(ctx: &mut ClientCtx, headers: &HeaderMap) -> Result<(), LoginError> {
    let Some(token) = mutual_token(headers)? else {
        return Ok(());
    };
    match ctx.step(Some(&token), None) {
        Ok(None) => Ok(()),
        Ok(Some(_)) => Err(LoginError::Answer(
            "the Kerberos exchange wants more than one round trip",
        )),
        Err(_) => Err(LoginError::Answer(
            "its Kerberos answer does not prove it holds the service key",
        )),
    }
}

/// The token of the answer's `WWW-Authenticate: Negotiate <base64>`, if there is one.
fn mutual_token(headers: &HeaderMap) -> Result<Option<Vec<u8>>, LoginError> {
    let bad = || LoginError::Answer("its WWW-Authenticate: Negotiate is not base64");
    for value in headers.get_all(WWW_AUTHENTICATE) {
        let Some((scheme, rest)) = value.to_str().map_err(|_| bad())?.trim().split_once(' ') else {
            continue;
        };
        if !scheme.eq_ignore_ascii_case("negotiate") {
            continue;
        }
        let rest = rest.trim();
        if rest.len() > MAX_MUTUAL * 4 / 3 + 4 {
            return Err(LoginError::Answer(
                "its WWW-Authenticate: Negotiate is too long",
            ));
        }
        return base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map(Some)
            .map_err(|_| bad());
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
