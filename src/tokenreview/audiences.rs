//! `spec.audiences` kept as the request wrote it: every accepted reply echoes them, a cache
//! hit included, and copying each string out of the body (and a vector to hold them) cost
//! a hit more allocations than everything else the daemon does for it.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::json;

/// The request's audiences: the JSON array's text in the request body, checked once at
/// parse to be an array of strings only, and read again (borrowing, unless a string holds
/// escapes) where it is used.
#[derive(Clone, Copy, Default)]
pub struct Audiences<'a> {
    /// `None` for no audiences (absent, `null` or `[]`).
    raw: Option<&'a str>,
    len: usize,
}

impl<'a> Audiences<'a> {
    /// The audiences of a JSON array of strings; `None` for any other JSON.
    pub fn from_json(raw: &'a str) -> Option<Audiences<'a>> {
        let len = each(raw, |_| {}).ok()?;
        Some(Audiences {
            raw: (len > 0).then_some(raw),
            len,
        })
    }

    pub(super) fn from_raw(raw: Option<&'a RawValue>) -> Option<Audiences<'a>> {
        raw.map_or(Some(Audiences::default()), |r| Self::from_json(r.get()))
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Calls `f` with each audience, in order.
    pub fn for_each(&self, f: impl FnMut(&str)) {
        if let Some(raw) = self.raw {
            // Checked when this was made: reading it again cannot fail.
            let _ = each(raw, f);
        }
    }

    /// Owned copies, for whoever keeps them (tests, the fuzz target's oracle).
    pub fn to_vec(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.len);
        self.for_each(|s| out.push(s.to_string()));
        out
    }

    /// The length of the audiences as a JSON array of strings, as serde_json writes it.
    pub(super) fn json_len(&self) -> usize {
        let mut len = 2 + self.len.saturating_sub(1);
        self.for_each(|s| len += json::string_len(s));
        len
    }

    /// Appends the audiences as a JSON array of strings, as serde_json writes it.
    pub(super) fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        let mut first = true;
        self.for_each(|s| {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            json::write_string(out, s);
        });
        out.push(b']');
    }
}

impl fmt::Debug for Audiences<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        self.for_each(|s| {
            list.entry(&s);
        });
        list.finish()
    }
}

impl PartialEq for Audiences<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.to_vec() == other.to_vec()
    }
}

/// Reads `raw` as a JSON array of strings, calling `f` with each; how many there were.
fn each(raw: &str, f: impl FnMut(&str)) -> Result<usize, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(raw);
    let len = de.deserialize_seq(Strings(f))?;
    de.end()?;
    Ok(len)
}

/// A visitor of a JSON array whose elements must all be strings.
struct Strings<F>(F);

impl<'de, F: FnMut(&str)> Visitor<'de> for Strings<F> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of strings")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<usize, A::Error> {
        let mut n = 0;
        while seq.next_element_seed(Element(&mut self.0))?.is_some() {
            n += 1;
        }
        Ok(n)
    }
}

/// One string of the array, handed to the callback without a copy: serde_json lends it
/// from the body, or from its scratch buffer where the string held escapes.
struct Element<'f, F>(&'f mut F);

impl<'de, F: FnMut(&str)> DeserializeSeed<'de> for Element<'_, F> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, F: FnMut(&str)> Visitor<'de> for Element<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<(), E> {
        (self.0)(s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audiences(items: &[&str]) -> (String, Vec<String>) {
        let items: Vec<String> = items.iter().map(|s| s.to_string()).collect();
        (serde_json::to_string(&items).unwrap_or_default(), items)
    }

    #[test]
    fn arrays_are_written_as_serde_writes_them() {
        for items in [&[][..], &["a"], &["a\"b", "", "\n", "\u{1f600}\\"]] {
            let (text, items) = audiences(items);
            let a = Audiences::from_json(&text).unwrap();
            let mut out = Vec::new();
            a.write_json(&mut out);
            assert_eq!(String::from_utf8(out).unwrap(), text, "{items:?}");
            assert_eq!(a.json_len(), text.len(), "{items:?}");
            assert_eq!(a.to_vec(), items);
        }
    }

    #[test]
    fn arrays_written_otherwise_are_echoed_as_serde_writes_them() {
        let a = Audiences::from_json(" [ \"\\u0061\\/b\" ,\n\"c\" ] ").unwrap();
        let mut out = Vec::new();
        a.write_json(&mut out);
        assert_eq!(out, br#"["a/b","c"]"#);
        assert_eq!(a.json_len(), out.len());
    }

    #[test]
    fn anything_but_an_array_of_strings_is_refused() {
        for raw in [
            "null",
            "\"a\"",
            "{}",
            "[1]",
            "[\"a\",null]",
            "[[\"a\"]]",
            "[\"\\ud800\"]",
            "[\"a\"] x",
        ] {
            assert!(Audiences::from_json(raw).is_none(), "{raw}");
        }
    }
}
