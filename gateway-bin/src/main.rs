//! The `gateway` binary: abcdesktop's web gateway.
//!
//! ```text
//! gateway [--config FILE]                 serve until SIGINT/SIGTERM
//! gateway [--config FILE] --check-config  load and validate, then exit 0, or 2 when it could not serve
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
//!
//! A payload key that cannot be loaded does not stop serving: the key reloader picks it up
//! when it appears (a Secret mounted late, a rotation caught half way), and meanwhile routes
//! without tokens (pyos's API, the login pages, the web site) keep working while desktop
//! routes answer 503. `--check-config`, whose job is to say whether the gateway could serve
//! desktops, fails (2) in that case, and so does it for a TLS certificate that does not load.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use gateway::config::{self, Config, Env, FileConfig};
use gateway::{LogFormat, init_logging};

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
    /// Load and validate the configuration (including the key files and the TLS certificate),
    /// then exit: 0 when the gateway could serve, 2 (with the reason) when it could not.
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

/// The end of `gateway --help`: where settings come from when no config file sets them.
fn help_environment() -> String {
    format!(
        "\
Without a config file (or for keys it leaves out), the original gateway's environment
variables apply, then the defaults:
  JWT_DESKTOP_SIGNING_PUBLIC_KEY   signing public key file
                                   [default: {signing}]
  JWT_DESKTOP_PAYLOAD_PRIVATE_KEY  payload private key file
                                   [default: {payload}]
  NODE_NAME                        what GET /node answers [default: empty]
  PYOS_FQDN, PYOS_SERVICE_HOST     pyos's host, the first one set [default: {pyos_host}]
  PYOS_SERVICE_PORT                pyos's port [default: {pyos_port}]
  SPEEDTEST_FQDN, CONSOLE_FQDN, WEBSITE_FQDN
                                   those services' hosts [default: {speedtest}, {console},
                                   {website}; port {service_port}]
  NAMESERVER_RESOLVER              DNS servers for desktop names, space-separated
                                   [default: the system's resolv.conf]
  GATEWAY_LOG, else RUST_LOG       log filter [default: info]

Listeners: public {listen} (`listen`), admin {admin} (`[admin] listen`, \"off\" to
disable: /metrics, /livez, /readyz).",
        signing = config::DEFAULT_SIGNING_KEY,
        payload = config::DEFAULT_PAYLOAD_KEY,
        pyos_host = config::DEFAULT_PYOS_HOST,
        pyos_port = config::DEFAULT_PYOS_PORT,
        speedtest = config::DEFAULT_SPEEDTEST_HOST,
        console = config::DEFAULT_CONSOLE_HOST,
        website = config::DEFAULT_WEBSITE_HOST,
        service_port = config::DEFAULT_SERVICE_PORT,
        listen = config::DEFAULT_LISTEN,
        admin = config::DEFAULT_ADMIN_LISTEN,
    )
}

/// Parses the command line, with [`help_environment`] at the end of `--help`.
fn parse_cli() -> Cli {
    let matches = Cli::command().after_help(help_environment()).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
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

/// The first 8 hex digits of the SHA-256 of the key's public half (PKCS#1 DER), as
/// `SigningKey::fingerprint` computes it: a payload private key and the public key pyos holds
/// show the same fingerprint. `None` when the file no longer reads as a key.
fn payload_fingerprint(path: &Path) -> Option<String> {
    use rsa::pkcs1::EncodeRsaPublicKey as _;
    let text = std::fs::read_to_string(path).ok()?;
    let public = gateway::public_key_from_pem(&text).ok()?;
    let der = public.to_pkcs1_der().ok()?;
    Some(gateway::token::fingerprint(der.as_bytes()))
}

/// The start-up summary at INFO: listeners, node name, workers, and each key's path, size and
/// fingerprint (never key material).
fn log_startup(config: &Config, listen: Option<SocketAddr>, admin: Option<SocketAddr>) {
    let sources = &config.key_watch.sources;
    tracing::info!(
        listen = %listen.unwrap_or(config.listen),
        admin = %admin.map_or_else(|| "off".to_owned(), |a| a.to_string()),
        tls = config.tls.is_some(),
        node = %config.node_name,
        workers = config.limits.worker_threads(),
        payload_mode = config.keys.payload.as_ref().map_or("unavailable", |k| k.mode().name()),
        "gateway starting"
    );
    for (key, path) in config.keys.signing.iter().zip(&sources.signing) {
        tracing::info!(
            path = %path.display(),
            bits = key.bits(),
            fingerprint = key.fingerprint(),
            "signing key"
        );
    }
    match &config.keys.payload {
        Some(key) => tracing::info!(
            path = %sources.payload.display(),
            bits = key.bits(),
            fingerprint = payload_fingerprint(&sources.payload).as_deref().unwrap_or("?"),
            mode = key.mode().name(),
            "payload key"
        ),
        None => tracing::error!(
            path = %sources.payload.display(),
            "payload key unavailable: desktop routes answer 503 until it can be read"
        ),
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
    log_startup(
        &config,
        listener.local_addr().ok(),
        admin.as_ref().and_then(|l| l.local_addr().ok()),
    );
    gateway::server::run(listener, admin, config, shutdown_signal()).await?;
    Ok(())
}

/// `--check-config`: what would stop the gateway from serving desktops, beyond what
/// [`FileConfig::validate`] already refuses.
fn check_serving(config: &Config) -> anyhow::Result<()> {
    let sources = &config.key_watch.sources;
    if config.keys.payload.is_none() {
        let reason = config::load_payload(&sources.payload, sources.padding)
            .err()
            .unwrap_or_else(|| "it could not be loaded".to_owned());
        anyhow::bail!(
            "cannot load payload key {}: {reason} (serving would answer 503 to every desktop request)",
            sources.payload.display()
        );
    }
    if let Some(files) = &config.tls {
        gateway::TlsState::load(files).context("TLS")?;
    }
    Ok(())
}

// The control runtime: accept loop, admin listener, reloads, signals. Connections are served
// by `[limits] workers` threads of their own (see `gateway::server`).
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = parse_cli();
    if let Some(Command::Demo { listen }) = cli.command {
        init_logging(cli.log_format.unwrap_or_default(), &log_filter());
        return match gateway_tooling::demo::run(listen, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gateway demo: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let env = Env::from_fn(|name| std::env::var(name).ok());
    // The log format may come from the file: parse it first, install the subscriber, and only
    // then validate it (key files, routes), so that validation's warnings are logged in that
    // format.
    let file = match FileConfig::read(cli.config.as_deref(), &env) {
        Ok(file) => file,
        Err(e) => {
            eprintln!("gateway: {:#}", anyhow::Error::from(e));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let format = cli.log_format.unwrap_or(file.log.format);
    init_logging(format, &log_filter());
    let config = match file.validate() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("gateway: {:#}", anyhow::Error::from(e));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if cli.check_config {
        if let Err(e) = check_serving(&config) {
            eprintln!("gateway: {e:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
        println!(
            "config ok: listen {}, {} routes, {} signing key(s), payload key loaded",
            config.listen,
            config.routes.routes().len(),
            config.keys.signing.len(),
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
