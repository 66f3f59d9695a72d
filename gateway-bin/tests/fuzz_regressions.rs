//! The fuzz targets' properties on stable Rust: every committed seed (`fuzz/seeds/<target>/`)
//! and every input a fuzzer ever failed on (`fuzz/regressions/<target>/`) goes through the
//! same `check` the target runs (`fuzz/props/<target>.rs`, compiled here too), so
//! `cargo test` keeps them all passing without nightly or cargo-fuzz.

use std::path::{Path, PathBuf};

#[path = "../../fuzz/props/mod.rs"]
mod props;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `fuzz/<kind>/<target>/`, sorted; none when the directory does not exist.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `check` on every seed and regression input of `target`; there must be seeds.
fn run(target: &str, check: fn(&[u8])) {
    let seeds = inputs("seeds", target);
    assert!(!seeds.is_empty(), "no seeds in fuzz/seeds/{target}");
    for path in seeds.iter().chain(&inputs("regressions", target)) {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "{target}: property violated by {}",
            path.display()
        );
    }
}

#[test]
fn token_pipeline_seeds_and_regressions_hold() {
    run("token_pipeline", props::token_pipeline::check);
}

#[test]
fn token_extract_seeds_and_regressions_hold() {
    run("token_extract", props::token_extract::check);
}

#[test]
fn jws_verify_seeds_and_regressions_hold() {
    run("jws_verify", props::jws_verify::check);
}

#[test]
fn payload_target_seeds_and_regressions_hold() {
    run("payload_target", props::payload_target::check);
}

#[test]
fn route_match_seeds_and_regressions_hold() {
    run("route_match", props::route_match::check);
}

#[test]
fn config_parse_seeds_and_regressions_hold() {
    run("config_parse", props::config_parse::check);
}

#[test]
fn http_request_seeds_and_regressions_hold() {
    run("http_request", props::http_request::check);
}

// === gateway bugs the fuzzers found (fixed in afdc9a9), by name ===

fn regression(target: &str, name: &str) -> Vec<u8> {
    let path = fuzz_dir().join("regressions").join(target).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn container_path_never_extracts_an_empty_token() {
    // `/container/Bearer /6081` (segment `Bearer `): `Bearer ` was stripped after the
    // emptiness check.
    props::token_extract::check(&regression("token_extract", "empty-container-token"));
}

#[test]
fn accepted_service_hosts_make_a_uri() {
    // `[services.pyos] host = "pyos<1>"` passed `--check-config`, then pyos routes got 400.
    props::config_parse::check(&regression("config_parse", "service-host-makes-no-uri"));
}
