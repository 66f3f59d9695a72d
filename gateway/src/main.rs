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
//! are read here, and only here; logging follows `GATEWAY_LOG`, else `RUST_LOG`, else `info`,
//! in the format of `--log-format`, else `[log] format`, else text.
//!
//! Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT), 2 for an unusable configuration,
//! 1 for anything else (a port that cannot be bound, an unusable TLS certificate).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use gateway::config::{Config, Env, FileConfig};
use gateway::telemetry::{self, LogFormat};

// The proxy allocates small, short-lived buffers per request; mimalloc measured faster than
// glibc's malloc on the cached-token load test (benches/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Log format; overrides `[log] format` in the config file.
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
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

/// The log filter: `GATEWAY_LOG`, else `RUST_LOG`, else `info`.
fn log_filter() -> String {
    std::env::var("GATEWAY_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".to_owned())
}

/// Completes on the first of SIGINT and SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled, so a signal that arrives while the server is
/// still starting (after it has logged that it listens) is not lost to the default action.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let admin = match config.admin_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (admin)"))?,
        ),
        None => None,
    };
    gateway::server::run(listener, admin, config, shutdown_signal()).await?;
    Ok(())
}

// The control runtime: accept loop, admin listener, reloads, signals. Connections are served
// by `[limits] workers` threads of their own (see `gateway::server`).
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Demo { listen }) = cli.command {
        telemetry::init(cli.log_format.unwrap_or_default(), &log_filter());
        return match gateway::demo::run(listen, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gateway demo: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let env = Env::from_fn(|name| std::env::var(name).ok());
    // The log format may come from the file: parse it first, install the subscriber, and only
    // then load it (key files, routes), so that loading's warnings are logged in that format.
    let file = match cli.config.as_deref().map(FileConfig::read).transpose() {
        Ok(file) => file.unwrap_or_default(),
        Err(e) => {
            eprintln!("gateway: {:#}", anyhow::Error::from(e));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let format = cli.log_format.or(file.log.format).unwrap_or_default();
    telemetry::init(format, &log_filter());
    let config = match Config::load(file, &env) {
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
