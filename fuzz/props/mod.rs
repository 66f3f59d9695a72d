//! The properties the fuzz targets assert, one module per target, each with a
//! `check(data: &[u8])` that panics on a violation.
//!
//! These files are compiled twice: into each fuzz target (`fuzz/fuzz_targets/*.rs`, nightly,
//! libFuzzer) and into `gateway-bin/tests/fuzz_regressions.rs` (stable `cargo test`), which feeds
//! them every committed seed (`fuzz/seeds/<target>/`) and crash input
//! (`fuzz/regressions/<target>/`). So they may use only what both crates have: the gateway
//! library and its dependencies (no `arbitrary`; `common::Input` reads structured choices).
//! Assertion messages never include token text or key material.

pub mod common;
pub mod config_parse;
pub mod http_request;
pub mod jws_verify;
pub mod payload_target;
pub mod route_match;
pub mod token_extract;
pub mod token_pipeline;
