//! The [`Acceptor`] on the system's MIT Kerberos GSSAPI (libgssapi-krb5-2), through the
//! `libgssapi` crate.
//!
//! The keytab and the replay cache are given to the credential itself
//! (`gss_acquire_cred_from` with a credential store), never through `KRB5_KTNAME` or
//! `KRB5RCACHENAME` in the process environment: a reload that names another keytab gets
//! a new credential, and nothing else in the process is affected. The credential accepts
//! for any principal in the keytab (GSS_C_NO_NAME), so the keytab should hold the login
//! host's `HTTP/` principal and nothing else. SPNEGO is restricted to Kerberos with
//! `gss_set_neg_mechs`, and the established context's mechanism is checked besides
//! ([`super::authenticate`]).
//!
//! `libgssapi` wraps neither call, so they are made here over `libgssapi-sys`; the
//! credential is then handed to `libgssapi`'s `Cred`, which releases it.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::path::{Path, PathBuf};

use libgssapi::context::{SecurityContext, ServerCtx};
use libgssapi::credential::Cred;
use libgssapi::error::{Error, MajorFlags};
use libgssapi_sys as sys;

use super::{Acceptor, Established, Refusal, KRB5_OID};

/// SPNEGO (1.3.6.1.5.5.2).
const SPNEGO_OID: &[u8] = b"\x2b\x06\x01\x05\x05\x02";

/// The login listener's acceptor: a credential from `keytab` whose replay cache is
/// `replay_cache` (MIT's default, `/var/tmp/krb5_<euid>.rcache2`, when `None`).
pub(crate) struct Keytab {
    cred: Cred,
    keytab: PathBuf,
}

impl std::fmt::Debug for Keytab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keytab")
            .field("keytab", &self.keytab)
            .finish_non_exhaustive()
    }
}

/// An acceptor credential that could not be acquired: the keytab is unreadable, empty or no
/// keytab, or GSSAPI refused the replay cache.
#[derive(Debug, thiserror::Error)]
#[error("cannot use the keytab {keytab}: {message}")]
pub(crate) struct AcquireError {
    keytab: String,
    message: String,
}

impl Keytab {
    pub(crate) fn acquire(
        keytab: &Path,
        replay_cache: Option<&Path>,
    ) -> Result<Keytab, AcquireError> {
        let fail = |message: String| AcquireError {
            keytab: keytab.display().to_string(),
            message,
        };
        let mut store = vec![("keytab", format!("FILE:{}", keytab.display()))];
        if let Some(rc) = replay_cache {
            store.push(("rcache", format!("file2:{}", rc.display())));
        }
        let store: Vec<(CString, CString)> = store
            .into_iter()
            .map(|(k, v)| Ok((CString::new(k)?, CString::new(v)?)))
            .collect::<Result<_, std::ffi::NulError>>()
            .map_err(|_| fail("the path has a NUL byte".into()))?;
        let cred = acquire_from(&store, sys::GSS_C_ACCEPT).map_err(|e| fail(e.to_string()))?;
        Ok(Keytab {
            cred,
            keytab: keytab.to_path_buf(),
        })
    }
}

impl Acceptor for Keytab {
    fn accept(&self, token: &[u8]) -> Result<Established, Refusal> {
        let mut ctx = ServerCtx::new(Some(self.cred.clone()));
        let reply = ctx.step(token, None).map_err(refusal)?;
        let continue_needed = !ctx.is_complete();
        if continue_needed {
            return Ok(Established {
                continue_needed,
                mechanism: Vec::new(),
                principal: String::new(),
                reply: None,
            });
        }
        let mechanism = ctx.mechanism().map_err(refusal)?.to_vec();
        let name = ctx.source_name().map_err(refusal)?;
        let principal = name.display_name().map_err(refusal)?;
        Ok(Established {
            continue_needed,
            mechanism,
            principal: String::from_utf8_lossy(&principal).into_owned(),
            reply: reply.map(|b| b.to_vec()),
        })
    }
}

/// What a failed `gss_accept_sec_context` means, for the log line and the metric (the
/// client gets the generic error whatever it is). The routine error is a number in bits
/// 16-23 of the major status, not a set of flags. MIT reports a replay and an expired
/// ticket as a plain `GSS_S_FAILURE` whose minor code the mechglue renumbers per process,
/// so those two are told by krb5's message for them (krb5_err.et: KRB5KRB_AP_ERR_REPEAT,
/// KRB5KRB_AP_ERR_TKT_EXPIRED).
fn refusal(e: Error) -> Refusal {
    let m = e.major;
    let routine = m.bits() & ROUTINE_ERROR_MASK;
    let text = e.to_string();
    if m.intersects(MajorFlags::GSS_S_DUPLICATE_TOKEN | MajorFlags::GSS_S_OLD_TOKEN)
        || text.contains("Request is a replay")
    {
        Refusal::Replay
    } else if routine == CREDENTIALS_EXPIRED
        || routine == CONTEXT_EXPIRED
        || text.contains("Ticket expired")
    {
        Refusal::Expired
    } else if routine == BAD_MECH {
        Refusal::Mechanism
    } else if routine == DEFECTIVE_TOKEN {
        Refusal::Malformed
    } else {
        Refusal::Ticket(text)
    }
}

