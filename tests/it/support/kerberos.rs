//! Kerberos clients for the tests: a ticket from the Samba DC's KDC in a file cache of the
//! test's own (`samba-dc.sh kinit`), and `Negotiate` tokens made from it in this process
//! with libgssapi as initiator, as the credential plugin makes them.
//!
//! Nothing Kerberos is set in this process's environment: the cache is named to GSSAPI per
//! credential (`gss_acquire_cred_from` with `ccache`), and the service ticket is fetched
//! beforehand by `kvno`, with `KRB5_CONFIG` and `KRB5CCNAME` set for that child only, so the
//! initiator finds it in the cache and never needs the KDC (nor krb5.conf: the target is
//! named with its realm).

#![allow(unsafe_code)]

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use libgssapi::context::{ClientCtx, CtxFlags};
use libgssapi::credential::Cred;
use libgssapi::name::Name;
use libgssapi::oid::{GSS_MECH_KRB5, GSS_MECH_SPNEGO, GSS_NT_KRB5_PRINCIPAL};
use libgssapi_sys as sys;

use super::issued::{Issuer, KeyPair};
use super::{run_checked, Daemon, Dc};

/// How the token is wrapped: SPNEGO (what browsers, curl and the plugin send) or the bare
/// Kerberos mechanism.
#[derive(Debug, Clone, Copy)]
pub enum Mech {
    Spnego,
    Kerberos,
}

/// A user's ticket-granting ticket in a file cache of its own.
pub struct Ticket {
    dir: tempfile::TempDir,
    krb5_conf: String,
    realm: String,
}

impl Ticket {
    /// `kinit principal` with `password` on stdin; `kinit_args` as kinit takes them
    /// (`-l 10s`).
    pub fn new(dc: &Dc, principal: &str, password: &str, kinit_args: &[&str]) -> Ticket {
        let dir = tempfile::tempdir().unwrap();
        let t = Ticket {
            dir,
            krb5_conf: dc.krb5_conf().to_string(),
            realm: dc.var("SAMBA_REALM").to_string(),
        };
        super::used_secret(password);
        dc.kinit(principal, password, &t.ccache(), kinit_args)
            .unwrap_or_else(|e| panic!("{e}"));
        t
    }

    /// The file cache.
    pub fn ccache(&self) -> PathBuf {
        self.dir.path().join("ccache")
    }

    /// A service ticket for `spn` (`HTTP/127.0.0.1`) into the cache, from the KDC.
    pub fn fetch(&self, spn: &str) {
        run_checked(
            Command::new("kvno")
                .env("KRB5_CONFIG", &self.krb5_conf)
                .env("KRB5CCNAME", format!("FILE:{}", self.ccache().display()))
                .arg(spn),
            "kvno (apt-get install krb5-user)",
        );
    }

    /// A fresh `Negotiate` credential (base64) for `spn`: a new authenticator each call,
    /// mutual authentication asked for.
    pub fn negotiate(&self, spn: &str, mech: Mech) -> String {
        self.fetch(spn);
        let cred = initiator(&self.ccache());
        let target = Name::new(
            format!("{spn}@{}", self.realm).as_bytes(),
            Some(GSS_NT_KRB5_PRINCIPAL),
        )
        .unwrap();
        let mech = match mech {
            Mech::Spnego => GSS_MECH_SPNEGO,
            Mech::Kerberos => GSS_MECH_KRB5,
        };
        let mut ctx = ClientCtx::new(Some(cred), target, CtxFlags::GSS_C_MUTUAL_FLAG, Some(mech));
        let token = ctx
            .step(None, None)
            .unwrap_or_else(|e| panic!("gss_init_sec_context: {e}"))
            .expect("an initial token");
        let negotiate = base64::engine::general_purpose::STANDARD.encode(&*token);
        super::used_secret(&negotiate);
        negotiate
    }
}

