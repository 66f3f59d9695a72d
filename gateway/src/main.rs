//! The `gateway` binary: abcdesktop's web gateway.
//!
//! ```text
//! gateway [--config FILE]                 serve until SIGINT/SIGTERM
//! gateway [--config FILE] --check-config  load and validate, then exit 0 (or 2)
//! gateway demo [--listen 127.0.0.1:30443] throw-away keys, a fake desktop, ready-to-paste commands
//! ```
//!
//! The original gateway's environment variables (`JWT_DESKTOP_SIGNING_PUBLIC_KEY`,
//! `JWT_DESKTOP_PAYLOAD_PRIVATE_KEY`, `NODE_NAME`, `PYOS_FQDN`, `PYOS_SERVICE_HOST`,
//! `PYOS_SERVICE_PORT`, `SPEEDTEST_FQDN`, `CONSOLE_FQDN`, `WEBSITE_FQDN`, `NAMESERVER_RESOLVER`)
//! are read here, and only here; logging follows `GATEWAY_LOG`, else `RUST_LOG`, else `info`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use gateway::config::{Config, Env};

/// Exit code for an unusable configuration.
const EXIT_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "abcdesktop's web gateway (drop-in for the nginx + Lua router)"
)]
struct Cli {
    /// The TOML config file (see manifests/gateway.example.toml); without it, defaults and
    /// the original's environment variables apply.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Load and validate the configuration (including the key files), then exit.
    #[arg(long)]
    check_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway with throw-away keys in front of a fake desktop on loopback, and print
    /// commands to try it. Runs until Ctrl-C.
    Demo {
        /// Where the demo gateway listens.
        #[arg(long, default_value = "127.0.0.1:30443")]
        listen: SocketAddr,
    },
}

fn init_tracing() {
    let filter = std::env::var("GATEWAY_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Completes on the first of SIGINT and SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    gateway::server::serve(listener, config, shutdown_signal()).await;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    if let Some(Command::Demo { listen }) = cli.command {
        return match gateway::demo::run(listen, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gateway demo: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let env = Env::from_fn(|name| std::env::var(name).ok());
    let config = match Config::from_path(cli.config.as_deref(), &env) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("gateway: {:#}", anyhow::Error::from(e));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if cli.check_config {
        println!(
            "config ok: listen {}, {} routes, payload key {}",
            config.listen,
            config.routes.routes().len(),
            if config.keys.payload.is_some() {
                "loaded"
            } else {
                "UNAVAILABLE (requests will get 503)"
            }
        );
        return ExitCode::SUCCESS;
    }
    match serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}
