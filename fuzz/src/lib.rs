//! The bodies of the fuzz targets, one module each: `run(data)` feeds the input to the
//! daemon's code and asserts what must hold for every input, beyond "does not panic".
//!
//! The same bodies serve `cargo fuzz` (fuzz_targets/, through libFuzzer) and the root
//! crate's `cargo test` (tests/it/fuzz_seeds.rs replays seeds/ and mutations of it), so a
//! crash found here becomes a seed and is checked on every test run.

pub mod config;
mod config_gen;
pub mod go_duration;
pub mod ldap_result;
pub mod token;
pub mod tokenreview;