/// A daemon with a login listener accepting Kerberos with the DC's keytab and a replay
/// cache of its own (in the DC's directory, removed with it), `KRB5_CONFIG` the DC's,
/// `directory = "active-directory"` with `domains` (TOML) listed for `[ldap]`, nested
/// groups, `cache` lines in `[cache]` and `login` lines in `[login]`.
pub fn kerberos_issuer(dc: &Dc, keys: &KeyPair, domains: &str, cache: &str, login: &str) -> Issuer {
    static DAEMONS: AtomicUsize = AtomicUsize::new(0);
    let n = DAEMONS.fetch_add(1, Ordering::SeqCst);
    let replay = Path::new(dc.var("SAMBA_DIR")).join(format!("negotiate-{n}.rcache2"));
    let ldap = format!(
        "directory = \"active-directory\"\nca_file = \"{}\"",
        dc.ca_file()
    );
    let login = format!(
        "{login}\nkeytab_file = \"{}\"\nreplay_cache_file = \"{}\"",
        dc.http_keytab(),
        replay.display()
    );
    let builder = Daemon::builder()
        .site(&dc.site())
        .url(dc.ldaps_url())
        .env("KRB5_CONFIG", dc.krb5_conf());
    Issuer::start_with(
        builder,
        &[
            ("ldap", &ldap),
            ("user", &format!("domains = {domains}")),
            ("group", "nested = true"),
            ("cache", cache),
        ],
        keys,
        &login,
        "",
    )
}

/// An initiator credential from the file cache `ccache`, named to GSSAPI directly.
fn initiator(ccache: &std::path::Path) -> Cred {
    let key = CString::new("ccache").unwrap();
    let value = CString::new(format!("FILE:{}", ccache.display())).unwrap();
    let mut element = sys::gss_key_value_element_desc {
        key: key.as_ptr(),
        value: value.as_ptr(),
    };
    let store = sys::gss_key_value_set_desc {
        count: 1,
        elements: &mut element,
    };
    let mut minor: sys::OM_uint32 = 0;
    let mut cred: sys::gss_cred_id_t = std::ptr::null_mut();
    // SAFETY: the store and its strings live through the call, GSSAPI copies them; `cred`
    // is handed to `Cred`, which releases it, only when the call succeeded.
    let major = unsafe {
        sys::gss_acquire_cred_from(
            &mut minor,
            std::ptr::null_mut(),
            sys::_GSS_C_INDEFINITE,
            std::ptr::null_mut(),
            sys::GSS_C_INITIATE as sys::gss_cred_usage_t,
            &store,
            &mut cred,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    assert_eq!(
        major,
        sys::GSS_S_COMPLETE,
        "gss_acquire_cred_from({}): minor {minor}",
        ccache.display()
    );
    // SAFETY: a credential GSSAPI just made, owned by nothing else.
    unsafe { Cred::from_c(cred) }
}

/// A SPNEGO NegTokenInit (RFC 4178) offering only NTLM (1.3.6.1.4.1.311.2.2.10), with an
/// NTLM NEGOTIATE_MESSAGE as its optimistic token: what a client without a ticket sends.
pub fn spnego_ntlm() -> String {
    let ntlm_oid = [0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x0a];
    let spnego_oid = [0x2b, 0x06, 0x01, 0x05, 0x05, 0x02];
    let negotiate_message = ntlm_negotiate();
    let mech_types = der(0xa0, &der(0x30, &der(0x06, &ntlm_oid)));
    let mech_token = der(0xa2, &der(0x04, &negotiate_message));
    let init = der(0xa0, &der(0x30, &[mech_types, mech_token].concat()));
    let token = der(0x60, &[der(0x06, &spnego_oid), init].concat());
    base64::engine::general_purpose::STANDARD.encode(token)
}

/// A raw NTLM NEGOTIATE_MESSAGE (MS-NLMP 2.2.1.1), no domain or workstation.
pub fn ntlm_negotiate() -> Vec<u8> {
    let mut m = b"NTLMSSP\0".to_vec();
    m.extend_from_slice(&1u32.to_le_bytes());
    m.extend_from_slice(&0xa208_8207u32.to_le_bytes());
    m.extend_from_slice(&[0; 16]);
    m
}

/// One DER element: `tag`, the length (short or long form), `content`.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}
