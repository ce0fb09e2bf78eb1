//! The fuzz targets' bodies (fuzz/src, see FUZZING.md) over the committed seeds in
//! fuzz/seeds/<target>/ and a fixed set of mutations of them: the CI smoke of `make fuzz`,
//! without nightly or cargo-fuzz. Every seed once crashed a target or reaches a path worth
//! keeping; a failure here is a bug the fuzzers found, reproducible as named.

// Each test uses part of the bodies; the rest serves the fuzz binaries.
#[allow(dead_code)]
#[path = "../../fuzz/src/lib.rs"]
mod bodies;

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

/// One of libFuzzer's simpler moves: flip, insert, delete, repeat a span, or splice.
fn mutate(rng: &mut StdRng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        let at = rng.gen_range(0..=v.len());
        match rng.gen_range(0..5) {
            0 if at < v.len() => v[at] ^= 1 << rng.gen_range(0..8),
            1 => v.insert(at, rng.gen()),
            2 if at < v.len() => {
                v.remove(at);
            }
            3 if at < v.len() => {
                let end = rng.gen_range(at..=v.len().min(at + 16));
                let span = v[at..end].to_vec();
                v.splice(at..at, span);
            }
            _ => {
                let from = rng.gen_range(0..=other.len());
                let end = rng.gen_range(from..=other.len());
                v.splice(at..at, other[from..end].iter().copied());
            }
        }
    }
    v
}

/// Runs `body` over every seed, then over `mutations` mutated seeds (fixed RNG seed, so a
/// failure names an input that fails again).
fn replay(target: &str, mutations: usize, body: impl Fn(&[u8])) {
    let seeds = seeds(target);
    for (path, data) in &seeds {
        eprintln!("{}", path.display());
        body(data);
    }
    let mut rng = StdRng::seed_from_u64(0x6b6c_7766);
    for i in 0..mutations {
        let (_, a) = &seeds[rng.gen_range(0..seeds.len())];
        let (_, b) = &seeds[rng.gen_range(0..seeds.len())];
        let input = mutate(&mut rng, a, b);
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&input)));
        assert!(ok.is_ok(), "{target}: mutation {i} fails: {input:02x?}");
    }
}

#[test]
fn token_decoder_holds_its_invariants() {
    replay("token", 3000, bodies::token::run);
}

#[test]
fn tokenreview_parser_holds_its_invariants() {
    replay("tokenreview", 3000, bodies::tokenreview::run);
}

#[test]
fn go_duration_parser_holds_its_invariants() {
    replay("go_duration", 3000, bodies::go_duration::run);
}

#[test]
fn ldap_result_classification_holds_its_invariants() {
    replay("ldap_result", 3000, bodies::ldap_result::run);
}

#[test]
fn config_loader_holds_its_invariants() {
    let dir = tempfile::tempdir().unwrap();
    bodies::config::prepare(dir.path());
    replay("config", 300, |data| {
        bodies::config::run_in(dir.path(), data)
    });
}
