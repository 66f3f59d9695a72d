//! `loadgen`: an HTTP/1.1 + WebSocket load generator for the gateway (see `benches/README.md`).
//!
//! - `loadgen run --mode <cached|unique|forged|websocket|stream> --url http://HOST:PORT ...`
//!   sends load to that one URL only, on keep-alive connections (one request in flight per
//!   connection), for at most `--duration` (capped at one hour), and prints throughput,
//!   p50/p90/p99/p999 latency and counts by status; `--json FILE` writes the same report.
//! - `loadgen mint` pre-mints a pool of tokens (one a line) with `gateway_tooling::mint::Minter`.
//! - `loadgen serve` is the bench upstream: a 23-byte answer, `?size=N` streams N zero bytes,
//!   and an optional WebSocket echo port.
//! - `loadgen hostile` holds many misbehaving connections (silent, slowloris, slow body, slow
//!   reader, idle keep-alive, idle h2c) for a bounded time (`benches/hostile.sh`).
//!
//! Tokens are minted with the same code as `keys-tool mint`, from the key files given, or taken
//! from `--token` / `--tokens FILE`. Only plain `http://` URLs are supported (no TLS).

pub mod hostile;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand, ValueEnum};
use futures_util::{SinkExt as _, StreamExt as _};
use gateway_tooling::mint::{MintMode, Minter};
use gateway_tooling::upstream::{self, Accepts};
use hdrhistogram::Histogram;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Either, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout_at;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The longest run `--duration` allows: every run stops by itself.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// The small body of `loadgen serve` (23 bytes, like the nginx baseline's).
pub const SMALL_BODY: &[u8] = b"abcdesktop bench hello\n";

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "HTTP/1.1 + WebSocket load generator for the abcdesktop gateway"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send load to one URL for a bounded time and report.
    Run(RunArgs),
    /// Pre-mint tokens into a file, one a line (uses every core).
    Mint(MintArgs),
    /// The bench upstream: small answers, `?size=N` bodies, WebSocket echo.
    Serve(ServeArgs),
    /// Hold many misbehaving connections (silent, slow, idle) for a bounded time.
    Hostile(hostile::HostileArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// One token for every request.
    Cached,
    /// A different token for every request, from a pre-minted pool (the run ends when it is used up).
    Unique,
    /// Tokens with a bad signature: `--pool` distinct forgeries of one valid token, in turn.
    Forged,
    /// WebSocket tunnels: echo round trips, or with `--idle` tunnels held open.
    Websocket,
    /// Large downloads (bytes/s); same as `cached`, with a default path asking for 1 GiB.
    Stream,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenIn {
    /// `ABCAuthorization: Bearer <token>` (spawner, filer, terminals, ...).
    Header,
    /// `?jwt_token=<token>` (websockify, signalling, broadcast, ...).
    Query,
    /// No token.
    None,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Base URL of the gateway (or any proxy): http://HOST:PORT. Load goes there only.
    #[arg(long)]
    pub url: String,
    #[arg(long, value_enum)]
    pub mode: Mode,
    /// Keep-alive connections (or WebSocket tunnels).
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// How long to send load (e.g. 5s, 500ms); at most 1h.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Request path (and query). Defaults: /spawner/bench (HTTP modes), /websockify (websocket),
    /// /filer/bench?size=1073741824 (stream).
    #[arg(long)]
    pub path: Option<String>,
    /// Where the token goes. Default: query for websocket, header otherwise.
    #[arg(long, value_enum)]
    pub token_in: Option<TokenIn>,
    /// Shortcut for `--token-in header`.
    #[arg(long, conflicts_with = "token_in")]
    pub header_token: bool,
    /// Signing private key PEM (the desktop signing key).
    #[arg(long)]
    pub signing_key: Option<PathBuf>,
    /// Payload public key PEM (or the private key; its public half is used).
    #[arg(long)]
    pub payload_key: Option<PathBuf>,
    /// The desktop address tokens point at.
    #[arg(long, default_value = "127.0.0.1")]
    pub target: String,
    /// Token lifetime in seconds.
    #[arg(long, default_value_t = 600)]
    pub lifetime: i64,
    /// A ready token (instead of minting one).
    #[arg(long)]
    pub token: Option<String>,
    /// A file of ready tokens, one a line (`loadgen mint`); for `unique`, instead of minting.
    #[arg(long)]
    pub tokens: Option<PathBuf>,
    /// Pool size: tokens minted for `unique`, distinct forgeries for `forged`.
    #[arg(long, default_value_t = 1000)]
    pub pool: usize,
    /// websocket: only open the tunnels and hold them for the duration.
    #[arg(long)]
    pub idle: bool,
    /// websocket: bytes per echo message.
    #[arg(long, default_value_t = 64)]
    pub msg_size: usize,
    /// websocket: handshakes in flight at once while opening tunnels.
    #[arg(long, default_value_t = 128)]
    pub open_concurrency: usize,
    /// HTTP modes: one request per TCP connection (`Connection: close`, then a new connection).
    #[arg(long)]
    pub close: bool,
    /// websocket --idle: a file written once every tunnel is open (or failed).
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Do not print the report.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Args)]
pub struct MintArgs {
    #[arg(long)]
    pub signing_key: PathBuf,
    #[arg(long)]
    pub payload_key: PathBuf,
    #[arg(long, default_value = "127.0.0.1")]
    pub target: String,
    #[arg(long, default_value_t = 600)]
    pub lifetime: i64,
    #[arg(long)]
    pub count: usize,
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// HTTP listen address (small body; `?size=N` streams N bytes).
    #[arg(long)]
    pub http: SocketAddr,
    /// WebSocket echo listen address.
    #[arg(long)]
    pub ws: Option<SocketAddr>,
    /// Stop after this long even without a signal.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub max_time: Duration,
}

