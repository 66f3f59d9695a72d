//! The `route_match` target: input format and properties in `fuzz/props/route_match.rs`.
#![no_main]

#[allow(dead_code)]
#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::route_match::check(data));
