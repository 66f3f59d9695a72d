//! The `payload_target` target: input format and properties in `fuzz/props/payload_target.rs`.
#![no_main]

#[allow(dead_code)]
#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::payload_target::check(data));