// === report ===

#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub mode: Option<Mode>,
    pub idle: bool,
    /// The URL without any token.
    pub url: String,
    pub connections: usize,
    pub elapsed_s: f64,
    /// HTTP: completed responses. WebSocket: echo round trips.
    pub requests: u64,
    pub requests_per_s: f64,
    /// 2xx (and 101 for WebSocket handshakes).
    pub ok: u64,
    /// 401, 403 and 429 (the gateway's per-address throttling of authentication failures).
    pub refused: u64,
    pub status: BTreeMap<u16, u64>,
    /// Connect, handshake and I/O errors.
    pub errors: u64,
    /// Body bytes received (HTTP) or echoed bytes received (WebSocket).
    pub bytes: u64,
    pub bytes_per_s: f64,
    pub latency: Latency,
    /// unique: the pool ran out before the duration did.
    pub pool_exhausted: bool,
    pub tunnels_opened: u64,
    pub tunnels_failed: u64,
    /// websocket --idle: tunnels still open at the end of the hold.
    pub tunnels_held: u64,
}

impl Report {
    pub fn print(&self) {
        let mode = self.mode.map(|m| format!("{m:?}").to_lowercase());
        println!(
            "mode {}{}  url {}  connections {}  elapsed {:.2}s",
            mode.unwrap_or_default(),
            if self.idle { " (idle)" } else { "" },
            self.url,
            self.connections,
            self.elapsed_s
        );
        println!(
            "requests {} ({:.1}/s)  ok {}  refused {}  errors {}{}",
            self.requests,
            self.requests_per_s,
            self.ok,
            self.refused,
            self.errors,
            if self.pool_exhausted {
                "  (token pool used up)"
            } else {
                ""
            }
        );
        let l = &self.latency;
        println!(
            "latency µs  p50 {}  p90 {}  p99 {}  p999 {}  max {}  mean {:.1}",
            l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us, l.mean_us
        );
        let st: Vec<String> = self
            .status
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!(
            "status {}  bytes {} ({:.1} MB/s)",
            st.join(" "),
            self.bytes,
            self.bytes_per_s / 1e6
        );
        if self.mode == Some(Mode::Websocket) {
            println!(
                "tunnels opened {}  failed {}  held {}",
                self.tunnels_opened, self.tunnels_failed, self.tunnels_held
            );
        }
    }
}

