//! Fuzz target `promo_document`: a PROMO.SET document, validated, read back and priced. See
//! `server::fuzzing::promo_document` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| server::fuzzing::promo_document(data));
