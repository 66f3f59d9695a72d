//! A connection over time: every phase in which the gateway waits for a client has a
//! deadline (silent sockets, slow heads, idle keep-alive, idle HTTP/2, stalled request
//! bodies), a long upload is not cut by the upstream read timeout, and what a client sends
//! on one connection never reaches the upstream in a shape the gateway did not mean
//! (upgrades with bodies or other protocols, unrequested 101, split cookies, double Host).

use crate::support_proxy;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support_proxy::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Reads until the peer closes (true) or `within` passes (false); what came is returned too.
async fn closed_within(s: &mut TcpStream, within: Duration) -> (bool, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Err(_) => return (false, String::from_utf8_lossy(&buf).into_owned()),
            Ok(Ok(0)) | Ok(Err(_)) => return (true, String::from_utf8_lossy(&buf).into_owned()),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Sends `head` on a new connection and returns the first answer's text (up to 64 KiB).
async fn exchange(gw: &Gateway, head: &[u8]) -> String {
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(head).await.unwrap();
    let (_, text) = closed_within(&mut s, Duration::from_secs(5)).await;
    text
}

async fn healthz_within(gw: &Gateway, within: Duration) -> Option<StatusCode> {
    tokio::time::timeout(within, async {
        let (status, _, _) = get(&gw.url("/healthz"), None).await;
        status
    })
    .await
    .ok()
}

#[tokio::test]
async fn silent_sockets_and_partial_heads_at_the_cap_are_closed_and_others_served() {
    let mut file = file_config(Default::default());
    file.limits.max_connections = 8;
    file.limits.header_read_timeout = Duration::from_millis(500);
    file.limits.keepalive_timeout = Duration::from_secs(60);
    let gw = spawn_gateway(file).await;
    let mut held = Vec::new();
    for i in 0..8 {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        match i % 3 {
            0 => {}
            1 => s.write_all(b"GET /healthz HTTP/1.1\r\nHo").await.unwrap(),
            _ => s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap(),
        }
        held.push(s);
    }
    // Every slot is taken; once the deadline frees them, a real client gets through.
    assert_eq!(
        healthz_within(&gw, Duration::from_secs(10)).await,
        Some(StatusCode::OK),
        "a legitimate request waited forever behind silent sockets"
    );
    for (i, s) in held.iter_mut().enumerate() {
        let (closed, _) = closed_within(s, Duration::from_secs(5)).await;
        assert!(closed, "socket {i} still open past the head deadline");
    }
}

#[tokio::test]
async fn a_silent_socket_is_closed_at_the_head_deadline_counted_from_accept() {
    let mut file = file_config(Default::default());
    file.limits.header_read_timeout = Duration::from_millis(400);
    let gw = spawn_gateway(file).await;
    // A client that completes nothing: the deadline is counted from accept.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let started = std::time::Instant::now();
    let (closed, _) = closed_within(&mut s, Duration::from_secs(5)).await;
    assert!(closed && started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_and_a_busy_one_is_not() {
    let mut file = file_config(Default::default());
    file.limits.keepalive_timeout = Duration::from_secs(2);
    file.limits.header_read_timeout = Duration::from_secs(30);
    let gw = spawn_gateway(file).await;
    let req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

    // Busy: a request every 150 ms for 3 s (longer than the timeout), on one connection.
    let mut busy = TcpStream::connect(gw.addr).await.unwrap();
    for _ in 0..20 {
        busy.write_all(req).await.unwrap();
        let mut buf = [0u8; 1024];
        let n = busy.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    // Idle after one answer: closed after the keep-alive timeout, well before the head one.
    let mut idle = TcpStream::connect(gw.addr).await.unwrap();
    idle.write_all(req).await.unwrap();
    let (closed, text) = closed_within(&mut idle, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(closed, "idle keep-alive connection still open");
}

#[tokio::test]
async fn a_head_started_after_an_idle_pause_gets_the_head_deadline() {
    let mut file = file_config(Default::default());
    file.limits.keepalive_timeout = Duration::from_secs(30);
    file.limits.header_read_timeout = Duration::from_millis(400);
    let gw = spawn_gateway(file).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // The second head starts and never ends (slowloris on a kept-alive connection).
    s.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let (closed, _) = closed_within(&mut s, Duration::from_secs(5)).await;
    assert!(closed, "a slow second head held its connection");
}

/// An h2c client connection to `gw` (h2c must be enabled).
async fn h2c(
    gw: &Gateway,
) -> (
    hyper::client::conn::http2::SendRequest<TestBody>,
    tokio::task::JoinHandle<()>,
) {
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (sender, task)
}

#[tokio::test]
async fn plaintext_speaks_http1_only_unless_h2c_is_enabled() {
    // The HTTP/2 preface gets no HTTP/2 server preface (a SETTINGS frame) in return.
    let gw = spawn_gateway(file_config(Default::default())).await;
    let text = exchange(&gw, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 4"),
        "{text:?}"
    );

    let mut file = file_config(Default::default());
    file.limits.h2c = true;
    let gw = spawn_gateway(file).await;
    let (mut sender, _task) = h2c(&gw).await;
    let req = Request::get(gw.url("/healthz")).body(full("")).unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.version(), http::Version::HTTP_2);
}

#[tokio::test]
async fn an_idle_h2_connection_gets_a_goaway_and_a_busy_stream_outlives_pings() {
    let slow = slow_upstream(20, Duration::from_millis(100)).await;
    let port_map = POD_PORTS.iter().map(|p| (p.to_string(), slow)).collect();
    let mut file = file_config(port_map);
    file.limits.h2c = true;
    file.limits.keepalive_timeout = Duration::from_millis(500);
    file.limits.h2_keepalive_interval = Duration::from_millis(200);
    file.limits.h2_keepalive_timeout = Duration::from_secs(3);
    let gw = spawn_gateway(file).await;

    // A stream that lasts 2 s (four idle timeouts, ten PING intervals) completes whole: the
    // client answers the PINGs, and a connection with an open stream is not idle.
    let (mut sender, task) = h2c(&gw).await;
    let req = Request::get(gw.url("/spawner/slow"))
        .header("abcauthorization", format!("Bearer {}", token()))
        .body(full(""))
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), 20);

    // Then nothing: the gateway says GOAWAY and the connection ends.
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("idle HTTP/2 connection still open")
        .unwrap();
}

/// An upstream that answers every request with `chunks` one-byte chunks, `every` apart.
async fn slow_upstream(chunks: usize, every: Duration) -> u16 {
    scripted_upstream(move |mut conn, _| async move {
        let start = format!("HTTP/1.1 200 OK\r\ncontent-length: {chunks}\r\n\r\n");
        let _ = conn.write_all(start.as_bytes()).await;
        for _ in 0..chunks {
            tokio::time::sleep(every).await;
            if conn.write_all(b"x").await.is_err() {
                return;
            }
        }
    })
    .await
}

/// A raw-TCP upstream: reads each connection's request head, then lets `answer` have the
/// connection and the head's first line.
async fn scripted_upstream<F, A>(answer: F) -> u16
where
    F: Fn(TcpStream, String) -> A + Clone + Send + 'static,
    A: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if conn.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let line = String::from_utf8_lossy(&head)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned();
                answer(conn, line).await;
            });
        }
    });
    port
}

