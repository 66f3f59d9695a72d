//! HTTP/2 abuse over h2c (prior knowledge) on the plain listener, with hand-written frames so
//! the client can break the rules a real client library enforces on itself: streams beyond the
//! advertised limit, rapid reset (CVE-2023-44487), refusals used as a reset amplifier
//! (MadeYouReset, CVE-2025-8671), oversized header lists and CONTINUATION floods. Each attack
//! runs beside a well-behaved hyper HTTP/2 connection that must keep getting its authenticated
//! answers from the desktop.
//!
//! Frames follow RFC 9113 §4 and §6; header blocks use HPACK literals without indexing or
//! Huffman coding (RFC 7541 §6.2.2), which every decoder must accept.

use crate::support_proxy;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::client::conn::http2::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support_proxy::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Frame types (RFC 9113 §6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;

// Flags.
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

// Settings identifiers (RFC 9113 §6.5.2).
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;

// Error codes (RFC 9113 §7).
const REFUSED_STREAM: u32 = 0x7;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// SETTINGS_MAX_FRAME_SIZE's initial value; the client never raises it.
const MAX_FRAME: usize = 16_384;
/// How long any single expected frame may take to arrive.
const WAIT: Duration = Duration::from_secs(10);

/// The shipped defaults under test (`[limits]` in manifests/gateway.example.toml).
const DEFAULT_MAX_STREAMS: u32 = gateway::config::DEFAULT_H2_MAX_CONCURRENT_STREAMS;
const DEFAULT_PENDING_ACCEPT_RESETS: usize = 20;
const DEFAULT_LOCAL_ERROR_RESETS: usize = 256;
const DEFAULT_MAX_HEADER_BYTES: u32 = 32_768;

// === frames out ===

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    assert!(len < 1 << 24, "frame payload too long");
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&len.to_be_bytes()[1..]);
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an N-bit prefix (RFC 7541 §5.1); `first` holds the bits above it.
fn hpack_int(out: &mut Vec<u8>, mut value: usize, prefix_bits: u8, first: u8) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// A literal header field without indexing, new name, no Huffman (RFC 7541 §6.2.2).
fn hpack_literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0);
    hpack_int(out, name.len(), 7, 0);
    out.extend_from_slice(name.as_bytes());
    hpack_int(out, value.len(), 7, 0);
    out.extend_from_slice(value.as_bytes());
}

/// The header block of a request to `path`, with the token in `ABCAuthorization` when given
/// and `extra` fields after it.
fn request_block(
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[(String, String)],
) -> Vec<u8> {
    let mut block = Vec::new();
    hpack_literal(&mut block, ":method", method);
    hpack_literal(&mut block, ":scheme", "http");
    hpack_literal(&mut block, ":path", path);
    hpack_literal(&mut block, ":authority", "gw.test");
    if let Some(token) = token {
        hpack_literal(&mut block, "abcauthorization", &format!("Bearer {token}"));
    }
    for (name, value) in extra {
        hpack_literal(&mut block, name, value);
    }
    block
}

/// HEADERS, followed by CONTINUATION frames when the block does not fit in one frame.
fn headers_frames(stream: u32, block: &[u8], end_stream: bool) -> Vec<u8> {
    let chunks: Vec<&[u8]> = block.chunks(MAX_FRAME).collect();
    let last = chunks.len() - 1;
    let mut out = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let mut flags = if i == last { END_HEADERS } else { 0 };
        let kind = if i == 0 {
            if end_stream {
                flags |= END_STREAM;
            }
            HEADERS
        } else {
            CONTINUATION
        };
        out.extend(frame(kind, flags, stream, chunk));
    }
    out
}

fn rst_stream(stream: u32, code: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &code.to_be_bytes())
}

/// The `n`th client-initiated stream id (1, 3, 5, …).
fn sid(n: usize) -> u32 {
    u32::try_from(2 * n + 1).unwrap()
}

// === frames in ===

