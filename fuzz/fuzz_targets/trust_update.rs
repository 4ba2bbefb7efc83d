#![no_main]
//! `license_agent::fuzzing::trust_update` under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| license_agent::fuzzing::trust_update(data));
