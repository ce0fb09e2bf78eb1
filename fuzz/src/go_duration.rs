//! `parse_go_duration`: Go's `time.Duration` text from the `?timeout=` query parameter.
//!
//! The oracle parses the same grammar exactly, in integer arithmetic (units of 10⁻⁹ ns),
//! so the daemon's floating-point sum must agree with it on what is valid and land within
//! rounding of the exact value.

use std::time::Duration;

use kube_ldap_webhook::fuzzing::parse_go_duration;

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let got = parse_go_duration(text);
    let Some(exact) = exact(text) else {
        assert_eq!(got, None, "accepted {text:?}, which is not a duration");
        return;
    };
    let max = Duration::MAX.as_nanos() * SUB;
    if exact.huge || exact.value > max {
        // Within rounding of the largest Duration either answer is right.
        let near_max = !exact.huge && exact.value - max <= max / 1_000_000_000_000;
        assert!(
            got.is_none() || near_max,
            "{text:?} is beyond the largest Duration"
        );
        return;
    }
    let want = exact.value / SUB;
    let Some(got) = got else {
        let near_max = max - exact.value <= max / 1_000_000_000_000;
        assert!(near_max, "refused the duration {text:?}");
        return;
    };
    // f64: each term's parse, scale, product and sum round by at most 2^-53.
    let slack = 2 + want * (u128::from(exact.terms) + 2) / (1 << 50);
    assert!(
        got.as_nanos().abs_diff(want) <= slack,
        "{text:?}: got {}ns, exact {want}ns",
        got.as_nanos()
    );
}

/// Sub-nanosecond units the oracle counts in.
const SUB: u128 = 1_000_000_000;

struct Exact {
    /// The sum, in 10⁻⁹ ns (fractions beyond 18 digits dropped).
    value: u128,
    /// Too large for u128 on the way.
    huge: bool,
    terms: u32,
}

fn unit_ns(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "\u{b5}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// `(digits [. digits] unit)+`, at least one digit per number, no sign, no exponent.
fn exact(text: &str) -> Option<Exact> {
    let mut out = Exact {
        value: 0,
        huge: false,
        terms: 0,
    };
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    let is_num = |c: char| c.is_ascii_digit() || c == '.';
    while !rest.is_empty() {
        let n = rest.find(|c| !is_num(c)).unwrap_or(rest.len());
        let (number, tail) = rest.split_at(n);
        let u = tail.find(is_num).unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(u);
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        if frac.contains('.') || (int.is_empty() && frac.is_empty()) {
            return None;
        }
        let unit = unit_ns(unit)?;
        match term(int, frac, unit).and_then(|t| out.value.checked_add(t)) {
            Some(v) => out.value = v,
            None => out.huge = true,
        }
        out.terms += 1;
        rest = tail;
    }
    Some(out)
}

/// `int.frac` units in 10⁻⁹ ns; None when it does not fit.
fn term(int: &str, frac: &str, unit: u128) -> Option<u128> {
    let int = int.trim_start_matches('0');
    if int.len() > 30 {
        return None;
    }
    let whole: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let digits: String = frac
        .chars()
        .chain(std::iter::repeat('0'))
        .take(18)
        .collect();
    let frac: u128 = digits.parse().ok()?;
    whole
        .checked_mul(unit)?
        .checked_mul(SUB)?
        .checked_add(frac * unit / SUB)
}