/// What one worker counted.
struct Tally {
    hist: Histogram<u64>,
    status: BTreeMap<u16, u64>,
    errors: u64,
    bytes: u64,
    requests: u64,
    opened: u64,
    failed: u64,
    held: u64,
}

impl Tally {
    fn new() -> Self {
        Tally {
            hist: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds"),
            status: BTreeMap::new(),
            errors: 0,
            bytes: 0,
            requests: 0,
            opened: 0,
            failed: 0,
            held: 0,
        }
    }

    fn record(&mut self, start: Instant) {
        let us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.hist.saturating_record(us.max(1));
        self.requests += 1;
    }

    fn merge(&mut self, other: Tally) {
        let _ = self.hist.add(&other.hist);
        for (k, v) in other.status {
            *self.status.entry(k).or_default() += v;
        }
        self.errors += other.errors;
        self.bytes += other.bytes;
        self.requests += other.requests;
        self.opened += other.opened;
        self.failed += other.failed;
        self.held += other.held;
    }
}

// === tokens ===

/// Tokens handed to requests in turn.
struct Tokens {
    list: Vec<String>,
    next: AtomicUsize,
    /// Start again at the end (forged, cached) or stop (unique).
    cycle: bool,
    exhausted: AtomicBool,
}

impl Tokens {
    fn next(&self) -> Option<&str> {
        if self.list.is_empty() {
            return Some("");
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        if self.cycle {
            Some(&self.list[i % self.list.len()])
        } else if let Some(t) = self.list.get(i) {
            Some(t)
        } else {
            self.exhausted.store(true, Ordering::Relaxed);
            None
        }
    }
}

fn now_unix() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    i64::try_from(secs).unwrap_or(i64::MAX)
}

fn minter(signing: &PathBuf, payload: &PathBuf) -> anyhow::Result<Minter> {
    let s = std::fs::read_to_string(signing)
        .with_context(|| format!("reading {}", signing.display()))?;
    let p = std::fs::read_to_string(payload)
        .with_context(|| format!("reading {}", payload.display()))?;
    Minter::from_pem(&s, &p, MintMode::Pkcs1)
}

/// Mints `count` tokens on every core.
pub fn mint_pool(
    minter: &Minter,
    target: &str,
    lifetime: i64,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(count.max(1));
    let now = now_unix();
    let per = count.div_ceil(threads);
    let parts: Vec<anyhow::Result<Vec<String>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let n = per.min(count.saturating_sub(t * per));
                s.spawn(move || {
                    (0..n)
                        .map(|_| minter.mint(target, now, lifetime))
                        .collect::<anyhow::Result<Vec<String>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("mint thread"))
            .collect()
    });
    let mut all = Vec::with_capacity(count);
    for p in parts {
        all.extend(p?);
    }
    Ok(all)
}

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// `count` distinct tokens, each `token` with signature characters changed (never the last
/// two, whose low bits may be padding): forgery `i` writes `i + 1` in base 64 over the
/// signature, digit `d` of position `j` shifting that character by `d` (0 leaves it alone).
pub fn forgeries(token: &str, count: usize) -> anyhow::Result<Vec<String>> {
    let dot = token.rfind('.').context("token has no signature segment")?;
    let sig_start = dot + 1;
    let positions = token.len().saturating_sub(sig_start + 2);
    if positions < 4 {
        bail!("signature too short to forge");
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let mut b = token.as_bytes().to_vec();
        let mut n = i + 1;
        let mut j = 0;
        while n > 0 && j < positions {
            let d = n % 64;
            if d != 0 {
                let pos = sig_start + j;
                let orig = B64URL.iter().position(|&c| c == b[pos]).unwrap_or(0);
                b[pos] = B64URL[(orig + d) % 64];
            }
            n /= 64;
            j += 1;
        }
        out.push(String::from_utf8(b).expect("ASCII"));
    }
    Ok(out)
}

