//! `loadgen hostile`: many connections that each misbehave in one way, held for a bounded
//! time, for the "hostile clients" run of `benches/hostile.sh`. A connection the server closes
//! is opened again (an attacker keeps trying), so what is measured is how the server shares
//! itself between these and a legitimate client running beside them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::bail;
use clap::{Args, ValueEnum};
use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How each connection misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Connects and sends nothing.
    Silent,
    /// Sends a request head one header line every `--every`, never ending it.
    Slowloris,
    /// Sends a complete POST head announcing 1 MB, then one body byte every `--every`.
    SlowBody,
    /// Asks for a large download and never reads it.
    SlowReader,
    /// One request, its answer read, then nothing (keep-alive idle).
    IdleKeepalive,
    /// The HTTP/2 preface and SETTINGS (h2c), then nothing.
    IdleH2,
}

#[derive(Debug, Clone, Args)]
pub struct HostileArgs {
    /// host:port of the server (127.0.0.0/8 only).
    #[arg(long)]
    pub target: SocketAddr,
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// Connections held at once.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// How long to keep them up (at most 10 minutes).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub hold: Duration,
    /// Pause between two trickled bytes or header lines.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub every: Duration,
    /// `ABCAuthorization` token for the kinds that send requests to a token route.
    #[arg(long, default_value = "")]
    pub token: String,
    /// Path of the requests (slow-body, slow-reader, idle-keepalive).
    #[arg(long, default_value = "/healthz")]
    pub path: String,
    /// Print the counts as JSON on stdout at the end.
    #[arg(long)]
    pub json: bool,
}

/// What the hostile connections saw.
#[derive(Debug, Default, Serialize)]
pub struct HostileReport {
    pub kind: Option<Kind>,
    /// Connections opened (reopenings included).
    pub opened: u64,
    /// Connects that failed or timed out.
    pub connect_failures: u64,
    /// Connections the server closed (or reset) while they misbehaved.
    pub closed_by_server: u64,
}

#[derive(Default)]
struct Counts {
    opened: AtomicU64,
    connect_failures: AtomicU64,
    closed_by_server: AtomicU64,
}

/// Holds `args.connections` misbehaving connections until `args.hold` has passed.
pub async fn hostile(args: HostileArgs) -> anyhow::Result<HostileReport> {
    if !args.target.ip().is_loopback() {
        bail!("hostile load goes to loopback addresses only");
    }
    if args.hold > Duration::from_secs(600) {
        bail!("--hold is at most 10 minutes");
    }
    let end = Instant::now() + args.hold;
    let counts = Arc::new(Counts::default());
    let args = Arc::new(args);
    let mut tasks = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let (args, counts) = (args.clone(), counts.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                let connect = TcpStream::connect(args.target);
                let stream = match tokio::time::timeout_at(end, connect).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(_)) => {
                        counts.connect_failures.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    Err(_) => break,
                };
                counts.opened.fetch_add(1, Ordering::Relaxed);
                let closed = tokio::time::timeout_at(end, misbehave(stream, &args)).await;
                if closed.is_ok() {
                    counts.closed_by_server.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
        // Open at a bounded rate so the accept queue sees a stream, not one burst.
        tokio::task::yield_now().await;
    }
    for task in tasks {
        let _ = task.await;
    }
    let report = HostileReport {
        kind: Some(args.kind),
        opened: counts.opened.load(Ordering::Relaxed),
        connect_failures: counts.connect_failures.load(Ordering::Relaxed),
        closed_by_server: counts.closed_by_server.load(Ordering::Relaxed),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(report)
}

/// Misbehaves on `stream` until the server closes it (returns) or forever.
async fn misbehave(mut s: TcpStream, args: &HostileArgs) {
    let host = "Host: bench\r\n";
    let auth = if args.token.is_empty() {
        String::new()
    } else {
        format!("ABCAuthorization: Bearer {}\r\n", args.token)
    };
    let mut buf = vec![0u8; 16 * 1024];
    match args.kind {
        Kind::Silent => {}
        Kind::Slowloris => {
            if s.write_all(format!("GET {} HTTP/1.1\r\n", args.path).as_bytes())
                .await
                .is_err()
            {
                return;
            }
            loop {
                if wait_or_closed(&mut s, &mut buf, args.every).await {
                    return;
                }
                if s.write_all(b"X-Slow: 1\r\n").await.is_err() {
                    return;
                }
            }
        }
        Kind::SlowBody => {
            let head = format!(
                "POST {} HTTP/1.1\r\n{host}{auth}Content-Length: 1000000\r\n\r\n",
                args.path
            );
            if s.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            loop {
                if wait_or_closed(&mut s, &mut buf, args.every).await {
                    return;
                }
                if s.write_all(b"x").await.is_err() {
                    return;
                }
            }
        }
        Kind::SlowReader => {
            let head = format!("GET {} HTTP/1.1\r\n{host}{auth}\r\n", args.path);
            if s.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            // Never read: the server's writes fill the socket buffers and stall. Whether it
            // closed is seen only by a write failing.
            loop {
                tokio::time::sleep(args.every).await;
                if closed_by_peer(&s) {
                    return;
                }
            }
        }
        Kind::IdleKeepalive => {
            let head = format!("GET {} HTTP/1.1\r\n{host}{auth}\r\n", args.path);
            if s.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            // The answer, then nothing more is sent.
            while s.read(&mut buf).await.is_ok_and(|n| n > 0) {}
            return;
        }
        Kind::IdleH2 => {
            let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
            hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // empty SETTINGS
            if s.write_all(&hello).await.is_err() {
                return;
            }
            // Read (and acknowledge nothing) until the server goes.
            while s.read(&mut buf).await.is_ok_and(|n| n > 0) {}
            return;
        }
    }
    // Silent: wait for the server to close.
    while s.read(&mut buf).await.is_ok_and(|n| n > 0) {}
}

/// Waits `pause`; true if the server closed the connection meanwhile (what it sent is read
/// and dropped).
async fn wait_or_closed(s: &mut TcpStream, buf: &mut [u8], pause: Duration) -> bool {
    let until = Instant::now() + pause;
    loop {
        match tokio::time::timeout_at(until, s.read(buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Whether the peer closed `s` (a zero-length peek), without reading what it sent.
fn closed_by_peer(s: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut buf = tokio::io::ReadBuf::new(&mut probe);
    matches!(
        s.poll_peek(&mut cx, &mut buf),
        std::task::Poll::Ready(Ok(0) | Err(_))
    )
}