/// A body that yields `chunks` chunks of `size` bytes, `every` apart.
fn trickle(chunks: usize, size: usize, every: Duration) -> TestBody {
    let stream = futures_util::stream::unfold(0, move |i| async move {
        if i == chunks {
            return None;
        }
        tokio::time::sleep(every).await;
        let frame = hyper::body::Frame::data(Bytes::from(vec![b'u'; size]));
        Some((
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(frame),
            i + 1,
        ))
    });
    http_body_util::StreamBody::new(stream).boxed()
}

#[tokio::test]
async fn an_upload_streaming_longer_than_the_read_timeout_succeeds() {
    let desktop = Desktop::http().await;
    let mut file = file_config(desktop.port_map());
    let route = file.routes.entry("filer".to_owned()).or_default();
    route.read_timeout = Some(Duration::from_millis(500));
    let gw = spawn_gateway(file).await;
    // 2 s of upload, four read timeouts long, with data always flowing.
    let req = Request::post(gw.url("/filer/upload"))
        .header("abcauthorization", format!("Bearer {}", token()))
        .body(trickle(20, 1000, Duration::from_millis(100)))
        .unwrap();
    let (status, _, body) = send(req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(seen(&body)["body_len"], 20_000);
}

#[tokio::test]
async fn a_request_body_that_stalls_past_the_body_timeout_gets_408() {
    let desktop = Desktop::http().await;
    let mut file = file_config(desktop.port_map());
    file.limits.client_body_timeout = Duration::from_millis(400);
    let gw = spawn_gateway(file).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /filer/x HTTP/1.1\r\nHost: x\r\nABCAuthorization: Bearer {}\r\n\
         Content-Length: 1000\r\n\r\nhalf",
        token()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let (_, text) = closed_within(&mut s, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
}

#[tokio::test]
async fn an_upgrade_carrying_a_body_is_refused() {
    let ws = ws_upstream("6081").await;
    let port_map = POD_PORTS
        .iter()
        .map(|p| (p.to_string(), ws.addr.port()))
        .collect();
    let gw = spawn_gateway(file_config(port_map)).await;
    let head = format!(
        "GET /websockify?jwt_token={} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nContent-Length: 20\r\n\r\n",
        token()
    );
    let text = exchange(&gw, head.as_bytes()).await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert_eq!(
        ws.accepted(),
        0,
        "the pod was dialled for a refused upgrade"
    );
}

#[tokio::test]
async fn only_websocket_upgrades_are_passed_on() {
    let desktop = Desktop::http().await;
    let gw = spawn_gateway(file_config(desktop.port_map())).await;
    let req = Request::get(gw.url(&format!("/websockify?jwt_token={}", token())))
        .header("connection", "Upgrade")
        .header("upgrade", "h2c")
        .body(full(""))
        .unwrap();
    let (status, _, body) = send(req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen = seen(&body);
    assert!(seen["headers"].get("upgrade").is_none(), "{seen}");
    assert!(seen["headers"].get("connection").is_none(), "{seen}");
}

#[tokio::test]
async fn an_unrequested_101_becomes_502() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if conn.read(&mut buf).await.unwrap_or(0) > 0 {
                    let _ = conn
                        .write_all(
                            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\
                              Upgrade: websocket\r\n\r\nraw bytes of another protocol",
                        )
                        .await;
                    let _ = conn.read(&mut buf).await;
                }
            });
        }
    });
    let port_map = POD_PORTS.iter().map(|p| (p.to_string(), port)).collect();
    let gw = spawn_gateway(file_config(port_map)).await;
    let (status, _, _) = get(&gw.url("/spawner/x"), Some(&token())).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    // Not even on a WebSocket route when the client asked for no upgrade.
    let (status, _, _) = get(&gw.url(&format!("/websockify?jwt_token={}", token())), None).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn split_http2_cookies_reach_the_upstream_as_one_field() {
    let desktop = Desktop::http().await;
    let mut file = file_config(desktop.port_map());
    file.limits.h2c = true;
    let gw = spawn_gateway(file).await;
    let (mut sender, _task) = h2c(&gw).await;
    let req = Request::get(gw.url("/spawner/c"))
        .header("abcauthorization", format!("Bearer {}", token()))
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(full(""))
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let seen = seen(&String::from_utf8_lossy(&body));
    assert_eq!(seen["headers"]["cookie"], "a=1; b=2", "{seen}");
}

