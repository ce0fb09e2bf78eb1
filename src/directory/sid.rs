//! Windows security identifiers (MS-DTYP 2.4.2) as AD stores them in `objectSid` and
//! `tokenGroups`: parsed from bytes the directory sent, so every length is checked and a
//! malformed value is an `Err`, never a panic or a guess.

use std::fmt;

/// At most 15 sub-authorities (MS-DTYP: `SubAuthorityCount` is at most 15).
const MAX_SUB_AUTHORITIES: usize = 15;

/// A SID, kept as the bytes AD sends (its identity for comparisons and the cache) after
/// they parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Sid(Vec<u8>);

/// Why bytes are not a SID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SidError {
    #[error("a SID of {0} bytes (at least 8)")]
    TooShort(usize),
    #[error("SID revision {0} (only 1 exists)")]
    Revision(u8),
    #[error("a SID with {0} sub-authorities (at most 15)")]
    TooManySubAuthorities(usize),
    #[error("a SID of {len} bytes where its {count} sub-authorities need {want}")]
    Length {
        len: usize,
        count: usize,
        want: usize,
    },
}

impl Sid {
    /// The SID in `bytes`: revision 1, a sub-authority count, a 48-bit big-endian
    /// authority, then that many 32-bit little-endian sub-authorities, and nothing after.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Sid, SidError> {
        let (&revision, &count) = match bytes {
            [r, c, ..] if bytes.len() >= 8 => (r, c),
            _ => return Err(SidError::TooShort(bytes.len())),
        };
        if revision != 1 {
            return Err(SidError::Revision(revision));
        }
        let count = usize::from(count);
        if count > MAX_SUB_AUTHORITIES {
            return Err(SidError::TooManySubAuthorities(count));
        }
        let want = 8 + 4 * count;
        if bytes.len() != want {
            return Err(SidError::Length {
                len: bytes.len(),
                count,
                want,
            });
        }
        Ok(Sid(bytes.to_vec()))
    }

    fn sub_authorities(&self) -> impl Iterator<Item = u32> + '_ {
        self.0[8..]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
    }

    /// The SID of `rid` in this SID's domain: this SID with its last sub-authority (the
    /// account's own RID) replaced. How the primary group's SID is made from a user's
    /// `objectSid` and `primaryGroupID`. `None` for a SID without sub-authorities.
    pub(crate) fn sibling(&self, rid: u32) -> Option<Sid> {
        if self.0.len() < 12 {
            return None;
        }
        let mut bytes = self.0.clone();
        let at = bytes.len() - 4;
        bytes[at..].copy_from_slice(&rid.to_le_bytes());
        Some(Sid(bytes))
    }

    /// The SID as an LDAP filter value (RFC 4515): every byte `\XX`, which no byte of a
    /// binary value can break out of.
    pub(crate) fn filter_value(&self) -> String {
        self.0.iter().map(|b| format!("\\{b:02x}")).collect()
    }
}

/// `S-1-5-21-…`, the string form AD accepts in `<SID=…>`.
impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut authority = [0u8; 8];
        authority[2..].copy_from_slice(&self.0[2..8]);
        write!(f, "S-{}-{}", self.0[0], u64::from_be_bytes(authority))?;
        for s in self.sub_authorities() {
            write!(f, "-{s}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use base64::Engine;

    /// The bytes of a base64 value as ldapsearch prints it (`attr:: …`).
    pub(crate) fn b64(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .unwrap_or_default()
    }

    /// A user's objectSid in the test domain (tests/fixtures/samba/FACTS.md), RID 1103.
    const ALICE: &str = "AQUAAAAAAAUVAAAAxzU6Qo5rdIRVoa7GTwQAAA==";

    #[test]
    fn a_domain_sid_is_written_as_windows_writes_it() {
        let Ok(sid) = Sid::parse(&b64(ALICE)) else {
            panic!("alice's SID parses");
        };
        assert_eq!(
            sid.to_string(),
            "S-1-5-21-1111111111-2222222222-3333333333-1103"
        );
    }

    #[test]
    fn a_builtin_sid_with_two_sub_authorities_parses() {
        let Ok(users) = Sid::parse(&b64("AQIAAAAAAAUgAAAAIQIAAA==")) else {
            panic!("BUILTIN\\Users parses");
        };
        assert_eq!(users.to_string(), "S-1-5-32-545");
    }

    #[test]
    fn the_primary_group_is_the_users_sid_with_its_rid() {
        let Ok(alice) = Sid::parse(&b64(ALICE)) else {
            panic!("alice's SID parses");
        };
        let Some(domain_users) = alice.sibling(513) else {
            panic!("a domain SID has a RID to replace");
        };
        assert_eq!(
            domain_users.to_string(),
            "S-1-5-21-1111111111-2222222222-3333333333-513"
        );
        let Ok(no_rid) = Sid::parse(&[1, 0, 0, 0, 0, 0, 0, 5]) else {
            panic!("S-1-5 parses");
        };
        assert_eq!(no_rid.sibling(513), None);
    }

    #[test]
    fn malformed_sids_are_errors() {
        let ok = b64(ALICE);
        let mut revision = ok.clone();
        revision[0] = 2;
        let mut count = ok.clone();
        count[1] = 16;
        let mut longer = ok.clone();
        longer.push(0);
        let mut claims_more = ok.clone();
        claims_more[1] = 6;
        let cases: [(&[u8], SidError); 7] = [
            (&[], SidError::TooShort(0)),
            (&[1, 1, 0, 0, 0, 0, 0], SidError::TooShort(7)),
            (&revision, SidError::Revision(2)),
            (&count, SidError::TooManySubAuthorities(16)),
            (
                &ok[..ok.len() - 1],
                SidError::Length {
                    len: 27,
                    count: 5,
                    want: 28,
                },
            ),
            (
                &longer,
                SidError::Length {
                    len: 29,
                    count: 5,
                    want: 28,
                },
            ),
            (
                &claims_more,
                SidError::Length {
                    len: 28,
                    count: 6,
                    want: 32,
                },
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(Sid::parse(bytes), Err(want), "{bytes:?}");
        }
    }

    #[test]
    fn the_filter_value_escapes_every_byte() {
        let Ok(sid) = Sid::parse(&[1, 1, 0, 0, 0, 0, 0, 5, 0x28, 0x2a, 0x5c, 0x29]) else {
            panic!("S-1-5-x parses");
        };
        // '(' '*' '\' ')' in a binary value never reach the filter as themselves.
        assert_eq!(
            sid.filter_value(),
            "\\01\\01\\00\\00\\00\\00\\00\\05\\28\\2a\\5c\\29"
        );
    }
}
