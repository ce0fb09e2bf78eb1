//! `Authorization: Negotiate` (SPNEGO, RFC 4559) at `POST /login`: the Kerberos ticket of a
//! user logged in to the domain stands in for the password.
//!
//! This module decides everything that needs no directory: the header (size, base64, the
//! shape of an initial context token), the one GSSAPI call behind the [`Acceptor`] seam
//! (the keytab and the replay cache: [`gss`]), and what a finished context must be (one
//! leg, the Kerberos mechanism, a principal `name@REALM`). Every refusal here is made
//! before any LDAP traffic; the principal then goes to the login policy
//! ([`crate::authenticator`]), which maps it to a directory account as a password login's
//! name is mapped.
//!
//! The acceptor is restricted to Kerberos: NTLM inside SPNEGO (or a raw NTLMSSP token) is
//! refused, since NTLM proves nothing about the server and cannot be checked offline.
//! Only single-leg exchanges exist here: the Kerberos AP-REQ carries everything; a
//! continuation (a SPNEGO `NegTokenResp`, or a context that wants another leg) is refused,
//! so no half-open context is ever kept between requests.
//!
//! Neither the header nor the token nor the reply token is ever logged or put in Debug
//! output; the principal is (it names the account, as a login name does).

use base64::Engine;

/// The longest `Negotiate` credential read, in base64 characters: 12,000 bytes, the
/// MaxTokenSize of Windows before 8 / 2012 (a ticket grows with the user's groups, which
/// its PAC lists). It fits the login port's request head (16 KiB of
/// HTTP/2 header list, 32 KiB of HTTP/1.1 buffer), which bounds what anonymous clients can
/// make the daemon hold; a longer credential is refused before decoding.
pub(crate) const MAX_CREDENTIAL_LEN: usize = 16_000;

/// DER tag of a GSS-API InitialContextToken (RFC 2743 3.1): SPNEGO's `NegTokenInit` and a
/// raw Kerberos AP-REQ both start with it.
const INITIAL_CONTEXT_TOKEN: u8 = 0x60;
/// A SPNEGO `NegTokenResp`: the second leg of an exchange, which is never started here.
const NEG_TOKEN_RESP: u8 = 0xa1;
/// What a raw NTLM message starts with.
const NTLMSSP: &[u8] = b"NTLMSSP\0";

/// The Kerberos v5 mechanism (RFC 1964), and the one Microsoft's SPNEGO announces
/// (1.2.840.48018.1.2.2): both are Kerberos.
pub(crate) const KRB5_OID: &[u8] = b"\x2a\x86\x48\x86\xf7\x12\x01\x02\x02";
pub(crate) const MS_KRB5_OID: &[u8] = b"\x2a\x86\x48\x82\xf7\x12\x01\x02\x02";

/// Why a Negotiate login was refused, before any directory traffic. The client always gets
/// the generic error; the label goes to the log line and the metric.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("Negotiate credential longer than {MAX_CREDENTIAL_LEN} characters")]
    TooLarge,
    #[error("Negotiate credential is not base64")]
    NotBase64,
    #[error("NTLM is not accepted, only Kerberos")]
    Ntlm,
    #[error("a continuation token: only single-leg Kerberos is accepted")]
    Continuation,
    #[error("not a GSS-API initial context token")]
    Malformed,
    #[error("the context's mechanism is not Kerberos")]
    Mechanism,
    #[error("replayed authenticator")]
    Replay,
    #[error("ticket or authenticator expired")]
    Expired,
    /// Another service's ticket, a key this keytab lacks, a bad checksum: `detail` is
    /// GSSAPI's message (principal names at most, never key material).
    #[error("ticket refused: {0}")]
    Ticket(String),
    #[error("principal `{0}` is not name@REALM")]
    Principal(String),
    /// A principal whose realm no directory lists among its domains.
    #[error("no directory maps the realm of `{0}`")]
    Realm(String),
    /// The acceptor itself failed (keytab unreadable, replay cache not writable): the
    /// operator's problem, answered as an unavailable backend.
    #[error("Kerberos acceptor failed: {0}")]
    Acceptor(String),
}

