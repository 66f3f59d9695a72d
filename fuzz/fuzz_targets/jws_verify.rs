//! The `jws_verify` target: input format and properties in `fuzz/props/jws_verify.rs`.
#![no_main]

#[allow(dead_code)]
#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::jws_verify::check(data));