#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl Frame {
    /// RST_STREAM's error code.
    fn reset_code(&self) -> u32 {
        assert_eq!(self.kind, RST_STREAM, "{self:?}");
        u32::from_be_bytes(self.payload[..4].try_into().unwrap())
    }

    /// GOAWAY's last stream id, error code and debug data.
    fn goaway(&self) -> (u32, u32, String) {
        assert_eq!(self.kind, GOAWAY, "{self:?}");
        let last = u32::from_be_bytes(self.payload[..4].try_into().unwrap()) & 0x7fff_ffff;
        let code = u32::from_be_bytes(self.payload[4..8].try_into().unwrap());
        (
            last,
            code,
            String::from_utf8_lossy(&self.payload[8..]).into_owned(),
        )
    }
}

#[derive(Debug)]
enum Read {
    Frame(Frame),
    Closed,
    TimedOut,
}

/// The reading half of a hand-driven HTTP/2 connection.
struct FrameReader {
    rd: OwnedReadHalf,
    buf: Vec<u8>,
}

impl FrameReader {
    async fn next(&mut self, within: Duration) -> Read {
        let deadline = Instant::now() + within;
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let rest = self.buf.split_off(9 + len);
                    let raw = std::mem::replace(&mut self.buf, rest);
                    return Read::Frame(Frame {
                        kind: raw[3],
                        flags: raw[4],
                        stream: u32::from_be_bytes(raw[5..9].try_into().unwrap()) & 0x7fff_ffff,
                        payload: raw[9..].to_vec(),
                    });
                }
            }
            let mut chunk = [0u8; 16_384];
            match tokio::time::timeout_at(deadline, self.rd.read(&mut chunk)).await {
                Err(_) => return Read::TimedOut,
                // A reset after GOAWAY is as closed as an orderly FIN.
                Ok(Ok(0) | Err(_)) => return Read::Closed,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next frame, which must arrive within [`WAIT`].
    async fn any_frame(&mut self) -> Frame {
        match self.next(WAIT).await {
            Read::Frame(f) => f,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// The next stream frame or GOAWAY; connection housekeeping (the SETTINGS acknowledgement,
    /// WINDOW_UPDATE, PING) is skipped.
    async fn frame(&mut self) -> Frame {
        loop {
            let f = self.any_frame().await;
            if f.stream != 0 || f.kind == GOAWAY {
                return f;
            }
        }
    }

    /// Reads until the response head on `stream` and returns its status, failing on a reset of
    /// that stream or on GOAWAY.
    async fn status(&mut self, stream: u32) -> u16 {
        loop {
            let f = self.frame().await;
            assert_ne!(f.kind, GOAWAY, "connection closed: {:?}", f.goaway());
            if f.stream != stream {
                continue;
            }
            assert_ne!(
                f.kind,
                RST_STREAM,
                "stream {stream} reset: {}",
                f.reset_code()
            );
            if f.kind == HEADERS {
                return status_of(&f.payload);
            }
        }
    }

    /// Reads until the connection closes; returns the GOAWAY seen on the way, if any, and
    /// every RST_STREAM code by stream.
    async fn drain_to_close(&mut self) -> (Option<Frame>, BTreeMap<u32, u32>) {
        let mut goaway = None;
        let mut resets = BTreeMap::new();
        loop {
            match self.next(WAIT).await {
                Read::Frame(f) if f.kind == GOAWAY => goaway = Some(f),
                Read::Frame(f) if f.kind == RST_STREAM => {
                    resets.insert(f.stream, f.reset_code());
                }
                Read::Frame(_) => {}
                Read::Closed => return (goaway, resets),
                Read::TimedOut => panic!("connection still open {WAIT:?} after the attack"),
            }
        }
    }
}

/// The `:status` of a response header block. The server's HPACK encoder puts `:status` first,
/// either as a static-table index (200, 204, 206, 304, 400, 404, 500) or as a literal whose
/// name is static entry 8, its value Huffman-coded digits. Nothing else is needed here.
fn status_of(block: &[u8]) -> u16 {
    let first = block[0];
    if first & 0x80 != 0 {
        return match first & 0x7f {
            8 => 200,
            9 => 204,
            10 => 206,
            11 => 304,
            12 => 400,
            13 => 404,
            14 => 500,
            i => panic!("status at HPACK index {i}: not a static status"),
        };
    }
    // Literal with incremental indexing (01xxxxxx), without indexing (0000xxxx) or never
    // indexed (0001xxxx), name index 8.
    let name_index = if first & 0xc0 == 0x40 {
        first & 0x3f
    } else {
        first & 0x0f
    };
    assert_eq!(name_index, 8, "first header is not :status: {block:02x?}");
    let huffman = block[1] & 0x80 != 0;
    let len = usize::from(block[1] & 0x7f);
    let value = &block[2..2 + len];
    let text = if huffman {
        huffman_digits(value)
    } else {
        String::from_utf8(value.to_vec()).unwrap()
    };
    text.parse().unwrap()
}

/// Decodes a Huffman-coded string of ASCII digits (RFC 7541 Appendix B: '0'–'2' are the 5-bit
/// codes 0–2, '3'–'9' the 6-bit codes 0x19–0x1f); panics on any other symbol.
fn huffman_digits(bytes: &[u8]) -> String {
    let mut out = String::new();
    let (mut code, mut len) = (0u32, 0u32);
    for byte in bytes {
        for shift in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> shift) & 1);
            len += 1;
            let digit = match (len, code) {
                (5, 0..=2) => Some(code),
                (6, 0x19..=0x1f) => Some(code - 0x19 + 3),
                _ => None,
            };
            if let Some(d) = digit {
                out.push(char::from_digit(d, 10).unwrap());
                (code, len) = (0, 0);
            }
            // Past six bits only padding (all ones) may still be going on.
            assert!(
                len < 6 || code == (1 << len) - 1,
                "not a digit: {bytes:02x?}"
            );
        }
    }
    // What is left is padding: at most 7 bits, all ones (RFC 7541 §5.2).
    assert!(
        len < 8 && code == (1 << len) - 1,
        "bad padding: {bytes:02x?}"
    );
    out
}