/// RFC 2744 3.9.1: the routine errors this module tells apart.
const ROUTINE_ERROR_MASK: u32 = 0xff << 16;
const BAD_MECH: u32 = 1 << 16;
const DEFECTIVE_TOKEN: u32 = 9 << 16;
const CREDENTIALS_EXPIRED: u32 = 11 << 16;
const CONTEXT_EXPIRED: u32 = 12 << 16;

/// The credential plugin's initiator credential from the credential cache `ccache` (the
/// value of `KRB5CCNAME`; the library's default when `None`), SPNEGO under it restricted
/// to Kerberos as the acceptor's is. The cache is named in the store rather than left to
/// the default: MIT krb5 1.20's search of the default cache collection
/// (`krb5_cccol_have_content`) frees an uninitialized principal when the cache is not a
/// cache (an empty file), and a named cache never goes there.
pub(crate) fn initiator(ccache: Option<&str>) -> Result<Cred, Error> {
    let store = match ccache.and_then(|c| CString::new(c).ok()) {
        Some(c) => vec![(c"ccache".to_owned(), c)],
        None => Vec::new(),
    };
    acquire_from(&store, sys::GSS_C_INITIATE)
}

/// `gss_acquire_cred_from(GSS_C_NO_NAME, GSS_C_INDEFINITE, {krb5, spnego}, usage, store)`.
fn acquire_from(store: &[(CString, CString)], usage: u32) -> Result<Cred, Error> {
    let mut elements: Vec<sys::gss_key_value_element_desc> = store
        .iter()
        .map(|(k, v)| sys::gss_key_value_element_desc {
            key: k.as_ptr(),
            value: v.as_ptr(),
        })
        .collect();
    let set = sys::gss_key_value_set_desc {
        count: elements.len() as u32,
        elements: elements.as_mut_ptr(),
    };
    let mut krb5 = oid(KRB5_OID);
    let mut spnego = oid(SPNEGO_OID);
    let mut mechs = [oid_desc(&mut krb5), oid_desc(&mut spnego)];
    let mut mech_set = sys::gss_OID_set_desc {
        count: mechs.len(),
        elements: mechs.as_mut_ptr(),
    };
    let mut minor: sys::OM_uint32 = 0;
    let mut cred: sys::gss_cred_id_t = std::ptr::null_mut();
    // SAFETY: every pointer is to a live local for the duration of the call; GSSAPI copies
    // what it keeps (the store's strings, the OID set) and writes `cred`, which is handed
    // to `Cred` (released on drop) only when the call succeeded.
    let major = unsafe {
        sys::gss_acquire_cred_from(
            &mut minor,
            std::ptr::null_mut(),
            sys::_GSS_C_INDEFINITE,
            &mut mech_set,
            usage as sys::gss_cred_usage_t,
            &set,
            &mut cred,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    if major != sys::GSS_S_COMPLETE {
        return Err(Error {
            major: MajorFlags::from_bits_retain(major),
            minor,
        });
    }
    // SAFETY: a credential GSSAPI just made, owned by nothing else: `owned` releases it;
    // `cred` stays valid as long as `owned` lives.
    let owned = unsafe { Cred::from_c(cred) };
    restrict_to_kerberos(cred)?;
    Ok(owned)
}

/// SPNEGO under `cred` negotiates Kerberos and nothing else (no NTLM, no NegoEx). `cred`
/// must be a live credential.
fn restrict_to_kerberos(cred: sys::gss_cred_id_t) -> Result<(), Error> {
    let mut krb5 = oid(KRB5_OID);
    let mut mechs = [oid_desc(&mut krb5)];
    let mut mech_set = sys::gss_OID_set_desc {
        count: 1,
        elements: mechs.as_mut_ptr(),
    };
    let mut minor: sys::OM_uint32 = 0;
    // SAFETY: `cred` is live (the caller holds its owner); the OID set is a live local
    // that GSSAPI copies.
    let major = unsafe { sys::gss_set_neg_mechs(&mut minor, cred, &mut mech_set) };
    if major != sys::GSS_S_COMPLETE {
        return Err(Error {
            major: MajorFlags::from_bits_retain(major),
            minor,
        });
    }
    Ok(())
}

/// The OID's bytes, owned, for a descriptor to point into.
fn oid(der: &[u8]) -> Vec<u8> {
    der.to_vec()
}

fn oid_desc(bytes: &mut [u8]) -> sys::gss_OID_desc {
    sys::gss_OID_desc {
        length: bytes.len() as u32,
        elements: bytes.as_mut_ptr().cast(),
    }
}
