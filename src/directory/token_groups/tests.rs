//! The token's parsing and the malformed-value count: no network involved.

use super::super::sid::tests::b64;
use super::*;

/// alice's entry as Samba returns it (tests/fixtures/samba/FACTS.md), with `extra`
/// tokenGroups values after her real ones.
fn alice(extra: &[&[u8]]) -> Entry {
    let mut token: Vec<Vec<u8>> = [
        "AQUAAAAAAAUVAAAAxzU6Qo5rdIRVoa7GWwQAAA==",
        "AQUAAAAAAAUVAAAAxzU6Qo5rdIRVoa7GAQIAAA==",
        "AQIAAAAAAAUgAAAAIQIAAA==",
    ]
    .iter()
    .map(|v| b64(v))
    .collect();
    token.extend(extra.iter().map(|v| v.to_vec()));
    Entry {
        dn: "CN=alice,CN=Users,DC=example,DC=test".into(),
        attrs: vec![
            ("tokenGroups".into(), token),
            (
                "objectSid".into(),
                vec![b64("AQUAAAAAAAUVAAAAxzU6Qo5rdIRVoa7GUgQAAA==")],
            ),
            ("primaryGroupID".into(), vec![b"513".to_vec()]),
        ],
    }
}

/// The token's SIDs as text, sorted as text.
fn shown(t: &Token) -> Vec<String> {
    let mut v: Vec<String> = t.sids.iter().map(Sid::to_string).collect();
    v.sort();
    v
}

#[test]
fn the_token_gives_every_sid_and_the_primary_group() {
    let Ok(t) = Token::read(&alice(&[])) else {
        panic!("alice's token reads");
    };
    assert_eq!(
        shown(&t),
        [
            "S-1-5-21-1111111111-2222222222-3333333333-1115",
            "S-1-5-21-1111111111-2222222222-3333333333-513",
            "S-1-5-32-545",
        ]
    );
    assert_eq!(
        t.primary.to_string(),
        "S-1-5-21-1111111111-2222222222-3333333333-513"
    );
    assert!(t.malformed.is_empty());
}

#[test]
fn a_malformed_token_groups_value_is_skipped_and_counted() {
    let truncated = &b64("AQUAAAAAAAUVAAAAxzU6Qo5rdIRVoa7GXAQAAA==")[..20];
    let Ok(t) = Token::read(&alice(&[truncated, b"", &[2, 0, 0, 0, 0, 0, 0, 5]])) else {
        panic!("a token with bad values still reads");
    };
    assert_eq!(
        t.sids.len(),
        3,
        "the good values are all kept: {:?}",
        shown(&t)
    );
    assert_eq!(
        t.malformed,
        [
            SidError::Length {
                len: 20,
                count: 5,
                want: 28
            },
            SidError::TooShort(0),
            SidError::Revision(2),
        ]
    );
}

#[test]
fn malformed_values_are_counted_in_the_directorys_metric() {
    let Ok(d) = tempfile::tempdir() else {
        panic!("a temporary directory");
    };
    let f = d.path().join("config.toml");
    let body = "[ldap]\nurls = [\"ldaps://dc.example.test\"]\nallow_system_roots = true\n\
                directory = \"active-directory\"\n\
                [ldap.user]\nbase_dn = \"DC=example,DC=test\"\n\
                dn_template = \"CN={username},CN=Users,DC=example,DC=test\"\n";
    let (Ok(()), Ok(tls)) = (
        std::fs::write(&f, body),
        crate::tls::ldap_client_config(None),
    ) else {
        panic!("a config file and a TLS client config");
    };
    let cfg = match crate::config::load(&f) {
        Ok(c) => c.ldap,
        Err(e) => panic!("{e}"),
    };
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let dir = Directory::new("default", cfg, tls, metrics.clone());
    let series = "kube_ldap_webhook_ldap_malformed_sids_total{directory=\"default\"}";
    assert!(metrics.encode().contains(&format!("{series} 0")), "seeded");
    dir.count_malformed("CN=alice", &[SidError::TooShort(0), SidError::Revision(2)]);
    assert!(
        metrics.encode().contains(&format!("{series} 2")),
        "{}",
        metrics.encode()
    );
}

#[test]
fn a_repeated_sid_is_one_group() {
    let dev_team = b64("AQUAAAAAAAUVAAAAxzU6Qo5rdIRVoa7GWwQAAA==");
    let Ok(t) = Token::read(&alice(&[&dev_team])) else {
        panic!("alice's token reads");
    };
    assert_eq!(t.sids.len(), 3);
}

#[test]
fn an_entry_without_token_groups_is_an_error_not_a_user_without_groups() {
    let mut e = alice(&[]);
    e.attrs.retain(|(k, _)| k != "tokenGroups");
    let Err(why) = Token::read(&e) else {
        panic!("no tokenGroups must not read as no groups");
    };
    assert!(why.contains("Read tokenGroups"), "{why}");
}

#[test]
fn the_primary_group_must_be_identifiable() {
    for (attr, value, says) in [
        ("objectSid", b"\x01\x05".to_vec(), "objectSid"),
        ("primaryGroupID", b"513x".to_vec(), "primaryGroupID"),
        ("primaryGroupID", b"-1".to_vec(), "primaryGroupID"),
    ] {
        let mut e = alice(&[]);
        for (k, vs) in &mut e.attrs {
            if k == attr {
                *vs = vec![value.clone()];
            }
        }
        let Err(why) = Token::read(&e) else {
            panic!("{attr} = {value:?} must be refused");
        };
        assert!(why.contains(says), "{why}");
    }
    let mut e = alice(&[]);
    e.attrs.retain(|(k, _)| k != "primaryGroupID");
    assert!(Token::read(&e).is_err(), "no primaryGroupID");
}

#[test]
fn the_primary_group_is_looked_for_in_the_users_domain() {
    assert_eq!(
        domain_root("CN=Carl\\, Comma (QA),CN=Users,DC=Example,DC=test").as_deref(),
        Some("DC=example,DC=test")
    );
    assert_eq!(domain_root("uid=alice,ou=people,o=corp"), None);
}

#[test]
fn the_filter_names_every_sid_of_a_batch() {
    let sids: Vec<Sid> = (0u8..3)
        .filter_map(|r| Sid::parse(&[1, 1, 0, 0, 0, 0, 0, 5, r, 0, 0, 0]).ok())
        .collect();
    let refs: Vec<&Sid> = sids.iter().collect();
    assert_eq!(
        any_of(&refs),
        "(|(objectSid=\\01\\01\\00\\00\\00\\00\\00\\05\\00\\00\\00\\00)\
         (objectSid=\\01\\01\\00\\00\\00\\00\\00\\05\\01\\00\\00\\00)\
         (objectSid=\\01\\01\\00\\00\\00\\00\\00\\05\\02\\00\\00\\00))"
    );
}