fn build_tokens(args: &RunArgs) -> anyhow::Result<Tokens> {
    let token_in = token_in(args);
    let mut list = if token_in == TokenIn::None {
        Vec::new()
    } else if let Some(file) = &args.tokens {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    } else if let Some(t) = &args.token {
        vec![t.clone()]
    } else {
        let (Some(s), Some(p)) = (&args.signing_key, &args.payload_key) else {
            bail!(
                "give --signing-key and --payload-key (or --token / --tokens, or --token-in none)"
            );
        };
        let m = minter(s, p)?;
        let n = if args.mode == Mode::Unique {
            args.pool
        } else {
            1
        };
        let started = Instant::now();
        let pool = mint_pool(&m, &args.target, args.lifetime, n)?;
        if n > 1 && !args.quiet {
            eprintln!(
                "minted {n} tokens in {:.2}s",
                started.elapsed().as_secs_f64()
            );
        }
        pool
    };
    if token_in != TokenIn::None && list.is_empty() {
        bail!("no tokens");
    }
    match args.mode {
        Mode::Forged => list = forgeries(&list[0], args.pool.max(1))?,
        Mode::Cached | Mode::Stream | Mode::Websocket => list.truncate(1),
        Mode::Unique => {}
    }
    Ok(Tokens {
        list,
        next: AtomicUsize::new(0),
        cycle: args.mode != Mode::Unique,
        exhausted: AtomicBool::new(false),
    })
}

fn token_in(args: &RunArgs) -> TokenIn {
    if args.header_token {
        return TokenIn::Header;
    }
    args.token_in.unwrap_or(if args.mode == Mode::Websocket {
        TokenIn::Query
    } else {
        TokenIn::Header
    })
}

// === run ===

struct Target {
    addr: SocketAddr,
    authority: String,
    path: String,
    token_in: TokenIn,
    tokens: Tokens,
    deadline: Instant,
    msg_size: usize,
    close: bool,
}

impl Target {
    fn path_with(&self, token: &str) -> String {
        if self.token_in == TokenIn::Query {
            let sep = if self.path.contains('?') { '&' } else { '?' };
            format!("{}{sep}jwt_token={token}", self.path)
        } else {
            self.path.clone()
        }
    }

    fn request(&self, token: &str) -> Request<Empty<Bytes>> {
        let mut b = Request::get(self.path_with(token))
            .header(http::header::HOST, &self.authority)
            .header(http::header::ORIGIN, format!("http://{}", self.authority));
        if self.token_in == TokenIn::Header {
            b = b.header("abcauthorization", format!("Bearer {token}"));
        }
        if self.close {
            b = b.header(http::header::CONNECTION, "close");
        }
        b.body(Empty::new()).expect("valid request")
    }
}

