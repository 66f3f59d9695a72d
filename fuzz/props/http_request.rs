//! `http_request`: arbitrary bytes as a client connection to a real gateway.
//!
//! One gateway (`gateway::server::serve_gateway` on 127.0.0.1:0 with one worker thread, the
//! fuzz keys, loopback targets allowed, every pod port and named service mapped to one
//! in-process upstream that answers `200 up`) is started once per process from a
//! current-thread tokio runtime, which also runs the upstream and the client; each input
//! opens a connection, writes the bytes (and [`SENTINEL`]), half-closes and reads until the
//! gateway closes.
//! Throttling and the access log are off so that every input is judged alone (the token caches
//! stay on, as in production). Seed tokens expire in 2100 or later, since the gateway reads
//! the wall clock.
//!
//! Properties:
//! - the gateway answers or closes within 10 s (no hang);
//! - an HTTP/1 answer is a sequence of well-formed responses (status line, headers, body framed
//!   by `Content-Length`, chunked encoding or the close), the last possibly cut short only when
//!   the connection was reset;
//! - every status is one the README documents: 200 (the upstream, `/healthz`, `/node`), 100,
//!   400, 401, 404, 413, 414, 429, 431, 502, 503, 504 — never 500;
//! - no `Server` header; every 401 carries `WWW-Authenticate: Bearer`; no body echoes a token
//!   (`eyJ`, the base64 of `{"`);
//! - an HTTP/2 connection (the input starts with the preface) never answers `:status 500`.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use gateway::Gateway;
use gateway::config::FileConfig;
use http_body_util::{BodyExt as _, Full};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::common::key_files;

/// Longest wait for the gateway to answer and close.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The statuses the gateway may answer with (see the module docs).
const STATUSES: [u16; 12] = [100, 200, 400, 401, 404, 413, 414, 429, 431, 502, 503, 504];
/// The pod ports, all mapped to the one upstream.
const POD_PORTS: [u16; 13] = gateway::routes::DEFAULT_CONTAINER_PORTS;

/// The runtime the gateway and the client share, and where the gateway listens.
#[derive(Debug)]
struct Harness {
    rt: tokio::runtime::Runtime,
    addr: SocketAddr,
    /// Keeps SIGPIPE handled (see [`harness`]).
    _sigpipe: tokio::signal::unix::Signal,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        // A Rust `main` ignores SIGPIPE, so the gateway binary gets EPIPE from a write to a
        // closed socket; libFuzzer's C `main` does not, and the signal would kill the run.
        // Handling it (with tokio's safe signal API) restores the binary's behaviour.
        let _sigpipe = rt.block_on(async {
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::pipe())
                .expect("handling SIGPIPE")
        });
        let addr = rt.block_on(start());
        Harness { rt, addr, _sigpipe }
    })
}

async fn start() -> SocketAddr {
    let upstream = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("upstream bind");
    let up = upstream.local_addr().expect("upstream address").port();
    tokio::spawn(serve_upstream(upstream));

    let files = key_files();
    let port_map: Vec<String> = POD_PORTS
        .iter()
        .map(|p| format!("\"{p}\" = {up}"))
        .collect();
    let services: String = ["pyos", "speedtest", "console", "website"]
        .iter()
        .map(|s| format!("[services.{s}]\nhost = \"127.0.0.1\"\nport = {up}\n"))
        .collect();
    let text = format!(
        r#"
listen = "127.0.0.1:0"
node_name = "fuzz-node"
[keys]
signing_public_key = {signing:?}
payload_private_key = {payload:?}
[auth]
allow_loopback = true
[limits]
header_read_timeout = "2s"
max_header_bytes = 16384
workers = 1
[abuse]
auth_failures_per_ip = 0
[admin]
listen = "off"
[log]
access_log = false
[upstream]
connect_timeout = "200ms"
resolver = ["127.0.0.1:9"]
port_map = {{ {port_map} }}
{services}"#,
        signing = files.signing().display().to_string(),
        payload = files.payload().display().to_string(),
        port_map = port_map.join(", "),
    );
    let file = FileConfig::parse(&text).expect("fuzz gateway config parses");
    let config = file.validate().expect("fuzz gateway config loads");
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("gateway bind");
    let addr = listener.local_addr().expect("gateway address");
    let gateway = Arc::new(Gateway::new(config));
    tokio::spawn(gateway::server::serve_gateway(
        listener,
        gateway,
        None,
        std::future::pending(),
    ));
    addr
}

/// The stand-in for every pod and service: reads the request body, answers `200 up`.
async fn serve_upstream(listener: TcpListener) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                |req: http::Request<hyper::body::Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                        Bytes::from_static(b"up\n"),
                    )))
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Written after the input: the start of a request line that never completes.
///
/// hyper (without `half_close`, as the gateway runs it) drops a connection whose client
/// half-closes while a request is in flight, unanswered, unless unparsed bytes are still
/// buffered. These bytes are that buffer: every complete request in the input is answered,
/// then hyper waits for the rest of this one, reads the end of stream and closes. A real
/// client never half-closes, so nothing is lost; an input that ends inside a request simply
/// gets this byte too.
const SENTINEL: &[u8] = b"X";

/// Writes `data` and [`SENTINEL`], half-closes, reads until the gateway closes. `true` when
/// the read ended with a clean end of stream rather than a reset.
async fn exchange(addr: SocketAddr, data: &[u8]) -> (Vec<u8>, bool) {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connecting to the gateway");
    let (mut rd, mut wr) = stream.split();
    let mut bytes = data.to_vec();
    bytes.extend_from_slice(SENTINEL);
    // A gateway that answers early (400, 413) may stop reading: write and read at once.
    let write = async {
        let _ = wr.write_all(&bytes).await;
        let _ = wr.shutdown().await;
    };
    let read = async {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => return (out, true),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) => return (out, false),
            }
        }
    };
    let ((), answer) = tokio::join!(write, read);
    answer
}