/// Opens an h2c connection with prior knowledge: preface, empty SETTINGS, the server's
/// SETTINGS (returned) acknowledged.
async fn open(addr: SocketAddr) -> (FrameReader, OwnedWriteHalf, BTreeMap<u16, u32>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (rd, mut wr) = tcp.into_split();
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    wr.write_all(&hello).await.unwrap();
    let mut reader = FrameReader {
        rd,
        buf: Vec::new(),
    };
    let settings = reader.any_frame().await;
    assert_eq!(
        (settings.kind, settings.flags & ACK),
        (SETTINGS, 0),
        "the server's first frame must be its SETTINGS: {settings:?}"
    );
    let values = settings
        .payload
        .chunks_exact(6)
        .map(|s| {
            (
                u16::from_be_bytes([s[0], s[1]]),
                u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
            )
        })
        .collect();
    wr.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
    (reader, wr, values)
}

// === the desktop and the well-behaved client ===

/// The spawner port of a desktop: reads each request's whole body, then answers 200 `ok`.
/// Counts request heads, so a test can tell which requests reached the desktop.
struct Spawner {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
}

impl Spawner {
    async fn start() -> Spawner {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let spawner = Spawner {
            addr: listener.local_addr().unwrap(),
            requests: Arc::new(AtomicUsize::new(0)),
        };
        let requests = spawner.requests.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let requests = requests.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        requests.fetch_add(1, Ordering::SeqCst);
                        async move {
                            let _ = req.into_body().collect().await;
                            Ok::<_, Infallible>(http::Response::new(full("ok")))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        spawner
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Gateway config with the pod's spawner port (29786) mapped here, and h2c on (these
    /// tests speak HTTP/2 with prior knowledge over plaintext).
    fn gateway_config(&self) -> gateway::config::FileConfig {
        let mut file = file_config(
            [("29786".to_owned(), self.addr.port())]
                .into_iter()
                .collect(),
        );
        file.limits.h2c = true;
        file
    }

    /// Waits until the desktop has seen `n` requests.
    async fn wait_for(&self, n: usize) {
        let deadline = Instant::now() + WAIT;
        while self.requests() < n {
            assert!(
                Instant::now() < deadline,
                "the desktop saw {} requests, expected {n}",
                self.requests()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A well-behaved HTTP/2 client: hyper's, over h2c with prior knowledge.
async fn h2_client(addr: SocketAddr) -> SendRequest<TestBody> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// One authenticated GET to the desktop's spawner; returns the status and body.
async fn desktop_get(sender: &mut SendRequest<TestBody>, token: &str) -> (u16, String) {
    let req = http::Request::get("http://gw.test/spawner/bystander")
        .header("abcauthorization", format!("Bearer {token}"))
        .body(full(Bytes::new()))
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Runs authenticated requests on one connection, one after another, until `stop`; returns
/// every answer. Any failure to get an answer panics the task (and the test at `join`).
fn bystander(
    addr: SocketAddr,
    token: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<(u16, String)>> {
    tokio::spawn(async move {
        let mut sender = h2_client(addr).await;
        let mut answers = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            answers.push(desktop_get(&mut sender, &token).await);
        }
        answers
    })
}

fn assert_all_ok(answers: &[(u16, String)]) {
    assert!(!answers.is_empty(), "the bystander got no answer at all");
    let bad: Vec<_> = answers
        .iter()
        .filter(|a| **a != (200, "ok".to_owned()))
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} bystander answers were not 200 ok: {:?}",
        bad.len(),
        answers.len(),
        &bad[..bad.len().min(5)]
    );
}

// === tests ===

/// The server advertises 128 concurrent streams; with 128 request streams held open (their
/// bodies never finish, so each waits on the desktop), a 129th is refused with REFUSED_STREAM
/// and never reaches the desktop; once one held stream completes, a new stream is served.
#[tokio::test]
async fn streams_beyond_the_advertised_limit_are_refused() {
    let spawner = Spawner::start().await;
    let gw = spawn_gateway(spawner.gateway_config()).await;
    let token = token();

    let (mut rd, mut wr, settings) = open(gw.addr).await;
    assert_eq!(
        settings.get(&SETTINGS_MAX_CONCURRENT_STREAMS),
        Some(&DEFAULT_MAX_STREAMS),
        "{settings:?}"
    );
    assert_eq!(
        settings.get(&SETTINGS_MAX_HEADER_LIST_SIZE),
        Some(&DEFAULT_MAX_HEADER_BYTES),
        "{settings:?}"
    );

    let held = DEFAULT_MAX_STREAMS as usize;
    let block = request_block("POST", "/spawner/held", Some(&token), &[]);
    let mut burst = Vec::new();
    for n in 0..held {
        burst.extend(headers_frames(sid(n), &block, false));
    }
    wr.write_all(&burst).await.unwrap();
    spawner.wait_for(held).await;

    let extra = sid(held);
    let get = request_block("GET", "/spawner/extra", Some(&token), &[]);
    wr.write_all(&headers_frames(extra, &get, true))
        .await
        .unwrap();
    let f = rd.frame().await;
    assert_eq!((f.kind, f.stream), (RST_STREAM, extra), "{f:?}");
    assert_eq!(f.reset_code(), REFUSED_STREAM);
    assert_eq!(
        spawner.requests(),
        held,
        "the refused stream reached the desktop"
    );

    // Finish the first held request: it is answered, and its slot serves a new stream.
    wr.write_all(&frame(DATA, END_STREAM, sid(0), &[]))
        .await
        .unwrap();
    assert_eq!(rd.status(sid(0)).await, 200);
    loop {
        let f = rd.frame().await;
        if f.stream == sid(0) && f.flags & END_STREAM != 0 {
            break;
        }
    }
    let after = sid(held + 1);
    wr.write_all(&headers_frames(after, &get, true))
        .await
        .unwrap();
    assert_eq!(rd.status(after).await, 200);
    assert_eq!(spawner.requests(), held + 1);
}

/// Refusing streams is itself bounded (MadeYouReset): on a connection at its stream limit, the
/// server refuses 256 more streams, then answers the next one with GOAWAY ENHANCE_YOUR_CALM
/// and closes; a second connection is served throughout.
#[tokio::test]
async fn refusals_beyond_the_local_reset_bound_close_the_connection() {
    let spawner = Spawner::start().await;
    let mut file = spawner.gateway_config();
    // A small stream limit keeps the held streams cheap; the reset bound stays the default.
    file.limits.h2_max_concurrent_streams = 4;
    let gw = spawn_gateway(file).await;
    let token = token();

    let (mut rd, mut wr, settings) = open(gw.addr).await;
    assert_eq!(settings.get(&SETTINGS_MAX_CONCURRENT_STREAMS), Some(&4));
    let hold = request_block("POST", "/spawner/held", Some(&token), &[]);
    let mut burst = Vec::new();
    for n in 0..4 {
        burst.extend(headers_frames(sid(n), &hold, false));
    }
    wr.write_all(&burst).await.unwrap();
    spawner.wait_for(4).await;
    let stop = Arc::new(AtomicBool::new(false));
    let good = bystander(gw.addr, token.clone(), stop.clone());
    spawner.wait_for(5).await;

    let attempts = DEFAULT_LOCAL_ERROR_RESETS + 50;
    let get = request_block("GET", "/spawner/extra", Some(&token), &[]);
    let writer = tokio::spawn(async move {
        let mut burst = Vec::new();
        for n in 4..4 + attempts {
            burst.extend(headers_frames(sid(n), &get, true));
        }
        // The server may close before it has read everything.
        let _ = wr.write_all(&burst).await;
        wr
    });
    let (goaway, resets) = rd.drain_to_close().await;
    let _wr = writer.await.unwrap();

    let refused: Vec<u32> = resets
        .iter()
        .filter(|(_, c)| **c == REFUSED_STREAM)
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(refused.len(), DEFAULT_LOCAL_ERROR_RESETS, "{resets:?}");
    assert_eq!(refused.first(), Some(&sid(4)));
    let goaway = goaway.expect("connection closed without GOAWAY");
    let (_, code, debug) = goaway.goaway();
    assert_eq!(
        (code, debug.as_str()),
        (ENHANCE_YOUR_CALM, "too_many_internal_resets")
    );
    // None of the refused streams reached the desktop (the bystander's requests did).
    let good_answers = {
        stop.store(true, Ordering::SeqCst);
        good.await.unwrap()
    };
    assert_all_ok(&good_answers);
    assert_eq!(spawner.requests(), 4 + good_answers.len());
}

/// Rapid reset (CVE-2023-44487): 5 000 HEADERS + RST_STREAM pairs as fast as the socket takes
/// them. After 20 streams reset before the gateway accepted them (the default
/// `h2_max_pending_accept_reset_streams`) the server sends GOAWAY ENHANCE_YOUR_CALM and
/// closes, so only the first few streams count and next to nothing reaches the desktop; a
/// second connection keeps getting 200 from the desktop before, during and after the flood.
#[tokio::test]
async fn rapid_reset_flood_gets_goaway_while_another_connection_is_served() {
    const PAIRS: usize = 5_000;
    // Slack over the exact bound: a stream the server accepted before its reset arrived does
    // not count as pending, so a busy machine may let a few more through.
    const BOUND: usize = 5 * DEFAULT_PENDING_ACCEPT_RESETS;
    let spawner = Spawner::start().await;
    let gw = spawn_gateway(spawner.gateway_config()).await;
    let token = token();
    let stop = Arc::new(AtomicBool::new(false));
    let good = bystander(gw.addr, token.clone(), stop.clone());
    // The bystander is up before the flood starts.
    spawner.wait_for(1).await;

    let (mut rd, mut wr, _) = open(gw.addr).await;
    let block = request_block("GET", "/spawner/flood", Some(&token), &[]);
    let writer = tokio::spawn(async move {
        for batch in (0..PAIRS).collect::<Vec<_>>().chunks(100) {
            let mut burst = Vec::new();
            for &n in batch {
                burst.extend(headers_frames(sid(n), &block, true));
                burst.extend(rst_stream(sid(n), CANCEL));
            }
            // The server closes mid-flood; the rest of the writes fail.
            if wr.write_all(&burst).await.is_err() {
                break;
            }
        }
        wr
    });
    let (goaway, _) = rd.drain_to_close().await;
    let _wr = writer.await.unwrap();
    let goaway = goaway.expect("connection closed without GOAWAY");
    let (last_stream, code, debug) = goaway.goaway();
    assert_eq!(
        (code, debug.as_str()),
        (ENHANCE_YOUR_CALM, "too_many_resets")
    );
    assert!(
        last_stream <= sid(BOUND),
        "GOAWAY names stream {last_stream} as processed, beyond the first {BOUND} streams"
    );

    // The flood is over: the bystander's own connection keeps making progress, and a new
    // connection is served too.
    spawner.wait_for(spawner.requests() + 1).await;
    let mut after = h2_client(gw.addr).await;
    assert_eq!(
        desktop_get(&mut after, &token).await,
        (200, "ok".to_owned())
    );
    stop.store(true, Ordering::SeqCst);
    let answers = good.await.unwrap();
    assert_all_ok(&answers);
    // Whatever else the desktop saw came from the flood.
    let flood_reached = spawner.requests() - answers.len() - 1;
    assert!(
        flood_reached <= BOUND,
        "{flood_reached} of {PAIRS} reset streams reached the desktop"
    );
}

/// A header list over `max_header_bytes` (32 KiB) gets 431 on its stream and never reaches
/// the desktop; the connection stays usable and its next request is served.
#[tokio::test]
async fn oversized_header_list_gets_431_and_the_connection_survives() {
    let spawner = Spawner::start().await;
    let gw = spawn_gateway(spawner.gateway_config()).await;
    let token = token();

    let (mut rd, mut wr, _) = open(gw.addr).await;
    // 40 fields of 1 000 bytes: about 41 KB, in HEADERS + 2 CONTINUATION frames.
    let pad: Vec<(String, String)> = (0..40)
        .map(|i| (format!("x-pad-{i}"), "a".repeat(1000)))
        .collect();
    let big = request_block("GET", "/spawner/big", Some(&token), &pad);
    assert!(big.len() > DEFAULT_MAX_HEADER_BYTES as usize && big.len() < 3 * MAX_FRAME);
    wr.write_all(&headers_frames(sid(0), &big, true))
        .await
        .unwrap();
    let f = rd.frame().await;
    assert_eq!((f.kind, f.stream), (HEADERS, sid(0)), "{f:?}");
    assert_eq!(status_of(&f.payload), 431);
    assert_ne!(f.flags & END_STREAM, 0, "the 431 must end the stream");

    let small = request_block("GET", "/spawner/small", Some(&token), &[]);
    wr.write_all(&headers_frames(sid(1), &small, true))
        .await
        .unwrap();
    assert_eq!(rd.status(sid(1)).await, 200);
    assert_eq!(
        spawner.requests(),
        1,
        "the oversized request reached the desktop"
    );
}

/// A header block that never ends (1 MiB in CONTINUATION frames, CVE-2024-27316's pattern) is
/// cut off with GOAWAY ENHANCE_YOUR_CALM long before it is all sent, without buffering it;
/// a second connection is served throughout.
#[tokio::test]
async fn continuation_flood_gets_goaway_while_another_connection_is_served() {
    let spawner = Spawner::start().await;
    let gw = spawn_gateway(spawner.gateway_config()).await;
    let token = token();
    let stop = Arc::new(AtomicBool::new(false));
    let good = bystander(gw.addr, token.clone(), stop.clone());
    spawner.wait_for(1).await;

    let (mut rd, mut wr, _) = open(gw.addr).await;
    let pad: Vec<(String, String)> = (0..1024)
        .map(|i| (format!("x-pad-{i}"), "a".repeat(1000)))
        .collect();
    let block = request_block("GET", "/spawner/endless", Some(&token), &pad);
    let frames = headers_frames(sid(0), &block, true);
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&frames).await;
        wr
    });
    let (goaway, resets) = rd.drain_to_close().await;
    let _wr = writer.await.unwrap();
    let goaway = goaway.expect("connection closed without GOAWAY");
    let (_, code, debug) = goaway.goaway();
    assert_eq!(
        (code, debug.as_str()),
        (ENHANCE_YOUR_CALM, "too_many_continuations")
    );
    assert!(resets.is_empty(), "{resets:?}");

    stop.store(true, Ordering::SeqCst);
    let answers = good.await.unwrap();
    assert_all_ok(&answers);
    assert_eq!(
        spawner.requests(),
        answers.len(),
        "the endless request reached the desktop"
    );
}