#[tokio::test]
async fn a_repeated_or_invalid_host_is_400() {
    let desktop = Desktop::http().await;
    let gw = spawn_gateway(file_config(desktop.port_map())).await;
    let t = token();
    for host_lines in ["Host: a\r\nHost: b\r\n", "Host: a b\r\n", "Host: a/b\r\n"] {
        let head = format!(
            "GET /spawner/h HTTP/1.1\r\n{host_lines}ABCAuthorization: Bearer {t}\r\n\
             Connection: close\r\n\r\n"
        );
        let text = exchange(&gw, head.as_bytes()).await;
        assert!(text.starts_with("HTTP/1.1 400"), "{host_lines:?}: {text}");
    }
    assert_eq!(desktop.accepted(), 0);
}

#[tokio::test]
async fn forwarding_headers_pass_only_from_peers_that_may_speak_for_clients() {
    let desktop = Desktop::http().await;
    let t = token();
    let forged = |path: &str, gw: &Gateway| {
        Request::get(gw.url(path))
            .header("abcauthorization", format!("Bearer {t}"))
            .header("x-forwarded-for", "203.0.113.7")
            .header("x-real-ip", "203.0.113.8")
            .header("x-forwarded-proto", "https")
            .body(full(""))
            .unwrap()
    };
    for (trusted, passes) in [
        (None, true),
        (Some("10.9.9.9"), false),
        (Some("127.0.0.1"), true),
    ] {
        let mut file = file_config(desktop.port_map());
        if let Some(proxy) = trusted {
            file.clients.trusted_proxies = vec![proxy.to_owned()];
        }
        let gw = spawn_gateway(file).await;
        // A route without header directives (the original passed the client's verbatim).
        let (status, _, body) = send(forged("/filer/f", &gw)).await;
        assert_eq!(status, StatusCode::OK);
        let plain = seen(&body)["headers"].clone();
        assert_eq!(
            plain.get("x-forwarded-for").is_some(),
            passes,
            "{trusted:?} {plain}"
        );
        assert_eq!(
            plain.get("x-real-ip").is_some(),
            passes,
            "{trusted:?} {plain}"
        );
        // A proxy-profile route: the peer is always appended / set.
        let (status, _, body) = send(forged("/spawner/f", &gw)).await;
        assert_eq!(status, StatusCode::OK);
        let proxied = seen(&body)["headers"].clone();
        let xff = if passes {
            "203.0.113.7, 127.0.0.1"
        } else {
            "127.0.0.1"
        };
        assert_eq!(proxied["x-forwarded-for"], xff, "{trusted:?}");
        assert_eq!(proxied["x-real-ip"], "127.0.0.1");
        assert_eq!(proxied["x-forwarded-proto"], "http");
    }
}

