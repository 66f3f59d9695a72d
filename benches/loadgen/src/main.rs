//! The `loadgen` binary: see the library's documentation and `benches/README.md`.

use std::process::ExitCode;

use clap::Parser as _;
use loadgen::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => loadgen::run(args).await.map(|_| ()),
        Command::Mint(args) => tokio::task::spawn_blocking(move || loadgen::mint(&args))
            .await
            .unwrap_or_else(|e| Err(e.into())),
        Command::Serve(args) => loadgen::serve(&args).await,
        Command::Hostile(args) => loadgen::hostile::hostile(args).await.map(|_| ()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}
