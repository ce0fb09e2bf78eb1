//! The Negotiate policy against a scripted acceptor: what is refused before GSSAPI, and
//! what an established context must be. The real acceptor is tested against Samba's KDC
//! (tests/it/kerberos.rs).

use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;

use super::*;

/// An acceptor that answers every token with `answer`, counting the calls.
struct Scripted {
    answer: fn() -> Result<Established, Refusal>,
    calls: AtomicUsize,
}

impl Scripted {
    fn new(answer: fn() -> Result<Established, Refusal>) -> Scripted {
        Scripted {
            answer,
            calls: AtomicUsize::new(0),
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Acceptor for Scripted {
    fn accept(&self, _token: &[u8]) -> Result<Established, Refusal> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        (self.answer)()
    }
}

fn kerberos_alice() -> Result<Established, Refusal> {
    Ok(Established {
        continue_needed: false,
        mechanism: KRB5_OID.to_vec(),
        principal: "alice@EXAMPLE.TEST".into(),
        reply: Some(b"mutual".to_vec()),
    })
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// An initial context token's first bytes: the tag and some body.
fn initial_token() -> String {
    b64(&[0x60, 0x82, 0x01, 0x00, 0x06, 0x06])
}

#[test]
fn a_complete_kerberos_context_gives_its_principal_and_reply() {
    let a = Scripted::new(kerberos_alice);
    let ok = authenticate(&a, &initial_token()).unwrap();
    assert_eq!(ok.principal, "alice@EXAMPLE.TEST");
    assert_eq!(ok.reply.as_deref(), Some(&b"mutual"[..]));
}

#[test]
fn microsofts_kerberos_oid_is_kerberos() {
    let a = Scripted::new(|| {
        Ok(Established {
            mechanism: MS_KRB5_OID.to_vec(),
            ..kerberos_alice()?
        })
    });
    assert!(authenticate(&a, &initial_token()).is_ok());
}

#[test]
fn refused_before_gssapi_sees_it() {
    let ntlm = b64(b"NTLMSSP\0\x01\0\0\0\x07\x82\x08\xa2");
    let resp = b64(&[0xa1, 0x03, 0x0a, 0x01, 0x01]);
    let over = "A".repeat(MAX_CREDENTIAL_LEN + 4);
    for (credential, refusal) in [
        (ntlm.as_str(), Refusal::Ntlm),
        (resp.as_str(), Refusal::Continuation),
        (over.as_str(), Refusal::TooLarge),
        ("not base64 at all!", Refusal::NotBase64),
        ("", Refusal::Malformed),
        (&b64(b"{\"json\": 1}"), Refusal::Malformed),
    ] {
        let a = Scripted::new(kerberos_alice);
        assert_eq!(
            authenticate(&a, credential).unwrap_err(),
            refusal,
            "{credential:.40}"
        );
        assert_eq!(a.calls(), 0, "{credential:.40}");
    }
}

#[test]
fn a_context_that_wants_another_leg_is_refused() {
    let a = Scripted::new(|| {
        Ok(Established {
            continue_needed: true,
            mechanism: Vec::new(),
            principal: String::new(),
            reply: Some(b"mechListMIC please".to_vec()),
        })
    });
    assert_eq!(
        authenticate(&a, &initial_token()).unwrap_err(),
        Refusal::Continuation
    );
}

#[test]
fn a_mechanism_other_than_kerberos_is_refused() {
    // NTLMSSP's OID, 1.3.6.1.4.1.311.2.2.10, as gss-ntlmssp would establish it.
    let a = Scripted::new(|| {
        Ok(Established {
            mechanism: b"\x2b\x06\x01\x04\x01\x82\x37\x02\x02\x0a".to_vec(),
            ..kerberos_alice()?
        })
    });
    assert_eq!(
        authenticate(&a, &initial_token()).unwrap_err(),
        Refusal::Mechanism
    );
}

#[test]
fn the_acceptors_refusal_is_passed_on() {
    let a = Scripted::new(|| Err(Refusal::Replay));
    assert_eq!(
        authenticate(&a, &initial_token()).unwrap_err(),
        Refusal::Replay
    );
}

#[test]
fn principals_need_a_name_and_a_realm() {
    assert_eq!(
        split_principal("alice@EXAMPLE.TEST"),
        Ok(("alice", "EXAMPLE.TEST"))
    );
    assert_eq!(
        split_principal("alice\\@corp.test@EXAMPLE.TEST"),
        Ok(("alice\\@corp.test", "EXAMPLE.TEST"))
    );
    for bad in [
        "alice",
        "@EXAMPLE.TEST",
        "alice@",
        "alice\\@EXAMPLE",
        "al\nice@X",
    ] {
        assert!(split_principal(bad).is_err(), "{bad:?}");
    }
    let a = Scripted::new(|| {
        Ok(Established {
            principal: "nobody".into(),
            ..kerberos_alice()?
        })
    });
    assert!(matches!(
        authenticate(&a, &initial_token()),
        Err(Refusal::Principal(_))
    ));
}

#[test]
fn debug_output_hides_the_reply_token() {
    let ok = authenticate(&Scripted::new(kerberos_alice), &initial_token()).unwrap();
    let shown = format!("{ok:?}");
    assert!(shown.contains("alice@EXAMPLE.TEST"), "{shown}");
    assert!(
        !shown.contains("mutual") && !shown.contains("109"),
        "{shown}"
    );
}
