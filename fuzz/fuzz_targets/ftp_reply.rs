#![no_main]
//! `license_agent::fuzzing::ftp_reply` under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| license_agent::fuzzing::ftp_reply(data));