#[tokio::test]
async fn the_per_address_cap_closes_connections_beyond_it_and_frees_slots_on_close() {
    let mut file = file_config(Default::default());
    file.limits.max_connections_per_ip = 2;
    let gw = spawn_gateway(file).await;
    // Two connections, each answered once: both admitted (the workers accept concurrently,
    // so a bare connect does not say which of three the gateway counted first).
    let first = idle_keep_alive(&gw).await;
    let _second = idle_keep_alive(&gw).await;
    // The third from the same address is closed at once, without an answer.
    let mut third = TcpStream::connect(gw.addr).await.unwrap();
    let _ = third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let (closed, text) = closed_within(&mut third, Duration::from_secs(5)).await;
    assert!(closed && text.is_empty(), "{text}");
    // A slot comes back when a connection of that address closes.
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = exchange(
            &gw,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        if text.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no slot came back: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Opens a connection, has one `/healthz` answered on it and leaves it idle (kept alive).
async fn idle_keep_alive(gw: &Gateway) -> TcpStream {
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    s
}

#[tokio::test]
async fn out_of_connections_the_ones_waiting_longest_go_first_and_a_new_client_is_served() {
    let mut file = file_config(Default::default());
    file.limits.max_connections = 3;
    file.limits.header_read_timeout = Duration::from_secs(60);
    file.limits.keepalive_timeout = Duration::from_secs(60);
    let gw = spawn_gateway(file).await;
    let mut oldest = TcpStream::connect(gw.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let mut idle = idle_keep_alive(&gw).await;
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Every slot taken, every deadline a minute away: the new client gets in now, because
    // the connection that has made the gateway wait longest (3.3 s, against 0.3 s; the age
    // bands double, so a stall of the test's own of up to 0.7 s keeps them apart) goes, and
    // only it.
    assert_eq!(
        healthz_within(&gw, Duration::from_secs(10)).await,
        Some(StatusCode::OK),
        "a new client waited behind idle connections"
    );
    let (closed, _) = closed_within(&mut oldest, Duration::from_secs(2)).await;
    assert!(closed, "the oldest idle connection was not asked to go");
    let (closed, _) = closed_within(&mut idle, Duration::from_millis(300)).await;
    assert!(
        !closed,
        "a younger idle connection went while an older one sufficed"
    );
    let (closed, _) = closed_within(&mut silent, Duration::from_millis(300)).await;
    assert!(
        !closed,
        "a younger silent connection went while an older one sufficed"
    );
}

#[tokio::test]
async fn out_of_connections_a_keep_alive_client_pausing_between_requests_yields_its_slot() {
    let mut file = file_config(Default::default());
    file.limits.max_connections = 1;
    file.limits.keepalive_timeout = Duration::from_secs(60);
    let gw = spawn_gateway(file).await;
    // The only slot: a client that asks again every 600 ms, never idle for a second.
    let mut busy = idle_keep_alive(&gw).await;
    let pausing = tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        loop {
            tokio::time::sleep(Duration::from_millis(600)).await;
            let sent = busy
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .await;
            if sent.is_err() || busy.read(&mut buf).await.unwrap_or(0) == 0 {
                return;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert_eq!(
        healthz_within(&gw, Duration::from_secs(10)).await,
        Some(StatusCode::OK),
        "a new client waited behind a keep-alive client's pauses"
    );
    let ended = tokio::time::timeout(Duration::from_secs(3), pausing).await;
    assert!(ended.is_ok(), "the pausing client kept its slot");
}

/// A scripted desktop: `…slow…` answers after 4 s (a long poll), `…big…` sends 64 MiB as
/// fast as it is taken, anything else is read to its end and answered.
async fn scripted_desktop() -> u16 {
    scripted_upstream(|mut conn, line| async move {
        if line.contains("slow") {
            tokio::time::sleep(Duration::from_secs(4)).await;
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow")
                .await;
        } else if line.contains("big") {
            let size = 64usize << 20;
            let start = format!("HTTP/1.1 200 OK\r\ncontent-length: {size}\r\n\r\n");
            let _ = conn.write_all(start.as_bytes()).await;
            let chunk = vec![0u8; 64 * 1024];
            for _ in 0..size / chunk.len() {
                if conn.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        } else {
            let mut sink = [0u8; 4096];
            while conn.read(&mut sink).await.unwrap_or(0) > 0 {}
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\ngot")
                .await;
        }
        let _ = conn.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn out_of_connections_stalled_clients_go_and_a_request_waiting_on_its_upstream_stays() {
    let desktop = scripted_desktop().await;
    let port_map = POD_PORTS.iter().map(|p| (p.to_string(), desktop)).collect();
    let mut file = file_config(port_map);
    file.limits.max_connections = 3;
    file.limits.client_body_timeout = Duration::from_secs(60);
    file.limits.send_timeout = Duration::from_secs(60);
    let gw = spawn_gateway(file).await;
    let auth = format!("ABCAuthorization: Bearer {}\r\n", token());
    let open = |head: String| async move {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        s
    };

    // A long poll: the gateway waits on the upstream, not on this client.
    let mut long_poll = open(format!(
        "GET /spawner/slow HTTP/1.1\r\nHost: x\r\n{auth}\r\n"
    ))
    .await;
    // A client that does not read its answer, and one whose upload stops after 10 bytes.
    let mut reader = open(format!(
        "GET /spawner/big HTTP/1.1\r\nHost: x\r\n{auth}\r\n"
    ))
    .await;
    let mut uploader = open(format!(
        "POST /filer/upload HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 1000000\r\n\r\n0123456789"
    ))
    .await;
    // Both stalled clients ≈3 s into their waits: one age band, [2 s, 4 s), with a second's
    // margin on either side, so the one round the new client starts tells both.
    tokio::time::sleep(Duration::from_millis(3000)).await;

    assert_eq!(
        healthz_within(&gw, Duration::from_secs(10)).await,
        Some(StatusCode::OK),
        "a new client waited behind clients that stalled"
    );
    let (closed, text) = closed_within(&mut uploader, Duration::from_secs(2)).await;
    assert!(closed, "a stalled upload kept its slot: {text:?}");
    let (closed, _) = closed_within(&mut reader, Duration::from_secs(5)).await;
    assert!(closed, "a client that does not read kept its slot");
    // The long poll was left alone and gets its answer.
    let (_, text) = closed_within(&mut long_poll, Duration::from_secs(6)).await;
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("slow"),
        "the request waiting on its upstream was cut: {text:?}"
    );
}

#[tokio::test]
async fn a_client_that_does_not_read_is_closed_at_the_send_timeout_and_counted() {
    let desktop = scripted_desktop().await;
    let port_map = POD_PORTS.iter().map(|p| (p.to_string(), desktop)).collect();
    let mut file = file_config(port_map);
    file.limits.send_timeout = Duration::from_secs(1);
    let gw = spawn_run(file).await;
    let series = r#"gateway_client_closed_total{reason="send_timeout"}"#;
    assert_eq!(sample(&scrape(&gw).await, series), Some(0.0));

    // 64 MiB asked for and nothing read: the socket buffers fill and the gateway's write waits.
    let mut reader = TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "GET /spawner/big HTTP/1.1\r\nHost: x\r\nABCAuthorization: Bearer {}\r\n\r\n",
        token()
    );
    reader.write_all(head.as_bytes()).await.unwrap();
    let mut counted = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        counted = sample(&scrape(&gw).await, series).filter(|&n| n > 0.0);
        if counted.is_some() {
            break;
        }
    }
    assert_eq!(counted, Some(1.0), "the stalled write was not counted once");
    // What the client reads now is what was buffered, then the end: far less than asked.
    let mut got = 0usize;
    let mut chunk = vec![0u8; 64 * 1024];
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(n @ 1..) = reader.read(&mut chunk).await {
            got += n;
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the connection stayed open past the send timeout"
    );
    assert!(got < 32 << 20, "the whole body came through ({got} bytes)");
}