impl Refusal {
    /// The metric label and the log line's `detail` prefix.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Refusal::TooLarge => "too_large",
            Refusal::NotBase64 | Refusal::Malformed => "malformed",
            Refusal::Ntlm => "ntlm",
            Refusal::Continuation => "continuation",
            Refusal::Mechanism => "mechanism",
            Refusal::Replay => "replay",
            Refusal::Expired => "expired",
            Refusal::Ticket(_) => "ticket",
            Refusal::Principal(_) => "principal",
            Refusal::Realm(_) => "realm",
            Refusal::Acceptor(_) => "acceptor",
        }
    }
}

/// What one `gss_accept_sec_context` produced.
pub(crate) struct Established {
    /// The context wants another leg (`GSS_S_CONTINUE_NEEDED`).
    pub(crate) continue_needed: bool,
    /// The mechanism's OID (DER contents), once the context is complete.
    pub(crate) mechanism: Vec<u8>,
    /// The initiator's principal as GSSAPI displays it (`alice@EXAMPLE.TEST`).
    pub(crate) principal: String,
    /// The token for the client (Kerberos mutual authentication), if any.
    pub(crate) reply: Option<Vec<u8>>,
}

/// The seam between the login policy and GSSAPI: one call accepts one initial token.
/// Blocking (keytab and replay cache are files); called on the blocking pool.
pub(crate) trait Acceptor: Send + Sync + 'static {
    fn accept(&self, token: &[u8]) -> Result<Established, Refusal>;
}

/// An accepted Negotiate login: who, and what to answer.
pub(crate) struct Authenticated {
    /// `name@REALM` as the ticket names the client.
    pub(crate) principal: String,
    /// The mutual-authentication token for `WWW-Authenticate: Negotiate <base64>` on 200.
    pub(crate) reply: Option<Vec<u8>>,
}

impl std::fmt::Debug for Authenticated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticated")
            .field("principal", &self.principal)
            .field("reply", &self.reply.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The token inside a `Negotiate` credential (the header's value after the scheme), with
/// what can be refused without GSSAPI refused.
pub(crate) fn token_of(credential: &str) -> Result<Vec<u8>, Refusal> {
    let credential = credential.trim();
    if credential.len() > MAX_CREDENTIAL_LEN {
        return Err(Refusal::TooLarge);
    }
    let token = base64::engine::general_purpose::STANDARD
        .decode(credential)
        .map_err(|_| Refusal::NotBase64)?;
    match token.first() {
        _ if token.starts_with(NTLMSSP) => Err(Refusal::Ntlm),
        Some(&NEG_TOKEN_RESP) => Err(Refusal::Continuation),
        Some(&INITIAL_CONTEXT_TOKEN) => Ok(token),
        _ => Err(Refusal::Malformed),
    }
}

/// Accepts one `Negotiate` credential with `acceptor`: the header's checks, the one leg,
/// the Kerberos mechanism, a principal with a realm. Blocking.
pub(crate) fn authenticate(
    acceptor: &dyn Acceptor,
    credential: &str,
) -> Result<Authenticated, Refusal> {
    let token = token_of(credential)?;
    let established = acceptor.accept(&token)?;
    if established.continue_needed {
        // SPNEGO answers an initial token whose first mechanism it would not take (NTLM
        // offered first, Kerberos second) with a request for another leg.
        return Err(Refusal::Continuation);
    }
    if established.mechanism != KRB5_OID && established.mechanism != MS_KRB5_OID {
        return Err(Refusal::Mechanism);
    }
    split_principal(&established.principal)?;
    Ok(Authenticated {
        principal: established.principal,
        reply: established.reply,
    })
}

/// `name@REALM` -> (`name`, `REALM`): both non-empty, no control characters. An `@` in the
/// name part is escaped by GSSAPI as `\@` (an enterprise name), so the realm is after the
/// last unescaped `@`, which is the last `@`.
pub(crate) fn split_principal(principal: &str) -> Result<(&str, &str), Refusal> {
    let bad = || Refusal::Principal(principal.escape_default().to_string());
    let (name, realm) = principal.rsplit_once('@').ok_or_else(bad)?;
    if name.is_empty()
        || realm.is_empty()
        || name.ends_with('\\')
        || principal.chars().any(char::is_control)
    {
        return Err(bad());
    }
    Ok((name, realm))
}

pub(crate) mod gss;
#[cfg(test)]
mod tests;
