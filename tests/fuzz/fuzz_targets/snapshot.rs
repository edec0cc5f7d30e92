//! Fuzz target `snapshot`: snapshot files and token blocks, loaded into a store. See
//! `server::fuzzing::snapshot` (and `persistence::fuzzing::snapshot`) for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| server::fuzzing::snapshot(data));
