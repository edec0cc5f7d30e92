//! Fuzz target `request_decoder`: RESP request framing, fed whole and in pieces. See
//! `protocol::fuzzing::request_decoder` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| protocol::fuzzing::request_decoder(data));