/// Checks every property on one input; panics on a violation.
pub fn check(data: &[u8]) {
    let h = harness();
    let exchanged =
        h.rt.block_on(async { tokio::time::timeout(ANSWER_TIMEOUT, exchange(h.addr, data)).await });
    let Ok((answer, clean)) = exchanged else {
        panic!("the gateway neither answered nor closed within {ANSWER_TIMEOUT:?}");
    };
    if data.starts_with(H2_PREFACE) {
        check_h2(&answer);
    } else {
        check_h1(&answer, clean);
    }
}

/// A response head.
#[derive(Debug)]
struct Head {
    status: u16,
    headers: Vec<(String, String)>,
    len: usize,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses one response head; `Ok(None)` when `bytes` ends before the head does.
fn parse_head(bytes: &[u8]) -> Result<Option<Head>, String> {
    let Some(end) = find(bytes, b"\r\n\r\n") else {
        let prefix_ok =
            b"HTTP/1.".starts_with(&bytes[..bytes.len().min(7)]) || bytes.starts_with(b"HTTP/1.");
        return if prefix_ok {
            Ok(None)
        } else {
            Err("not an HTTP/1 response".to_owned())
        };
    };
    let head = std::str::from_utf8(&bytes[..end]).map_err(|_| "head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let rest = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let code = rest.get(..3).unwrap_or_default();
    let after = rest.get(3..).unwrap_or_default();
    if !code.bytes().all(|b| b.is_ascii_digit()) || !(after.is_empty() || after.starts_with(' ')) {
        return Err(format!("bad status line {status_line:?}"));
    }
    let status: u16 = code.parse().map_err(|_| "bad status")?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || !name.bytes().all(token) {
            return Err(format!("bad header name {name:?}"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    Ok(Some(Head {
        status,
        headers,
        len: end + 4,
    }))
}

/// Length of a chunked body at the start of `bytes`, or `None` when it is cut short.
fn chunked_len(bytes: &[u8]) -> Result<Option<usize>, String> {
    let mut at = 0;
    loop {
        let Some(eol) = find(&bytes[at..], b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&bytes[at..at + eol]).map_err(|_| "chunk size")?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| format!("chunk size {size:?}"))?;
        at += eol + 2;
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                let Some(eol) = find(&bytes[at..], b"\r\n") else {
                    return Ok(None);
                };
                at += eol + 2;
                if eol == 0 {
                    return Ok(Some(at));
                }
            }
        }
        if bytes.len() < at + size + 2 {
            return Ok(None);
        }
        if &bytes[at + size..at + size + 2] != b"\r\n" {
            return Err("chunk not followed by CRLF".to_owned());
        }
        at += size + 2;
    }
}

fn check_h1(answer: &[u8], clean: bool) {
    let mut rest = answer;
    while !rest.is_empty() {
        let head = match parse_head(rest) {
            Ok(Some(head)) => head,
            Ok(None) => {
                assert!(!clean, "response head cut short before a clean close");
                return;
            }
            Err(e) => panic!("malformed response: {e}"),
        };
        check_head(&head);
        let body_at = head.len;
        let no_body = head.status < 200 || head.status == 204 || head.status == 304;
        let chunked = head
            .header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
        let body_len = if no_body || rest.len() == body_at {
            // No body, or an answer to HEAD (a length announced, no body) at the end.
            Some(0)
        } else if chunked {
            chunked_len(&rest[body_at..]).unwrap_or_else(|e| panic!("bad chunked body: {e}"))
        } else if let Some(len) = head.header("content-length") {
            let len: usize = len.parse().expect("numeric Content-Length");
            (rest.len() >= body_at + len).then_some(len)
        } else {
            // Delimited by the close.
            Some(rest.len() - body_at)
        };
        let Some(body_len) = body_len else {
            assert!(!clean, "response body cut short before a clean close");
            return;
        };
        let body = &rest[body_at..body_at + body_len];
        assert!(find(body, b"eyJ").is_none(), "a body echoes a token");
        let next = &rest[body_at + body_len..];
        // An answer to HEAD announces a length but has no body.
        let head_answer = !next.is_empty() && !next.starts_with(b"HTTP/1.");
        rest = if head_answer && rest[body_at..].starts_with(b"HTTP/1.") {
            &rest[body_at..]
        } else {
            next
        };
    }
}

fn check_head(head: &Head) {
    assert!(
        STATUSES.contains(&head.status),
        "undocumented status {}",
        head.status
    );
    assert!(head.header("server").is_none(), "a Server header");
    if head.status == 401 {
        let challenge = head.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer"),
            "401 without a Bearer challenge"
        );
    }
}

/// Walks the HTTP/2 frames the gateway sent; a HEADERS block starting with HPACK static
/// entry 14 is `:status: 500`.
fn check_h2(answer: &[u8]) {
    let mut rest = answer;
    while rest.len() >= 9 {
        let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        let (kind, flags) = (rest[3], rest[4]);
        let Some(payload) = rest.get(9..9 + len) else {
            return;
        };
        if kind == 1 {
            let mut block = payload;
            if flags & 0x8 != 0 {
                block = block.get(1..).unwrap_or_default();
            }
            if flags & 0x20 != 0 {
                block = block.get(5..).unwrap_or_default();
            }
            assert_ne!(block.first(), Some(&0x8e), "HTTP/2 answer with :status 500");
        }
        rest = &rest[9 + len..];
    }
}
