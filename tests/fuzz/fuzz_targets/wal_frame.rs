//! Fuzz target `wal_frame`: log segments and frames, decoded and replayed into a store. See
//! `server::fuzzing::wal_frame` (and `persistence::fuzzing::wal_frame`) for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| server::fuzzing::wal_frame(data));
