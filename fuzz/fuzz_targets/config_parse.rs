//! The `config_parse` target: input format and properties in `fuzz/props/config_parse.rs`.
#![no_main]

#[allow(dead_code)]
#[path = "../props/mod.rs"]
mod props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| props::config_parse::check(data));