fn ws_config() -> WebSocketConfig {
    // Small buffers: 5 000 idle tunnels must not cost the load generator 128 KiB each.
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// Runs one load test as `args` says and returns (and, unless `quiet`, prints) its report.
pub async fn run(args: RunArgs) -> anyhow::Result<Report> {
    if args.duration > MAX_DURATION {
        bail!("--duration is at most {}s", MAX_DURATION.as_secs());
    }
    if args.connections == 0 || args.connections > 100_000 {
        bail!("--connections must be 1..=100000");
    }
    let uri: http::Uri = args.url.parse().context("bad --url")?;
    if uri.scheme_str() != Some("http") {
        bail!("only http:// URLs are supported");
    }
    let authority = uri
        .authority()
        .context("--url needs host:port")?
        .to_string();
    let host_port = if uri.port().is_some() {
        authority.clone()
    } else {
        format!("{authority}:80")
    };
    let addr = tokio::net::lookup_host(&host_port)
        .await?
        .next()
        .context("--url host does not resolve")?;
    let path = args.path.clone().unwrap_or_else(|| {
        match args.mode {
            Mode::Websocket => "/websockify",
            Mode::Stream => "/filer/bench?size=1073741824",
            _ => "/spawner/bench",
        }
        .to_owned()
    });
    let tokens = build_tokens(&args)?;
    let start = Instant::now();
    let target = Arc::new(Target {
        addr,
        authority,
        path: path.clone(),
        token_in: token_in(&args),
        tokens,
        deadline: start + args.duration,
        msg_size: args.msg_size.max(1),
        close: args.close,
    });
    let mut tally = Tally::new();
    if args.mode == Mode::Websocket {
        tally = run_ws(&target, &args).await?;
    } else {
        let handles: Vec<_> = (0..args.connections)
            .map(|_| tokio::spawn(http_worker(target.clone())))
            .collect();
        for h in handles {
            tally.merge(h.await?);
        }
    }
    let elapsed = start.elapsed().as_secs_f64().max(1e-9);
    let h = &tally.hist;
    let ok = tally
        .status
        .iter()
        .filter(|(k, _)| (200..300).contains(*k) || **k == 101)
        .map(|(_, v)| v)
        .sum();
    let refused = tally
        .status
        .iter()
        .filter(|(k, _)| matches!(**k, 401 | 403 | 429))
        .map(|(_, v)| v)
        .sum();
    let report = Report {
        mode: Some(args.mode),
        idle: args.idle,
        url: format!("{}{}", args.url.trim_end_matches('/'), path),
        connections: args.connections,
        elapsed_s: elapsed,
        requests: tally.requests,
        requests_per_s: tally.requests as f64 / elapsed,
        ok,
        refused,
        status: tally.status,
        errors: tally.errors,
        bytes: tally.bytes,
        bytes_per_s: tally.bytes as f64 / elapsed,
        latency: Latency {
            count: h.len(),
            mean_us: if h.is_empty() { 0.0 } else { h.mean() },
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        },
        pool_exhausted: target.tokens.exhausted.load(Ordering::Relaxed),
        tunnels_opened: tally.opened,
        tunnels_failed: tally.failed,
        tunnels_held: tally.held,
    };
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if !args.quiet {
        report.print();
    }
    Ok(report)
}

/// One keep-alive connection sending requests one after another until the deadline,
/// reconnecting when the server closes it (after 10 ms if it failed).
async fn http_worker(t: Arc<Target>) -> Tally {
    let mut tally = Tally::new();
    let deadline = tokio::time::Instant::from_std(t.deadline);
    'connect: while Instant::now() < t.deadline {
        let stream = match timeout_at(deadline, TcpStream::connect(t.addr)).await {
            Err(_) => break,
            Ok(Ok(s)) => s,
            Ok(Err(_)) => {
                tally.errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(Ok((mut sender, conn))) = timeout_at(
            deadline,
            hyper::client::conn::http1::handshake(TokioIo::new(stream)),
        )
        .await
        else {
            tally.errors += 1;
            continue;
        };
        let mut conn = tokio::spawn(conn);
        let errors_before = tally.errors;
        loop {
            if Instant::now() >= t.deadline {
                conn.abort();
                break 'connect;
            }
            if timeout_at(deadline, sender.ready()).await.is_err() {
                conn.abort();
                break 'connect;
            }
            if sender.is_closed() {
                break;
            }
            let Some(token) = t.tokens.next() else {
                conn.abort();
                break 'connect;
            };
            let req = t.request(token);
            let start = Instant::now();
            let res = match timeout_at(deadline, sender.send_request(req)).await {
                Err(_) => {
                    conn.abort();
                    break 'connect;
                }
                Ok(Err(_)) => {
                    tally.errors += 1;
                    break;
                }
                Ok(Ok(r)) => r,
            };
            let status = res.status().as_u16();
            let mut body = res.into_body();
            let mut complete = true;
            loop {
                match timeout_at(deadline, body.frame()).await {
                    Err(_) => {
                        complete = false;
                        break;
                    }
                    Ok(None) => break,
                    Ok(Some(Ok(frame))) => {
                        if let Some(d) = frame.data_ref() {
                            tally.bytes += d.len() as u64;
                        }
                    }
                    Ok(Some(Err(_))) => {
                        tally.errors += 1;
                        complete = false;
                        break;
                    }
                }
            }
            if !complete {
                break;
            }
            tally.record(start);
            *tally.status.entry(status).or_default() += 1;
            if t.close {
                // The server closes first, as it does for a browser's `Connection: close`.
                let _ = timeout_at(deadline, &mut conn).await;
                break;
            }
        }
        conn.abort();
        if tally.errors > errors_before {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    tally
}

async fn run_ws(t: &Arc<Target>, args: &RunArgs) -> anyhow::Result<Tally> {
    let opening = Arc::new(tokio::sync::Semaphore::new(args.open_concurrency.max(1)));
    let settled = Arc::new(AtomicUsize::new(0));
    let all_settled = Arc::new(tokio::sync::Notify::new());
    let n = args.connections;
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (t, opening, settled, all) = (
                t.clone(),
                opening.clone(),
                settled.clone(),
                all_settled.clone(),
            );
            let idle = args.idle;
            tokio::spawn(async move {
                let mut tally = Tally::new();
                let ws = {
                    let _permit = opening.acquire().await;
                    ws_open(&t, &mut tally).await
                };
                if settled.fetch_add(1, Ordering::SeqCst) + 1 == n {
                    all.notify_one();
                }
                if let Some(ws) = ws {
                    if idle {
                        ws_hold(&t, ws, &mut tally).await;
                    } else {
                        ws_echo(&t, ws, &mut tally).await;
                    }
                }
                tally
            })
        })
        .collect();
    if let Some(ready) = &args.ready_file {
        let deadline = tokio::time::Instant::from_std(t.deadline);
        if timeout_at(deadline, all_settled.notified()).await.is_ok() {
            std::fs::write(ready, format!("{}\n", settled.load(Ordering::SeqCst)))?;
        }
    }
    let mut tally = Tally::new();
    for h in handles {
        tally.merge(h.await?);
    }
    Ok(tally)
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn ws_open(t: &Target, tally: &mut Tally) -> Option<Ws> {
    let deadline = tokio::time::Instant::from_std(t.deadline);
    let token = t.tokens.next().unwrap_or("");
    let url = format!("ws://{}{}", t.authority, t.path_with(token));
    let Ok(Ok(stream)) = timeout_at(deadline, TcpStream::connect(t.addr)).await else {
        tally.errors += 1;
        tally.failed += 1;
        return None;
    };
    let _ = stream.set_nodelay(true);
    match timeout_at(
        deadline,
        tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config())),
    )
    .await
    {
        Ok(Ok((ws, res))) => {
            *tally.status.entry(res.status().as_u16()).or_default() += 1;
            tally.opened += 1;
            Some(ws)
        }
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(res))) => {
            *tally.status.entry(res.status().as_u16()).or_default() += 1;
            tally.failed += 1;
            None
        }
        _ => {
            tally.errors += 1;
            tally.failed += 1;
            None
        }
    }
}

