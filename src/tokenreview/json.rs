//! JSON strings written by hand, byte for byte as serde_json writes them: the request's
//! audiences are echoed in every accepted reply, cache hits included, and a hit renders
//! nothing else (see `tokenreview::render` and `Audiences`).

/// What serde_json writes for a byte inside a string: `None` for the byte itself.
fn escape(b: u8) -> Option<&'static [u8]> {
    // serde_json escapes the quote, the backslash and the C0 controls only (DEL and every
    // non-ASCII character go out as they are), with the short forms where JSON has one.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    const fn table() -> [[u8; 6]; 32] {
        let mut t = [[0u8; 6]; 32];
        let mut i = 0;
        while i < 32 {
            t[i] = [b'\\', b'u', b'0', b'0', HEX[i >> 4], HEX[i & 15]];
            i += 1;
        }
        t
    }
    static CONTROLS: [[u8; 6]; 32] = table();
    match b {
        b'"' => Some(b"\\\""),
        b'\\' => Some(b"\\\\"),
        0x08 => Some(b"\\b"),
        0x0c => Some(b"\\f"),
        b'\n' => Some(b"\\n"),
        b'\r' => Some(b"\\r"),
        b'\t' => Some(b"\\t"),
        0..=0x1f => Some(&CONTROLS[b as usize]),
        _ => None,
    }
}

/// The length of `s` as a JSON string, quotes included.
pub(super) fn string_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| escape(b).map_or(1, <[u8]>::len))
        .sum::<usize>()
}

/// Appends `s` as a JSON string.
pub(super) fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if let Some(esc) = escape(b) {
            out.extend_from_slice(&bytes[start..i]);
            out.extend_from_slice(esc);
            start = i + 1;
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        write_string(&mut out, s);
        out
    }

    #[test]
    fn every_ascii_byte_is_written_as_serde_writes_it() {
        for b in 0u8..=0x7f {
            let s = char::from(b).to_string();
            let serde = serde_json::to_vec(&s).unwrap();
            assert_eq!(ours(&s), serde, "byte {b:#04x}");
            assert_eq!(string_len(&s), serde.len(), "byte {b:#04x}");
        }
    }

    #[test]
    fn non_ascii_and_mixed_strings_are_written_as_serde_writes_them() {
        for s in [
            "",
            "https://kubernetes.default.svc",
            "j\u{f6}rg \"q\" \\ \u{1}\u{1f}\u{7f}",
            "\u{2028}\u{2029}\u{feff}\u{1f600}",
            "end\\",
            "\"",
        ] {
            let serde = serde_json::to_vec(s).unwrap();
            assert_eq!(ours(s), serde, "{s:?}");
            assert_eq!(string_len(s), serde.len(), "{s:?}");
        }
    }
}
