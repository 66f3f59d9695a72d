//! The `gateway` binary. The proxy itself arrives with the proxy-engine work; until then the
//! binary says so instead of pretending.

fn main() -> std::process::ExitCode {
    eprintln!("gateway: the proxy is not built yet (token core and keys-tool are); see README.md");
    std::process::ExitCode::from(2)
}
