#![no_main]
//! `license_agent::fuzzing::reboot_window` under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| license_agent::fuzzing::reboot_window(data));
