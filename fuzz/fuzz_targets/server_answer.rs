#![no_main]
//! `license_agent::fuzzing::server_answer` under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| license_agent::fuzzing::server_answer(data));
