//! Distinguished names as RFC 4514 writes them: split into RDNs and attribute-value pairs,
//! values unescaped. Never by splitting on `,`: `cn=dev\, ops` is one RDN.
//!
//! Shared vocabulary of the directory client, the identity mapping and `config` (which
//! checks `cn@domain` group naming against a base DN): imports nothing of the crate.

/// One `type=value` of an RDN, the value unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ava {
    pub attr: String,
    pub value: String,
}

/// The RDNs of `dn`, leftmost first, each with its `+`-joined pairs; `None` when it is not
/// a DN (a part without `=`, a value that is not UTF-8). `;` separates RDNs too (RFC 1779).
pub(crate) fn parse(dn: &str) -> Option<Vec<Vec<Ava>>> {
    let bytes = dn.as_bytes();
    let mut rdns: Vec<Vec<Ava>> = Vec::new();
    let mut rdn: Vec<Ava> = Vec::new();
    let mut i = 0;
    if dn.trim().is_empty() {
        return Some(rdns);
    }
    loop {
        let eq = i + bytes.get(i..)?.iter().position(|&b| b == b'=')?;
        let attr = std::str::from_utf8(&bytes[i..eq]).ok()?.trim();
        if attr.is_empty() || attr.contains([',', '+', ';']) {
            return None;
        }
        let (value, end) = value(bytes, eq + 1)?;
        rdn.push(Ava {
            attr: attr.to_string(),
            value,
        });
        match bytes.get(end) {
            None => {
                rdns.push(rdn);
                return Some(rdns);
            }
            Some(b'+') => {}
            Some(_) => rdns.push(std::mem::take(&mut rdn)),
        }
        i = end + 1;
    }
}

/// The value starting at `start`, unescaped, and the index of the separator that ended it
/// (or the length). Unescaped spaces around it are not part of it.
fn value(bytes: &[u8], start: usize) -> Option<(String, usize)> {
    let mut out: Vec<u8> = Vec::new();
    // Length of `out` up to its last byte that is not an unescaped space.
    let mut kept = 0;
    let mut i = start;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(x) => {
                        out.push(x);
                        i += 3;
                    }
                    None => {
                        out.push(*bytes.get(i + 1)?);
                        i += 2;
                    }
                }
                kept = out.len();
            }
            b',' | b'+' | b';' => break,
            b' ' if out.is_empty() => i += 1,
            b => {
                out.push(b);
                i += 1;
                if b != b' ' {
                    kept = out.len();
                }
            }
        }
    }
    out.truncate(kept);
    Some((String::from_utf8(out).ok()?, i))
}

/// The value of the first RDN's `attr` (compared without regard to case), unescaped.
pub(crate) fn first_rdn_value(dn: &str, attr: &str) -> Option<String> {
    parse(dn)?
        .into_iter()
        .next()?
        .into_iter()
        .find(|a| a.attr.eq_ignore_ascii_case(attr))
        .map(|a| a.value)
}

/// The DNS domain a DN lies in: its trailing `DC=` RDNs joined with dots and lower-cased
/// (`CN=Ops,OU=Groups,DC=Example,DC=test` -> `example.test`), as Active Directory and
/// Pinniped derive it. `None` when the DN ends in no `DC=` RDN.
pub(crate) fn domain(dn: &str) -> Option<String> {
    let rdns = parse(dn)?;
    let labels: Vec<String> = rdns
        .iter()
        .rev()
        .map_while(|rdn| match rdn.as_slice() {
            [a] if is_dc(&a.attr) && !a.value.is_empty() => Some(a.value.to_lowercase()),
            _ => None,
        })
        .collect();
    if labels.is_empty() {
        return None;
    }
    Some(labels.into_iter().rev().collect::<Vec<_>>().join("."))
}

/// `dc` by name or by OID (RFC 4519).
fn is_dc(attr: &str) -> bool {
    attr.eq_ignore_ascii_case("dc")
        || attr.eq_ignore_ascii_case("domainComponent")
        || attr == "0.9.2342.19200300.100.1.25"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ava(attr: &str, value: &str) -> Ava {
        Ava {
            attr: attr.into(),
            value: value.into(),
        }
    }

    #[test]
    fn escaped_separators_stay_inside_the_value() {
        assert_eq!(
            parse("cn=dev\\, ops+uid=x\\2b1,ou=g;dc=x").unwrap(),
            vec![
                vec![ava("cn", "dev, ops"), ava("uid", "x+1")],
                vec![ava("ou", "g")],
                vec![ava("dc", "x")],
            ]
        );
    }

    #[test]
    fn spaces_around_a_value_are_dropped_unless_escaped() {
        assert_eq!(
            parse("cn = a b ,ou=\\ x\\ ").unwrap(),
            vec![vec![ava("cn", "a b")], vec![ava("ou", " x ")]]
        );
    }

    #[test]
    fn a_part_without_a_type_is_not_a_dn() {
        assert_eq!(parse("cn=a,garbage"), None);
        assert_eq!(parse("=a"), None);
        assert_eq!(parse("cn=\\ff"), None, "not UTF-8");
        assert_eq!(parse(""), Some(vec![]));
    }

    #[test]
    fn first_rdn_is_unescaped() {
        assert_eq!(
            first_rdn_value("cn=dev\\2c ops,ou=g,dc=x", "cn").as_deref(),
            Some("dev, ops")
        );
        assert_eq!(
            first_rdn_value("CN=Domain Users,CN=Users,DC=x", "cn").as_deref(),
            Some("Domain Users")
        );
        assert_eq!(
            first_rdn_value("cn=a\\,b,dc=x", "cn").as_deref(),
            Some("a,b")
        );
        assert_eq!(first_rdn_value("uid=x,dc=x", "cn"), None);
        assert_eq!(
            first_rdn_value("cn=x+uid=alice,dc=x", "UID").as_deref(),
            Some("alice")
        );
    }

    #[test]
    fn the_domain_is_the_trailing_dc_components() {
        assert_eq!(
            domain("CN=Ops,OU=Groups,DC=Example,DC=test").as_deref(),
            Some("example.test")
        );
        assert_eq!(
            domain("cn=x,dc=west,ou=y,dc=corp,dc=example,dc=org").as_deref(),
            Some("corp.example.org"),
            "a DC= above an OU is not part of the domain"
        );
        assert_eq!(
            domain("cn=x,0.9.2342.19200300.100.1.25=lab").as_deref(),
            Some("lab")
        );
        assert_eq!(domain("cn=x,o=Example"), None);
        assert_eq!(
            domain("cn=x,dc=a+o=b"),
            None,
            "a multi-valued RDN is no label"
        );
    }
}
