//! Fuzz target `command_parser`: a request's words, split on 0x00, parsed as a command. See
//! `protocol::fuzzing::command_parser` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| protocol::fuzzing::command_parser(data));
