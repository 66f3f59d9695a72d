//! The `token_pipeline` target: input format and properties in `fuzz/props/token_pipeline.rs`.
#![no_main]

#[allow(dead_code)]
#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::token_pipeline::check(data));
