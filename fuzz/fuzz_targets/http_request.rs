//! The `http_request` target: input format and properties in `fuzz/props/http_request.rs`.
#![no_main]

#[allow(dead_code)]
#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::http_request::check(data));
