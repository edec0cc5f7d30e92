//! Fuzz target `cart_image`: a cart image (and an image with a delta), decoded and round-tripped.
//! See `server::fuzzing::cart_image` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| server::fuzzing::cart_image(data));