async fn ws_echo(t: &Target, mut ws: Ws, tally: &mut Tally) {
    let deadline = tokio::time::Instant::from_std(t.deadline);
    let payload = Bytes::from(vec![b'x'; t.msg_size]);
    while Instant::now() < t.deadline {
        let start = Instant::now();
        match timeout_at(deadline, ws.send(Message::Binary(payload.clone()))).await {
            Err(_) => return,
            Ok(Err(_)) => {
                tally.errors += 1;
                return;
            }
            Ok(Ok(())) => {}
        }
        loop {
            match timeout_at(deadline, ws.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Binary(b)))) => {
                    tally.bytes += b.len() as u64;
                    tally.record(start);
                    break;
                }
                Ok(Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_)))) => {}
                _ => {
                    tally.errors += 1;
                    return;
                }
            }
        }
    }
    let _ = ws.close(None).await;
}

async fn ws_hold(t: &Target, mut ws: Ws, tally: &mut Tally) {
    let deadline = tokio::time::Instant::from_std(t.deadline);
    loop {
        match timeout_at(deadline, ws.next()).await {
            Err(_) => {
                tally.held += 1;
                return;
            }
            Ok(Some(Ok(Message::Close(_))) | None | Some(Err(_))) => return,
            Ok(Some(Ok(_))) => {}
        }
    }
}

// === mint ===

pub fn mint(args: &MintArgs) -> anyhow::Result<()> {
    let m = minter(&args.signing_key, &args.payload_key)?;
    let started = Instant::now();
    let pool = mint_pool(&m, &args.target, args.lifetime, args.count)?;
    let mut text = pool.join("\n");
    text.push('\n');
    std::fs::write(&args.out, text).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "minted {} tokens in {:.2}s",
        args.count,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

// === serve ===

static ZEROS: [u8; 256 * 1024] = [0; 256 * 1024];

/// A body of `left` zero bytes, sent in 256 KiB frames without copying.
#[derive(Debug)]
pub struct Zeros {
    left: u64,
}

impl Body for Zeros {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(ZEROS.len() as u64);
        self.left -= n;
        let n = usize::try_from(n).expect("at most 256 KiB");
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&ZEROS[..n])))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

type ServeBody = Either<Full<Bytes>, Zeros>;

fn size_param(query: Option<&str>) -> Option<u64> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("size=")?.parse().ok())
}

async fn answer(req: Request<Incoming>) -> Response<ServeBody> {
    let body = match size_param(req.uri().query()) {
        Some(n) => Either::Right(Zeros {
            left: n.min(1 << 40),
        }),
        None => Either::Left(Full::new(Bytes::from_static(SMALL_BODY))),
    };
    // Drain the request body (GETs have none).
    let _ = req.into_body().collect().await;
    let mut res = Response::new(body);
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    res
}

/// Serves HTTP/1.1 keep-alive on `listener` until the task is dropped.
pub async fn serve_http(listener: TcpListener) {
    upstream::serve_http(listener, Accepts::default(), answer).await;
}

/// WebSocket echo on `listener` (every data message is sent back) until the task is dropped.
pub async fn serve_ws(listener: TcpListener) {
    upstream::websocket_echo(listener, Accepts::default(), Some(ws_config()), |_| None).await;
}

/// `loadgen serve`: runs until SIGINT/SIGTERM or `max_time`.
pub async fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let http = TcpListener::bind(args.http)
        .await
        .with_context(|| format!("bind {}", args.http))?;
    let h = tokio::spawn(serve_http(http));
    let w = match args.ws {
        Some(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("bind {addr}"))?;
            Some(tokio::spawn(serve_ws(l)))
        }
        None => None,
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = tokio::time::sleep(args.max_time) => {}
    }
    h.abort();
    if let Some(w) = w {
        w.abort();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgeries_are_distinct_and_keep_the_signed_part() {
        let token = format!("aGVhZA.Y2xhaW1z.{}", "Q".repeat(171));
        let forged = forgeries(&token, 100_000).unwrap();
        let set: std::collections::HashSet<_> = forged.iter().collect();
        assert_eq!(set.len(), forged.len());
        assert!(!set.contains(&token));
        assert!(
            forged
                .iter()
                .all(|f| f.starts_with("aGVhZA.Y2xhaW1z.") && f.len() == token.len())
        );
        assert!(forged.iter().all(|f| f.ends_with("QQ")));
    }
}
